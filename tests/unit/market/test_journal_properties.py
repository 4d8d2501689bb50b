"""Property test: random workloads of purchases, top-ups (a user's and an org's), calls (paid by the caller's own
credits or their org's), refunds and payouts. After every step each
currency's journal sums to zero, every balance equals its entries, and only a refund of spent credits can take
a wallet below zero (a debit never does; a refund after a payout can leave a creator owing). Payout batches run
with a stand-in provider that pays, refuses, is down or loses its answer after paying: no payout is ever paid
twice, what the provider paid is what the journal says was paid out, and failed payouts are returned."""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpstore_appliance.market import journal, orders, settle
from mcpstore_appliance.market.journal import InsufficientFunds

from .support import Confirming, StandInPayer, add_package, add_user, open_market, set_method

CURRENCIES = ("usd", "sat")
step = st.one_of(
    st.tuples(st.just("subscribe"), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("top_up"), st.integers(0, 2), st.sampled_from(CURRENCIES), st.integers(1, 5000)),
    st.tuples(st.just("call"), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("refund"), st.integers(0, 50)),
    st.tuples(st.just("payout"), st.integers(0, 1), st.sampled_from(CURRENCIES), st.integers(1, 3000)),
    st.tuples(st.just("replay"), st.integers(0, 50)),
    st.tuples(st.just("batch"), st.sampled_from(("ok", "refuse", "down", "crash_after_send"))),
    st.tuples(st.just("subscribe"), st.integers(0, 2), st.just(1)),  # sat earnings, to be paid out
    st.tuples(st.just("batch"), st.just("ok")),
    st.tuples(st.just("org_top_up"), st.sampled_from(CURRENCIES), st.integers(1, 3000)),  # the org's credits
    st.tuples(st.just("member_call"), st.integers(0, 2), st.integers(0, 3)),  # own credits, else the org's
)


