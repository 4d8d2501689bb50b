"""Cached rankings (catalog/search/ranking.py): a relevance search answered from an expression's kept ranking
gives exactly what ranking from scratch gives, after every kind of catalog change (publish, a new version that
drops the word, yank, visibility, filters) and on every page, and never shows a caller what it may not see.

The oracle is the same appliance with kept rankings switched off (`Rankings.cache_min` above any match count), so
both answers come from the same database; `Cache-Control: no-cache` keeps the recent-pages cache out of it."""

from __future__ import annotations

import asyncio
import time
import urllib.parse

import pytest

from mcpstore_appliance.lru import LRU
from tests.seed import FAST_LEDGER, make_org, publish, set_package, yank

NEVER = 10**9
FRESH = {"Cache-Control": "no-cache"}


@pytest.fixture
async def world(start_app):
    app = await start_app(**FAST_LEDGER)
    tokens = {}
    for name in ("alice", "amy", "bob"):
        _, tokens[name] = await app.user(name)
    await make_org(app, tokens["amy"], "acme")
    # Strong to weak: the word in the name, in the keywords, several times in the description, once.
    await publish(app, tokens["alice"], "zephyr-sync", description="Keeps zephyr folders in sync")
    await publish(app, tokens["alice"], "wind-tools", keywords=["zephyr"], description="Wind helpers",
                  options={"category": "weather"})
    await publish(app, tokens["bob"], "breeze", description="zephyr zephyr, a zephyr for every day",
                  options={"category": "weather"})
    for i in range(4):
        await publish(app, tokens["bob"], f"misc-{i}", description=f"mentions zephyr once, item {i}")
    await publish(app, tokens["amy"], "zephyr-vault", namespace="acme", description="zephyr secrets",
                  options={"visibility": "private"})
    return app, tokens


