"""Package data, version lists, version detail and update checks over HTTP against a real appliance."""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
from html.parser import HTMLParser

import aiosqlite
import pytest

from mcpstore_appliance.catalog import semver
from mcpstore_appliance.db.migrations_runner import apply_migrations
from tests.seed import FAST_LEDGER, deprecate, publish, set_package, yank

LONG = """# Weather

Forecasts **for agents**. See [the docs](https://example.com/docs) or [this](javascript:alert(1)).

<script>alert('x')</script>
<img src=x onerror=alert(1)>
<a href="https://evil.example" onclick="steal()">raw link</a>

| city | temp |
|------|------|
| Oslo | 3    |
"""


def parsed_tags(html: str) -> list[tuple[str, list]]:
    found: list[tuple[str, list]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collector().feed(html)
    return found


@pytest.fixture
async def appliance(start_app):
    return await start_app(**FAST_LEDGER)


async def get(app, path: str, expect: int = 200, token: str | None = None):
    status, body, _ = await app.client.with_token(token).get(path)
    assert status == expect, (path, status, body)
    return body


async def tool_in_two_versions(appliance) -> str:
    """alice/tool 1.0.0 and 1.1.0; returns alice's token."""
    _, alice = await appliance.user("alice")
    await publish(appliance, alice, "tool", "1.0.0")
    await publish(appliance, alice, "tool", "1.1.0")
    return alice


@contextlib.contextmanager
def sql_trace(appliance):
    """The statements the catalog reader's event-loop connection runs inside the block."""
    reader = appliance.services.discovery.packages.db
    statements: list[str] = []
    reader.inline(lambda conn: conn.set_trace_callback(statements.append))
    try:
        yield statements
    finally:
        reader.inline(lambda conn: conn.set_trace_callback(None))


async def test_package_data_has_everything_a_page_needs(appliance):
    _, alice = await appliance.user("alice")
    user_config = {
        "api_key": {"type": "string", "title": "API key", "description": "Your key", "required": True,
                    "sensitive": True, "default": "sk-do-not-show"},
        "units": {"type": "string", "title": "Units", "description": "metric or imperial", "default": "metric"},
    }
    await publish(appliance, alice, "weather", "1.0.0", display_name="Weather", long_description=LONG,
                  keywords=["weather"], tools=[{"name": "get_forecast", "description": "Forecast"}],
                  prompts=[{"name": "plan_trip", "description": "Plan", "arguments": ["city"],
                            "text": "Plan ${arguments.city}"}],
                  user_config=user_config, homepage="https://weather.example.com",
                  privacy_policies=["https://weather.example.com/privacy"],
                  options={"category": "data", "pricing": "per_call", "amount": "0.10", "currency": "usd",
                           "changelog": "first"})
    await publish(appliance, alice, "weather", "1.1.0", long_description=LONG)
    await set_package(appliance, "alice", "weather", rating_avg=4.25, rating_count=4, verified=1)
    body = await get(appliance, "/api/packages/alice/weather")
    assert body["id"] == "alice/weather" and body["version"] == "1.1.0" and body["latest_version"] == "1.1.0"
    html = body["long_description_html"]
    assert "<h1>Weather</h1>" in html and "<strong>for agents</strong>" in html and "<table>" in html
    assert 'href="https://example.com/docs"' in html and 'rel="noopener noreferrer nofollow"' in html
    tags = parsed_tags(html)
    assert {"h1", "p", "strong", "a", "table"} <= {tag for tag, _ in tags}
    assert not {"script", "img"} & {tag for tag, _ in tags}  # raw HTML in markdown is shown as text
    for tag, attributes in tags:
        assert not [name for name, _ in attributes if name.startswith("on")], (tag, attributes)
        assert not any((value or "").startswith("javascript:") for _, value in attributes)
    assert "&lt;script&gt;" in html
    assert body["tools"] == [] and body["user_config"] == []  # 1.1.0 declares none
    first = await get(appliance, "/api/packages/alice/weather/versions/1.0.0")
    configs = {c["key"]: c for c in first["user_config"]}
    assert configs["api_key"]["sensitive"] is True and configs["api_key"]["default"] is None
    assert configs["units"]["sensitive"] is False and configs["units"]["default"] == "metric"
    assert first["links"]["homepage"] == "https://weather.example.com"
    assert first["privacy_policies"] == ["https://weather.example.com/privacy"]
    assert body["signature"]["status"] == "unsigned" and body["signature"]["signer"] is None
    assert isinstance(body["ledger_index"], int)
    assert body["pricing"]["model"] == "per_call" and body["pricing"]["amount"] == 10
    assert body["pricing"]["amount_display"] == "0.10"
    assert body["verified"] is True and body["stats"]["rating"] == {"average": 4.25, "count": 4}
    assert body["versions"]["count"] == 2
    assert [v["version"] for v in body["versions"]["recent"]] == ["1.1.0", "1.0.0"]
    assert body["bundle_hash"] == "sha256:" + body["sha256"]
    assert first["tools"] == [{"name": "get_forecast", "description": "Forecast"}]
    assert first["prompts"] == [{"name": "plan_trip", "description": "Plan", "arguments": ["city"]}]
    assert first["changelog"] == "first" and first["is_latest"] is False
    assert (await get(appliance, "/api/packages/alice/weather/versions/latest"))["version"] == "1.1.0"


async def test_versions_newest_first_by_semver_with_yanked_marked(appliance):
    _, alice = await appliance.user("alice")
    for version in ("1.0.0", "1.10.0", "1.2.0", "2.0.0-beta.1", "2.0.0-alpha", "0.9.0"):
        await publish(appliance, alice, "tool", version)
    await yank(appliance, alice, "alice", "tool", "1.2.0")
    body = await get(appliance, "/api/packages/alice/tool/versions")
    assert [v["version"] for v in body["versions"]] == [
        "2.0.0-beta.1", "2.0.0-alpha", "1.10.0", "1.2.0", "1.0.0", "0.9.0"]
    assert {v["version"]: v["yanked"] for v in body["versions"]}["1.2.0"] is True
    assert [v["is_latest"] for v in body["versions"]].count(True) == 1
    assert {v["version"]: v["is_latest"] for v in body["versions"]}["1.10.0"] is True  # releases before betas
    assert body["total"] == 6
    walked, cursor = [], None
    while True:
        page = await get(appliance, "/api/packages/alice/tool/versions?limit=4" + (f"&cursor={cursor}" if cursor
                                                                                  else ""))
        walked += [v["version"] for v in page["versions"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert walked == [v["version"] for v in body["versions"]]
    for query in ("limit=0", "limit=101", "limit=x", "cursor=nope", "page=2"):
        await get(appliance, f"/api/packages/alice/tool/versions?{query}", expect=400)
    other = (await get(appliance, "/api/packages/alice/tool/versions?limit=1"))["next_cursor"]
    await publish(appliance, alice, "other")
    status, body, _ = await appliance.client.get(f"/api/packages/alice/other/versions?cursor={other}")
    assert status == 400 and body["error"]["code"] == "invalid_cursor"  # a cursor of another package


async def test_unknown_packages_and_versions(appliance):
    _, alice = await appliance.user("alice")
    await publish(appliance, alice, "tool")
    for path in ("/api/packages/alice/nope", "/api/packages/nobody/tool", "/api/packages/ALICE/tool",
                 "/api/packages/alice/nope/versions", "/api/packages/alice/nope/latest",
                 "/api/packages/alice/nope/versions/1.0.0", "/api/packages/a..b/tool",
                 "/api/packages/alice/nope/versions/1.0.0/download"):
        body = await get(appliance, path, expect=404)
        assert body["error"]["code"] == "no_such_package"
    for path in ("/api/packages/alice/tool/versions/9.9.9", "/api/packages/alice/tool/versions/not-semver",
                 "/api/packages/alice/tool/versions/9.9.9/download"):
        body = await get(appliance, path, expect=404)
        assert body["error"]["code"] == "no_such_version"


async def test_update_check(appliance):
    _, alice = await appliance.user("alice")
    await publish(appliance, alice, "tool", "1.2.0", options={"changelog": "one two"})
    await publish(appliance, alice, "tool", "1.3.0", options={"changelog": "one three"})
    await publish(appliance, alice, "tool", "1.4.0", platforms=["win32"], options={"changelog": "windows only"})
    await publish(appliance, alice, "tool", "1.5.0", options={"changelog": "yanked soon"})
    await publish(appliance, alice, "tool", "2.0.0-rc.1", options={"changelog": "next"})
    await yank(appliance, alice, "alice", "tool", "1.5.0")
    body = await get(appliance, "/api/packages/alice/tool/latest?current=1.2.0&platform=darwin")
    assert body["current_version"] == "1.2.0" and body["latest_version"] == "1.3.0"  # 1.4.0 is win32-only
    assert body["update_available"] is True and body["breaking_changes"] is False
    assert body["requires_payment"] is False
    assert [c["version"] for c in body["changelog"]] == ["1.3.0"] and body["changelog"][0]["changes"] == "one three"
    assert body["download_url"].endswith("/api/packages/alice/tool/versions/1.3.0/download")
    body = await get(appliance, "/api/packages/alice/tool/latest?current=1.2.0")  # any platform
    assert body["latest_version"] == "1.4.0" and [c["version"] for c in body["changelog"]] == ["1.4.0", "1.3.0"]
    body = await get(appliance, "/api/packages/alice/tool/latest?current=1.2.0&prerelease=true")
    assert body["latest_version"] == "2.0.0-rc.1" and body["breaking_changes"] is True
    body = await get(appliance, "/api/packages/alice/tool/latest?current=1.4.0&platform=win32")
    assert body["latest_version"] == "1.4.0" and body["update_available"] is False and body["changelog"] == []
    body = await get(appliance, "/api/packages/alice/tool/latest")
    assert body["latest_version"] == "1.4.0" and body["current_version"] is None
    body = await get(appliance, "/api/packages/alice/tool/latest?current=3.0.0")  # ahead of the registry
    assert body["update_available"] is False
    for query in ("current=1.2", "current=latest", "current=v1.2.0", "current=%F0%9F%98%80", "platform=macos",
                  "prerelease=maybe", "channel=beta", "current=" + "1" * 300):
        body = await get(appliance, f"/api/packages/alice/tool/latest?{query}", expect=400)
        assert body["error"]["code"] in ("invalid_version", "invalid_parameter", "unknown_parameter"), query


async def test_update_check_breaking_changes_and_payment(appliance):
    _, alice = await appliance.user("alice")
    paid = {"pricing": "subscription", "amount": "5.00", "currency": "eur"}
    await publish(appliance, alice, "paid", "1.0.0", options=paid)
    await publish(appliance, alice, "paid", "1.1.0")
    await publish(appliance, alice, "paid", "2.0.0")
    body = await get(appliance, "/api/packages/alice/paid/latest?current=1.0.0")
    assert body["latest_version"] == "2.0.0" and body["breaking_changes"] is True
    assert body["requires_payment"] is True  # a paid package's new major version
    await yank(appliance, alice, "alice", "paid", "2.0.0")
    body = await get(appliance, "/api/packages/alice/paid/latest?current=1.0.0")
    assert body["latest_version"] == "1.1.0" and body["breaking_changes"] is False
    assert body["requires_payment"] is False  # same major: covered
    await publish(appliance, alice, "free", "1.0.0")
    await publish(appliance, alice, "free", "2.0.0")
    body = await get(appliance, "/api/packages/alice/free/latest?current=1.0.0")
    assert body["breaking_changes"] is True and body["requires_payment"] is False


async def test_update_check_with_nothing_installable(appliance):
    _, alice = await appliance.user("alice")
    await publish(appliance, alice, "tool", "1.0.0", platforms=["linux"])
    body = await get(appliance, "/api/packages/alice/tool/latest?platform=win32")
    assert body["latest_version"] is None and body["update_available"] is False and body["download_url"] is None
    await yank(appliance, alice, "alice", "tool", "1.0.0")
    body = await get(appliance, "/api/packages/alice/tool")
    assert body["latest_version"] is None and body["version"] == "1.0.0" and body["yanked"] is True
    body = await get(appliance, "/api/packages/alice/tool/latest")
    assert body["latest_version"] is None


async def test_status_changes_show_at_once(appliance):
    _, alice = await appliance.user("alice")
    await publish(appliance, alice, "tool", "1.0.0")
    await publish(appliance, alice, "tool", "1.1.0")
    await deprecate(appliance, alice, "alice", "tool", "1.1.0", "use other-tool")
    body = await get(appliance, "/api/packages/alice/tool")
    assert body["deprecated"] is True and body["deprecation_reason"] == "use other-tool"
    await yank(appliance, alice, "alice", "tool", "1.1.0", "bad build")
    body = await get(appliance, "/api/packages/alice/tool")
    assert body["version"] == "1.0.0" and body["deprecated"] is False
    version = await get(appliance, "/api/packages/alice/tool/versions/1.1.0")
    assert version["yanked"] is True and version["yank_reason"] == "bad build"


async def test_openapi_documents_the_discovery_routes(appliance):
    body = await get(appliance, "/api/openapi.json")
    for path in ("/api/packages", "/api/packages/{namespace}/{name}", "/api/packages/{namespace}/{name}/versions",
                 "/api/packages/{namespace}/{name}/versions/{version}", "/api/packages/{namespace}/{name}/latest",
                 "/v0.1/servers", "/v0.1/servers/{server_name}/versions"):
        assert "get" in body["paths"][path], path


async def test_package_data_etag_and_revalidation(appliance):
    _, alice = await appliance.user("alice")
    await publish(appliance, alice, "tool", "1.0.0")
    status, first, response = await appliance.client.get("/api/packages/alice/tool")
    etag = response.headers["ETag"]
    assert status == 200 and response.headers["Cache-Control"] == "public, max-age=2, stale-while-revalidate=3"
    assert response.headers["Vary"] == "Authorization, Cookie"
    status, _, response = await appliance.client.get("/api/packages/alice/tool", headers={"If-None-Match": etag})
    assert status == 304 and response.headers["ETag"] == etag
    await set_package(appliance, "alice", "tool", downloads=42)  # a fold of download counts
    status, body, response = await appliance.client.get("/api/packages/alice/tool", headers={"If-None-Match": etag})
    assert status == 200 and body["stats"]["downloads"] == 42 and response.headers["ETag"] != etag
    etag = response.headers["ETag"]
    await yank(appliance, alice, "alice", "tool", "1.0.0")
    status, body, response = await appliance.client.get("/api/packages/alice/tool", headers={"If-None-Match": etag})
    assert status == 200 and body["yanked"] is True and body["latest_version"] is None
    await publish(appliance, alice, "private-tool", options={"visibility": "private"})
    status, _, response = await appliance.client.with_token(alice).get("/api/packages/alice/private-tool")
    assert status == 200 and response.headers["Cache-Control"] == "private, no-cache"


@pytest.mark.usefixtures("exact_stamp")
async def test_update_checks_are_answered_from_memory_until_something_is_committed(appliance):
    """A repeated update check reads nothing from SQLite; every commit (publish, visibility, price) is seen by
    the next one, and a package that became private answers like a missing one."""
    alice = await tool_in_two_versions(appliance)
    with sql_trace(appliance) as statements:
        check = "/api/packages/alice/tool/latest?current=1.0.0&platform=linux"
        assert (await get(appliance, check))["latest_version"] == "1.1.0"
        statements.clear()
        assert (await get(appliance, check))["latest_version"] == "1.1.0"
        assert not [sql for sql in statements if "versions" in sql], statements
        await publish(appliance, alice, "tool", "2.0.0")
        body = await get(appliance, check)
        assert body["latest_version"] == "2.0.0" and body["breaking_changes"] is True
        assert body["requires_payment"] is False
        await set_package(appliance, "alice", "tool", pricing_model="subscription", price_amount=400,
                          currency="eur")
        assert (await get(appliance, check))["requires_payment"] is True
        await set_package(appliance, "alice", "tool", visibility="private")
        await get(appliance, check, expect=404)
        assert (await get(appliance, check, token=alice))["latest_version"] == "2.0.0"  # the owner still sees it
        # Long changelogs are answered from SQLite every time rather than held in memory.
        for version in ("2.1.0", "2.2.0", "2.3.0"):
            await publish(appliance, alice, "tool", version, options={"changelog": "x" * 6_000})
        assert (await get(appliance, check, token=alice))["changelog"][0]["changes"] == "x" * 6_000
        statements.clear()
        assert (await get(appliance, check, token=alice))["latest_version"] == "2.3.0"
        assert [sql for sql in statements if "FROM versions" in sql]


async def test_kept_update_answers_are_per_current_version_and_never_cross_visibility(appliance):
    """Answers are kept per `current` with the versions they came from: each client version gets its own,
    a kept answer of a private package is not given to a caller who may not see it, a `current` that is not
    semver is still refused, and many distinct `current` values keep a bounded amount of text."""
    from mcpstore_appliance.catalog.package_view import MAX_KEPT_ANSWER_CHARS

    alice = await tool_in_two_versions(appliance)
    await set_package(appliance, "alice", "tool", visibility="private")
    base = "/api/packages/alice/tool/latest?platform=linux&current="
    old, new = await get(appliance, base + "1.0.0", token=alice), await get(appliance, base + "1.1.0", token=alice)
    assert (old["update_available"], new["update_available"]) == (True, False)
    assert old["current_version"] == "1.0.0" and new["current_version"] == "1.1.0"
    assert await get(appliance, base + "1.0.0", token=alice) == old  # the kept answer, the same
    await get(appliance, base + "1.0.0", expect=404)  # anonymous: the kept answer is not theirs to see
    _, stranger = await appliance.user("mallory")
    await get(appliance, base + "1.0.0", expect=404, token=stranger)
    status, body, _ = await appliance.client.with_token(alice).get(base + "not-semver")
    assert status == 400 and body["error"]["code"] == "invalid_version"
    for patch in range(400):  # clients on 400 different versions
        await get(appliance, base + f"0.0.{patch}", token=alice)
    entries = list(appliance.services.discovery.packages._installable._data.values())
    assert entries and all(sum(map(len, entry.answers.values())) <= MAX_KEPT_ANSWER_CHARS for entry in entries)
    assert (await get(appliance, base + "0.0.399", token=alice))["latest_version"] == "1.1.0"


@pytest.mark.usefixtures("exact_stamp")
async def test_version_lists_are_answered_from_memory_until_something_is_committed(appliance):
    """A repeated first page of versions reads no version from SQLite; a yank, a publish or a visibility change
    is seen by the next request; the package's managers still see quarantined versions after an anonymous
    caller's page was kept, and a package that became private answers anonymous callers like a missing one."""
    alice = await tool_in_two_versions(appliance)
    listed = "/api/packages/alice/tool/versions"
    with sql_trace(appliance) as statements:
        assert [v["version"] for v in (await get(appliance, listed))["versions"]] == ["1.1.0", "1.0.0"]
        statements.clear()
        again = await get(appliance, listed)
        assert [v["version"] for v in again["versions"]] == ["1.1.0", "1.0.0"] and again["total"] == 2
        assert not [sql for sql in statements if "versions" in sql], statements
        assert (await get(appliance, listed + "?limit=1"))["next_cursor"]  # another limit: its own page
        await yank(appliance, alice, "alice", "tool", "1.1.0")
        body = await get(appliance, listed)
        assert body["versions"][0]["yanked"] is True and body["versions"][0]["is_latest"] is False
        await publish(appliance, alice, "tool", "1.2.0")
        assert [v["version"] for v in (await get(appliance, listed))["versions"]][0] == "1.2.0"
        async with appliance.services.db.write() as tx:  # as an admin's review would leave it
            await tx.changes("UPDATE versions SET state = 'quarantined' WHERE version = '1.0.0'", ())
        assert [v["version"] for v in (await get(appliance, listed))["versions"]] == ["1.2.0", "1.1.0"]
        managed = await get(appliance, listed, token=alice)  # the kept page is not the manager's
        assert [(v["version"], v["state"]) for v in managed["versions"]][-1] == ("1.0.0", "quarantined")
        assert [v["version"] for v in (await get(appliance, listed))["versions"]] == ["1.2.0", "1.1.0"]
        await set_package(appliance, "alice", "tool", visibility="private")
        await get(appliance, listed, expect=404)
        assert (await get(appliance, listed, token=alice))["total"] == 3


async def test_hyphenated_pre_releases_in_semver_order_and_migration_007_fixes_older_keys(appliance):
    """"1.0.0-alpha" precedes "1.0.0-alpha-x" (semver: an identifier precedes a longer one it starts). Keys
    written before migration 007 ('.'-separated) sorted them the other way round; the migration rewrites them
    and moves `latest_version_id` where the choice changes. Old version-list cursors are refused, not misread."""
    _, alice = await appliance.user("alice")
    for version in ("1.0.0-alpha-x", "1.0.0-alpha", "1.0.0-alpha.1"):
        await publish(appliance, alice, "tool", version)
    listed = await get(appliance, "/api/packages/alice/tool/versions")
    assert [v["version"] for v in listed["versions"]] == ["1.0.0-alpha-x", "1.0.0-alpha.1", "1.0.0-alpha"]
    assert (await get(appliance, "/api/packages/alice/tool/latest?prerelease=true"))["latest_version"] == \
        "1.0.0-alpha-x"
    first = await get(appliance, "/api/packages/alice/tool/versions?limit=1")
    _, scope, _, _ = json.loads(base64.urlsafe_b64decode(first["next_cursor"].split(".")[0] + "=="))
    # A cursor signed by this appliance for this list, holding a key in the format before migration 007.
    old_cursor = appliance.services.discovery.packages.cursors.encode(
        "versions", scope, ["0000000000000001.0000000000000000.0000000000000000-1alpha."])
    body = await get(appliance, f"/api/packages/alice/tool/versions?cursor={old_cursor}", expect=400)
    assert body["error"]["code"] == "invalid_cursor"

    # The database as an appliance before migration 007 left it: '.'-separated keys, and the latest version
    # chosen by them.
    path = appliance.data_dir / "mcpstore.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("UPDATE versions SET semver_key = replace(semver_key, ',', '.')")
        old_latest = conn.execute("SELECT id FROM versions ORDER BY semver_key DESC LIMIT 1").fetchone()[0]
        conn.execute("UPDATE packages SET latest_version_id = ?", (old_latest,))
        conn.execute("DELETE FROM schema_migrations WHERE version = 7")
    finally:
        conn.close()
    async with aiosqlite.connect(path) as migrating:
        assert await apply_migrations(migrating) == [7]
    conn = sqlite3.connect(path)
    try:
        keys = dict(conn.execute("SELECT version, semver_key FROM versions"))
        latest = conn.execute("SELECT v.version FROM packages p JOIN versions v ON v.id = p.latest_version_id"
                              " WHERE p.name = 'tool'").fetchone()[0]
    finally:
        conn.close()
    assert keys == {version: semver.parse(version).sort_key() for version in keys}
    assert latest == "1.0.0-alpha-x"