class World:
    def __init__(self, market, payer):
        self.market, self.db, self.payer = market, market.db, payer
        self.users: list[int] = []
        self.creators: list[int] = []
        self.packages: list[int] = []  # per call usd, per call sat, subscription usd, subscription sat
        self.paid: list[dict] = []
        self.calls = 0
        self.payouts = itertools.count()
        self.refunded_credit_wallets: set[str] = set()

    async def setup(self):
        for name in ("ann", "bob", "cyd"):
            self.users.append(await add_user(self.db, name))
        for name in ("cat", "dan"):
            self.creators.append(await add_user(self.db, name))
        self.packages = [await add_package(self.db, self.creators[0], "calls", price=7),
                         await add_package(self.db, self.creators[1], "zaps", price=3, currency="sat", tier="pro"),
                         await add_package(self.db, self.creators[0], "subs", model="subscription", price=500),
                         await add_package(self.db, self.creators[1], "subz", model="subscription", price=5000,
                                           currency="sat")]
        for creator in self.creators:
            await set_method(self.market, f"user:{creator}")
        async with self.db.write() as tx:
            self.org = await tx.insert("orgs", {"slug": "acme", "name": "acme", "created_at": 0.0})

    async def order(self, **values) -> None:
        n = len(self.paid) + 1
        async with self.db.write() as tx:
            order = await orders.create(tx, provider="test", provider_ref=f"p{n}", **values)
        assert await settle.settle(self.db, Confirming, order, Confirming.paid(order)) == "credited"
        self.paid.append(order)

    async def run(self, op) -> None:
        kind = op[0]
        if kind == "subscribe":
            package = self.packages[2 + op[2] % 2]
            row = await self.db.fetch_one("SELECT price_amount, currency, owner_user_id FROM packages WHERE id = ?",
                                          (package,))
            await self.order(kind="subscription", buyer_user_id=self.users[op[1]], package_id=package, major=1,
                             amount=row["price_amount"], currency=row["currency"],
                             creator=f"user:{row['owner_user_id']}", creator_share_bp=(8000, 9500)[op[2] % 2])
        elif kind == "top_up":
            await self.order(kind="credits", buyer_user_id=self.users[op[1]], amount=op[3], currency=op[2],
                             creator_share_bp=0)
        elif kind == "call":
            self.calls += 1
            try:
                await self.market.debit_call(self.users[op[1]], self.packages[op[2] % 2], f"call{self.calls}")
            except InsufficientFunds:
                pass
        elif kind == "org_top_up":
            await self.order(kind="credits", buyer_user_id=self.users[0], buyer_org_id=self.org, scope="org",
                             amount=op[2], currency=op[1], creator_share_bp=0)
        elif kind == "member_call":
            self.calls += 1
            try:
                await self.market.debit_call(self.users[op[1]], self.packages[op[2] % 2], f"call{self.calls}",
                                             {self.org})
            except InsufficientFunds:
                pass
        elif kind in ("refund", "replay") and self.paid:
            order = self.paid[op[1] % len(self.paid)]
            if kind == "replay":
                assert await settle.settle(self.db, Confirming, order, Confirming.paid(order)) in (
                    "duplicate", "refunded")
            elif await settle.refund(self.db, "test", f"pi_{order['id']}") and order["kind"] == "credits":
                self.refunded_credit_wallets.add(settle.wallet_of(order))
        elif kind == "batch":
            self.payer.refuse, self.payer.down, self.payer.crash_after_send = (
                op[1] == "refuse", op[1] == "down", op[1] == "crash_after_send")
            await self.market.payouts.run()
        elif kind == "payout":
            creator = f"user:{self.creators[op[1]]}"
            currency = "msat" if op[2] == "sat" else "usd"
            try:
                await self.market.pay_out(creator, currency, op[3], "test", f"payout{len(self.paid)}-{self.calls}-"
                                          f"{next(self.payouts)}")
            except InsufficientFunds:
                pass

    async def check(self) -> None:
        assert await journal.check(self.db) == []
        assert len(self.payer.sends) == len(set(self.payer.sends))  # nobody paid twice
        paid = await self.db.fetch_value("SELECT coalesce(sum(amount), 0) FROM market_payouts WHERE status = 'paid'")
        sending = await self.db.fetch_value("SELECT coalesce(sum(amount), 0) FROM market_payouts"
                                            " WHERE status = 'sending'")
        # what the provider paid: every paid payout, and at most the ones whose answer was lost
        assert paid <= sum(self.payer.sent.values()) <= paid + sending
        out = await self.db.fetch_value("SELECT coalesce(sum(e.amount), 0) FROM market_entries e JOIN market_accounts a"
                                        " ON a.id = e.account_id JOIN market_transactions t ON t.id = e.transaction_id"
                                        " WHERE a.kind = 'clearing' AND a.owner = 'test'"
                                        " AND t.kind IN ('payout', 'payout_return') AND t.reference LIKE 'payout%:user:%'")
        opened = await self.db.fetch_value("SELECT coalesce(sum(amount), 0) FROM market_payouts"
                                           " WHERE status IN ('reserved', 'sending')")
        assert out == paid + opened  # failed ones were returned
        for row in await self.db.fetch_all("SELECT kind, owner, balance FROM market_accounts"):
            if row["kind"] == "wallet" and row["owner"] not in self.refunded_credit_wallets:
                assert row["balance"] >= 0, row


def test_random_workloads_keep_the_journal_sound(tmp_path):
    loop = asyncio.new_event_loop()
    counter = iter(range(10**6))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(step, min_size=4, max_size=30))
    def workload(ops):
        async def scenario():
            payer = StandInPayer()
            market = await open_market(tmp_path / f"p{next(counter)}.sqlite3", payer=payer,
                                       payouts={"minimum": {"sat": "1"}})
            try:
                world = World(market, payer)
                await world.setup()
                for op in ops:
                    await world.run(op)
                    await world.check()
            finally:
                await market.db.close()

        loop.run_until_complete(scenario())

    try:
        workload()
    finally:
        loop.close()
