"""What creators, buyers and the operator see of the market: plain values for web/api_dashboards.py, the pages
and `mcpstore stats`. Every query here is scoped by the caller's own creator account or user id, which
web/ takes from the credential (never from the request), so nobody sees anyone else's money.

Earnings per journal currency (usd and eur in cents, msat):
- available: the creator account's balance, what the next payout batch pays once it reaches the minimum;
- pending: in payouts on their way (reserved or sending);
- paid_out: payouts the provider confirmed;
- earned: everything credited to the creator (sales and per-call debits), less refunds.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from ..catalog.pricing import format_minor_units
from . import journal
from .orders import order_json

DAY = 86400


def days_back(days: int, now: float) -> list[str]:
    today = datetime.fromtimestamp(now, timezone.utc).date()
    return [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]


def series(rows: list[dict], days: list[str], value: str = "count") -> list[dict]:
    by_day = {row["day"]: int(row[value]) for row in rows}
    return [{"day": day, "count": by_day.get(day, 0)} for day in days]


def owner_clause(creator: str) -> tuple[str, tuple]:
    """SQL on `p` (packages) for the creator's packages: user:<id> owns personal ones, org:<id> the org's."""
    kind, _, ident = creator.partition(":")
    if kind == "org":
        return "p.org_id = ?", (int(ident),)
    return "p.org_id IS NULL AND p.owner_user_id = ?", (int(ident),)


async def earnings(db, creator: str) -> dict:
    out: dict = {}
    for row in await db.fetch_all("SELECT currency, balance FROM market_accounts WHERE kind = 'creator' AND owner = ?",
                                  (creator,)):
        out.setdefault(row["currency"], {})["available"] = row["balance"]
    for row in await db.fetch_all("SELECT currency, status, sum(amount) AS total FROM market_payouts"
                                  " WHERE creator = ? AND status IN ('reserved', 'sending', 'paid')"
                                  " GROUP BY currency, status", (creator,)):
        key = "paid_out" if row["status"] == "paid" else "pending"
        entry = out.setdefault(row["currency"], {})
        entry[key] = entry.get(key, 0) + row["total"]
    for row in await db.fetch_all(
            "SELECT a.currency, sum(e.amount) AS total FROM market_entries e JOIN market_accounts a ON a.id ="
            " e.account_id JOIN market_transactions t ON t.id = e.transaction_id WHERE a.kind = 'creator'"
            " AND a.owner = ? AND t.kind IN ('payment', 'debit', 'refund') GROUP BY a.currency", (creator,)):
        out.setdefault(row["currency"], {})["earned"] = row["total"]
    return {currency: {key: values.get(key, 0) for key in ("earned", "available", "pending", "paid_out")}
            for currency, values in sorted(out.items())}


async def creator_dashboard(db, creator: str, days: int = 30, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    since = now - days * DAY
    span = days_back(days, now)
    clause, params = owner_clause(creator)
    sales = await db.fetch_all(
        "SELECT date(paid_at, 'unixepoch') AS day, count(*) AS count FROM market_orders WHERE creator = ?"
        " AND paid_at >= ? AND status IN ('paid', 'refunded') GROUP BY day", (creator, since))
    calls = await db.fetch_all(
        f"SELECT date(i.at, 'unixepoch') AS day, count(*) AS count FROM invocations i JOIN packages p"
        f" ON p.id = i.package_id WHERE {clause} AND i.at >= ? GROUP BY day", (*params, since))
    return {"creator": creator, "days": days, "earnings": await earnings(db, creator),
            "sales": series(sales, span), "invocations": series(calls, span),
            "top_buyers": await top_buyers(db, creator), "refunds": await refunds(db, creator)}


async def top_buyers(db, creator: str, limit: int = 10) -> list[dict]:
    """Who paid the creator most, per currency: orders and per-call debits (the creator's share)."""
    rows = await db.fetch_all(
        "SELECT u.username, a.currency, sum(e.amount) AS total, count(DISTINCT t.id) AS payments"
        " FROM market_entries e JOIN market_accounts a ON a.id = e.account_id"
        " JOIN market_transactions t ON t.id = e.transaction_id"
        " LEFT JOIN market_orders o ON o.id = t.order_id"
        " LEFT JOIN market_entries we ON we.transaction_id = t.id AND t.kind = 'debit'"
        "  AND we.account_id IN (SELECT id FROM market_accounts WHERE kind = 'wallet')"
        " LEFT JOIN market_accounts wa ON wa.id = we.account_id"
        " JOIN users u ON u.id = coalesce(o.buyer_user_id, CAST(substr(wa.owner, 6) AS INTEGER))"
        " WHERE a.kind = 'creator' AND a.owner = ? AND t.kind IN ('payment', 'debit')"
        " GROUP BY u.id, a.currency ORDER BY total DESC LIMIT ?", (creator, limit))
    return [dict(row) for row in rows]


async def refunds(db, creator: str, limit: int = 50) -> list[dict]:
    rows = await db.fetch_all(
        "SELECT o.id, p.namespace || '/' || p.name AS package, o.amount, o.currency, r.created_at AS refunded_at"
        " FROM market_orders o JOIN packages p ON p.id = o.package_id JOIN market_transactions r"
        " ON r.order_id = o.id AND r.kind = 'refund' AND r.reference LIKE 'refund:%' WHERE o.creator = ?"
        " ORDER BY r.created_at DESC LIMIT ?", (creator, limit))
    return [{**dict(row), "amount_display": format_minor_units(row["amount"], row["currency"])} for row in rows]


# -- buyers ---------------------------------------------------------------------------------------------

async def subscriptions(db, user_id: int, now: float | None = None) -> list[dict]:
    """The caller's own subscriptions (bought for themselves), active or lapsed, with the next renewal."""
    now = time.time() if now is None else now
    rows = await db.fetch_all(
        "SELECT e.id, o.id AS order_id, p.namespace || '/' || p.name AS package, e.major, e.period_end,"
        " e.revoked_at, o.provider, o.cancelled_at, o.amount, o.currency FROM market_entitlements e JOIN packages p ON p.id = e.package_id"
        " JOIN market_orders o ON o.id = e.order_id WHERE e.kind = 'subscription' AND o.buyer_user_id = ?"
        " ORDER BY e.period_end DESC", (user_id,))
    return [{**dict(row), "active": row["revoked_at"] is None and (row["period_end"] or 0) > now,
             "next_renewal": row["period_end"] if row["revoked_at"] is None and row["cancelled_at"] is None
             else None,
             "amount_display": format_minor_units(row["amount"], row["currency"])} for row in rows]


async def receipt(db, user_id: int, order_id: int) -> dict | None:
    """A paid (or since refunded) order of the caller, as a receipt; None for anyone else's or an unpaid one."""
    order = await db.fetch_one("SELECT * FROM market_orders WHERE id = ? AND buyer_user_id = ?"
                               " AND status IN ('paid', 'refunded')", (order_id, user_id))
    if order is None:
        return None
    package = await db.fetch_value("SELECT namespace || '/' || name FROM packages WHERE id = ?",
                                   (order["package_id"],)) if order["package_id"] else None
    payments = await db.fetch_all("SELECT reference, amount, currency, credited_at, refunded_at FROM market_payments"
                                  " WHERE order_id = ? ORDER BY id", (order_id,))
    buyer = await db.fetch_one("SELECT username, email FROM users WHERE id = ?", (user_id,))
    return {**order_json(order), "package": package, "buyer": dict(buyer),
            "payments": [{**dict(p), "amount_display": format_minor_units(p["amount"], p["currency"])}
                         for p in payments]}


# -- the operator ---------------------------------------------------------------------------------------

async def admin_overview(db) -> dict:
    revenue = {row["currency"]: row["balance"] for row in await db.fetch_all(
        "SELECT currency, balance FROM market_accounts WHERE kind = 'revenue' AND owner = ?", (journal.PLATFORM,))}
    fees = {row["currency"]: -row["balance"] for row in await db.fetch_all(
        "SELECT currency, balance FROM market_accounts WHERE kind = 'fees' AND owner = ?", (journal.PLATFORM,))}
    owed = {row["currency"]: row["total"] for row in await db.fetch_all(
        "SELECT currency, sum(balance) AS total FROM market_accounts WHERE kind = 'creator' GROUP BY currency")}
    currencies = sorted(set(revenue) | set(fees) | set(owed))
    failed = await db.fetch_all("SELECT provider, code, message, received_at FROM market_webhook_failures"
                                " ORDER BY id DESC LIMIT 100")
    unfollowed = await db.fetch_all(
        "SELECT provider, event_id, kind, outcome, received_at FROM market_webhook_events WHERE outcome IN"
        " ('unknown_order', 'unknown', 'mismatch', 'not_paid', 'not_refunded') ORDER BY received_at DESC LIMIT 100")
    findings = await db.fetch_all("SELECT provider, reference, kind, details, found_at FROM market_findings"
                                  " ORDER BY id DESC LIMIT 100")
    payouts = await db.fetch_all("SELECT id, creator, currency, amount, method, status, error, created_at"
                                 " FROM market_payouts WHERE status <> 'paid' ORDER BY id DESC LIMIT 100")
    return {"revenue": {c: {"revenue": revenue.get(c, 0), "fees": fees.get(c, 0), "owed_to_creators": owed.get(c, 0)}
                        for c in currencies},
            "failed_webhooks": [dict(r) for r in failed], "unfollowed_webhooks": [dict(r) for r in unfollowed],
            "reconciliation": {"findings": [dict(r) for r in findings], "journal": await journal.check(db)},
            "open_or_failed_payouts": [dict(r) for r in payouts]}
