"""Content scans and the outcome policy: critical => rejected, high or a crashed scanner => quarantined."""

from __future__ import annotations

import json
import random
import struct

import pytest

from mcpstore_appliance.bundles import (
    BundleLimits,
    Finding,
    ScanRun,
    SignatureTrust,
    decide_outcome,
    inspect_bundle,
)
from mcpstore_appliance.bundles.scans import SCANNERS, Scanner
from tests.data.bundles import NODE_SERVER, bundle_bytes, node_manifest, python_manifest

# Synthetic credentials, assembled at run time so this file itself holds no token-shaped strings.
ALNUM = "aZ3x9QmK7pLw2RtY8vNc4BdF6hJs1GkE5uIo0XyTqWeVrPlMnCbA"
FAKE = {
    "secrets.private_key": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEpAIBAAKCAQEA" + ALNUM + "\n-----END",
    "secrets.aws_secret_access_key": "aws_secret_access_key = " + ALNUM[:40],
    "secrets.stripe_live_key": "sk_" + "live_" + ALNUM[:32],
    "secrets.github_token": "gh" + "p_" + ALNUM[:36],
    "secrets.slack_token": "xox" + "b-123456789012-" + ALNUM[:24],
    "secrets.openai_key": "sk-" + "proj-" + ALNUM + ALNUM[:10],
    "secrets.anthropic_key": "sk-" + "ant-api03-" + ALNUM + ALNUM[:40],
    "secrets.npm_token": "np" + "m_" + ALNUM[:36],
}


@pytest.fixture
def inspect(tmp_path):
    def run(data: bytes, scan_run: ScanRun | None = None):
        path = tmp_path / "bundle.mcpb"
        path.write_bytes(data)
        return inspect_bundle(path, BundleLimits(), SignatureTrust(), scan_run=scan_run)
    return run


def by_check(report, prefix: str) -> list[Finding]:
    return [f for f in report.findings if f.check_id.startswith(prefix)]


# ------------------------------------------------------------------------------------- outcome policy


@pytest.mark.parametrize("severities, errors, outcome", [
    ((), (), "published"),
    (("info", "low", "medium"), (), "published"),
    (("low", "high"), (), "quarantined"),
    (("low",), ("deps.node",), "quarantined"),
    (("high", "critical"), (), "rejected"),
    (("critical",), ("secrets",), "rejected"),
])
def test_outcome_policy(severities, errors, outcome):
    findings = [Finding("x", s, "", "m") for s in severities]
    assert decide_outcome(findings, errors) == outcome


# ------------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("check_id", sorted(FAKE))
def test_critical_secrets_reject_the_bundle(inspect, check_id):
    report = inspect(bundle_bytes(node_manifest(), {"server/config.js": f"const k = '{FAKE[check_id]}';\n"}))
    found = by_check(report, check_id)
    assert [(f.severity, f.file) for f in found] == [("critical", "server/config.js")]
    assert report.outcome == "rejected"
    assert FAKE[check_id][12:40] not in found[0].message  # redacted


def test_high_secrets_quarantine(inspect):
    aws_id = "AK" + "IA" + "Q3EGRIKX7ZW4NMPL"
    report = inspect(bundle_bytes(node_manifest(), {"server/aws.js": f"id='{aws_id}'"}))
    assert [f.severity for f in by_check(report, "secrets.aws_access_key_id")] == ["high"]
    assert report.outcome == "quarantined"


def test_stripe_test_keys_are_low(inspect):
    report = inspect(bundle_bytes(node_manifest(), {"server/pay.js": "k='sk_" + "test_" + ALNUM[:30] + "'"}))
    assert [f.severity for f in by_check(report, "secrets.stripe_test_key")] == ["low"]
    assert report.outcome == "published"


def test_placeholders_are_not_secrets(inspect):
    text = "AKIA" + "IOSFODNN7EXAMPLE\nsk_" + "live_" + "x" * 30 + "\nghp_" + "0" * 36 + "\n"
    report = inspect(bundle_bytes(node_manifest(), {"README.md": text}))
    assert by_check(report, "secrets.") == []


