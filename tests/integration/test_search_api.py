"""GET /api/packages over HTTP against a real appliance: text, ranking, typos, filters, sorts, facets, keyset
pages, and bad input. The catalog is published through POST /api/packages, so the search index is filled by
the same triggers as in production."""

from __future__ import annotations

import urllib.parse

import pytest

from tests.seed import FAST_LEDGER, deprecate, ids, publish, set_package, yank

PAID = {"pricing": "per_call", "amount": "0.05", "currency": "usd"}
SUBSCRIPTION_PRO = {"pricing": "subscription", "amount": "9.99", "currency": "usd", "tier": "pro",
                    "endpoint": "https://pg.example.com/mcp"}


@pytest.fixture
async def appliance(start_app):
    return await start_app(**FAST_LEDGER)


async def build_catalog(app) -> dict[str, str]:
    """Eight public packages of two users with known texts, prices, platforms, runtimes and counters."""
    _, alice = await app.user("alice")
    _, bob = await app.user("bob")
    await publish(app, alice, "weather", keywords=["weather", "forecast"], platforms=["darwin", "linux"],
                  description="Current conditions for any city",
                  tools=[{"name": "get_conditions", "description": "Conditions now"}], options={"category": "data"})
    await publish(app, alice, "forecast-tools", description="Seven day outlooks for a city",
                  options={"category": "data"})
    await publish(app, alice, "weather-alerts", description="Storm alerts pushed to your agent",
                  platforms=["win32"], options={"category": "data", **PAID})
    await publish(app, alice, "github-issues", description="Triage issues and pull requests",
                  tools=[{"name": "list_issues", "description": "List open issues"}],
                  options={"category": "developer-tools", **PAID})
    await publish(app, bob, "postgres-query", description="Run read-only SQL against PostgreSQL",
                  server_type="python", platforms=["linux"], options={"category": "data", **SUBSCRIPTION_PRO})
    await publish(app, bob, "cafe-finder", description="Find a café nearby with opening hours",
                  options={"category": "travel"})
    await publish(app, bob, "near-me", description="Places NEAR you: (shops) and -restaurants- \"quoted\"",
                  options={"category": "travel"})
    await publish(app, bob, "notes", description="Plain text notes", keywords=["notebook"],
                  options={"category": "productivity"})
    for name, downloads, rating, count, verified in [
            ("weather", 500, 4.5, 10, 1), ("forecast-tools", 50, 3.0, 2, 0), ("weather-alerts", 900, None, 0, 0),
            ("github-issues", 700, 4.9, 30, 1), ("notes", 10, 4.0, 1, 0)]:
        owner = "alice" if name != "notes" else "bob"
        await set_package(app, owner, name, downloads=downloads, rating_avg=rating, rating_count=count,
                          verified=verified)
    return {"alice": alice, "bob": bob}


async def search(app, **params) -> dict:
    status, body, _ = await app.client.get("/api/packages?" + urllib.parse.urlencode(params))
    assert status == 200, body
    return body


async def test_text_search_ranks_the_name_highest_and_matches_prefixes(appliance):
    await build_catalog(appliance)
    body = await search(appliance, q="forecast")
    # forecast-tools has the word in its name; weather only in its keywords.
    assert ids(body)[:2] == ["alice/forecast-tools", "alice/weather"]
    assert body["query"]["sort"] == "relevance" and body["total"] == 2
    body = await search(appliance, q="weath")  # the last word matches as a prefix
    assert set(ids(body)) == {"alice/weather", "alice/weather-alerts"}
    body = await search(appliance, q="issues triage")  # all words must match, in any field
    assert ids(body) == ["alice/github-issues"]
    body = await search(appliance, q="list_issues")  # tool names are searched
    assert ids(body) == ["alice/github-issues"]


