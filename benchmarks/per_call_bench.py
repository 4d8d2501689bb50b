"""The per-call path: usage-token validation plus an atomic debit, under 32 concurrent callers.

In-process against the appliance's own services on a fresh data folder (real SQLite file in WAL mode, one
writer): each call is what the gateway does before a hosted per-call `tools/call` runs, i.e.
`UsageTokens.principal_for(token)` (signature checked on a token's first use, then its claims kept; expiry and
the revocation list on every call) and `MarketBilling.charge` (one write transaction: a guarded journal posting,
so a balance never goes below zero). Two ways to pay: from the caller's wallet (`Market.debit_call`), and from
the token's reservation (`Calls.bill`, what a self-hosted publisher's report also does). The sandbox call itself
is not included (see the gateway benchmark).

Prints calls/s, the process's CPU µs per call, p50 and p99 latency per call, and the cost of one signature check.

    .venv/bin/python benchmarks/per_call_bench.py [--calls 20000] [--callers 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import print_table  # noqa: E402
from mcpstore_appliance.app import build_services, close_services  # noqa: E402
from mcpstore_appliance.config import load_settings  # noqa: E402
from mcpstore_appliance.gateway.billing import MarketBilling  # noqa: E402
from mcpstore_appliance.market import journal  # noqa: E402
from mcpstore_appliance.market.journal import Line  # noqa: E402


async def setup(services, callers: int):
    accounts, db = services.accounts, services.db
    creator = await accounts.create_user("creator@example.com", "creator", "correct horse battery")
    now = time.time()
    async with db.write() as tx:
        package = await tx.insert("packages", {"namespace": "creator", "name": "meter", "owner_user_id": creator.id,
                                               "pricing_model": "per_call", "price_amount": 1, "currency": "usd",
                                               "created_at": now, "updated_at": now})
    usage = services.usage
    tokens = []
    for n in range(callers):
        user = await accounts.create_user(f"b{n}@example.com", f"buyer{n}", "correct horse battery")
        async with db.write() as tx:  # credits as if a top-up had been paid
            await journal.post(tx, "payment", f"bench:{n}", "usd", [Line("clearing", "bench", -10_000_000),
                                                                    Line("wallet", f"user:{user.id}", 10_000_000)])
        key = (await usage.licences.create(await accounts.principal_for_user(user.id), "creator", "meter"))
        tokens.append((await usage.exchange(key["licence_key"], 10_000))["token"])
    return usage, SimpleNamespace(pricing_model="per_call", package_id=package), tokens


async def run(usage, billing, session, tokens: list[str], calls: int, from_reservation: bool) -> dict:
    latencies: list[float] = []
    per_caller = calls // len(tokens)

    async def caller(token: str) -> None:
        for _ in range(per_caller):
            started = time.perf_counter()
            principal = await usage.principal_for(token)
            if not from_reservation:
                principal = principal.with_usage(None)  # pay from the wallet instead
            await billing.charge(principal, session)
            latencies.append(time.perf_counter() - started)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller(token) for token in tokens))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    latencies.sort()
    done = len(latencies)
    return {"calls/s": done / wall, "cpu µs/call": cpu / done * 1e6,
            "p50 ms": statistics.median(latencies) * 1e3, "p99 ms": latencies[int(done * 0.99)] * 1e3, "calls": done}


def signature_cost(usage, tokens: list[str], rounds: int = 2000) -> float:
    started = time.process_time()
    for n in range(rounds):
        usage._decode(tokens[n % len(tokens)])
    return (time.process_time() - started) / rounds * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--callers", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(environ={}, data_dir=os.path.join(folder, "data"), hosted={"backend": "off"})
        services = await build_services(settings, sandboxes=False)
        try:
            usage, session, tokens = await setup(services, args.callers)
            billing = MarketBilling(services.market, usage.calls)
            await run(usage, billing, session, tokens, len(tokens) * 20, True)  # warm: every token seen once
            rows = []
            for label, from_reservation in (("usage token + wallet debit", False),
                                            ("usage token + reservation debit", True)):
                figures = await run(usage, billing, session, tokens, args.calls, from_reservation)
                rows.append([label, args.callers, figures["calls"], round(figures["calls/s"]),
                             round(figures["cpu µs/call"]), round(figures["p50 ms"], 2), round(figures["p99 ms"], 2)])
            problems = await journal.check(services.db)
            print_table(["path", "callers", "calls", "calls/s", "CPU µs/call", "p50 ms", "p99 ms"], rows)
            print(f"\nEdDSA signature check of a token's first use: {signature_cost(usage, tokens):.0f} µs CPU")
            print(f"journal sound after the run: {not problems}")
        finally:
            await close_services(services)


if __name__ == "__main__":
    asyncio.run(main())