def test_secrets_in_vendored_code_are_one_step_lower(inspect):
    extra = {"node_modules/some-lib/test/key.pem": FAKE["secrets.private_key"]}
    report = inspect(bundle_bytes(node_manifest(), extra))
    assert [f.severity for f in by_check(report, "secrets.private_key")] == ["high"]
    assert report.outcome == "quarantined"


def test_secret_straddling_a_read_window_is_found(inspect):
    token = FAKE["secrets.github_token"]
    # The walker reads 1 MiB chunks: the token crosses the boundary. (Random hex, so it is no zip bomb.)
    filler = random.Random(1).randbytes(512 * 1024).hex().encode()[:1024 * 1024 - 10]
    report = inspect(bundle_bytes(node_manifest(), {"server/big.js": filler + b" " + token.encode() + b"\n"}))
    assert [f.file for f in by_check(report, "secrets.github_token")] == ["server/big.js"]


def test_secret_in_a_binary_file_is_found(inspect):
    blob = bytes(range(256)) * 10 + FAKE["secrets.stripe_live_key"].encode() + b"\0" * 100
    report = inspect(bundle_bytes(node_manifest(), {"server/native.node": blob}))
    assert by_check(report, "secrets.stripe_live_key")


@pytest.mark.parametrize("name, check", [(".env", "secrets.env_file"), ("server/.env.production", "secrets.env_file"),
                                         (".npmrc", "secrets.credentials_file"), ("keys/id_rsa", "secrets.key_file"),
                                         ("certs/signing.p12", "secrets.key_file")])
def test_credential_files_quarantine(inspect, name, check):
    report = inspect(bundle_bytes(node_manifest(), {name: "harmless=1\n"}))
    assert [(f.check_id, f.file) for f in by_check(report, "secrets.")] == [(check, name)]
    assert report.outcome == "quarantined"


def test_env_example_is_fine(inspect):
    report = inspect(bundle_bytes(node_manifest(), {".env.example": "API_KEY=\n"}))
    assert by_check(report, "secrets.") == [] and report.outcome == "published"


# ------------------------------------------------------------------------------------- node dependencies


def pkg(name: str, **fields) -> str:
    return json.dumps({"name": name, "version": "1.0.0", **fields})


def test_node_dependency_not_bundled(inspect):
    report = inspect(bundle_bytes(node_manifest(), {"package.json": pkg("app", dependencies={"zod": "^3"})}))
    assert [(f.severity, f.file, f.message) for f in by_check(report, "deps.node")] == [
        ("high", "package.json", "dependency zod is declared but not bundled in node_modules")]
    assert report.outcome == "quarantined"


def test_node_dependencies_bundled(inspect):
    extra = {"package.json": pkg("app", dependencies={"zod": "^3", "@scope/x": "1"},
                                 optionalDependencies={"fsevents": "2"}),
             "node_modules/zod/package.json": pkg("zod"), "node_modules/zod/index.js": "",
             "node_modules/@scope/x/package.json": pkg("@scope/x", dependencies={"zod": "3"})}
    report = inspect(bundle_bytes(node_manifest(), extra))
    assert by_check(report, "deps.") == [] and report.outcome == "published"


def test_transitive_node_dependency_missing(inspect):
    extra = {"package.json": pkg("app", dependencies={"express": "4"}),
             "node_modules/express/package.json": pkg("express", dependencies={"body-parser": "1"})}
    report = inspect(bundle_bytes(node_manifest(), extra))
    assert [f.message for f in by_check(report, "deps.node")] == [
        "dependency body-parser of bundled package express is not bundled"]


