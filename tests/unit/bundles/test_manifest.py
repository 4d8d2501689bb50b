"""manifest.json: decoding, strict per-version validation with JSON paths, registry rules, metadata."""

from __future__ import annotations

import json

import pytest

from mcpstore_appliance.bundles import BundleLimits, SignatureTrust, check_manifest, decode_manifest, inspect_bundle
from mcpstore_appliance.bundles.manifest_rules import DirectoryFiles
from mcpstore_appliance.bundles.manifest_schema import is_url
from mcpstore_appliance.errors import Unprocessable
from tests.data.bundles import NODE_SERVER, PNG_1PX, bundle_bytes, make_png, make_zip, node_manifest

CORPUS = DirectoryFiles(__import__("pathlib").Path(__file__).parents[2] / "data" / "manifests")


@pytest.fixture
def inspect(tmp_path):
    def run(data: bytes, **limits):
        path = tmp_path / "bundle.mcpb"
        path.write_bytes(data)
        return inspect_bundle(path, BundleLimits(**limits), SignatureTrust())
    return run


def rejection(inspect, data: bytes, **limits) -> Unprocessable:
    with pytest.raises(Unprocessable) as caught:
        inspect(data, **limits)
    return caught.value


def errors_of(manifest, files=CORPUS) -> dict[str, str]:
    return {e["path"]: e["message"] for e in check_manifest(manifest, files).errors}


def corpus_manifest(**overrides) -> dict:
    """A manifest whose files (server/index.js, icon.png...) exist in tests/data/manifests."""
    return {**node_manifest(name="corpus-server"), **overrides}


# ------------------------------------------------------------------------------------- bytes -> JSON


def test_missing_manifest(inspect):
    error = rejection(inspect, make_zip({"server/index.js": NODE_SERVER}))
    assert error.code == "manifest_missing"


def test_manifest_must_be_at_the_root(inspect):
    error = rejection(inspect, make_zip({"sub/manifest.json": json.dumps(node_manifest()),
                                         "server/index.js": NODE_SERVER}))
    assert error.code == "manifest_missing"


def test_bom_prefixed_manifest(inspect):
    raw = b"\xef\xbb\xbf" + json.dumps(node_manifest()).encode()
    error = rejection(inspect, bundle_bytes(raw, {"server/index.js": NODE_SERVER}))
    assert error.code == "manifest_bom"


def test_five_megabyte_manifest(inspect):
    big = node_manifest(long_description="x" * (5 * 1024 * 1024))
    error = rejection(inspect, bundle_bytes(big))
    assert error.code == "manifest_too_large"
    assert error.details == [{"path": "manifest.json", "message": "too large"}]


def test_manifest_size_cap_is_configurable(inspect):
    error = rejection(inspect, bundle_bytes(node_manifest(long_description="x" * 5000)), max_manifest_bytes=4096)
    assert error.code == "manifest_too_large"


def test_non_utf8_manifest(inspect):
    raw = json.dumps(node_manifest(description="caf\u00e9"), ensure_ascii=False).encode("latin-1")
    error = rejection(inspect, bundle_bytes(raw, {"server/index.js": NODE_SERVER}))
    assert error.code == "manifest_encoding"


def test_utf16_manifest(inspect):
    raw = json.dumps(node_manifest()).encode("utf-16")
    error = rejection(inspect, bundle_bytes(raw, {"server/index.js": NODE_SERVER}))
    assert error.code in {"manifest_encoding", "manifest_bom"}


@pytest.mark.parametrize("raw, fragment", [
    (b'{"name": "a",}', "not valid JSON"),
    (b'{"a": NaN}', "NaN"),
    (b'{"a": Infinity}', "Infinity"),
    (b'{"name": "a", "name": "b"}', "duplicate key 'name'"),
    (b"", "not valid JSON"),
])
def test_json_problems(raw, fragment):
    with pytest.raises(Unprocessable) as caught:
        decode_manifest(raw, 1024)
    assert caught.value.code == "manifest_json"
    assert fragment in caught.value.message


def test_invalid_manifest_lists_every_problem_with_json_paths(inspect):
    manifest = node_manifest(version=3, extra_key=True, keywords="a")
    manifest["author"]["twitter"] = "@x"
    error = rejection(inspect, bundle_bytes(manifest))
    assert error.code == "manifest_invalid"
    found = {d["path"]: d["message"] for d in error.details}
    assert found == {
        "$.version": "expected string, got number",
        "$.extra_key": "unknown key",
        "$.keywords": "expected array, got string",
        "$.author.twitter": "unknown key",
    }


# ------------------------------------------------------------------------------------- schema, per version


@pytest.mark.parametrize("version", ["0.1", "0.2", "0.3", "0.4"])
def test_every_manifest_version_validates(version):
    assert errors_of(corpus_manifest(manifest_version=version)) == {}


