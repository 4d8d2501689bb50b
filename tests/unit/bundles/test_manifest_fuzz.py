"""Any JSON in any manifest field gives a list of problems (or a pass and metadata), never an exception."""

from __future__ import annotations

import copy
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mcpstore_appliance.bundles import check_manifest, extract_metadata
from mcpstore_appliance.bundles.manifest_rules import DirectoryFiles
from tests.data.bundles import node_manifest

FILES = DirectoryFiles(Path(__file__).parents[2] / "data" / "manifests")
BASE = node_manifest(name="corpus-server")
FIELDS = [("manifest_version",), ("dxt_version",), ("name",), ("version",), ("author",), ("author", "email"),
          ("server",), ("server", "type"), ("server", "entry_point"), ("server", "mcp_config"),
          ("server", "mcp_config", "args"), ("server", "mcp_config", "env"),
          ("server", "mcp_config", "platform_overrides"), ("icon",), ("icons",), ("screenshots",), ("tools",),
          ("prompts",), ("user_config",), ("compatibility",), ("localization",), ("_meta",), ("repository",),
          ("homepage",), ("keywords",)]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30) | st.sampled_from(["0.1", "0.4", "uv", "node", "icon.png", "${user_config.x}", "1.0.0"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "title", "description", "default", "src", "size", "name", "text", "x", "min"])
        | st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FIELDS), json_values), min_size=1, max_size=4))
def test_any_value_anywhere(edits):
    manifest = copy.deepcopy(BASE)
    for path, value in edits:
        node = manifest
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = value
    result = check_manifest(manifest, FILES)
    assert all(set(e) == {"path", "message"} and e["path"].startswith("$") for e in result.errors)
    if result.ok:
        assert extract_metadata(manifest, result.version).name == manifest["name"]


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_any_top_level_value(value):
    result = check_manifest(value, FILES)
    assert isinstance(value, dict) or (not result.ok and result.version is None)