def test_node_entry_point_imports(inspect):
    source = ("import fs from 'node:fs';\nimport path from 'path';\nimport { z } from 'zod';\n"
              "const sdk = require('@modelcontextprotocol/sdk/server');\nimport './local.js';\n"
              "import {\n  a,\n  b,\n} from 'multi-line';\nexport * from 'reexported';\nimport 'side-effect';\n"
              "const help = \"usage: import x from 'not-an-import'\";\n// import y from 'commented-out'\n")
    report = inspect(bundle_bytes(node_manifest(), {"server/index.js": source}))
    assert sorted(f.message.split()[4] for f in by_check(report, "deps.node")) == [
        "@modelcontextprotocol/sdk,", "multi-line,", "reexported,", "side-effect,", "zod,"]


# ------------------------------------------------------------------------------------- python dependencies


def test_python_requirements_not_vendored(inspect):
    extra = {"server/main.py": "import json\n", "requirements.txt": "httpx>=0.27\n# comment\nmcp[cli]==1.2\n"}
    report = inspect(bundle_bytes(python_manifest(), extra))
    assert sorted(f.message for f in by_check(report, "deps.python")) == [
        "dependency httpx is declared but not vendored (expected in server/lib or a venv)",
        "dependency mcp is declared but not vendored (expected in server/lib or a venv)"]
    assert report.outcome == "quarantined"


def test_python_vendored_dependencies(inspect):
    extra = {"server/main.py": "import httpx\nfrom mcp.server import Server\ntry:\n    import orjson\nexcept "
                               "ImportError:\n    orjson = None\nfrom . import util\n",
             "requirements.txt": "httpx\nmcp\n",
             "server/lib/httpx/__init__.py": "", "server/lib/mcp/__init__.py": "",
             "server/lib/httpx-0.27.0.dist-info/METADATA": "Name: httpx\n"}
    extra["requirements.txt"] += "python-dotenv>=1\n"
    extra["server/lib/python_dotenv-1.0.1.dist-info/METADATA"] = "Name: python-dotenv\n"
    extra["server/lib/dotenv/__init__.py"] = ""
    report = inspect(bundle_bytes(python_manifest(), extra))
    assert by_check(report, "deps.") == [] and report.outcome == "published"


def test_python_entry_imports_missing(inspect):
    report = inspect(bundle_bytes(python_manifest(), {"server/main.py": "import os\nimport requests\n"}))
    assert [f.message for f in by_check(report, "deps.python")] == [
        "the entry point imports requests, which is not bundled"]


def test_uv_bundles_need_no_vendored_dependencies(inspect):
    manifest = node_manifest(manifest_version="0.4", server={"type": "uv", "entry_point": "src/server.py"})
    extra = {"src/server.py": "import httpx\n", "pyproject.toml": "[project]\nname='x'\ndependencies=['httpx']\n"}
    report = inspect(bundle_bytes(manifest, extra))
    assert by_check(report, "deps.") == [] and report.outcome == "published"


# ------------------------------------------------------------------------------------- native binaries


def elf(machine: int = 0x3E) -> bytes:
    return b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<HH", 2, machine) + b"\0" * 100


def macho(cpu: int = 0x0100000C) -> bytes:
    return b"\xcf\xfa\xed\xfe" + struct.pack("<I", cpu) + b"\0" * 100


def pe(machine: int = 0x8664) -> bytes:
    return b"MZ" + b"\0" * 58 + struct.pack("<I", 0x80) + b"\0" * (0x80 - 64) + b"PE\0\0" + struct.pack("<H", machine)


def test_binaries_match_declared_platforms(inspect):
    manifest = node_manifest(compatibility={"platforms": ["linux", "darwin", "win32"]})
    extra = {"build/a.node": elf(), "build/b.node": macho(), "build/c.node": pe()}
    report = inspect(bundle_bytes(manifest, extra))
    assert by_check(report, "binaries") == []


