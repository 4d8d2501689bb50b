"""Bundles packed and signed by the official mcpb 2.1.2 CLI, judged by our inspector."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from mcpstore_appliance.bundles import BundleLimits, SignatureTrust, inspect_bundle
from mcpstore_appliance.errors import Unprocessable
from tests.data.bundles import make_identity


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inspect(path: Path, trust: SignatureTrust = SignatureTrust()):
    return inspect_bundle(path, BundleLimits(), trust)


def copy(source: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copyfile(source, target)
    return target


def test_packed_node_and_python_servers_are_published_unsigned(example_servers):
    node = inspect(example_servers["node"])
    assert node.outcome == "published" and node.findings == ()
    assert node.signature.status == "unsigned"
    assert node.unsigned_sha256 == sha256(example_servers["node"])
    assert (node.metadata.name, node.metadata.manifest_version, node.metadata.server_type) == ("hello-node", "0.2",
                                                                                                "node")
    assert [t.name for t in node.metadata.tools] == ["echo"]
    assert node.icon_png and node.icon_png.startswith(b"\x89PNG")

    python = inspect(example_servers["python"])
    assert python.outcome == "published" and python.findings == ()
    assert (python.metadata.name, python.metadata.server_type) == ("hello-python", "python")
    assert python.metadata.runtimes == {"python": ">=3.10"}


def test_self_signed_by_mcpb(example_servers, mcpb_cli):
    report = inspect(example_servers["signed"])
    cert = x509.load_pem_x509_certificate(mcpb_cli.self_signed_cert.read_bytes())
    assert report.signature.status == "self-signed"
    assert report.signature.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex()
    assert report.signature.subject == "C=US,O=MCPB Extensions,CN=MCPB Self-Signed Certificate"
    assert report.signature.digest_variant == "prefix"
    assert report.unsigned_sha256 == sha256(example_servers["node"])
    assert report.outcome == "published"


def test_pinning_the_mcpb_certificate_makes_it_signed(example_servers, mcpb_cli):
    cert = x509.load_pem_x509_certificate(mcpb_cli.self_signed_cert.read_bytes())
    trust = SignatureTrust(pinned_fingerprints=frozenset([cert.fingerprint(hashes.SHA256()).hex()]))
    assert inspect(example_servers["signed"], trust).signature.status == "signed"


@pytest.mark.parametrize("where", [0.1, 0.5, 0.95])
def test_flipped_byte_in_a_signed_bundle_is_invalid(example_servers, tmp_path, where):
    signed = example_servers["signed"]
    data = bytearray(signed.read_bytes())
    offset = int(len(example_servers["node"].read_bytes()) * where)
    data[offset] ^= 0x01
    flipped = tmp_path / "flipped.mcpb"
    flipped.write_bytes(bytes(data))
    with pytest.raises(Unprocessable) as caught:
        inspect(flipped)
    assert caught.value.code == "signature_invalid"


def test_mcpb_unsign_gives_back_the_unsigned_sha256(example_servers, mcpb_cli, tmp_path):
    signed = copy(example_servers["signed"], tmp_path, "to-unsign.mcpb")
    report = inspect(signed)
    mcpb_cli.unsign(signed)
    assert sha256(signed) == report.unsigned_sha256 == sha256(example_servers["node"])


def test_signing_twice_nests_and_unsign_peels_one(example_servers, mcpb_cli, tmp_path):
    twice = copy(example_servers["signed"], tmp_path, "twice.mcpb")
    mcpb_cli.sign_self_signed(twice)
    report = inspect(twice)
    assert report.signature.status == "self-signed"
    assert [f.check_id for f in report.findings] == ["signature.nested"]
    mcpb_cli.unsign(twice)
    assert sha256(twice) == report.unsigned_sha256 == sha256(example_servers["signed"])


def test_mcpb_sign_with_a_ca_issued_certificate(example_servers, mcpb_cli, tmp_path):
    root = make_identity("Registry Test Root", ca=True, days=3650)
    intermediate = make_identity("Registry Test Intermediate", issuer=root, ca=True)
    leaf = make_identity("ACME Tools Publisher", issuer=intermediate)
    for name, data in {"leaf.pem": leaf.cert_pem, "leaf.key": leaf.key_pem, "inter.pem": intermediate.cert_pem}.items():
        (tmp_path / name).write_bytes(data)
    bundle = copy(example_servers["node"], tmp_path, "ca-signed.mcpb")
    mcpb_cli.sign(bundle, tmp_path / "leaf.pem", tmp_path / "leaf.key", [tmp_path / "inter.pem"])

    trusted = inspect(bundle, SignatureTrust(ca_bundle_pem=root.cert_pem))
    assert trusted.signature.status == "signed"
    assert trusted.signature.fingerprint_sha256 == leaf.fingerprint
    assert trusted.signature.issuer == "O=Test,CN=Registry Test Intermediate"
    untrusted = inspect(bundle)
    assert untrusted.signature.status == "self-signed" and untrusted.signature.reason.startswith("issuer not trusted")
    pinned = inspect(bundle, SignatureTrust(pinned_fingerprints=frozenset([leaf.fingerprint])))
    assert pinned.signature.status == "signed"


def test_require_signature(example_servers):
    trust = SignatureTrust(require_signature=True)
    with pytest.raises(Unprocessable) as caught:
        inspect(example_servers["node"], trust)
    assert caught.value.code == "signature_required"
    assert inspect(example_servers["signed"], trust).signature.status == "self-signed"


def test_the_official_verifier_cannot_tell(example_servers, mcpb_cli):
    """Why we verify ourselves: mcpb 2.1.2 `verify` reports every file, signed or not, as unsigned."""
    result = mcpb_cli.run("verify", example_servers["signed"], check=False)
    assert result.returncode == 1 and "not signed" in result.stderr


def test_packed_node_server_with_a_missing_dependency_is_quarantined(mcpb_cli, tmp_path):
    directory = tmp_path / "needs-deps"
    manifest = mcpb_cli.init(directory)
    (directory / "server").mkdir()
    (directory / "server" / "index.js").write_text("import { z } from 'zod';\nconsole.log(z);\n")
    (directory / "package.json").write_text(json.dumps({"name": "needs-deps", "type": "module",
                                                        "dependencies": {"zod": "^3.25.0"}}))
    (directory / "manifest.json").write_text(json.dumps(manifest))
    report = inspect(mcpb_cli.pack(directory, tmp_path / "needs-deps.mcpb"))
    assert report.outcome == "quarantined"
    assert {f.message for f in report.findings} == {
        "dependency zod is declared but not bundled in node_modules",
        "the entry point imports zod, which is not bundled"}
