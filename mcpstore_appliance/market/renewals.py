"""Lightning subscriptions renew by invoice: a new invoice per period, made `renewal_notice_days` before the paid
period ends. That invoice (one per order and period: UNIQUE (order_id, period_end)) is the reminder: the buyer's
purchases page and API show it with its bolt11 until it is paid, and an audit event records it. Paid, it is
credited like any payment (settle.py: once per payment hash, however often or in whatever order its webhooks
come) and the subscription moves on by one month; unpaid, access simply ends with the paid period.

Stripe renews its own subscriptions by webhook; only providers without them (LNbits) are renewed here.
"""

from __future__ import annotations

import logging
import time

from .. import audit
from ..catalog.pricing import format_minor_units
from .providers.base import Charge

log = logging.getLogger("mcpstore.market")
INVOICED_BY_US = ("lnbits",)

DUE_SQL = (
    "SELECT o.*, e.period_end FROM market_orders o JOIN market_entitlements e ON e.order_id = o.id"
    " WHERE o.kind = 'subscription' AND o.status = 'paid' AND o.cancelled_at IS NULL AND o.provider = ?"
    " AND e.revoked_at IS NULL"
    " AND e.period_end IS NOT NULL AND e.period_end > ? AND e.period_end <= ?"
    " AND NOT EXISTS (SELECT 1 FROM market_renewals r WHERE r.order_id = o.id AND r.period_end = e.period_end)")


async def invoice_due(market, now: float | None = None) -> list[dict]:
    """Make the renewal invoice of every Lightning subscription whose period ends within the notice; returns
    the renewals made (none twice for a period, whoever runs this and how often)."""
    now = time.time() if now is None else now
    notice = market.settings.renewal_notice_days * 86400
    made = []
    for name in INVOICED_BY_US:
        provider = market.providers.get(name)
        if provider is None:
            continue
        for order in await market.db.fetch_all(DUE_SQL, (name, now, now + notice)):
            made.append(await _invoice(market, provider, order))
    return [renewal for renewal in made if renewal]


async def _invoice(market, provider, order: dict) -> dict | None:
    package = await market.db.fetch_value("SELECT namespace || '/' || name FROM packages WHERE id = ?",
                                          (order["package_id"],))
    # payable until the paid period ends: the reminder stays good for the whole notice
    charge = Charge(order["id"], order["amount"], order["currency"], f"mcpstore: {package} (renewal)", True,
                    f"{market.base_url}/account/purchases", f"{market.base_url}/account/purchases",
                    expiry_seconds=max(60, int(order["period_end"] - time.time())))
    started = await provider.start(charge, f"{market.base_url}/api/payments/{provider.name}/webhook")
    async with market.db.write() as tx:
        taken = await tx.fetch_value("SELECT 1 FROM market_renewals WHERE order_id = ? AND period_end = ?",
                                     (order["id"], order["period_end"]))
        if taken:  # another process made this period's invoice meanwhile; ours is never shown, expires unpaid
            return None
        renewal = {"order_id": order["id"], "period_end": order["period_end"], "provider": provider.name,
                   "reference": started.reference, "bolt11": started.bolt11, "created_at": time.time(),
                   "expires_at": started.expires_at}
        await tx.insert("market_renewals", renewal)
        await audit.record(tx, audit.SYSTEM, "market.renewal_invoice", target=f"order:{order['id']}",
                           org_id=order["buyer_org_id"], details={"package": package, "due": order["period_end"],
                                                                  "reference": started.reference})
    log.info("renewal invoice for order %s (period ending %s)", order["id"], order["period_end"])
    return renewal


async def order_of(db, provider: str, reference: str | None) -> dict | None:
    """The subscription order a renewal invoice belongs to, or None when `reference` is no renewal's."""
    if not reference:
        return None
    return await db.fetch_one("SELECT o.* FROM market_renewals r JOIN market_orders o ON o.id = r.order_id"
                              " WHERE r.provider = ? AND r.reference = ?", (provider, reference))


async def due_for(db, user_id: int, now: float | None = None) -> list[dict]:
    """The caller's renewal invoices still unpaid and payable (the reminder)."""
    rows = await db.fetch_all(
        "SELECT r.order_id, r.period_end AS due, r.bolt11, r.reference, r.expires_at, o.amount, o.currency,"
        " p.namespace || '/' || p.name AS package FROM market_renewals r JOIN market_orders o ON o.id = r.order_id"
        " JOIN packages p ON p.id = o.package_id WHERE o.buyer_user_id = ? AND o.status = 'paid'"
        " AND o.cancelled_at IS NULL"
        " AND r.expires_at > ? AND NOT EXISTS (SELECT 1 FROM market_payments m WHERE m.provider = r.provider"
        "  AND m.reference = r.reference) ORDER BY r.period_end", (user_id, time.time() if now is None else now))
    return [{**dict(row), "amount_display": format_minor_units(row["amount"], row["currency"])} for row in rows]


async def cancel(db, actor: audit.Actor, order_id: int) -> dict:
    """The buyer (`actor`) cancels their Lightning subscription: no more renewal invoices (an unpaid one is withdrawn from
    the reminder); access lasts to the end of the paid period. Cancelling twice changes nothing."""
    from ..errors import InvalidInput, NotFound

    async with db.write() as tx:
        order = await tx.fetch_one("SELECT * FROM market_orders WHERE id = ? AND buyer_user_id = ?",
                                   (order_id, actor.id))
        if order is None:
            raise NotFound("no such order", code="order_not_found")
        if order["kind"] != "subscription" or order["provider"] not in INVOICED_BY_US:
            raise InvalidInput("only Lightning subscriptions are cancelled here (a card subscription ends in the"
                               " payment provider's portal)", code="not_cancellable")
        if order["cancelled_at"] is None:
            await tx.execute("UPDATE market_orders SET cancelled_at = ? WHERE id = ?", (time.time(), order_id))
            await audit.record(tx, actor, "market.cancel", target=f"order:{order_id}", org_id=order["buyer_org_id"])
        until = await tx.fetch_value("SELECT period_end FROM market_entitlements WHERE order_id = ?", (order_id,))
    return {"order": order_id, "cancelled": True, "access_until": until}