def test_binary_server_missing_a_declared_platform_is_quarantined(inspect):
    manifest = node_manifest(compatibility={"platforms": ["linux", "darwin"]},
                             server={"type": "binary", "entry_point": "bin/server",
                                     "mcp_config": {"command": "${__dirname}/bin/server"}})
    report = inspect(bundle_bytes(manifest, {"bin/server": elf(0xB7)}))
    found = by_check(report, "binaries")
    assert [(f.check_id, f.severity) for f in found] == [("binaries.platform_missing", "high")]
    assert "linux/arm64" in found[0].message
    assert report.outcome == "quarantined"


def test_binary_for_an_undeclared_platform(inspect):
    manifest = node_manifest(compatibility={"platforms": ["darwin"]})
    report = inspect(bundle_bytes(manifest, {"native/x.node": elf(), "native/y.node": macho()}))
    assert [(f.check_id, f.severity, f.file) for f in by_check(report, "binaries")] == [
        ("binaries.platform_undeclared", "low", "native/x.node")]


def test_platforms_not_declared_but_native_code_for_one(inspect):
    report = inspect(bundle_bytes(node_manifest(), {"native/x.node": pe(0xAA64)}))
    found = by_check(report, "binaries")
    assert [(f.check_id, f.severity) for f in found] == [("binaries.platforms_undeclared", "medium")]
    assert "win32/arm64" in found[0].message


def test_java_class_files_are_not_mach_o(inspect):
    java = b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + b"\0" * 50
    report = inspect(bundle_bytes(node_manifest(), {"lib/A.class": java}))
    assert by_check(report, "binaries") == []


# ------------------------------------------------------------------------------------- install hooks


def test_install_hooks(inspect):
    extra = {"package.json": pkg("app", scripts={"preinstall": "node setup.js", "test": "jest"}),
             "node_modules/native-thing/package.json": pkg("native-thing", scripts={"install": "node-gyp rebuild"}),
             "node_modules/native-thing/lib/package.json": json.dumps({"type": "module", "scripts": {"postinstall": "x"}})}
    report = inspect(bundle_bytes(node_manifest(), extra))
    assert [(f.severity, f.file) for f in by_check(report, "install_hooks")] == [
        ("low", "node_modules/native-thing/package.json"), ("medium", "package.json")]
    assert report.outcome == "published"


# ------------------------------------------------------------------------------------- failing closed


def test_a_crashing_bundle_scanner_quarantines(inspect):
    def broken(view):
        raise RuntimeError("boom")
    run = ScanRun(SCANNERS + [Scanner("broken", "bundle", broken)])
    report = inspect(bundle_bytes(node_manifest()), run)
    assert report.scanner_errors == ("broken",)
    assert [(f.check_id, f.severity) for f in report.findings] == [("scanner_error.broken", "high")]
    assert "RuntimeError: boom" in report.findings[0].message
    assert report.outcome == "quarantined"


def test_a_crashing_content_scanner_quarantines(inspect):
    def broken(path, window):
        if path == "server/index.js":
            raise ValueError("bad window")
        return []
    report = inspect(bundle_bytes(node_manifest()), ScanRun([Scanner("fragile", "content", broken)]))
    assert report.scanner_errors == ("fragile",) and report.outcome == "quarantined"


def test_no_findings_is_distinct_from_a_crash(inspect):
    report = inspect(bundle_bytes(node_manifest()))
    assert report.findings == () and report.scanner_errors == () and report.outcome == "published"


def test_adding_a_scanner_is_one_function(inspect):
    def todo_comments(path: str, window: bytes):
        if b"FIXME" in window:
            yield Finding("style.fixme", "info", path, "FIXME left in the code")
    run = ScanRun([Scanner("style", "content", todo_comments)])
    report = inspect(bundle_bytes(node_manifest(), {"server/index.js": NODE_SERVER + b"// FIXME\n"}), run)
    assert [(f.check_id, f.file) for f in report.findings] == [("style.fixme", "server/index.js")]


def test_the_registry_lists_the_builtin_scanners():
    assert {s.name for s in SCANNERS} == {"secrets", "secrets.files", "deps.node", "deps.python", "binaries",
                                          "install_hooks"}
