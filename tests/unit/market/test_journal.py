"""The journal, orders and per-call debits against a real SQLite file."""

from __future__ import annotations

import asyncio

import pytest

from mcpstore_appliance.market import journal, orders, settle
from mcpstore_appliance.market.journal import InsufficientFunds, Line
from mcpstore_appliance.market.money import split, to_journal

from .support import Confirming, add_package, add_user, open_market


@pytest.fixture
async def market(tmp_path):
    market = await open_market(tmp_path / "m.sqlite3")
    yield market
    await market.db.close()


async def paid_order(market, buyer: int, *, kind: str, amount: int, currency: str = "usd",
                     package: int | None = None, creator: str | None = None, share: int = 8000,
                     ref: str = "ref") -> dict:
    async with market.db.write() as tx:
        order = await orders.create(tx, kind=kind, buyer_user_id=buyer, package_id=package,
                                    major=1 if package else None, amount=amount, currency=currency, creator=creator,
                                    creator_share_bp=share, provider="test", provider_ref=ref)
    assert await settle.settle(market.db, Confirming, order, Confirming.paid(order)) == "credited"
    return order


def test_split_adds_up_and_rounds_for_the_platform():
    assert split(1000, 8000) == (800, 200)
    assert split(999, 9500) == (949, 50)  # 949.05 -> the creator gets 949, the platform the rest
    assert split(7, 10_000) == (7, 0)
    assert to_journal(25, "sat") == (25_000, "msat")
    with pytest.raises(TypeError):
        split(10.0, 8000)  # no floats in money code
    with pytest.raises(TypeError):
        to_journal(True, "usd")


async def test_an_unbalanced_posting_is_refused_and_changes_nothing(market):
    with pytest.raises(ValueError):
        async with market.db.write() as tx:
            await journal.post(tx, "payment", "x", "usd", [Line("wallet", "user:1", 5), Line("revenue", "p", -4)])
    assert await market.db.fetch_value("SELECT count(*) FROM market_transactions") == 0
    assert await journal.check(market.db) == []


async def test_a_purchase_splits_on_the_order_and_is_credited_once(market):
    buyer, creator = await add_user(market.db, "bea"), await add_user(market.db, "cleo")
    package = await add_package(market.db, creator, "tool", model="subscription", price=1000)
    order = await paid_order(market, buyer, kind="subscription", amount=1000, package=package,
                             creator=f"user:{creator}", share=8000)
    for _ in range(3):  # the same payment reported again, in any way
        assert await settle.settle(market.db, Confirming, order, Confirming.paid(order)) == "duplicate"
    assert await journal.balance(market.db, "creator", f"user:{creator}", "usd") == 800
    assert await journal.balance(market.db, "revenue", journal.PLATFORM, "usd") == 200
    assert await journal.balance(market.db, "clearing", "test", "usd") == -1000
    assert await journal.check(market.db) == []


async def test_a_payment_of_another_amount_is_not_credited_but_reported(market):
    buyer = await add_user(market.db, "bea")
    async with market.db.write() as tx:
        order = await orders.create(tx, kind="credits", buyer_user_id=buyer, amount=2000, currency="usd",
                                    creator_share_bp=0, provider="test", provider_ref="short")
    short = Confirming.paid(order).__class__(reference="short", paid=True, amount=1999, currency="usd")
    assert await settle.settle(market.db, Confirming, order, short) == "mismatch"
    assert await market.db.fetch_value("SELECT count(*) FROM market_transactions") == 0
    assert await market.db.fetch_value("SELECT kind FROM market_findings") == "amount_mismatch"


async def test_a_refund_reverses_the_entries_and_the_entitlement_once(market):
    buyer, creator = await add_user(market.db, "bea"), await add_user(market.db, "cleo")
    package = await add_package(market.db, creator, "tool", model="subscription", price=1500)
    order = await paid_order(market, buyer, kind="subscription", amount=1500, package=package,
                             creator=f"user:{creator}")
    assert await market.db.fetch_value("SELECT count(*) FROM market_entitlements WHERE revoked_at IS NULL") == 1
    assert await settle.refund(market.db, "test", f"pi_{order['id']}") == ["ref"]
    assert await settle.refund(market.db, "test", f"pi_{order['id']}") == []
    assert await journal.balance(market.db, "creator", f"user:{creator}", "usd") == 0
    assert await market.db.fetch_value("SELECT count(*) FROM market_entitlements WHERE revoked_at IS NULL") == 0
    assert await market.db.fetch_value("SELECT status FROM market_orders") == "refunded"
    assert await journal.check(market.db) == []


async def test_a_call_is_debited_once_per_reservation_and_never_below_zero(market):
    buyer, creator = await add_user(market.db, "bea"), await add_user(market.db, "cleo")
    package = await add_package(market.db, creator, "tool", price=30)
    await paid_order(market, buyer, kind="credits", amount=70)
    first = await market.debit_call(buyer, package, "r1")
    assert (first.amount, first.balance, first.repeated) == (30, 40, False)
    assert (await market.debit_call(buyer, package, "r1")).repeated  # the same call billed again: nothing taken
    assert (await market.debit_call(buyer, package, "r2")).balance == 10
    with pytest.raises(InsufficientFunds):
        await market.debit_call(buyer, package, "r3")
    assert await journal.balance(market.db, "wallet", f"user:{buyer}", "usd") == 10
    assert await journal.balance(market.db, "creator", f"user:{creator}", "usd") == 48  # 80 % of 2 x 30
    assert await journal.check(market.db) == []


async def test_concurrent_debits_never_overdraw(market):
    """40 calls at once against credits for 13 of them: 13 are debited, 27 refused, the balance ends at 1."""
    buyer, creator = await add_user(market.db, "bea"), await add_user(market.db, "cleo")
    package = await add_package(market.db, creator, "tool", price=7, currency="sat")
    await paid_order(market, buyer, kind="credits", amount=92, currency="sat")  # 92 sat = 13 calls and 1 sat

    async def call(n: int):
        try:
            return await market.debit_call(buyer, package, f"c{n}")
        except InsufficientFunds as refused:
            return refused

    results = await asyncio.gather(*(call(n) for n in range(40)))
    assert sum(not isinstance(r, InsufficientFunds) for r in results) == 13
    assert all(r.code == "insufficient_funds" for r in results if isinstance(r, InsufficientFunds))
    assert await journal.balance(market.db, "wallet", f"user:{buyer}", "msat") == 1000
    assert await journal.check(market.db) == []


def test_the_split_comes_from_the_tier_or_the_operators_org_internal_share():
    from mcpstore_appliance.config import MarketSettings
    from mcpstore_appliance.market.orders import Product, creator_share_bp

    def product(tier: str, visibility: str, org_id: int | None) -> Product:
        return Product(1, "a/b", "subscription", 500, "usd", tier, visibility, org_id, None if org_id else 7, 1)

    default, internal = MarketSettings(), MarketSettings(org_internal_creator_share_bp=10_000)
    assert creator_share_bp(default, product("hobbyist", "public", None)) == 8000
    assert creator_share_bp(default, product("pro", "public", None)) == 9500
    assert creator_share_bp(default, product("hobbyist", "org", 3)) == 8000  # no org-internal share set
    assert creator_share_bp(internal, product("hobbyist", "org", 3)) == 10_000  # 100/0 inside the org
    assert creator_share_bp(internal, product("pro", "public", 3)) == 9500  # an org's public package: the tier's
    assert split(*to_journal(500, "usd")[:1], 10_000) == (500, 0)