@pytest.mark.parametrize("version", ["0.1", "0.2", "0.3", "0.4"])
def test_legacy_dxt_version(version):
    manifest = corpus_manifest()
    del manifest["manifest_version"]
    manifest["dxt_version"] = version
    result = check_manifest(manifest, CORPUS)
    assert result.ok and result.version == version


@pytest.mark.parametrize("value", ["0.5", 0.2, None, "1.0"])
def test_unknown_manifest_version(value):
    result = check_manifest(corpus_manifest(manifest_version=value), CORPUS)
    assert result.version is None
    assert [e["path"] for e in result.errors] == ["$.manifest_version"]
    assert "Unrecognized or unsupported manifest version" in result.errors[0]["message"]


def test_no_version_key_at_all():
    manifest = corpus_manifest()
    del manifest["manifest_version"]
    assert list(errors_of(manifest)) == ["$.manifest_version"]


def test_each_version_key_is_a_const_of_its_schema():
    assert errors_of(corpus_manifest(dxt_version="0.1")) == {"$.dxt_version": 'must be "0.2"'}


@pytest.mark.parametrize("field, value, version", [
    ("privacy_policies", ["https://example.com/p"], "0.1"),
    ("icons", [{"src": "icon.png", "size": "16x16"}], "0.2"),
    ("localization", {"resources": "r/${locale}.json", "default_locale": "en-US"}, "0.2"),
    ("_meta", {"com.example": {}}, "0.2"),
])
def test_fields_from_later_versions_are_unknown_keys(field, value, version):
    assert errors_of(corpus_manifest(manifest_version=version, **{field: value})) == {f"$.{field}": "unknown key"}


@pytest.mark.parametrize("path, value, expected_path", [
    (("author", "twitter"), "@x", "$.author.twitter"),
    (("server", "cwd"), ".", "$.server.cwd"),
    (("server", "mcp_config", "shell"), True, "$.server.mcp_config.shell"),
])
def test_unknown_keys_at_every_level(path, value, expected_path):
    manifest = corpus_manifest()
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert errors_of(manifest) == {expected_path: "unknown key"}


def test_user_config_minimum_maximum_are_unknown_keys():
    manifest = corpus_manifest(user_config={"n": {"type": "number", "title": "N", "description": "d",
                                                  "minimum": 1, "maximum": 5}})
    assert errors_of(manifest) == {"$.user_config.n.minimum": "unknown key", "$.user_config.n.maximum": "unknown key"}


@pytest.mark.parametrize("overrides, expected", [
    ({"tools": [{"name": 1}]}, {"$.tools[0].name": "expected string, got number"}),
    ({"prompts": [{"name": "p"}]}, {"$.prompts[0].text": "required"}),
    ({"user_config": {"k": {"type": "select", "title": "t", "description": "d"}}},
     {"$.user_config.k.type": 'must be one of "string", "number", "boolean", "directory", "file"'}),
    ({"user_config": {"k": {"type": "string", "title": "t", "description": "d", "default": {"a": 1}}}},
     {"$.user_config.k.default": "must be a string, a number, a boolean or an array of strings"}),
    ({"compatibility": {"platforms": ["freebsd"]}}, {"$.compatibility.platforms[0]": 'must be one of "darwin", '
                                                     '"win32", "linux"'}),
    ({"author": {"name": "a", "email": "nope"}}, {"$.author.email": "not a valid email"}),
    ({"homepage": "not a url"}, {"$.homepage": "not a valid URL"}),
    ({"repository": {"type": "git"}}, {"$.repository.url": "required"}),
    ({"server": {"type": "deno", "entry_point": "server/index.js", "mcp_config": {"command": "deno"}}},
     {"$.server.type": 'must be one of "python", "node", "binary"'}),
])
def test_wrong_types_and_values(overrides, expected):
    assert errors_of(corpus_manifest(**overrides)) == expected


def test_uv_server_without_mcp_config_is_accepted_in_04():
    manifest = corpus_manifest(manifest_version="0.4", server={"type": "uv", "entry_point": "src/server.py"})
    assert errors_of(manifest) == {}


def test_node_server_without_mcp_config_is_not():
    manifest = corpus_manifest(server={"type": "node", "entry_point": "server/index.js"})
    assert errors_of(manifest) == {"$.server.mcp_config": "required"}


def test_uv_is_not_a_server_type_before_04():
    manifest = corpus_manifest(manifest_version="0.3", server={"type": "uv", "entry_point": "src/server.py",
                                                               "mcp_config": {"command": "uv"}})
    assert list(errors_of(manifest)) == ["$.server.type"]


