"""Concurrent small publishes for workers_bench.py, and the ledger check that follows them.

Each publisher is one keep-alive connection with one publish in flight (search_load_bench's Client: a few
microseconds of client CPU per request, so the load does not take the cores it measures). Every bundle is a
distinct package, so each 201 must leave exactly one `publish` leaf in the ledger, whichever worker took it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.search_load_bench import Client, node_bundle, publish_request, run_async


@dataclass
class PublishRun:
    seconds: float = 0.0
    published: list[str] = field(default_factory=list)  # sha256 of each bundle answered 201
    failures: Counter = field(default_factory=Counter)   # "HTTP 409", "ConnectionError", ...
    latencies: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.published) / self.seconds if self.seconds else 0.0

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000 if ordered else 0.0


def small_bundles(prefix: str, count: int) -> list[bytes]:
    """`count` valid node bundles of a few hundred bytes, each its own package (`{prefix}-{i}`)."""
    return [node_bundle(f"{prefix}-{i}", "1.0.0", f"Workers benchmark tool {i}", ["bench"]) for i in range(count)]


def publish_all(port: int, token: str, bundles: list[bytes], publishers: int, server=None) -> PublishRun:
    """Publish every bundle over `publishers` concurrent connections; `server.cpu_seconds()` is read around it."""
    run = PublishRun()
    cpu_before = server.cpu_seconds() if server else 0.0
    run_async(_drive(port, token, list(bundles), publishers, run))
    run.cpu_seconds = server.cpu_seconds() - cpu_before if server else 0.0
    return run


async def _drive(port: int, token: str, queue: list[bytes], publishers: int, run: PublishRun) -> None:
    loop = asyncio.get_running_loop()

    async def publisher() -> None:
        _, client = await loop.create_connection(Client, "127.0.0.1", port)
        try:
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                try:
                    status = await client.request(publish_request(token, body))
                except (ConnectionError, asyncio.TimeoutError) as exc:
                    run.failures[type(exc).__name__] += 1
                    client.transport.close()
                    _, client = await loop.create_connection(Client, "127.0.0.1", port)
                    continue
                if status != 201:
                    run.failures[f"HTTP {status}"] += 1
                    continue
                run.latencies.append(time.perf_counter() - started)
                run.published.append(hashlib.sha256(body).hexdigest())
        finally:
            client.transport.close()

    began = time.perf_counter()
    await asyncio.gather(*(publisher() for _ in range(publishers)))
    run.seconds = time.perf_counter() - began


def ledger_size(db_path: Path) -> int:
    with _read_only(db_path) as conn:
        return conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_leaves").fetchone()[0]


def ledger_check(db_path: Path, since: int, published: list[str]) -> tuple[list[str], int]:
    """Problems found (none: every 201 since leaf `since` has exactly one publish leaf, leaves are dense, and no
    publish leaf is unexplained), and how many checkpoints were signed since `since` (shared by publishes)."""
    with _read_only(db_path) as conn:
        count, top = conn.execute("SELECT COUNT(*), COALESCE(MAX(idx) + 1, 0) FROM ledger_leaves").fetchone()
        leaves = [json.loads(data) for (data,) in
                  conn.execute("SELECT data FROM ledger_leaves WHERE idx >= ? ORDER BY idx", (since,))]
        checkpoints = conn.execute("SELECT COUNT(*) FROM ledger_checkpoints WHERE size > ?", (since,)).fetchone()[0]
    problems = [f"{top - count} leaves missing below {top}"] if count != top else []
    in_ledger = Counter(leaf["sha256"] for leaf in leaves if leaf.get("kind") == "publish")
    expected = Counter(published)
    if in_ledger != expected:
        doubled = sum(1 for n in in_ledger.values() if n > 1)
        problems.append(f"{len(expected - in_ledger)} publishes without a leaf, {len(in_ledger - expected)} leaves "
                        f"without a publish, {doubled} bundles with two leaves or more")
    return problems, checkpoints


def _read_only(db_path: Path) -> closing[sqlite3.Connection]:
    """A read-only connection (the server keeps running and writing), closed on leaving the block."""
    return closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30))