async def test_result_shape(appliance):
    await build_catalog(appliance)
    (item,) = (await search(appliance, q="github"))["packages"]
    for key in ("id", "name", "display_name", "version", "description", "author", "tools", "keywords", "license",
                "compatibility", "tier", "pricing", "rating", "invocations", "verified", "bundle_url",
                "bundle_hash"):
        assert key in item, key
    assert item["id"] == "alice/github-issues" and item["version"] == "1.0.0"
    assert item["tools"] == ["list_issues"]
    assert item["pricing"] == {"model": "per_call", "amount": 5, "currency": "usd"}
    assert item["rating"] == 4.9 and item["verified"] is True and item["downloads"] == 700
    assert item["compatibility"] == {"platforms": [], "runtimes": ["node"]}
    assert item["bundle_hash"] == "sha256:" + item["bundle_url"].rsplit("/", 1)[1].removesuffix(".mcpb")
    status, body, _ = await appliance.client.get(item["bundle_url"].replace(appliance.base_url, ""))
    assert status == 402 and body["error"]["details"]["package"] == "alice/github-issues"  # paid: for buyers


async def test_typo_falls_back_to_the_nearest_words(appliance):
    await build_catalog(appliance)
    body = await search(appliance, q="wether")
    assert body["query"]["corrected_query"] == "weather"
    assert set(ids(body)) == {"alice/weather", "alice/weather-alerts"}
    body = await search(appliance, q="postgres qurey")  # one right word, one typo
    assert body["query"]["corrected_query"] == "postgres query" and ids(body) == ["bob/postgres-query"]
    body = await search(appliance, q="xqzvbnmw")  # nothing near: an empty answer, not an error
    assert body["packages"] == [] and body["total"] == 0 and body["query"]["corrected_query"] is None


FTS_SYNTAX = [
    '"', '""', '"weather', 'NEAR(weather forecast)', 'weather*', '*', '-weather', 'weather -alerts',
    '(weather OR notes)', 'name:weather', 'description:storm', 'AND', 'weather AND', 'OR OR', 'NOT notes',
    '^weather', '{name}: weather', 'weather + forecast', "'; DROP TABLE packages; --", '\\', '%', '_', "'",
]


async def test_fts_syntax_is_searched_as_text(appliance):
    _, alice = await appliance.user("alice")
    await publish(appliance, alice, "weather", keywords=["weather"])
    for text in FTS_SYNTAX:
        for sort in ("relevance", "name"):
            body = await search(appliance, q=text, sort=sort)
            assert isinstance(body["packages"], list), text  # 200 with a list: never a syntax error or a 500


async def test_operators_in_user_text_are_plain_words(appliance):
    await build_catalog(appliance)
    assert ids(await search(appliance, q="NEAR you")) == ["bob/near-me"]  # the word, not the operator
    assert ids(await search(appliance, q='"quoted"')) == ["bob/near-me"]
    assert ids(await search(appliance, q="(shops)")) == ["bob/near-me"]
    # '-' is not negation and 'name:' is not a column filter: these are just the words.
    assert ids(await search(appliance, q="-restaurants-")) == ["bob/near-me"]
    assert ids(await search(appliance, q="description:storm")) == []  # "description" is no word of it
    assert ids(await search(appliance, q="storm")) == ["alice/weather-alerts"]


async def test_empty_unicode_emoji_and_huge_queries(appliance):
    await build_catalog(appliance)
    body = await search(appliance, q="")
    assert body["total"] == 8 and body["query"]["sort"] == "downloads"
    assert ids(await search(appliance, q="café")) == ["bob/cafe-finder"]
    assert ids(await search(appliance, q="CAFE")) == ["bob/cafe-finder"]  # case and accents folded
    body = await search(appliance, q="🌦️☔")
    assert body["packages"] == [] and body["total"] == 0
    assert ids(await search(appliance, q="weather 🌦️")) != []
    assert (await search(appliance, q="日本語のテキスト"))["packages"] == []
    status, body, _ = await appliance.client.get("/api/packages?q=" + "a" * 5000)
    assert status == 400 and body["error"]["code"] == "query_too_long"
    # 10 KB does not even fit aiohttp's request line limit (8190 bytes): a plain 400 before any handler runs.
    status, _, _ = await appliance.client.get("/api/packages?q=" + "a" * 10240)
    assert status == 400
    status, body, _ = await appliance.client.get("/api/packages?q=" + urllib.parse.quote(" ".join(f"w{i}" for i in range(17))))
    assert status == 400 and body["error"]["code"] == "query_too_long"
    status, body, _ = await appliance.client.get("/api/packages?q=%00")
    assert status == 400