async def walk(app, token: str | None, limit: int = 2, **params) -> list[str]:
    """Every page of a search, following next_cursor; the ids in order."""
    found, cursor = [], None
    client = app.client.with_token(token)
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        status, body, _ = await client.get("/api/packages?" + urllib.parse.urlencode(query), headers=FRESH)
        assert status == 200, body
        found += [item["id"] for item in body["packages"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return found


async def kept_and_scratch(app, token: str | None, **params) -> tuple[list[str], list[str]]:
    """The same walk answered from kept rankings (kept from earlier searches, before the catalog changed,
    and filled now where missing) and ranked from scratch."""
    rankings = app.services.discovery.search.rankings
    rankings.cache_min = 1
    kept = await walk(app, token, **params)
    assert rankings.cache._data  # rankings are being cached
    cache, rankings.cache = rankings.cache, LRU(rankings.cache.size)
    rankings.cache_min = NEVER
    scratch = await walk(app, token, **params)
    rankings.cache, rankings.cache_min = cache, 1
    return kept, scratch


async def same(app, token: str | None, **params) -> list[str]:
    kept, scratch = await kept_and_scratch(app, token, **params)
    assert kept == scratch and len(set(kept)) == len(kept)
    return kept


async def test_kept_rankings_follow_publish_versions_yank_and_visibility(world):
    app, tokens = world
    first = await same(app, None, q="zephyr")
    assert first[0] == "alice/zephyr-sync" and len(first) == 7 and "acme/zephyr-vault" not in first
    assert set(await same(app, tokens["amy"], q="zephyr")) == {*first, "acme/zephyr-vault"}

    # A better match is published: it leads at once.
    await publish(app, tokens["bob"], "zephyr", description="zephyr")
    assert (await same(app, None, q="zephyr"))[0] == "bob/zephyr"

    # A new version that no longer carries the word drops the package; yanking it brings the old one back.
    await publish(app, tokens["bob"], "breeze", "2.0.0", description="a calm breeze")
    assert "bob/breeze" not in await same(app, None, q="zephyr")
    await yank(app, tokens["bob"], "bob", "breeze", "2.0.0")
    assert "bob/breeze" in await same(app, None, q="zephyr")

    # Visibility: hidden from everyone else at once, still there for its owner.
    await set_package(app, "alice", "zephyr-sync", visibility="private")
    assert "alice/zephyr-sync" not in await same(app, None, q="zephyr")
    assert "alice/zephyr-sync" in await same(app, tokens["alice"], q="zephyr")
    assert "alice/zephyr-sync" not in await same(app, tokens["amy"], q="zephyr")


@pytest.mark.parametrize("keep", [1000, 3])
async def test_pages_filters_and_prefixes_over_a_kept_ranking(world, keep):
    """With keep=3 the kept ranking is shorter than the results, so later pages go to the joined query."""
    app, _ = world
    app.services.discovery.search.rankings.keep = keep
    for limit in (1, 2, 3, 10):
        assert len(await same(app, None, q="zephyr", limit=limit)) == 7
    assert await same(app, None, q="zephyr", category="weather") == ["alice/wind-tools", "bob/breeze"]
    assert len(await same(app, None, q="zeph")) == 7  # the last word as a prefix
    assert await same(app, None, q="zephyr item", limit=1) != []


async def test_searches_on_the_event_loop_answer_like_those_on_reader_threads(world):
    """A search whose ranking and facet counts are kept runs on the event loop; one that would take longer
    there (here: every statement over its budget) is redone on a reader thread with the same answer."""
    app, tokens = world
    search = app.services.discovery.search
    search.rankings.cache_min = 1
    db = search.db
    threaded = []
    original_threaded = db.threaded

    async def counting_run(fn):
        threaded.append(1)
        return await original_threaded(fn)

    db.threaded = counting_run
    on_threads = await walk(app, tokens["amy"], q="zephyr", limit=3)
    assert threaded  # the first walk ranks and counts: reader threads
    threaded.clear()
    assert await walk(app, tokens["amy"], q="zephyr", limit=3) == on_threads
    assert not threaded  # everything kept: answered on the event loop
    db.loop_steps = 1
    assert await walk(app, tokens["amy"], q="zephyr", limit=3) == on_threads
    assert len(threaded) == 3  # each page handed over to a thread
    db.loop_steps = 10_000
    assert await walk(app, None, q="zephyr", category="weather") == ["alice/wind-tools", "bob/breeze"]


async def test_a_search_after_a_catalog_change_goes_to_a_thread_without_ranking_on_the_event_loop(world):
    """After a change nothing of the new generation is kept, so the event loop could only rank the matches and
    then give up at the facet counts: it hands the search to a reader thread before running any FTS query."""
    app, tokens = world
    search = app.services.discovery.search
    search.rankings.cache_min = 1
    before = await walk(app, None, q="zephyr", limit=3)
    on_loop: list[str] = []
    search.db.inline(lambda conn: conn.set_trace_callback(on_loop.append))
    try:
        await walk(app, None, q="zephyr", limit=3)
        assert not any("MATCH" in sql for sql in on_loop)  # all kept: nothing to rank again
        assert on_loop  # but the pages were answered there
        await publish(app, tokens["bob"], "zephyr-extra", description="one more zephyr")
        on_loop.clear()
        after = await walk(app, None, q="zephyr", limit=3)
        assert not any("MATCH" in sql for sql in on_loop), on_loop
    finally:
        search.db.inline(lambda conn: conn.set_trace_callback(None))
    assert set(after) == set(before) | {"bob/zephyr-extra"}


async def test_concurrent_first_searches_after_a_change_rank_once(world):
    """Two requests for the same words right after a publish: both miss the kept ranking, and the second
    reader thread waits for the first one's ranking instead of computing it again."""
    app, tokens = world
    search = app.services.discovery.search
    await publish(app, tokens["bob"], "zephyr-more", description="another zephyr")
    ranked = []
    rankings = search.rankings
    rank = rankings.rank

    def rank_once_the_other_has_joined(conn, key):
        ranked.append(key)
        deadline = time.monotonic() + 10  # only reached if the second request never joins: asserted below
        while rankings.flights.joined == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        return rank(conn, key)

    rankings.rank = rank_once_the_other_has_joined
    try:
        first, second = await asyncio.gather(walk(app, None, q="zephyr", limit=20),
                                             walk(app, None, q="zephyr", limit=20))
    finally:
        del rankings.rank
    assert len(ranked) == 1 and rankings.flights.joined >= 1
    assert first == second and "bob/zephyr-more" in first
