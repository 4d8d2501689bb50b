"""A real database with users and packages for the market's unit tests (no HTTP)."""

from __future__ import annotations

import time

from mcpstore_appliance.config import MarketSettings
from mcpstore_appliance.db import Database
from mcpstore_appliance.market.providers.base import Payment
from mcpstore_appliance.market.providers.manual import ManualProvider
from mcpstore_appliance.market.service import Market


async def open_market(path, **settings) -> Market:
    db = await Database(path).open()
    return Market(db, MarketSettings(**settings), {"manual": ManualProvider()}, "http://127.0.0.1:1")


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