async def test_filters(appliance):
    await build_catalog(appliance)
    assert set(ids(await search(appliance, category="travel"))) == {"bob/cafe-finder", "bob/near-me"}
    # A package that names no platform runs anywhere: it matches every platform filter.
    darwin = set(ids(await search(appliance, platform="darwin")))
    assert "alice/weather" in darwin and "alice/github-issues" in darwin
    assert "alice/weather-alerts" not in darwin and "bob/postgres-query" not in darwin
    assert ids(await search(appliance, runtime="python")) == ["bob/postgres-query"]
    assert set(ids(await search(appliance, pricing="paid"))) == {
        "alice/weather-alerts", "alice/github-issues", "bob/postgres-query"}
    assert ids(await search(appliance, pricing="subscription")) == ["bob/postgres-query"]
    assert len(ids(await search(appliance, pricing="free"))) == 5
    assert set(ids(await search(appliance, max_price=5))) == set(ids(await search(appliance))) - {
        "bob/postgres-query"}
    assert set(ids(await search(appliance, min_rating=4))) == {"alice/weather", "alice/github-issues", "bob/notes"}
    assert set(ids(await search(appliance, verified="true"))) == {"alice/weather", "alice/github-issues"}
    assert len(ids(await search(appliance, verified="false"))) == 6
    assert ids(await search(appliance, tier="pro")) == ["bob/postgres-query"]
    assert len(ids(await search(appliance, org="alice"))) == 4
    assert ids(await search(appliance, org="nobody")) == []
    # Filters combine with text and with each other.
    assert ids(await search(appliance, q="weather", pricing="paid")) == ["alice/weather-alerts"]
    assert ids(await search(appliance, category="data", platform="linux", tier="pro")) == ["bob/postgres-query"]


async def test_facets_count_the_current_query(appliance):
    await build_catalog(appliance)
    body = await search(appliance)
    facets = body["facets"]
    assert facets["category"] == {"data": 4, "travel": 2, "developer-tools": 1, "productivity": 1}
    assert facets["pricing"] == {"free": 5, "per_call": 2, "subscription": 1}
    assert facets["platform"] == {"darwin": 6, "linux": 7, "win32": 6}
    assert facets["runtime"] == {"node": 7, "python": 1}
    body = await search(appliance, q="weather")
    assert body["total"] == 2
    assert body["facets"]["category"] == {"data": 2}
    assert body["facets"]["pricing"] == {"free": 1, "per_call": 1}
    assert body["facets"]["platform"] == {"darwin": 1, "linux": 1, "win32": 1}
    body = await search(appliance, category="travel", limit=1)  # facets and total ignore the page size
    assert body["total"] == 2 and body["facets"]["category"] == {"travel": 2} and len(body["packages"]) == 1


async def test_sorts(appliance):
    await build_catalog(appliance)
    assert ids(await search(appliance, sort="downloads"))[:3] == [
        "alice/weather-alerts", "alice/github-issues", "alice/weather"]
    rated = ids(await search(appliance, sort="rating"))
    assert rated[:4] == ["alice/github-issues", "alice/weather", "bob/notes", "alice/forecast-tools"]
    assert ids(await search(appliance, sort="name")) == [
        "bob/cafe-finder", "alice/forecast-tools", "alice/github-issues", "bob/near-me", "bob/notes",
        "bob/postgres-query", "alice/weather", "alice/weather-alerts"]
    assert ids(await search(appliance, sort="newest"))[0] == "bob/notes"  # published last
    assert ids(await search(appliance, q="weather", sort="downloads")) == ["alice/weather-alerts", "alice/weather"]


