"""Client commands of buyers: `mcpstore buy namespace/name` (over the registry's HTTP API)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from urllib.parse import quote

from .client import CliError, Registry

EXIT_NOT_PAID = 2  # the order is still unpaid when the wait ends


def add_parsers(subparsers) -> None:
    buy = subparsers.add_parser(
        "buy", help="buy access to a paid package",
        description="Order access: prints the Checkout link (card) or the Lightning invoice, then waits until the "
                    f"payment is confirmed. Exits 0 when paid, {EXIT_NOT_PAID} when the wait ends unpaid.")
    buy.add_argument("name", help="namespace/name, e.g. alice/weather")
    buy.add_argument("--amount", help="credit pack for a per-call package, e.g. 20.00 (default: the card minimum, "
                                      "or 100 calls in sat)")
    buy.add_argument("--provider", choices=["stripe", "lnbits"], help="default: by the price's currency")
    buy.add_argument("--org", help="buy for this organization (its owner or admin)")
    buy.add_argument("--seats", help="comma-separated members of --org (default: the whole org)")
    buy.add_argument("--wait", type=float, default=900, metavar="SECONDS", help="how long to wait (0: do not)")
    buy.add_argument("--registry")
    buy.add_argument("--json", action="store_true", help="print the order as JSON")
    buy.set_defaults(func=run_buy)


def run_buy(args: argparse.Namespace) -> int:
    namespace, _, name = args.name.partition("/")
    if not namespace or not name:
        raise CliError("give the package as namespace/name, e.g. alice/weather")
    registry = Registry.from_config(args.registry, need_token=True)
    body = {key: value for key, value in (("amount", args.amount), ("provider", args.provider), ("org", args.org))
            if value is not None}
    if args.seats:
        body["seats"] = [seat.strip() for seat in args.seats.split(",") if seat.strip()]
    order = registry.json("POST", f"/api/packages/{quote(namespace)}/{quote(name)}/purchase", json_body=body)
    if args.json:
        print(json.dumps(order, indent=2))
    else:
        print(f"order {order['id']}: {order['amount_display']} {order['currency']} ({order['kind']})")
        if order.get("bolt11"):
            print(f"pay this Lightning invoice:\n{order['bolt11']}")
        if order.get("pay_url"):
            print(f"pay on this page:\n{order['pay_url']}")
    sys.stdout.flush()
    return _wait(registry, order["id"], args.wait)


def _wait(registry: Registry, order_id: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while seconds > 0 and time.monotonic() < deadline:
        order = registry.json("GET", f"/api/market/orders/{order_id}", query={"refresh": "true"})
        if order["status"] == "paid":
            print(f"paid: order {order_id}")
            return 0
        time.sleep(2)
    print(f"order {order_id} is not paid yet; `mcpstore buy` again or check /api/market/orders/{order_id}",
          file=sys.stderr)
    return EXIT_NOT_PAID
