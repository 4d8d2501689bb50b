"""The fallback load generator, used by the harness only when wrk is missing, as a separate process so that
it never shares an event loop with the server it measures; prints its figures as JSON.

    python benchmarks/python_load.py URL [--seconds 5] [--connections 32] [-H 'Name: value' ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp


async def _python_load(url: str, seconds: float, connections: int, headers: dict[str, str]) -> dict:
    """Keep-alive GETs from `connections` workers until `seconds` have passed."""
    latencies: list[float] = []
    counts = {"errors": 0, "non_2xx": 0}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while (started := time.perf_counter()) < deadline:
                try:
                    async with session.get(url) as response:
                        await response.read()
                        counts["non_2xx"] += response.status >= 400
                except aiohttp.ClientError:
                    counts["errors"] += 1
                    continue
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    latencies.sort()

    def pick(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0

    return {"rps": len(latencies) / elapsed, "p50_ms": pick(0.50), "p99_ms": pick(0.99),
            "requests": len(latencies), **counts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value', repeatable")
    args = parser.parse_args(argv)
    headers = {name.strip(): value.strip() for name, value in (h.split(":", 1) for h in args.header)}
    print(json.dumps(asyncio.run(_python_load(args.url, args.seconds, args.connections, headers))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
