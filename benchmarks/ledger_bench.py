"""Ledger benchmark: batched appends, proof latency at 1 M leaves, full verification vs raw hashing.

    .venv/bin/python benchmarks/ledger_bench.py                 # 1,000,000 leaves (about 2 minutes, ~0.7 GB)
    .venv/bin/python benchmarks/ledger_bench.py --leaves 100000 # a quicker run

Everything goes through the product code on a real SQLite file: `Ledger.append_many` inside `db.write()`
transactions of `--batch` events (the publish path's unit is one transaction; a busy registry groups
publishes the same way), `Ledger.inclusion_proof` / `consistency_proof` over the read-connection pool, and the
`mcpstore ledger verify` auditor. Raw hashing is `hashlib.sha256` over the same leaf bytes in the same run.
The tree audits run on the auditor's C module (`ledger/_merkle_native.c`) when it was built, and again on its
pure-Python path; each line says which.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nacl.signing import SigningKey  # noqa: E402

from mcpstore_appliance.config import LedgerSettings  # noqa: E402
from mcpstore_appliance.db import Database  # noqa: E402
from mcpstore_appliance.ledger import publish_event  # noqa: E402
from mcpstore_appliance.ledger.integrity import IntegrityCheck, native_available  # noqa: E402
from mcpstore_appliance.ledger.merkle import verify_consistency, verify_inclusion  # noqa: E402
from mcpstore_appliance.db import open_scan_connection  # noqa: E402
from mcpstore_appliance.ledger.service import Ledger  # noqa: E402


def event(i: int) -> dict:
    return publish_event(namespace=f"ns{i % 1000}", name=f"tool-{i}", version=f"1.{i % 100}.{i % 7}",
                         sha256=hashlib.sha256(i.to_bytes(8, "big")).hexdigest(), size=100_000 + i,
                         publisher=f"user{i % 5000}", signer_fingerprint=None, time="2026-01-01T00:00:00Z")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}, load {load}"


async def appends(ledger: Ledger, db: Database, leaves: int, batch: int) -> float:
    """Seconds spent in the write transactions (building the event dicts is the caller's work, not timed)."""
    spent = 0.0
    done = 0
    while done < leaves:
        count = min(batch, leaves - done)
        events = [event(i) for i in range(done, done + count)]
        started = time.perf_counter()
        async with db.write() as tx:
            await ledger.append_many(tx, events)
        spent += time.perf_counter() - started
        done += count
        if done % 100_000 < count:
            print(f"  ... {done:,} leaves, {done / spent:,.0f} appends/s so far", flush=True)
    return spent


async def single_appends(ledger: Ledger, db: Database, start: int, count: int) -> float:
    started = time.perf_counter()
    for i in range(start, start + count):
        async with db.write() as tx:
            await ledger.append(tx, event(i))
    return time.perf_counter() - started


async def proof_latency(ledger: Ledger, size: int, samples: int, cold: bool) -> tuple[list[float], list[float]]:
    rng = random.Random(7)
    root = await ledger.root(size)
    inclusion, consistency = [], []
    for _ in range(samples):
        index = rng.randrange(size)
        if cold:
            ledger.hashes.forget()  # measure the database reads, not the cache
        t = time.perf_counter()
        proof = await ledger.inclusion_proof(index, size)
        inclusion.append(time.perf_counter() - t)
        entry = await ledger.entry(index)
        verify_inclusion(index, size, entry.leaf_hash, proof, root)
    for _ in range(samples):
        old = rng.randrange(1, size)
        if cold:
            ledger.hashes.forget()
        t = time.perf_counter()
        proof = await ledger.consistency_proof(old, size)
        consistency.append(time.perf_counter() - t)
        verify_consistency(old, size, await ledger.root(old), root, proof)
    return inclusion, consistency


def _leaves(db_path: Path, part: int = 0, parts: int = 1) -> list[bytes]:
    conn = open_scan_connection(db_path)
    try:
        return [bytes(row[0]) for row in conn.execute(
            "SELECT data FROM ledger_leaves WHERE idx % ? = ? ORDER BY idx", (parts, part))]
    finally:
        conn.close()


def _time_hashing(leaves: list[bytes]) -> float:
    sha256 = hashlib.sha256
    t = time.perf_counter()
    for data in leaves:
        sha256(data).digest()
    return time.perf_counter() - t


def _raw_worker(db_path: Path, part: int, barrier, results) -> None:
    leaves = _leaves(db_path, part, 2)  # its own copy: reading the parent's list would copy pages (refcounts)
    for _ in range(3):
        barrier.wait()
        results.put(_time_hashing(leaves))


def raw_hashing(db_path: Path) -> tuple[float, float, int]:
    """hashlib.sha256 over every stored leaf, timed on bytes already in memory (best of 3): in this process, and
    split between two processes started together (what the machine's second core adds to plain hashing)."""
    leaves = _leaves(db_path)
    one = min(_time_hashing(leaves) for _ in range(3))
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    workers = [ctx.Process(target=_raw_worker, args=(db_path, part, barrier, results)) for part in (0, 1)]
    for worker in workers:
        worker.start()
    two = float("inf")
    for _ in range(3):
        barrier.wait()
        two = min(two, max(results.get(), results.get()))  # both started at the barrier
    for worker in workers:
        worker.join()
    return one, two, len(leaves)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the audit's worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def verify(db_path: Path, key: SigningKey) -> None:
    raw_seconds, raw_seconds_2, count = raw_hashing(db_path)
    audits = []
    paths = [True, False] if native_available() else [False]  # the C module when built, then pure Python
    runs = [(workers, False, native) for native in paths for workers in (1, 2)] + [(2, True, paths[0])]
    for workers, index, native in runs:
        t, cpu = time.perf_counter(), cpu_seconds()
        report = IntegrityCheck(db_path, key, workers=workers, index=index, native=native).run()
        audit_seconds, used = time.perf_counter() - t, cpu_seconds() - cpu
        assert report.ok, report.problems[:5]
        audits.append((workers, index, native, report.size, audit_seconds, used))
    # raw hashing once more after the audits: the faster of the two is the yardstick, so a neighbour's burst
    # during the first measurement cannot flatter the ratios
    raw_seconds = min(raw_seconds, min(_time_hashing(leaves) for leaves in [_leaves(db_path)] for _ in range(3)))
    raw_rate, raw_rate_2 = count / raw_seconds, count / raw_seconds_2
    print(f"raw hashlib:  sha256 of each of the {count:,} leaves (in memory, best before and after the audits): "
          f"{raw_rate:,.0f} leaves/s")
    print(f"              the same split between 2 processes: {raw_rate_2:,.0f} leaves/s "
          f"({raw_rate_2 / raw_rate:.2f} x one process: what the second core adds now)")
    for workers, index, native, size, audit_seconds, used in audits:
        rate = size / audit_seconds
        what = "tree + checkpoints + lookup index" if index else "tree (every leaf and stored hash) + checkpoints"
        print(f"full verify:  {workers} process(es), {'C module' if native else 'pure Python'}, {what}: "
              f"{audit_seconds:.2f} s = {rate:,.0f} leaves/s = {rate / raw_rate:.2f} x the raw rate")
        if not index:
            # the tree needs 2n - 1 SHA-256 calls for n leaves (each leaf, each interior node), the raw figure n.
            # CPU time (this process and its workers) is less at the mercy of other work than wall time: at
            # W leaves per CPU second, p free cores would verify p * W leaves/s.
            print(f"              = {2 * rate:,.0f} SHA-256 calls/s; {size / used:,.0f} leaves per CPU second "
                  f"({used / size * 1e9:,.0f} ns of CPU per leaf, raw hashing {1e9 / raw_rate:,.0f} ns); "
                  f"{used / audit_seconds:.2f} cores busy")


async def run(args: argparse.Namespace) -> None:
    folder = Path(args.dir or tempfile.mkdtemp(prefix="ledger-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    db_path = folder / "ledger.sqlite3"
    key = SigningKey(hashlib.sha256(b"bench").digest())
    if args.verify_only:
        if not db_path.exists():
            raise SystemExit(f"--verify-only needs a database a previous run left in --dir ({db_path})")
        print(f"machine: {machine()}")
        verify(db_path, key)
        return
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    db = await Database(db_path).open()
    ledger = Ledger(db, key, "bench.example/ledger", LedgerSettings(checkpoint_interval_seconds=0))
    print(f"machine: {machine()}")
    print(f"database: {db_path} (WAL, synchronous=NORMAL as the appliance runs it)")

    seconds = await appends(ledger, db, args.leaves, args.batch)
    print(f"appends:      {args.leaves:,} leaves in batches of {args.batch}: {seconds:.1f} s = "
          f"{args.leaves / seconds:,.0f} appends/s")
    single = 2000
    s_seconds = await single_appends(ledger, db, args.leaves, single)
    size = args.leaves + single
    print(f"single:       {single:,} appends, one transaction each: {single / s_seconds:,.0f} appends/s")
    checkpoint = await ledger.ensure_checkpoint(size)
    print(f"checkpoint:   size {checkpoint.size:,} signed")

    for cold in (True, False):
        inclusion, consistency = await proof_latency(ledger, size, args.samples, cold)
        label = "cold cache" if cold else "warm cache"
        print(f"inclusion proof at {size:,} ({label}):   p50 {percentile(inclusion, 50) * 1e3:.3f} ms, "
              f"p99 {percentile(inclusion, 99) * 1e3:.3f} ms")
        print(f"consistency proof at {size:,} ({label}): p50 {percentile(consistency, 50) * 1e3:.3f} ms, "
              f"p99 {percentile(consistency, 99) * 1e3:.3f} ms")
    rng = random.Random(11)
    lookups = []
    for _ in range(min(args.samples, 300)):
        i = rng.randrange(size)
        t = time.perf_counter()
        found = await ledger.lookup(event(i)["sha256"])
        lookups.append(time.perf_counter() - t)
        assert found == [i], (i, found)
    print(f"lookup by sha256 at {size:,}: p50 {percentile(lookups, 50) * 1e3:.3f} ms, "
          f"p99 {percentile(lookups, 99) * 1e3:.3f} ms")
    await ledger.close()
    await db.close()

    verify(db_path, key)
    size_mb = sum(Path(str(db_path) + s).stat().st_size for s in ("", "-wal") if Path(str(db_path) + s).exists())
    print(f"database size: {size_mb / 1e6:,.0f} MB; load average now {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not args.keep and not args.dir:
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=256, help="events per write transaction")
    parser.add_argument("--samples", type=int, default=1000, help="proofs per latency measurement")
    parser.add_argument("--dir", help="folder for the database (default: a temporary folder, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--verify-only", action="store_true",
                        help="only the raw hashing and full verification figures, on the database a previous run "
                             "left in --dir")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
