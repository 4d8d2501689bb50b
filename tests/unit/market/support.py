"""A real database with users and packages for the market's unit tests (no HTTP)."""

from __future__ import annotations

import time

from mcpstore_appliance.config import MarketSettings
from mcpstore_appliance.db import Database
from mcpstore_appliance.market.providers.base import Payment
from mcpstore_appliance.market.payouts import Payouts
from mcpstore_appliance.market.providers.manual import ManualProvider
from mcpstore_appliance.market.providers.payers import Outcome, Prepared
from mcpstore_appliance.market.service import Market


async def open_market(path, payer=None, **settings) -> Market:
    """A market on a fresh database; `payer` (a StandInPayer) pays its payouts."""
    db = await Database(path).open()
    market_settings = MarketSettings(**settings)
    payouts = Payouts(db, market_settings, {"lightning": payer} if payer else {}, "http://127.0.0.1:1")
    return Market(db, market_settings, {"manual": ManualProvider()}, "http://127.0.0.1:1", payouts)


async def add_user(db, name: str) -> int:
    async with db.write() as tx:
        user = await tx.insert("users", {"email": f"{name}@example.com", "username": name, "display_name": name,
                                         "created_at": time.time()})
        await tx.insert("namespaces", {"name": name, "user_id": user})
    return user


async def add_package(db, owner: int, name: str, *, model: str = "per_call", price: int = 10,
                      currency: str = "usd", tier: str = "hobbyist", major: int = 1) -> int:
    namespace = await db.fetch_value("SELECT username FROM users WHERE id = ?", (owner,))
    now = time.time()
    async with db.write() as tx:
        package = await tx.insert("packages", {"namespace": namespace, "name": name, "owner_user_id": owner,
                                               "pricing_model": model, "price_amount": price, "currency": currency,
                                               "tier": tier, "created_at": now, "updated_at": now})
        version = await tx.insert("versions", {
            "package_id": package, "version": f"{major}.0.0", "semver_key": f"{major:08d}", "state": "published",
            "sha256": f"{package:064x}", "size": 1, "manifest_json": "{}", "metadata_json": "{}",
            "signature_status": "unsigned", "published_at": now, "updated_at": now})
        await tx.execute("UPDATE packages SET latest_version_id = ? WHERE id = ?", (version, package))
    return package


class Confirming:
    """Stands in for a provider's answer in unit tests of the journal: the provider modules have their own tests
    against LNbits and localstripe."""

    name = "test"

    @staticmethod
    def paid(order: dict, reference: str | None = None) -> Payment:
        return Payment(reference=reference or order["provider_ref"], paid=True, amount=order["amount"],
                       currency=order["currency"], payment_id=f"pi_{order['id']}")


class StandInPayer:
    """A STAND-IN for a payout provider in the journal's unit tests (the real ones are tested against LNbits and
    the Stripe stand-in in tests/integration): it keeps the transfers it made by payout key, as a provider's own
    records, and can refuse (`refuse`), or lose its answer after paying (`crash_after_send`: what a crash of the
    appliance between the provider's payment and our write looks like)."""

    method = "lightning"
    provider = "test"
    currencies = frozenset({"msat"})

    def __init__(self):
        self.sent: dict[str, int] = {}  # payout key -> amount: what the provider really paid
        self.sends: list[str] = []  # every payment made, to prove none was made twice
        self.refuse = False
        self.crash_after_send = False
        self.down = False

    async def check_destination(self, destination: str) -> str:
        return destination

    def payable(self, currency: str, amount: int) -> int:
        return amount

    async def prepare(self, payout: dict) -> Prepared:
        if self.down:
            raise ConnectionError("provider down")
        return Prepared(provider_ref=f"ref-{payout['idempotency_key']}")

    async def status(self, payout: dict) -> Outcome | None:
        if self.down:
            raise ConnectionError("provider down")
        key = payout["idempotency_key"]
        return Outcome("paid", payout["provider_ref"]) if key in self.sent else None

    async def send(self, payout: dict) -> Outcome:
        if self.refuse:
            return Outcome("failed", None, "refused by the stand-in")
        self.sent[payout["idempotency_key"]] = payout["amount"]
        self.sends.append(payout["idempotency_key"])
        if self.crash_after_send:
            raise ConnectionError("the answer was lost")
        return Outcome("paid", payout["provider_ref"])

    async def close(self) -> None:
        return None


async def set_method(market, creator: str, destination: str = "creator@wallet.test") -> None:
    async with market.db.write() as tx:
        await tx.execute("INSERT OR REPLACE INTO market_payout_methods (creator, kind, destination, ready, updated_at)"
                         " VALUES (?, 'lightning', ?, 1, ?)", (creator, destination, time.time()))
