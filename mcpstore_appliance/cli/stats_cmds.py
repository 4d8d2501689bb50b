"""`mcpstore stats`: the creator dashboard in the terminal (GET /api/market/dashboard with the user's token)."""

from __future__ import annotations

import argparse
import json

from ..market.money import journal_text
from .client import Registry

BAR_WIDTH = 40


def add_parsers(subparsers) -> None:
    stats = subparsers.add_parser(
        "stats", help="your earnings, sales, invocations, top buyers, refunds and payouts",
        description="The creator dashboard: earnings per currency (earned, available, pending payout, paid out), "
                    "sales and invocations per day, top buyers, refunds and recent payouts.")
    stats.add_argument("--org", help="an organization you own or administer, instead of yourself")
    stats.add_argument("--days", type=int, default=30, help="days of sales and invocations (1-366, default 30)")
    stats.add_argument("--registry")
    stats.add_argument("--json", action="store_true", help="print the dashboard as JSON")
    stats.set_defaults(func=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    registry = Registry.from_config(args.registry, need_token=True)
    query = {"days": str(args.days), **({"org": args.org} if args.org else {})}
    view = registry.json("GET", "/api/market/dashboard", query=query)
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    for line in render(view):
        print(line)
    return 0


def render(view: dict) -> list[str]:
    lines = [f"Earnings of {view['creator']}"]
    if not view["earnings"]:
        lines.append("  none yet")
    for currency, row in view["earnings"].items():
        parts = ", ".join(f"{key.replace('_', ' ')} {journal_text(currency, row[key])}"
                          for key in ("earned", "available", "pending", "paid_out"))
        lines.append(f"  {parts}")
    for title, key in ((f"Sales per day, last {view['days']} days", "sales"),
                       (f"Invocations per day, last {view['days']} days", "invocations")):
        lines += ["", title] + chart(view[key])
    lines += ["", "Top buyers"] + ([f"  {b['username']}: {journal_text(b['currency'], b['total'])}"
                                    f" ({b['payments']} payments)" for b in view["top_buyers"]] or ["  none yet"])
    lines += ["", "Refunds"] + ([f"  order {r['id']} {r['package']}: {r['amount_display']} {r['currency']}"
                                 for r in view["refunds"]] or ["  none"])
    lines += ["", "Payouts"] + ([f"  {p['id']}: {journal_text(p['currency'], p['amount'])} by {p['method']}, "
                                 f"{p['status']}{' (' + p['error'] + ')' if p.get('error') else ''}"
                                 for p in view["payouts"]] or ["  none yet"])
    return lines


def chart(series: list[dict]) -> list[str]:
    """Days with activity as text bars (all days would be a wall of empty lines)."""
    peak = max((point["count"] for point in series), default=0)
    total = sum(point["count"] for point in series)
    if not peak:
        return ["  none"]
    return [f"  {p['day']} {'#' * max(1, p['count'] * BAR_WIDTH // peak)} {p['count']}"
            for p in series if p["count"]] + [f"  total {total}"]