def test_javascript_regex_semantics():
    """Python's `$` would accept a trailing newline and `\\d` Unicode digits; JavaScript's (zod's) do not."""
    assert list(errors_of(corpus_manifest(manifest_version="0.3", icons=[{"src": "icon.png", "size": "16x16\n"}])))
    assert list(errors_of(corpus_manifest(manifest_version="0.3", icons=[{"src": "icon.png", "size": "١٦x16"}])))
    assert list(errors_of(corpus_manifest(author={"name": "a", "email": "a@example.com\n"})))
    upper = {"resources": "r/${LOCALE}.json", "default_locale": "en-US"}
    assert errors_of(corpus_manifest(manifest_version="0.3", localization=upper)) == {}


@pytest.mark.parametrize("value, ok", [
    ("https://example.com", True), ("http://localhost:8080/x", True), ("mailto:a@b.c", True), ("foo:bar", True),
    ("https://[::1]:443/", True), ("not a url", False), ("http://", False), ("https://exa mple.com", False),
    ("//example.com", False), ("", False), ("example.com", False), ("https://example.com:99999", False),
])
def test_url_check_follows_whatwg_parsing(value, ok):
    assert is_url(value) is ok


# ------------------------------------------------------------------------------------- registry rules


@pytest.mark.parametrize("version", ["1.0.0", "0.0.1", "1.2.3-beta.1+build.5", "10.20.30"])
def test_semver_versions_pass(version):
    assert errors_of(corpus_manifest(version=version)) == {}


@pytest.mark.parametrize("version", ["2024.03.31.01", "1.0", "v1.0.0", "01.0.0", "1.0.0-", "1.0.0\n"])
def test_non_semver_versions_fail(version):
    assert list(errors_of(corpus_manifest(version=version))) == ["$.version"]


@pytest.mark.parametrize("name, ok", [("hello-node", True), ("a", True), ("my_server.v2", True),
                                      ("My Server", False), ("Hello", False), ("-x", False), ("x" * 65, False),
                                      ("ünicode", False)])
def test_name_is_a_lowercase_slug(name, ok):
    assert (errors_of(corpus_manifest(name=name)) == {}) is ok


def test_entry_point_must_exist():
    manifest = corpus_manifest()
    manifest["server"]["entry_point"] = "server/missing.js"
    assert errors_of(manifest) == {"$.server.entry_point": "file server/missing.js is not in the bundle"}


@pytest.mark.parametrize("entry", ["../outside.js", "/abs/index.js", "C:/x.js", "server\\index.js"])
def test_entry_point_must_be_a_clean_relative_path(entry):
    manifest = corpus_manifest()
    manifest["server"]["entry_point"] = entry
    assert errors_of(manifest) == {"$.server.entry_point": "must be a relative path inside the bundle"}


def test_binary_entry_point_may_add_exe(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "server.exe").write_bytes(b"MZ")
    manifest = node_manifest(server={"type": "binary", "entry_point": "bin/server",
                                     "mcp_config": {"command": "${__dirname}/bin/server"}})
    assert errors_of(manifest, DirectoryFiles(tmp_path)) == {}


def test_uv_needs_pyproject(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "server.py").write_text("")
    manifest = node_manifest(manifest_version="0.4", server={"type": "uv", "entry_point": "src/server.py"})
    assert errors_of(manifest, DirectoryFiles(tmp_path)) == {
        "$.server.type": "a uv server needs pyproject.toml at the bundle root"}


@pytest.mark.parametrize("icon, message", [
    ("missing.png", "file missing.png is not in the bundle"),
    ("not-a-png.png", "not-a-png.png is not a PNG image"),
    ("${__dirname}/icon.png", "must be a relative path inside the bundle (no ${__dirname}, no absolute path)"),
    ("/icon.png", "must be a relative path inside the bundle (no ${__dirname}, no absolute path)"),
])
def test_icon_rules(icon, message):
    assert errors_of(corpus_manifest(icon=icon)) == {"$.icon": message}


def test_icon_magic_alone_is_not_a_png(inspect):
    fake = b"\x89PNG\r\n\x1a\n" + b"garbage" * 10
    error = rejection(inspect, bundle_bytes(node_manifest(icon="icon.png"), {"icon.png": fake}))
    assert error.details == [{"path": "$.icon", "message": "icon.png is not a PNG image"}]


def test_remote_icon_is_a_warning_not_an_error():
    result = check_manifest(corpus_manifest(icon="https://example.com/icon.png"), CORPUS)
    assert result.ok and result.warnings


def test_screenshots_and_icons_must_exist():
    manifest = corpus_manifest(manifest_version="0.3", screenshots=["screenshots/shot1.png", "nope.png"],
                               icons=[{"src": "icon.png", "size": "16x16"}, {"src": "gone.png", "size": "1x1"}])
    assert errors_of(manifest) == {"$.screenshots[1]": "file nope.png is not in the bundle",
                                   "$.icons[1].src": "file gone.png is not in the bundle"}


