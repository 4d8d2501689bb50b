"""The MCP Registry API (v0.1, mirrored at /v0) against a real appliance. Every response is validated against
the registry's OpenAPI document (tests/data/mcp-registry-openapi.yaml), every path of that document is served,
and CORS is checked the way GitHub Copilot needs it."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import urllib.parse
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource

from tests.seed import FAST_LEDGER, deprecate, publish, set_package, yank

SPEC_PATH = Path(__file__).parents[1] / "data" / "mcp-registry-openapi.yaml"
SPEC = yaml.safe_load(SPEC_PATH.read_text())
SPEC_URI = "urn:mcp-registry-openapi"
SCHEMAS = Registry().with_resource(SPEC_URI, Resource.opaque(SPEC))
OFFICIAL = "io.modelcontextprotocol.registry/official"
CORS = {"access-control-allow-origin": "*", "access-control-allow-methods": "GET, OPTIONS",
        "access-control-allow-headers": "Authorization, Content-Type"}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
PRO = {"pricing": "subscription", "amount": "5.00", "currency": "usd", "tier": "pro",
       "endpoint": "https://pg.example.com/mcp"}


@pytest.fixture
async def appliance(start_app):
    return await start_app(**FAST_LEDGER, registry={"name_prefix": "com.example.mcp"})


def check(template: str, method: str, status: int, body) -> None:
    """Validate a response body against the spec's schema for this path, method and status."""
    spec_path = template.replace("/v0/", "/v0.1/")
    response = SPEC["paths"][spec_path][method]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    pointer = schema["$ref"].lstrip("#")
    validator = Draft202012Validator({"$ref": SPEC_URI + "#" + pointer}, registry=SCHEMAS,
                                     format_checker=FormatChecker())
    errors = sorted(validator.iter_errors(body), key=lambda e: e.path)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    for entry in (body.get("servers") or []) + ([body] if "server" in body else []):
        official = entry["_meta"][OFFICIAL]
        for key in ("publishedAt", "updatedAt", "statusChangedAt"):
            assert RFC3339.match(official[key]), official
        for package in entry["server"].get("packages", []):
            assert package["identifier"].startswith("http")


async def get(app, path: str, template: str | None = None, expect: int = 200, **headers):
    status, body, response = await app.client.get(path, headers=headers)
    assert status == expect, (path, status, body)
    for key, value in CORS.items():
        assert response.headers.get(key) == value, (path, key)
    if template:
        check(template, "get", status, body)
    return body


async def build(app) -> dict[str, str]:
    _, alice = await app.user("alice")
    _, bob = await app.user("bob")
    links = {"homepage": "https://weather.example.com",
             "repository": {"type": "git", "url": "https://github.com/alice/weather"}}
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        await publish(app, alice, "weather", version, description="Weather forecasts and alerts", **links)
    await yank(app, alice, "alice", "weather", "1.0.0")
    await deprecate(app, alice, "alice", "weather", "1.1.0", "use 1.2.0")
    await publish(app, alice, "weather", "2.0.0-beta.1", description="Weather, next generation")
    await publish(app, bob, "notes", description="x" * 300)  # longer than server.json's 100 characters
    await publish(app, bob, "pg", description="Postgres, hosted by its publisher", options=PRO)
    await set_package(app, "bob", "notes", verified=1, rating_avg=4.5, rating_count=2)
    return {"alice": alice, "bob": bob}


async def test_spec_document_is_valid_openapi():
    validate_openapi(SPEC)


async def test_vscode_probe_and_v0_alias(appliance):
    await build(appliance)
    for prefix in ("/v0.1", "/v0"):
        body = await get(appliance, f"{prefix}/servers?limit=1", f"{prefix}/servers")
        assert body["metadata"]["count"] == 1 and "nextCursor" in body["metadata"]
    empty = await appliance.client.get("/v0.1/servers?limit=1")
    assert empty[0] == 200


