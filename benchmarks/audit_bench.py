"""The audit log's cost under ordinary traffic (issue 21): audit events recorded per second alongside publishes
and reads, and request throughput with the log against the same appliance with audit.record switched off
(benchmarks/audit_off.py). Target: the log costs at most 10% of request throughput.

    .venv/bin/python benchmarks/audit_bench.py                       # 3 rounds x 2 modes x 8 s, about 1.5 min
    .venv/bin/python benchmarks/audit_bench.py --seconds 15 --rounds 5 --clients 16 --publishers 2

Per round and mode: a fresh data folder; an org `bench` whose member downloads its private bundle (each download
an audited event in the org's chain, written in its own transaction: the heaviest audited read), package data
reads (not audited), on 8 reader connections, and one connection publishing new versions all the time (each
with its audit event in the publish transaction). Connections are closed loops, one request in flight each
(search_load_bench.Client). Rounds alternate the two
modes so a neighbour's load falls on both; the ratio is the median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import BENCH_DIR, start_appliance  # noqa: E402
from benchmarks.report import machine_summary, print_table  # noqa: E402
from benchmarks.search_load_bench import Client, node_bundle, run_async  # noqa: E402


def bundle(name: str, version: str) -> bytes:
    return node_bundle(name, version, "Audit bench tool", ["audit"])


VERSIONS = itertools.count()  # across phases: a version is published once


def request(method: str, path: str, token: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
    if body:
        head += f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


@dataclass
class Phase:
    mode: str
    seconds: float = 0.0
    done: dict[str, int] = field(default_factory=lambda: {"download": 0, "read": 0, "publish": 0})
    failures: int = 0
    events: int = 0
    cpu_seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.done.values())

    @property
    def reads(self) -> int:
        return self.done["download"] + self.done["read"]

    def row(self, round_no: int) -> list[object]:
        return [round_no, self.mode, round(self.requests / self.seconds), round(self.done["download"] / self.seconds),
                round(self.done["read"] / self.seconds), self.done["publish"], round(self.events / self.seconds),
                self.failures, round(self.cpu_seconds / max(1, self.requests) * 1e6)]


async def drive(port: int, token: str, phase: Phase, clients: int, publishers: int, seconds: float, server) -> None:
    """`clients` readers (half audited downloads, half package data) and `publishers` publishing new versions,
    each a connection with one request in flight. Publishes wait for their checkpoint (up to
    ledger.checkpoint_interval_seconds), so they run beside the readers instead of holding readers up."""
    loop = asyncio.get_running_loop()
    download = request("GET", "/api/packages/bench/tool/versions/1.0.0/download", token)
    read = request("GET", "/api/packages/bench/tool", token)
    deadline = time.perf_counter() + seconds

    async def worker(seed: int, publishing: bool) -> None:
        rng = random.Random(seed)
        _, client = await loop.create_connection(Client, "127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                kind = "publish" if publishing else "download" if rng.random() < 0.5 else "read"
                raw = request("POST", "/api/packages?namespace=bench", token,
                              bundle("tool", f"2.0.{next(VERSIONS)}")) if publishing else \
                    download if kind == "download" else read
                try:
                    status = await client.request(raw)
                except (ConnectionError, asyncio.TimeoutError):
                    phase.failures += 1
                    client.transport.close()
                    _, client = await loop.create_connection(Client, "127.0.0.1", port)
                    continue
                if status == (201 if publishing else 200):
                    phase.done[kind] += 1
                else:
                    phase.failures += 1
        finally:
            client.transport.close()

    cpu_before, began = server.cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker(i, False) for i in range(clients)), *(worker(-1 - i, True) for i in range(publishers)))
    phase.seconds = time.perf_counter() - began
    phase.cpu_seconds = server.cpu_seconds() - cpu_before


def count_events(data: Path) -> int:
    conn = sqlite3.connect(f"file:{data / 'mcpstore.sqlite3'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
    finally:
        conn.close()


def one_phase(mode: str, args: argparse.Namespace) -> Phase:
    wrapper = [sys.executable, str(BENCH_DIR / "audit_off.py")]  # both modes, so they start alike
    with start_appliance(extra_args=["--log-level", "WARNING"], wrapper=wrapper, env={"AUDIT_BENCH_LOG": mode}) as app:
        token = app.create_token("member", scopes="read,publish", admin=False)
        app.admin("create-org", "--slug", "bench", "--owner", "member")
        run_async(publish_first(app.port, token))
        phase = Phase(mode)
        run_async(drive(app.port, token, Phase(mode), args.clients, args.publishers, 2.0, app))  # warm-up
        before = count_events(app.data_dir)
        run_async(drive(app.port, token, phase, args.clients, args.publishers, args.seconds, app))
        phase.events = count_events(app.data_dir) - before
    return phase


async def publish_first(port: int, token: str) -> None:
    _, client = await asyncio.get_running_loop().create_connection(Client, "127.0.0.1", port)
    try:
        status = await client.request(request("POST", "/api/packages?namespace=bench", token, bundle("tool", "1.0.0")))
        if status != 201:
            raise RuntimeError(f"the first publish answered {status}")
    finally:
        client.transport.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--publishers", type=int, default=1, help="connections that only publish")
    args = parser.parse_args(argv)
    print(machine_summary())
    rows, ratios, read_ratios, cpu_ratios = [], [], [], []
    for round_no in range(1, args.rounds + 1):
        modes = ("on", "off") if round_no % 2 else ("off", "on")
        phases = {mode: one_phase(mode, args) for mode in modes}
        ratios.append(phases["on"].requests / phases["on"].seconds / (phases["off"].requests / phases["off"].seconds))
        cpu_ratios.append(phases["off"].cpu_seconds / max(1, phases["off"].requests)
                          / (phases["on"].cpu_seconds / max(1, phases["on"].requests)))
        read_ratios.append(phases["on"].reads / phases["on"].seconds / (phases["off"].reads / phases["off"].seconds))
        rows += [phases[mode].row(round_no) for mode in ("on", "off")]
    print_table(["round", "audit log", "req/s", "downloads/s (audited)", "reads/s", "publishes", "audit events/s",
                 "failed", "server CPU µs/req"], rows)
    median = statistics.median(ratios)
    print(f"\nthroughput with the audit log: {median:.1%} of without (median of {len(ratios)} rounds; "
          f"per round {', '.join(f'{r:.1%}' for r in ratios)}); target >= 90%")
    print(f"reads (downloads + package data) with the audit log: {statistics.median(read_ratios):.1%} of without")
    print(f"by server CPU per request (steadier on a shared machine): {statistics.median(cpu_ratios):.1%} of the "
          "throughput without")
    return 0


if __name__ == "__main__":
    sys.exit(main())
