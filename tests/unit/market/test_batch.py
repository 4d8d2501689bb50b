"""Grouped postings (market/batch.py): postings made at the same moment share one write transaction, and each
keeps the journal's rules: once per reference, a guarded account never below zero, a refusal changes nothing."""

from __future__ import annotations

import asyncio

import pytest

from mcpstore_appliance.market import journal
from mcpstore_appliance.market.batch import GroupPoster
from mcpstore_appliance.market.journal import AlreadyPosted, InsufficientFunds, Line

from .support import open_market


@pytest.fixture
async def db(tmp_path):
    market = await open_market(tmp_path / "m.sqlite3")
    async with market.db.write() as tx:
        await journal.post(tx, "payment", "topup", "usd", [Line("clearing", "t", -25), Line("wallet", "user:1", 25)])
    yield market.db
    await market.db.close()


def debit(reference: str, amount: int = 10) -> tuple:
    return ("debit", reference, "usd", [Line("wallet", "user:1", -amount, guard=True), Line("creator", "user:2", amount)])


async def test_a_group_posts_in_order_and_refuses_what_does_not_fit(db):
    poster = GroupPoster(db)
    commits = []
    db.stamp.committed = (lambda original: lambda: (commits.append(1), original())[1])(db.stamp.committed)
    results = await asyncio.gather(*(poster.post(*debit(ref)) for ref in ("a", "b", "a", "c", "d")),
                                   return_exceptions=True)
    assert results[:2] == [15, 5]
    assert isinstance(results[2], AlreadyPosted)  # the same reference twice in one group: once
    assert all(isinstance(r, InsufficientFunds) for r in results[3:])
    assert len(commits) == 1  # one write transaction for the whole group
    assert await journal.balance(db, "wallet", "user:1", "usd") == 5
    assert isinstance((await asyncio.gather(poster.post(*debit("a")), return_exceptions=True))[0], AlreadyPosted)
    assert await journal.check(db) == []


async def test_an_unbalanced_or_doubly_guarded_posting_is_refused_before_the_group(db):
    poster = GroupPoster(db)
    with pytest.raises(ValueError):
        await poster.post("debit", "x", "usd", [Line("wallet", "user:1", -5, guard=True), Line("creator", "u", 4)])
    with pytest.raises(ValueError):
        await poster.post("debit", "y", "usd", [Line("wallet", "user:1", -5, guard=True),
                                                Line("wallet", "user:2", 5, guard=True)])
    assert await db.fetch_value("SELECT count(*) FROM market_transactions") == 1
