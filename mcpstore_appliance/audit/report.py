"""The compliance report's data for a period (an org's, or the whole site's): user access, revenue
transactions (straight from the market journal), security scan results, the latest ledger checkpoint and the
audit chain check. Rendered as printable HTML by web/pages/audit.py."""

from __future__ import annotations

import json
import time
from typing import Any

from ..db import Database
from .chain import utc_ms
from .service import AuditLog, Filters, event_view

ACCESS_ACTIONS = ("user.", "token.", "org.", "invite.", "device_token.", "sso.", "scim.")


async def compliance_report(db: Database, ledger, log: AuditLog, org_id: int | None, since_ms: int,
                            until_ms: int | None) -> dict[str, Any]:
    until_ms = until_ms or time.time_ns() // 1_000_000
    checkpoint = await ledger.ensure_checkpoint(await ledger.tree_size()) if await ledger.tree_size() else None
    chain_check = await log.verify()
    if org_id is not None:  # an org's report shows its own chain's problems only (chain number = org id)
        chain_check.problems = [p for p in chain_check.problems if p.chain == org_id]
    return {
        "org_id": org_id, "since": utc_ms(since_ms), "until": utc_ms(until_ms),
        "generated": utc_ms(time.time_ns() // 1_000_000),
        "access": await _access(log, org_id, since_ms, until_ms),
        "revenue": await revenue(db, org_id, since_ms / 1000, until_ms / 1000),
        "scans": await _scans(db, org_id, since_ms / 1000, until_ms / 1000),
        "checkpoint": checkpoint.summary() | {"note": checkpoint.note} if checkpoint else None,
        "chain": chain_check.as_dict(),
    }


async def _access(log: AuditLog, org_id: int | None, since_ms: int, until_ms: int) -> dict[str, Any]:
    events = [event_view(row) async for row in log.all_events(Filters(org_id=org_id, since_ms=since_ms,
                                                                       until_ms=until_ms))
              if row["action"].startswith(ACCESS_ACTIONS) or row["action"].startswith("policy.")]
    if org_id is not None:  # sign-ins are site events: an org's report adds those of its current members
        rows = await log.db.fetch_all(
            "SELECT e.*, NULL AS org_slug FROM audit_events e WHERE e.chain = 0 AND e.action LIKE 'user.%'"
            " AND e.at_ms >= ? AND e.at_ms < ? AND e.actor_id IN (SELECT user_id FROM memberships WHERE org_id = ?)"
            " ORDER BY e.id LIMIT 5000", (since_ms, until_ms, org_id))
        events = sorted(events + [event_view(r) for r in rows], key=lambda e: e["ts"])
    counts: dict[tuple[str, str], int] = {}
    for event in events:
        key = (event["action"], event["outcome"]["result"])
        counts[key] = counts.get(key, 0) + 1
    return {"events": events[-500:], "total": len(events),
            "counts": [{"action": a, "outcome": o, "count": n} for (a, o), n in sorted(counts.items())]}


async def revenue(db: Database, org_id: int | None, since: float, until: float) -> list[dict[str, Any]]:
    """Journal transactions of the period by kind and currency: how many and their gross amount (the sum of
    their positive entries; every transaction sums to zero). For an org: those of orders it bought or sold."""
    org_clause, params = "", [since, until]
    if org_id is not None:
        org_clause = (" AND t.order_id IN (SELECT id FROM market_orders WHERE buyer_org_id = ? OR creator = ?)")
        params += [org_id, f"org:{org_id}"]
    rows = await db.fetch_all(
        "SELECT t.kind, t.currency, COUNT(DISTINCT t.id) AS transactions,"
        " SUM(CASE WHEN e.amount > 0 THEN e.amount ELSE 0 END) AS gross"
        " FROM market_transactions t JOIN market_entries e ON e.transaction_id = t.id"
        f" WHERE t.created_at >= ? AND t.created_at < ?{org_clause} GROUP BY t.kind, t.currency"
        " ORDER BY t.currency, t.kind", params)
    return rows


async def _scans(db: Database, org_id: int | None, since: float, until: float) -> dict[str, Any]:
    clause, params = "", [since, until]
    if org_id is not None:
        clause, params = " AND p.org_id = ?", params + [org_id]
    rows = await db.fetch_all(
        "SELECT p.namespace, p.name, v.version, v.state, v.signature_status, v.findings_json, v.published_at"
        " FROM versions v JOIN packages p ON p.id = v.package_id"
        f" WHERE v.published_at >= ? AND v.published_at < ?{clause} ORDER BY v.published_at", params)
    states: dict[str, int] = {}
    flagged = []
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
        findings = json.loads(row["findings_json"] or "[]")
        if findings or row["state"] != "published":
            flagged.append({"release": f"{row['namespace']}/{row['name']}@{row['version']}", "state": row["state"],
                            "signature": row["signature_status"], "findings": len(findings),
                            "rules": sorted({str(f.get("rule") or f.get("id") or f.get("code") or "?")
                                             for f in findings if isinstance(f, dict)})})
    return {"versions": len(rows), "states": states, "flagged": flagged}