async def test_entries_are_server_json_built_from_the_catalog(appliance):
    await build(appliance)
    body = await get(appliance, "/v0.1/servers?limit=100", "/v0.1/servers")
    names = [(e["server"]["name"], e["server"]["version"]) for e in body["servers"]]
    # One entry per visible version (yanked 1.0.0 hidden), ordered by (name, version) as text.
    assert names == [("com.example.mcp.alice/weather", "1.1.0"), ("com.example.mcp.alice/weather", "1.2.0"),
                     ("com.example.mcp.alice/weather", "2.0.0-beta.1"), ("com.example.mcp.bob/notes", "1.0.0"),
                     ("com.example.mcp.bob/pg", "1.0.0")]
    weather = {e["server"]["version"]: e for e in body["servers"] if e["server"]["name"].endswith("weather")}
    latest = weather["1.2.0"]
    server = latest["server"]
    assert server["$schema"].endswith("/2025-12-11/server.schema.json")
    assert server["description"] == "Weather forecasts and alerts"
    assert server["repository"] == {"url": "https://github.com/alice/weather", "source": "github"}
    assert server["websiteUrl"] == "https://weather.example.com"
    (package,) = server["packages"]
    assert package["registryType"] == "mcpb" and package["transport"] == {"type": "stdio"}
    assert "registryBaseUrl" not in package and package["version"] == "1.2.0"
    status, data, _ = await appliance.client.get(package["identifier"].replace(appliance.base_url, ""))
    assert status == 200 and hashlib.sha256(data).hexdigest() == package["fileSha256"]
    assert "remotes" not in server  # a hobbyist package: no hosted endpoint answers for it yet
    official = latest["_meta"][OFFICIAL]
    assert official["status"] == "active" and official["isLatest"] is True
    assert weather["1.1.0"]["_meta"][OFFICIAL]["status"] == "deprecated"
    assert weather["1.1.0"]["_meta"][OFFICIAL]["statusMessage"] == "use 1.2.0"
    assert weather["2.0.0-beta.1"]["_meta"][OFFICIAL]["isLatest"] is False  # releases beat pre-releases
    extras = {e["server"]["name"]: e["_meta"]["com.example.mcp/catalog"] for e in body["servers"]}
    notes = extras["com.example.mcp.bob/notes"]
    assert notes["verified"] is True and notes["rating"] == 4.5 and notes["pricing"]["model"] == "free"
    assert isinstance(notes["ledgerIndex"], int)
    entries = {e["server"]["name"]: e["server"] for e in body["servers"]}
    assert len(entries["com.example.mcp.bob/notes"]["description"]) == 100
    pg = entries["com.example.mcp.bob/pg"]
    (remote,) = pg["remotes"]
    assert remote["url"] == "https://pg.example.com/mcp" and remote["headers"][0]["name"] == "Authorization"


