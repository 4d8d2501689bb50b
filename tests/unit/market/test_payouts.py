"""Payout batches against a real SQLite file, with a stand-in provider (support.StandInPayer): minimums,
exactly-once across crashes, funds returned on failure, the journal balanced throughout."""

from __future__ import annotations

import pytest

from mcpstore_appliance.market import journal

from mcpstore_appliance.market.providers.payers import Outcome

from .support import StandInPayer, add_package, add_user, open_market, set_method
from .test_journal import paid_order


@pytest.fixture
async def world(tmp_path):
    payer = StandInPayer()
    market = await open_market(tmp_path / "m.sqlite3", payer=payer, payouts={"minimum": {"sat": "100"}})
    creator = await add_user(market.db, "cat")
    buyer = await add_user(market.db, "ann")
    package = await add_package(market.db, creator, "zaps", model="subscription", price=1000, currency="sat")
    yield market, payer, creator, buyer, package
    await market.db.close()


async def earn(market, buyer: int, package: int, creator: int, ref: str) -> None:
    """A 1000 sat subscription paid: 800 000 msat for the creator at 80 %."""
    await paid_order(market, buyer, kind="subscription", amount=1000, currency="sat", package=package,
                     creator=f"user:{creator}", ref=ref)


async def creator_balance(market, creator: int) -> int:
    return await journal.balance(market.db, "creator", f"user:{creator}", "msat")


async def test_a_batch_pays_the_balance_once_and_a_rerun_pays_nobody(world):
    market, payer, creator, buyer, package = world
    await earn(market, buyer, package, creator, "r1")
    await set_method(market, f"user:{creator}")
    report = await market.payouts.run()
    assert [p["amount"] for p in report.paid] == [800_000]
    assert payer.sent == {f"user:{creator}:msat:1": 800_000}
    assert await creator_balance(market, creator) == 0
    again = await market.payouts.run()
    assert again.paid == [] and len(payer.sent) == 1
    [row] = await market.payouts.list(f"user:{creator}")
    assert row["status"] == "paid" and row["provider_ref"] == f"ref-user:{creator}:msat:1"
    assert await journal.check(market.db) == []


async def test_nothing_is_paid_below_the_minimum_or_without_a_method(world):
    market, payer, creator, buyer, package = world
    await earn(market, buyer, package, creator, "r1")
    assert (await market.payouts.run()).paid == []  # no payout method yet
    await set_method(market, f"user:{creator}")
    market.settings.payouts.minimum["sat"] = "1000"  # 1 000 000 msat: more than the 800 000 earned
    assert (await market.payouts.run()).paid == [] and payer.sent == {}
    await earn(market, buyer, package, creator, "r2")  # 1 600 000 msat now
    assert [p["amount"] for p in (await market.payouts.run()).paid] == [1_600_000]


async def test_a_crash_after_the_provider_paid_is_finished_by_the_next_run_without_paying_twice(world):
    market, payer, creator, buyer, package = world
    await earn(market, buyer, package, creator, "r1")
    await set_method(market, f"user:{creator}")
    payer.crash_after_send = True
    report = await market.payouts.run()
    assert report.paid == [] and len(report.open) == 1
    [row] = await market.payouts.list(f"user:{creator}")
    assert row["status"] == "sending"
    assert await creator_balance(market, creator) == 0  # reserved: not paid out a second time meanwhile
    payer.crash_after_send = False
    await earn(market, buyer, package, creator, "r2")  # new earnings while the payout was open
    report = await market.payouts.run()
    assert [p["id"] for p in report.paid] == [row["id"], row["id"] + 1]
    assert payer.sent == {f"user:{creator}:msat:1": 800_000, f"user:{creator}:msat:2": 800_000}
    assert await journal.check(market.db) == []


async def test_a_provider_that_is_down_leaves_the_payout_reserved_and_it_is_resumed(world):
    market, payer, creator, buyer, package = world
    await earn(market, buyer, package, creator, "r1")
    await set_method(market, f"user:{creator}")
    payer.down = True
    report = await market.payouts.run()
    assert len(report.open) == 1 and payer.sent == {}
    payer.down = False
    report = await market.payouts.run()
    assert [p["amount"] for p in report.paid] == [800_000] and len(payer.sent) == 1


async def test_a_failed_payout_returns_the_funds_and_the_next_batch_tries_again(world):
    market, payer, creator, buyer, package = world
    await earn(market, buyer, package, creator, "r1")
    await set_method(market, f"user:{creator}")
    payer.refuse = True
    report = await market.payouts.run()
    assert report.failed[0]["error"] == "refused by the stand-in"
    assert await creator_balance(market, creator) == 800_000  # returned
    [row] = await market.payouts.list(f"user:{creator}")
    assert row["status"] == "failed"
    assert await market.db.fetch_value("SELECT count(*) FROM market_transactions WHERE reference = ?",
                                       (f"payout-return:user:{creator}:msat:1",)) == 1
    payer.refuse = False
    assert [p["amount"] for p in (await market.payouts.run()).paid] == [800_000]
    assert await journal.check(market.db) == []


async def test_two_batches_at_once_pay_a_payout_once(world, tmp_path):
    """Two processes' batches (two Payouts on one database) advance the same payout: each fetches its own
    invoice, but only the one stored first is ever paid."""
    import asyncio
    import itertools

    from mcpstore_appliance.market.payouts import Payouts, Report
    from mcpstore_appliance.market.providers.payers import Prepared

    market, payer, creator, buyer, package = world
    await earn(market, buyer, package, creator, "r1")
    await set_method(market, f"user:{creator}")
    invoices = itertools.count(1)

    async def fresh_invoice(payout):
        await asyncio.sleep(0)  # let the other batch fetch its own meanwhile
        return Prepared(provider_ref=f"invoice-{next(invoices)}")

    async def pay_by_invoice(payout):
        payer.sends.append(payout["provider_ref"])
        return Outcome("paid", payout["provider_ref"])

    payer.prepare, payer.send = fresh_invoice, pay_by_invoice
    payer.status = lambda payout: asyncio.sleep(0, None)  # the provider knows of no payment yet
    payout = await market.payouts._reserve(f"user:{creator}", "msat", "lightning", "b1")
    other = Payouts(market.db, market.settings, {"lightning": payer}, "http://127.0.0.1:1")
    reports = [Report("b1", [], [], []), Report("b2", [], [], [])]
    await asyncio.gather(market.payouts._advance(dict(payout), reports[0]), other._advance(dict(payout), reports[1]))
    [row] = await market.payouts.list(f"user:{creator}")
    assert payer.sends == [row["provider_ref"]] * len(payer.sends) and row["status"] == "paid"
    assert len(set(payer.sends)) == 1