async def test_keyset_pages_walk_every_result_once(appliance):
    await build_catalog(appliance)
    for params in ({}, {"sort": "downloads"}, {"sort": "rating"}, {"sort": "newest"}, {"sort": "name"},
                   {"q": "a", "sort": "relevance"}, {"q": "the"}, {"category": "data", "sort": "name"}):
        full = ids(await search(appliance, limit=100, **params))
        walked, cursor = [], None
        while True:
            body = await search(appliance, limit=3, **params, **({"cursor": cursor} if cursor else {}))
            walked += ids(body)
            assert body["total"] == len(full)
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert walked == full, params


async def test_bad_parameters_are_400(appliance):
    await build_catalog(appliance)
    for query, code in [
            ("colour=red", "unknown_parameter"), ("sort=popularity", "invalid_sort"), ("sort=RATING", "invalid_sort"),
            ("limit=0", "invalid_parameter"), ("limit=101", "invalid_parameter"), ("limit=-1", "invalid_parameter"),
            ("limit=ten", "invalid_parameter"), ("limit=1e2", "invalid_parameter"),
            ("platform=beos", "invalid_parameter"), ("pricing=cheap", "invalid_parameter"),
            ("max_price=-5", "invalid_parameter"), ("max_price=1.5", "invalid_parameter"),
            ("min_rating=6", "invalid_parameter"), ("min_rating=abc", "invalid_parameter"),
            ("verified=maybe", "invalid_parameter"), ("tier=gold", "invalid_parameter"),
            ("category=Not%20A%20Slug", "invalid_parameter"), ("org=..%2F..", "invalid_parameter"),
            ("q=a&q=b", "invalid_parameter"), ("cursor=abc", "invalid_cursor"),
            ("cursor=" + "x" * 5000, "invalid_cursor")]:
        status, body, _ = await appliance.client.get("/api/packages?" + query)
        assert status == 400, (query, status, body)
        assert body["error"]["code"] == code, (query, body)


async def test_forged_and_foreign_cursors_are_refused(appliance):
    await build_catalog(appliance)
    body = await search(appliance, limit=2, sort="name")
    cursor = body["next_cursor"]
    payload, signature = cursor.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    for forged in (flipped + "." + signature, payload + "." + signature[::-1], payload, cursor + "x"):
        status, answer, _ = await appliance.client.get("/api/packages?" + urllib.parse.urlencode(
            {"limit": 2, "sort": "name", "cursor": forged}))
        assert status == 400 and answer["error"]["code"] == "invalid_cursor", forged
    # A genuine cursor of another query (other sort, other filter) is refused too.
    for other in ({"sort": "downloads"}, {"sort": "name", "category": "data"}, {"sort": "name", "q": "weather"}):
        status, answer, _ = await appliance.client.get("/api/packages?" + urllib.parse.urlencode(
            {"limit": 2, "cursor": cursor, **other}))
        assert status == 400 and "different query" in answer["error"]["message"]


async def test_stale_cursor_is_refused(appliance):
    await build_catalog(appliance)
    cursor = (await search(appliance, limit=2))["next_cursor"]
    codec = appliance.services.discovery.cursors
    real_clock = codec._clock
    codec._clock = lambda: real_clock() + codec.max_age + 60  # a day later
    try:
        status, body, _ = await appliance.client.get("/api/packages?limit=2&cursor=" + cursor)
    finally:
        codec._clock = real_clock
    assert status == 400 and "expired" in body["error"]["message"]