async def test_only_remotes_that_answer_are_advertised(appliance):
    """An MCP host offers its users every remote it is given: here only a pro package's own https endpoint is
    one. Hosted execution is off in this appliance, so its hosted endpoint answers 503 and is not advertised
    (tests/gateway/test_hosted_bwrap.py has the hosted remotes of an appliance whose gateway works)."""
    await build(appliance)
    body = await get(appliance, "/v0.1/servers?limit=100", "/v0.1/servers")
    remotes = {e["server"]["name"]: [r["url"] for r in e["server"].get("remotes", [])] for e in body["servers"]}
    assert remotes == {"com.example.mcp.alice/weather": [], "com.example.mcp.bob/notes": [],
                       "com.example.mcp.bob/pg": ["https://pg.example.com/mcp"]}
    _, token = await appliance.user("carol")
    status, body, _ = await appliance.client.with_token(token).post(
        "/mcp/alice/weather", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
    assert status == 503 and body["error"]["code"] == "hosted_unavailable"


@pytest.mark.parametrize("public_url, name", [("https://mcp.example.org", "org.example.mcp.alice/tool"),
                                              ("", "local.mcpstore.alice/tool")])
async def test_server_names_default_from_the_public_url(start_app, public_url, name):
    app = await start_app(**FAST_LEDGER, server={"public_url": public_url})
    _, alice = await app.user("alice")
    await publish(app, alice, "tool")
    body = await get(app, "/v0.1/servers", "/v0.1/servers")
    assert [entry["server"]["name"] for entry in body["servers"]] == [name]
    assert await get(app, f"/v0.1/servers/{urllib.parse.quote(name, safe='')}/versions/latest")


async def test_filters_latest_exact_search_and_deleted(appliance):
    await build(appliance)
    body = await get(appliance, "/v0.1/servers?version=latest", "/v0.1/servers")
    assert {(e["server"]["name"], e["server"]["version"]) for e in body["servers"]} == {
        ("com.example.mcp.alice/weather", "1.2.0"), ("com.example.mcp.bob/notes", "1.0.0"),
        ("com.example.mcp.bob/pg", "1.0.0")}
    assert all(e["_meta"][OFFICIAL]["isLatest"] for e in body["servers"])
    body = await get(appliance, "/v0.1/servers?version=1.1.0", "/v0.1/servers")
    assert [e["server"]["version"] for e in body["servers"]] == ["1.1.0"]
    body = await get(appliance, "/v0.1/servers?search=EATH", "/v0.1/servers")  # substring, any case
    assert {e["server"]["name"] for e in body["servers"]} == {"com.example.mcp.alice/weather"}
    body = await get(appliance, "/v0.1/servers?search=postgres", "/v0.1/servers")  # in the description
    assert [e["server"]["name"] for e in body["servers"]] == ["com.example.mcp.bob/pg"]
    body = await get(appliance, "/v0.1/servers?search=%25", "/v0.1/servers")  # % is a plain character
    assert body["servers"] == []
    body = await get(appliance, "/v0.1/servers?include_deleted=true", "/v0.1/servers")
    deleted = [e for e in body["servers"] if e["_meta"][OFFICIAL]["status"] == "deleted"]
    assert [e["server"]["version"] for e in deleted] == ["1.0.0"]
    assert deleted[0]["_meta"][OFFICIAL]["statusMessage"] == "broken"


async def walk_search(app, needle: str | None, limit: int = 2) -> list[tuple[str, str]]:
    """Every (name, version) a search (or with None, the listing) lists, page by page, answered from the
    database (no kept pages)."""
    walked, cursor = [], None
    while True:
        query = {"limit": limit, **({"search": needle} if needle is not None else {}),
                 **({"cursor": cursor} if cursor else {})}
        body = await get(app, "/v0.1/servers?" + urllib.parse.urlencode(query), "/v0.1/servers",
                         **{"Cache-Control": "no-cache"})
        walked += [(e["server"]["name"], e["server"]["version"]) for e in body["servers"]]
        cursor = body["metadata"].get("nextCursor")
        if cursor is None:
            return walked


SCAN_ONLY, INDEX_FIRST = 10**9, 0  # loop steps: the plan always finishes on the loop / is cut at once
BY_SCAN, BY_INDEX = 0, 10**9  # few_matches: the probe of the trigram index always chooses the scan / the index


def choose(appliance, monkeypatch, few_matches: int, loop_steps: int) -> None:
    monkeypatch.setattr(appliance.services.discovery.registry, "few_matches", few_matches)
    monkeypatch.setattr(appliance.services.db, "loop_steps", loop_steps)


async def test_substring_search_lists_the_same_pages_by_scan_and_by_trigram_index(appliance, monkeypatch):
    """A search runs as a scan in name order or through the trigram index (migration 008), as a probe of the
    index chooses, on the event loop or past its budget of steps on a thread: every way must list exactly the
    same entries, page by page, whatever the text holds."""
    tokens = await build(appliance)
    await publish(appliance, tokens["bob"], "ecole", description='Une petite école "quoted" NEAR(a b) 50% *star* '
                  + "İSTANBUL".lower())  # lower() turns İ into two characters: i and a combining dot
    needles = ["EATH", "eat", "postgres", "ÉCOLE", "petite éc", 'quoted"', '"quoted"', "NEAR(a", "50%", "*star",
               "xxx", "zzzz", "ea", "s", "bob/", "-", "weather, next", "İSTANBUL", "İs"]
    for needle in needles:
        choose(appliance, monkeypatch, BY_SCAN, SCAN_ONLY)
        scanned = await walk_search(appliance, needle)
        for few_matches, loop_steps in ((BY_SCAN, INDEX_FIRST), (BY_INDEX, SCAN_ONLY), (BY_INDEX, INDEX_FIRST)):
            choose(appliance, monkeypatch, few_matches, loop_steps)
            assert await walk_search(appliance, needle) == scanned, (needle, few_matches, loop_steps)
    choose(appliance, monkeypatch, 400, SCAN_ONLY)  # as configured: this small catalog is searched by index
    assert {name for name, _ in await walk_search(appliance, '"quoted"')} == {"com.example.mcp.bob/ecole"}
    assert await walk_search(appliance, "ÉCOLE") == [("com.example.mcp.bob/ecole", "1.0.0")]
    assert await walk_search(appliance, "İSTANBUL") == [("com.example.mcp.bob/ecole", "1.0.0")]
    assert len(await walk_search(appliance, "xxx")) == 1  # notes' description is 300 x's
    assert await walk_search(appliance, "zzzz") == []


async def test_a_listing_cut_off_on_the_event_loop_is_finished_on_a_reader_thread(appliance, monkeypatch):
    await build(appliance)
    listed = await walk_search(appliance, None)
    assert len(listed) == 5
    monkeypatch.setattr(appliance.services.db, "loop_steps", INDEX_FIRST)  # every page cut at once
    assert await walk_search(appliance, None) == listed


async def test_the_trigram_index_follows_every_change_of_the_searched_text(appliance, monkeypatch):
    tokens = await build(appliance)
    # every search of 3+ characters uses the index
    choose(appliance, monkeypatch, BY_INDEX, INDEX_FIRST)
    bob = tokens["bob"]

    async def found(needle: str) -> set[str]:
        return {name for name, _ in await walk_search(appliance, needle, limit=10)}

    await publish(appliance, bob, "zoo", "1.0.0", description="Okapi keeper")
    assert await found("okapi") == {"com.example.mcp.bob/zoo"}
    await publish(appliance, bob, "zoo", "1.1.0", description="Giraffe keeper")  # the latest's text is searched
    assert await found("giraffe") == {"com.example.mcp.bob/zoo"} and await found("okapi") == set()
    await yank(appliance, bob, "bob", "zoo", "1.1.0")  # the latest is 1.0.0 again
    assert await found("okapi") == {"com.example.mcp.bob/zoo"} and await found("giraffe") == set()
    conn = sqlite3.connect(appliance.data_dir / "mcpstore.sqlite3")
    try:  # the index agrees with package_search, row for row
        conn.execute("INSERT INTO registry_text (registry_text, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


async def test_updated_since(appliance):
    await build(appliance)
    body = await get(appliance, "/v0.1/servers?updated_since=2000-01-01T00:00:00Z", "/v0.1/servers")
    assert len(body["servers"]) == 6  # implies include_deleted: the yanked version is there
    body = await get(appliance, "/v0.1/servers?updated_since=2999-01-01T00:00:00.123%2B02:00", "/v0.1/servers")
    assert body["servers"] == [] and "nextCursor" not in body["metadata"]
    body = await get(appliance, "/v0.1/servers?updated_since=yesterday", expect=400)
    assert body == {"error": "Invalid updated_since format: expected RFC3339 timestamp "
                             "(e.g., 2025-08-07T13:15:04.280Z)"}
    await get(appliance, "/v0.1/servers?updated_since=2000-01-01T00:00:00Z&include_deleted=false", expect=400)


async def test_keyset_pages(appliance):
    await build(appliance)
    full = [(e["server"]["name"], e["server"]["version"])
            for e in (await get(appliance, "/v0.1/servers?limit=100"))["servers"]]
    for limit in (1, 2, 5):
        walked, cursor, requests = [], None, 0
        while True:
            query = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            body = await get(appliance, "/v0.1/servers?" + urllib.parse.urlencode(query), "/v0.1/servers")
            requests += 1
            walked += [(e["server"]["name"], e["server"]["version"]) for e in body["servers"]]
            assert body["metadata"]["count"] == len(body["servers"])
            cursor = body["metadata"].get("nextCursor")
            if cursor is None:
                assert len(body["servers"]) < limit  # the cursor is only left out on a page that is not full
                break
        assert walked == full
        # As upstream: an exactly full last page costs one more (empty) request.
        assert requests == len(full) // limit + 1
    first = await get(appliance, "/v0.1/servers?limit=2")
    cursor = first["metadata"]["nextCursor"]
    body = await get(appliance, "/v0.1/servers?limit=2&version=latest&cursor=" + cursor, expect=400)
    assert "different query" in body["error"]
    body = await get(appliance, "/v0.1/servers?cursor=io.github.user%2Fweather:1.0.2", expect=400)
    assert "cursor" in body["error"]


async def test_one_server(appliance):
    await build(appliance)
    for name in ("com.example.mcp.alice%2Fweather", "com.example.mcp.alice/weather"):
        body = await get(appliance, f"/v0.1/servers/{name}/versions", "/v0.1/servers/{serverName}/versions")
        # Newest publication first; yanked hidden.
        assert [e["server"]["version"] for e in body["servers"]] == ["2.0.0-beta.1", "1.2.0", "1.1.0"]
        assert body["metadata"] == {"count": 3}
    body = await get(appliance, "/v0.1/servers/com.example.mcp.alice%2Fweather/versions?include_deleted=true",
                     "/v0.1/servers/{serverName}/versions")
    assert len(body["servers"]) == 4
    template = "/v0.1/servers/{serverName}/versions/{version}"
    body = await get(appliance, "/v0/servers/com.example.mcp.alice%2Fweather/versions/latest", template)
    assert body["server"]["version"] == "1.2.0" and body["_meta"][OFFICIAL]["isLatest"]
    body = await get(appliance, "/v0.1/servers/com.example.mcp.alice%2Fweather/versions/1.1.0", template)
    assert body["_meta"][OFFICIAL]["status"] == "deprecated"
    await get(appliance, "/v0.1/servers/com.example.mcp.alice%2Fweather/versions/1.0.0", expect=404)
    body = await get(appliance, "/v0.1/servers/com.example.mcp.alice%2Fweather/versions/1.0.0?include_deleted=true",
                     template)
    assert body["_meta"][OFFICIAL]["status"] == "deleted"


async def test_build_metadata_versions_are_url_encoded(appliance):
    _, alice = await appliance.user("alice")
    await publish(appliance, alice, "tool", "1.0.0+20130313144700")
    body = await get(appliance, "/v0.1/servers/com.example.mcp.alice%2Ftool/versions/1.0.0%2B20130313144700",
                     "/v0.1/servers/{serverName}/versions/{version}")
    assert body["server"]["version"] == "1.0.0+20130313144700"


async def test_not_found_and_bad_input(appliance):
    await build(appliance)
    template = "/v0.1/servers/{serverName}/versions"
    for path in ("/v0.1/servers/com.example.mcp.alice%2Fnope/versions", "/v0.1/servers/io.github.alice%2Fweather/versions",
                 "/v0.1/servers/com.example.mcp.alice/versions", "/v0.1/servers/%2F/versions",
                 "/v0.1/servers/com.example.mcp.ALICE%2Fweather/versions"):
        body = await get(appliance, path, template, expect=404)
        assert body == {"error": "Server not found"}
    body = await get(appliance, "/v0.1/servers/com.example.mcp.alice%2Fweather/versions/9.9.9",
                     "/v0.1/servers/{serverName}/versions/{version}", expect=404)
    assert body == {"error": "Server not found"}
    for query in ("limit=0", "limit=101", "limit=abc", "limit=-1", "include_deleted=perhaps", "colour=red",
                  "search=" + "x" * 300, "cursor=%00"):
        body = await get(appliance, "/v0.1/servers?" + query, expect=400)
        assert isinstance(body["error"], str) and body["error"]


async def test_every_spec_path_is_served_with_cors(appliance):
    await build(appliance)
    values = {"serverName": "com.example.mcp.alice%2Fweather", "version": "1.2.0"}
    for template, operations in SPEC["paths"].items():
        for prefix in ("/v0.1", "/v0"):
            path = prefix + template.removeprefix("/v0.1")
            for key, value in values.items():
                path = path.replace("{" + key + "}", value)
            status, _, response = await appliance.client.request(
                "OPTIONS", path, headers={"Origin": "https://github.com", "Access-Control-Request-Method": "GET"})
            assert status == 204, (path, status)
            assert all(response.headers.get(k) == v for k, v in CORS.items()), path
            for method in operations:
                status, body, response = await appliance.client.request(method.upper(), path, json={})
                # Reads are anonymous; status changes need a token; other writes use the appliance's own API.
                expected = {"get": 200, "patch": 401}.get(method, 501)
                assert status == expected, (method, path, status, body)
                assert response.headers.get("access-control-allow-origin") == "*"
                check(template, method, status, body)


async def test_status_changes_map_to_yank_and_deprecate(appliance):
    tokens = await build(appliance)
    owner = appliance.client.with_token(tokens["alice"])
    stranger = appliance.client.with_token(tokens["bob"])
    template = "/v0.1/servers/{serverName}/versions/{version}/status"
    path = "/v0.1/servers/com.example.mcp.alice%2Fweather/versions/1.2.0/status"
    status, body, _ = await stranger.request("PATCH", path, json={"status": "deprecated"})
    assert status == 403 and isinstance(body["error"], str)
    check(template, "patch", status, body)
    status, body, _ = await owner.request("PATCH", path, json={"status": "deprecated", "statusMessage": "use 3.x"})
    assert status == 200, body
    check(template, "patch", status, body)
    assert body["_meta"][OFFICIAL]["status"] == "deprecated"
    assert body["_meta"][OFFICIAL]["statusMessage"] == "use 3.x"
    status, body, _ = await owner.request("PATCH", path, json={"status": "deprecated", "statusMessage": "use 3.x"})
    assert status == 400 and body == {"error": "No changes to apply: status is already deprecated"}
    status, body, _ = await owner.request("PATCH", path, json={"status": "active"})
    assert status == 400 and "deprecation" in body["error"]
    status, body, _ = await owner.request("PATCH", path, json={"status": "deleted", "statusMessage": "leaks"})
    assert status == 200 and body["_meta"][OFFICIAL]["status"] == "deleted"
    # Deleted means yanked: gone from the default listing and from update checks.
    listing = await get(appliance, "/v0.1/servers?version=latest")
    assert ("com.example.mcp.alice/weather", "1.1.0") in {
        (e["server"]["name"], e["server"]["version"]) for e in listing["servers"]}
    status, body, _ = await owner.request("PATCH", path, json={"status": "active"})
    assert status == 200 and body["_meta"][OFFICIAL]["status"] == "deprecated"  # the deprecation stays
    for bad in ({"status": "gone"}, {}, {"status": "deleted", "statusMessage": "x" * 501}, {"status": "deleted",
                                                                                           "extra": 1}):
        status, body, _ = await owner.request("PATCH", path, json=bad)
        assert status == 400 and isinstance(body["error"], str), bad
    status, body, _ = await owner.request(
        "PATCH", "/v0.1/servers/com.example.mcp.alice%2Fnope/versions/1.0.0/status", json={"status": "deleted"})
    assert status == 404 and body == {"error": "Server not found"}


async def test_bulk_status(appliance):
    tokens = await build(appliance)
    owner = appliance.client.with_token(tokens["bob"])
    path = "/v0.1/servers/com.example.mcp.bob%2Fnotes/status"
    status, body, _ = await owner.request("PATCH", path, json={"status": "deprecated", "statusMessage": "archived"})
    assert status == 200, body
    check("/v0.1/servers/{serverName}/status", "patch", status, body)
    assert body["updatedCount"] == 1
    assert [e["_meta"][OFFICIAL]["status"] for e in body["servers"]] == ["deprecated"]
    status, body, _ = await owner.request("PATCH", path, json={"status": "deprecated", "statusMessage": "archived"})
    assert status == 400 and body["error"].startswith("No changes to apply")


async def test_error_bodies_match_the_registry_spec_and_the_appliances_own_document(appliance):
    """Every kind of error under /v0.1 and /v0, from the handler, the front door (credentials, text checks) or the
    router, has the registry's `{"error": "..."}` shape, with CORS, which both the registry's OpenAPI and the one
    the appliance publishes at /api/openapi.json describe."""
    tokens = await build(appliance)
    _, own, _ = await appliance.client.get("/api/openapi.json")
    schemas = Registry().with_resource("urn:own", Resource.opaque(own))
    bad_token = {"Authorization": "Bearer mcps_not-a-token"}
    owner = {"Authorization": f"Bearer {tokens['bob']}"}
    cases = [  # (method, path, spec template, headers, body, status)
        ("GET", "/servers?limit=0", "/v0.1/servers", {}, None, 400),
        ("GET", "/servers?cursor=%00", "/v0.1/servers", {}, None, 400),
        ("GET", "/servers?search=a%1Bb", "/v0.1/servers", {}, None, 400),
        ("GET", "/servers", "/v0.1/servers", bad_token, None, 401),
        ("GET", "/servers/com.example.mcp.alice%2Fnope/versions", "/v0.1/servers/{serverName}/versions", {}, None,
         404),
        ("GET", "/servers/com.example.mcp.alice%2Fweather/versions/9.9.9",
         "/v0.1/servers/{serverName}/versions/{version}", {}, None, 404),
        ("PUT", "/servers/com.example.mcp.bob%2Fnotes/versions/1.0.0",
         "/v0.1/servers/{serverName}/versions/{version}", owner, {}, 501),
        ("PATCH", "/servers/com.example.mcp.bob%2Fnotes/status", "/v0.1/servers/{serverName}/status", {}, {}, 401),
        ("PATCH", "/servers/com.example.mcp.bob%2Fnotes/status", "/v0.1/servers/{serverName}/status", owner,
         b'{"status": "deleted", "statusMessage": "x\\ud800"}', 400),
        ("PATCH", "/servers/com.example.mcp.bob%2Fnotes/status", "/v0.1/servers/{serverName}/status", owner,
         b"[" * 100_000 + b"]" * 100_000, 400),
        ("PATCH", "/servers/com.example.mcp.bob%2Fnotes/status", "/v0.1/servers/{serverName}/status", owner,
         {"status": "gone"}, 400),
        ("GET", "/no-such-resource", None, {}, None, 404),
    ]
    for prefix in ("/v0.1", "/v0"):
        for method, path, template, headers, body, expected in cases:
            send = {"json": body} if isinstance(body, dict) else {"data": body}
            if isinstance(body, bytes):
                headers = {**headers, "Content-Type": "application/json"}
            status, answer, response = await appliance.client.request(method, prefix + path, headers=headers,
                                                                       **send)
            assert status == expected, (method, prefix + path, status, answer)
            assert isinstance(answer, dict) and set(answer) == {"error"} and isinstance(answer["error"], str), answer
            assert response.headers.get("access-control-allow-origin") == "*"
            if template is None:
                continue
            if str(status) in SPEC["paths"][template][method.lower()]["responses"]:
                check(template, method.lower(), status, answer)  # the registry's own OpenAPI
            else:  # a status the registry's document does not list: still its Error schema
                validator = Draft202012Validator({"$ref": SPEC_URI + "#/components/schemas/Error"}, registry=SCHEMAS)
                assert not list(validator.iter_errors(answer)), answer
            own_template = prefix + template.removeprefix("/v0.1").replace("{serverName}", "{server_name}")
            responses = own["paths"][own_template][method.lower()]["responses"]
            documented = responses.get(str(status), responses["default"])
            schema = documented["content"]["application/json"]["schema"]
            validator = Draft202012Validator({"$ref": "urn:own#" + schema["$ref"].lstrip("#")}, registry=schemas)
            assert not list(validator.iter_errors(answer)), (own_template, status, answer)
