"""Crediting: a payment reaches the journal exactly once, and only after its provider confirmed it.

Webhooks, reconciliation and success pages all end in `settle`. It asks the provider about the payment (outside any
transaction: that is a network call), then in one write transaction inserts the payment under its UNIQUE
(provider, reference) key, posts the journal entries, marks the order paid and grants or extends the entitlement.
A second report of the same payment, whenever it arrives, finds the key taken and changes nothing.
"""

from __future__ import annotations

import json
import logging
import time

from .. import audit
from . import entitlements, journal
from .journal import PLATFORM, Line
from .money import split, to_journal
from .providers.base import Payment

log = logging.getLogger("mcpstore.market")


async def settle(db, provider, order: dict, payment: Payment | None) -> str:
    """Credit `order` with `payment` (the provider's own answer). Returns what happened: credited, duplicate,
    not_paid, mismatch."""
    if payment is None or not payment.paid:
        return "not_paid"
    if payment.currency != order["currency"] or payment.amount != order["amount"] or \
            payment.order_id not in (None, order["id"]):
        await finding(db, provider.name, payment.reference, "amount_mismatch", {
            "order": order["id"], "expected": [order["amount"], order["currency"]],
            "paid": [payment.amount, payment.currency]})
        return "mismatch"
    key = payment.period or payment.reference
    async with db.write() as tx:
        if await tx.fetch_value("SELECT 1 FROM market_payments WHERE provider = ? AND reference = ?",
                                (provider.name, key)):
            return "duplicate"
        current = await tx.fetch_one("SELECT * FROM market_orders WHERE id = ?", (order["id"],))
        if current["status"] == "refunded":
            return "refunded"
        txn = await post_payment(tx, provider.name, key, current, payment.fee)
        await tx.insert("market_payments", {
            "provider": provider.name, "reference": key, "order_id": current["id"], "amount": payment.amount,
            "currency": payment.currency, "fee": payment.fee, "payment_id": payment.payment_id,
            "transaction_id": txn, "credited_at": time.time()})
        now = time.time()
        await tx.execute("UPDATE market_orders SET status = 'paid', paid_at = coalesce(paid_at, ?) WHERE id = ?",
                         (now, current["id"]))
        if current["package_id"] is not None:
            await entitlements.extend_for_order(tx, current, now)
        await audit.record(tx, audit.SYSTEM, "market.payment", target=f"order:{current['id']}",
                           org_id=current["buyer_org_id"], details={"provider": provider.name, "reference": key,
                                                                    "amount": payment.amount,
                                                                    "currency": payment.currency})
    log.info("credited order %s by %s payment %s", order["id"], provider.name, key)
    return "credited"


async def post_payment(tx, provider: str, key: str, order: dict, fee: int = 0) -> int:
    """The journal entries of one paid order (or subscription period): credits to the buyer's wallet, or the
    split between creator and platform fixed on the order; the provider's fee as the platform's expense."""
    amount, currency = to_journal(order["amount"], order["currency"])
    if order["kind"] == "credits":
        lines = [Line("clearing", provider, -amount), Line("wallet", wallet_of(order), amount)]
    else:
        creator, platform = split(amount, order["creator_share_bp"])
        lines = [Line("clearing", provider, -amount), Line("creator", order["creator"], creator),
                 Line("revenue", PLATFORM, platform)]
    txn = await journal.post(tx, "payment", f"pay:{provider}:{key}", currency, lines, order_id=order["id"])
    if fee:
        fee_amount, _ = to_journal(fee, order["currency"])
        await journal.post(tx, "fee", f"fee:{provider}:{key}", currency,
                           [Line("clearing", provider, fee_amount), Line("fees", PLATFORM, -fee_amount)],
                           order_id=order["id"])
    return txn


def wallet_of(order: dict) -> str:
    """The credit wallet a credits order fills: the org's for an org's top-up, else the buyer's own."""
    return f"org:{order['buyer_org_id']}" if order["scope"] == "org" else f"user:{order['buyer_user_id']}"


async def refund(db, provider_name: str, payment_id: str) -> list[str]:
    """Reverse every credited payment of `payment_id` (after the provider confirmed the refund or dispute):
    its journal entries, the order, the entitlement. Once per payment, however often it is reported."""
    done = []
    async with db.write() as tx:
        rows = await tx.fetch_all("SELECT * FROM market_payments WHERE provider = ? AND payment_id = ?"
                                  " AND refunded_at IS NULL", (provider_name, payment_id))
        for row in rows:
            await journal.reverse(tx, f"refund:{provider_name}:{row['reference']}",
                                  f"pay:{provider_name}:{row['reference']}")
            fee_ref = f"fee:{provider_name}:{row['reference']}"
            if await journal.is_posted(tx, fee_ref):
                await journal.reverse(tx, f"refund-fee:{provider_name}:{row['reference']}", fee_ref)
            await tx.execute("UPDATE market_payments SET refunded_at = ? WHERE id = ?", (time.time(), row["id"]))
            await tx.execute("UPDATE market_orders SET status = 'refunded' WHERE id = ?", (row["order_id"],))
            await entitlements.revoke_for_order(tx, row["order_id"])
            buyer_org = await tx.fetch_value("SELECT buyer_org_id FROM market_orders WHERE id = ?", (row["order_id"],))
            await audit.record(tx, audit.SYSTEM, "market.refund", target=f"order:{row['order_id']}", org_id=buyer_org,
                               details={"provider": provider_name, "reference": row["reference"]})
            done.append(row["reference"])
    return done


async def finding(db, provider: str, reference: str, kind: str, details: dict) -> None:
    async with db.write() as tx:
        await tx.execute("INSERT OR IGNORE INTO market_findings (provider, reference, kind, details, found_at)"
                         " VALUES (?, ?, ?, ?, ?)", (provider, reference, kind, json.dumps(details), time.time()))


async def seen_event(db, provider: str, event_id: str, kind: str, outcome: str) -> None:
    async with db.write() as tx:
        await tx.execute("INSERT INTO market_webhook_events (provider, event_id, kind, outcome, received_at)"
                         " VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider, event_id) DO UPDATE SET outcome ="
                         " excluded.outcome, received_at = excluded.received_at",
                         (provider, event_id[:200], kind, outcome, time.time()))


FAILURES_KEPT = 1000  # a flood of forged deliveries must not grow the table without bound


async def webhook_failure(db, provider: str, code: str, message: str) -> None:
    """A delivery refused or not followed, for the operator's admin page (the newest FAILURES_KEPT are kept)."""
    async with db.write() as tx:
        newest = await tx.insert("market_webhook_failures", {"provider": provider[:20], "code": code[:60],
                                                             "message": message[:300], "received_at": time.time()})
        await tx.execute("DELETE FROM market_webhook_failures WHERE id <= ?", (newest - FAILURES_KEPT,))
