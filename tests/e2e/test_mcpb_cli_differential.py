"""Differential test: every manifest of the corpus through the official validator and ours.

The verdicts must agree, except for the registry rules we add on purpose, each listed in REGISTRY_ONLY with the
reason. The official verdicts come from `validateManifest` of the installed @anthropic-ai/mcpb 2.1.2 -- the
function behind `mcpb validate` -- run over the whole corpus in one node process
(tests/data/mcpb_validate_many.mjs); `test_the_driver_matches_the_cli` checks the CLI binary agrees with it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mcpstore_appliance.bundles import check_manifest, decode_manifest
from mcpstore_appliance.bundles.manifest_rules import DirectoryFiles
from mcpstore_appliance.errors import Unprocessable

DATA = Path(__file__).parents[1] / "data"
CORPUS_DIR = DATA / "manifests"
CORPUS = sorted(CORPUS_DIR.glob("*.json"))

# case -> (who accepts it, text our error must contain or mcpb's output must contain)
REGISTRY_ONLY = {
    # links become hrefs on package pages: only http(s) (mailto: for support), never javascript: or custom schemes
    "support-mailto-and-custom-scheme": ("mcpb", "$.documentation: must be an http:// or https:// URL"),
    "v04-uv-without-mcp-config": ("ours", "server.mcp_config: Required"),  # uv needs no mcp_config (upstream's own example)
    "version-not-semver": ("mcpb", "must be a semantic version"),
    "name-not-a-slug": ("mcpb", "must be a lowercase slug"),
    "entry-point-missing": ("mcpb", "file server/missing.js is not in the bundle"),
    "entry-point-outside-bundle": ("mcpb", "must be a relative path inside the bundle"),
    "screenshot-missing": ("mcpb", "file screenshots/missing.png is not in the bundle"),
    "icons-src-missing": ("mcpb", "file missing-icon.png is not in the bundle"),  # mcpb checks `icon` only
    "user-config-key-with-dash": ("mcpb", "option keys may only use letters, digits and '_'"),
    "user-config-default-type-mismatch": ("mcpb", "default does not fit type 'number'"),
    "user-config-min-greater-than-max": ("mcpb", "min is greater than max"),
    "undeclared-user-config-reference": ("mcpb", "which user_config does not declare"),
    "not-utf8": ("mcpb", "not valid UTF-8"),  # node decodes invalid bytes to U+FFFD and carries on
    "duplicate-keys": ("mcpb", "duplicate key 'name'"),  # JSON.parse keeps the last one silently
    # text no database, log or page should carry (mcpstore_appliance/text.py)
    "display-name-with-nul": ("mcpb", "$.display_name: contains a control character U+0000"),
    "description-lone-surrogate": ("mcpb", "$.description contains a lone surrogate U+D800"),
}


@pytest.fixture(scope="module")
def official(mcpb_cli) -> dict[str, dict]:
    result = subprocess.run(["node", str(DATA / "mcpb_validate_many.mjs"), str(mcpb_cli.package_dir),
                             *map(str, CORPUS)], capture_output=True, text=True, timeout=120, check=True)
    verdicts = {}
    for line in result.stdout.splitlines():
        item = json.loads(line)
        verdicts[Path(item["file"]).stem] = item
    assert len(verdicts) == len(CORPUS)
    return verdicts


def ours(path: Path) -> tuple[bool, str]:
    try:
        data = decode_manifest(path.read_bytes(), 1024 * 1024)
    except Unprocessable as exc:
        return False, exc.message
    result = check_manifest(data, DirectoryFiles(CORPUS_DIR))
    return result.ok, "; ".join(f"{e['path']}: {e['message']}" for e in result.errors)


def test_the_corpus_covers_every_version_and_both_verdicts(official):
    assert len(CORPUS) >= 40
    valid = {name for name, item in official.items() if item["ok"]}
    invalid = set(official) - valid
    assert len(valid) >= 15 and len(invalid) >= 25
    declared = set()
    for path in CORPUS:
        try:
            data = json.loads(path.read_bytes())
        except ValueError:
            continue
        if isinstance(data, dict):
            declared.add((data.get("manifest_version"), "dxt_version" in data))
    assert {"0.1", "0.2", "0.3", "0.4"} <= {version for version, _ in declared}
    assert any(has_dxt for _, has_dxt in declared)
    assert set(REGISTRY_ONLY) <= set(official)


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_verdicts_agree_except_registry_rules(official, path):
    mcpb = official[path.stem]
    ok, detail = ours(path)
    if path.stem not in REGISTRY_ONLY:
        assert ok == mcpb["ok"], f"mcpb says {mcpb['ok']} ({mcpb['output']!r}), we say {ok} ({detail!r})"
        return
    accepted_by, evidence = REGISTRY_ONLY[path.stem]
    if accepted_by == "ours":
        assert ok and not mcpb["ok"] and evidence in mcpb["output"], (mcpb, detail)
    else:
        assert mcpb["ok"] and not ok and evidence in detail, (mcpb, detail)


def test_the_driver_matches_the_cli(mcpb_cli, official):
    sample = ["v02-full-featured", "unknown-key-in-author", "trailing-comma", "version-0.5-unrecognized",
              "icon-not-png", "name-not-a-slug"]
    for name in sample:
        result = mcpb_cli.run("validate", CORPUS_DIR / f"{name}.json", check=False)
        assert (result.returncode == 0) == official[name]["ok"], (name, result.stdout, result.stderr)
