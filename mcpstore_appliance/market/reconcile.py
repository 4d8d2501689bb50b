"""Reconciliation: the journal against each provider (`mcpstore admin reconcile`, and on a timer).

- A payment the provider has and the journal lacks (a webhook that never came, LNbits has no retries) is credited
  through the same exactly-once path as a webhook.
- A journal credit the provider does not know (or says is unpaid) is reported in `market_findings` for the
  operator; money is never taken back automatically.
- The journal's own rules (every currency sums to zero, balances equal their entries) are checked too.
"""

from __future__ import annotations

import logging
import time

from . import journal, renewals, settle

log = logging.getLogger("mcpstore.market")


async def reconcile(market, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    since = now - market.settings.reconcile_window_seconds
    report = {"credited": [], "unknown_to_provider": [], "failed": [], "journal": []}
    for provider in market.providers.values():
        if provider.name == "manual":
            continue  # the record is the payment: nobody to ask
        try:
            await _credit_missing(market, provider, since, report)
            await _report_unknown(market, provider, since, report)
        except Exception as exc:  # a provider that is down: the others are still reconciled; asked again next run
            log.warning("reconciliation with %s failed: %s", provider.name, type(exc).__name__)
            report["failed"].append({"provider": provider.name, "error": type(exc).__name__})
    report["journal"] = await journal.check(market.db)
    return report


async def _credit_missing(market, provider, since: float, report: dict) -> None:
    db = market.db
    pending = await db.fetch_all("SELECT * FROM market_orders WHERE provider = ? AND status = 'pending'"
                                 " AND provider_ref IS NOT NULL AND created_at >= ?", (provider.name, since))
    checked = set()
    for order in pending:
        checked.add(order["id"])
        if await settle.settle(db, provider, order, await provider.check(order["provider_ref"])) == "credited":
            report["credited"].append({"provider": provider.name, "order": order["id"],
                                       "reference": order["provider_ref"]})
    for payment in await provider.recent(since):
        order = await renewals.order_of(db, provider.name, payment.reference)  # a subscription period's invoice
        if order is None:
            order = await db.fetch_one("SELECT * FROM market_orders WHERE provider = ? AND (provider_ref = ?"
                                       " OR id = ?)", (provider.name, payment.reference, payment.order_id or -1))
            if order is None or order["id"] in checked:
                continue
            if order["provider_ref"] != payment.reference:
                payment = await provider.check(order["provider_ref"])  # a checkout's intent: settle by the session
        if await settle.settle(db, provider, order, payment) == "credited":
            report["credited"].append({"provider": provider.name, "order": order["id"],
                                       "reference": order["provider_ref"]})


async def _report_unknown(market, provider, since: float, report: dict) -> None:
    db = market.db
    rows = await db.fetch_all("SELECT p.reference, p.order_id, p.amount, p.currency FROM market_payments p"
                              " WHERE p.provider = ? AND p.credited_at >= ? AND p.refunded_at IS NULL",
                              (provider.name, since))
    for row in rows:
        payment = await provider.check(row["reference"])
        if payment is None or not payment.paid:
            details = {"order": row["order_id"], "amount": row["amount"], "currency": row["currency"]}
            await settle.finding(db, provider.name, row["reference"], "unknown_to_provider", details)
            report["unknown_to_provider"].append({"provider": provider.name, "reference": row["reference"],
                                                  **details})