async def test_index_follows_publish_yank_and_deprecate(appliance):
    tokens = await build_catalog(appliance)
    alice = tokens["alice"]
    await publish(appliance, alice, "weather", "2.0.0", description="Now with radar maps")
    (item,) = [p for p in (await search(appliance, q="radar"))["packages"]]
    assert item["version"] == "2.0.0"
    assert ids(await search(appliance, q="conditions")) == []  # the old description left the index
    await yank(appliance, alice, "alice", "weather", "2.0.0")
    (item,) = (await search(appliance, q="conditions"))["packages"]
    assert item["version"] == "1.0.0"
    status, _, _ = await appliance.client.with_token(alice).post(
        "/api/packages/alice/weather/versions/1.0.0/deprecate", json={"reason": "use weather-alerts"})
    assert status == 200
    (item,) = (await search(appliance, q="conditions"))["packages"]
    assert item["deprecated"] is True
    await yank(appliance, alice, "alice", "weather", "1.0.0")  # nothing installable left: out of search
    assert "alice/weather" not in ids(await search(appliance, limit=100))
    # Facets move with the catalog at once (no stale cache).
    assert (await search(appliance))["facets"]["category"]["data"] == 3


async def test_counters_and_ratings_reach_the_results(appliance):
    await build_catalog(appliance)
    await set_package(appliance, "bob", "notes", downloads=10_000, rating_avg=5.0, rating_count=3)
    assert ids(await search(appliance, sort="downloads"))[0] == "bob/notes"
    assert ids(await search(appliance, sort="rating"))[0] == "bob/notes"
    assert set(ids(await search(appliance, min_rating=5))) == {"bob/notes"}


async def test_repeated_searches_come_from_memory_unless_fresh(appliance):
    await build_catalog(appliance)
    service = appliance.services.discovery.search
    runs = []
    original = service._search

    def counting(*args, **kwargs):
        page = original(*args, **kwargs)
        runs.append(1)  # runs that answered (a try on the event loop that handed over to a thread is not one)
        return page

    service._search = counting
    for _ in range(3):
        assert ids(await search(appliance, q="weather"))
    assert len(runs) == 1  # the same search within a few seconds: one database run
    status, body, _ = await appliance.client.get("/api/packages?q=weather", headers={"Cache-Control": "no-cache"})
    assert status == 200 and len(runs) == 2
    service.stale_after_change = 0  # (the moment a page may outlive an edit: the next test)
    await set_package(appliance, "alice", "weather", verified=0)  # the catalog moved
    assert ids(await search(appliance, q="weather"))
    assert len(runs) == 3


async def test_a_cached_page_outlives_a_publish_for_a_moment_but_never_a_status_change(appliance):
    """A cached page may answer for up to stale_after_change seconds after a publish or an edit (so that
    publishes do not make every popular search compute its page again); a yank, a deprecation or a
    visibility change is shown by the next search."""
    tokens = await build_catalog(appliance)
    service = appliance.services.discovery.search
    service.stale_after_change = 3600  # the window never ends within this test
    before = ids(await search(appliance, q="weather"))
    await publish(appliance, tokens["bob"], "weather-radar", description="Radar images for weather watchers")
    await set_package(appliance, "alice", "weather", rating_avg=1.0, rating_count=99)
    assert ids(await search(appliance, q="weather")) == before  # the cached page, within its window
    assert "bob/weather-radar" in ids(await search(appliance, q="weather", limit=19))  # another page: computed

    await yank(appliance, tokens["alice"], "alice", "weather-alerts", "1.0.0")
    after_yank = ids(await search(appliance, q="weather"))
    assert "alice/weather-alerts" not in after_yank and "bob/weather-radar" in after_yank
    await deprecate(appliance, tokens["alice"], "alice", "weather", "1.0.0")
    (item,) = [p for p in (await search(appliance, q="weather"))["packages"] if p["id"] == "alice/weather"]
    assert item["deprecated"] is True
    await set_package(appliance, "bob", "weather-radar", visibility="private")
    assert "bob/weather-radar" not in ids(await search(appliance, q="weather"))

    service.stale_after_change = 0  # and once the window is over, an edit shows too
    await publish(appliance, tokens["bob"], "weather-log", description="A weather diary")
    assert "bob/weather-log" in ids(await search(appliance, q="weather"))