@pytest.mark.parametrize("option, path, message", [
    ({"api-key": {"type": "string", "title": "t", "description": "d"}}, '$.user_config["api-key"]',
     "option keys may only use letters, digits and '_'"),
    ({"n": {"type": "number", "title": "t", "description": "d", "default": "10"}}, "$.user_config.n.default",
     "default does not fit type 'number'"),
    ({"b": {"type": "boolean", "title": "t", "description": "d", "default": "true"}}, "$.user_config.b.default",
     "default does not fit type 'boolean'"),
    ({"d": {"type": "directory", "title": "t", "description": "d", "default": ["/a"]}}, "$.user_config.d.default",
     "default does not fit type 'directory'"),
    ({"n": {"type": "number", "title": "t", "description": "d", "min": 5, "max": 1}}, "$.user_config.n.min",
     "min is greater than max"),
])
def test_user_config_rules(option, path, message):
    assert errors_of(corpus_manifest(user_config=option)) == {path: message}


def test_mcp_config_may_only_reference_declared_options():
    manifest = corpus_manifest(user_config={"api_key": {"type": "string", "title": "t", "description": "d"}})
    manifest["server"]["mcp_config"]["env"] = {"A": "${user_config.api_key}", "B": "${user_config.token}"}
    assert errors_of(manifest) == {"$.server.mcp_config.env.B":
                                   "references ${user_config.token}, which user_config does not declare"}


# ------------------------------------------------------------------------------------- metadata


def test_metadata_extraction(inspect):
    manifest = json.loads((CORPUS.root / "v04-full-featured.json").read_text())
    extra = {"icon.png": make_png(512, 512), "screenshots/shot1.png": PNG_1PX, "server/index.js": NODE_SERVER}
    report = inspect(bundle_bytes(manifest, extra))
    meta = report.metadata
    assert (meta.name, meta.version, meta.display_name, meta.manifest_version) == (
        "corpus-server", "1.0.0", "Corpus Server", "0.4")
    assert meta.author.email == "author@example.com" and meta.author.url == "https://example.com/author"
    assert [t.name for t in meta.tools] == ["search", "fetch"]
    assert meta.prompts[0].arguments == ("topic",) and meta.prompts[0].text == "Summarize ${arguments.topic}"
    assert meta.keywords == ("search", "test") and meta.license == "MIT"
    assert meta.platforms == ("darwin", "linux", "win32")
    assert meta.runtimes == {"node": ">=18.0.0"}
    assert meta.links.repository == "https://github.com/example/corpus"
    assert meta.links.documentation == "https://example.com/docs"
    assert meta.privacy_policies == ("https://example.com/privacy",)
    fields = {f.key: f for f in meta.user_config}
    assert fields["api_key"].required and fields["api_key"].sensitive
    assert fields["max_results"].default == 10 and (fields["max_results"].min, fields["max_results"].max) == (1, 100)
    assert fields["roots"].multiple and fields["roots"].default == ("${HOME}/Documents",)
    assert meta.icon == "icon.png" and meta.screenshots == ("screenshots/shot1.png",)
    assert meta.server_type == "node" and meta.entry_point == "server/index.js"
    assert report.icon_png == extra["icon.png"]
    assert report.to_dict()["metadata"]["user_config"][0]["key"] == "api_key"
    json.dumps(report.to_dict())


def test_uv_runtimes():
    from mcpstore_appliance.bundles import extract_metadata
    manifest = corpus_manifest(manifest_version="0.4", server={"type": "uv", "entry_point": "src/server.py"},
                               compatibility={"runtimes": {"python": ">=3.10"}})
    assert extract_metadata(manifest, "0.4").runtimes == {"python": ">=3.10", "uv": ""}


@pytest.mark.parametrize("overrides, path", [
    ({"homepage": "javascript:alert(1)"}, "$.homepage"),
    ({"documentation": "data:text/html,<script>alert(1)</script>"}, "$.documentation"),
    ({"repository": {"type": "git", "url": "file:///etc/passwd"}}, "$.repository.url"),
    ({"privacy_policies": ["https://example.com/privacy", "vbscript:msgbox"]}, "$.privacy_policies[1]"),
    ({"support": "JavaScript:alert(1)"}, "$.support"),
])
def test_links_must_be_web_urls(overrides, path):
    """Manifest links become hrefs on package pages, so only http(s) passes (and mailto: for support)."""
    assert errors_of(corpus_manifest(**overrides)).get(path) == "must be an http:// or https:// URL"


def test_web_and_mailto_links_pass():
    good = corpus_manifest(homepage="https://example.com", support="mailto:help@example.com",
                           repository={"type": "git", "url": "https://github.com/x/y"})
    assert not [p for p in errors_of(good) if p in ("$.homepage", "$.support", "$.repository.url")]
