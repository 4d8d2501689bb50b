"""Every core (issue 22): `mcpstore serve --workers 2` against one worker, in one run.

    .venv/bin/python benchmarks/workers_bench.py                      # ~4 min (+ seeding the catalog once)
    .venv/bin/python benchmarks/workers_bench.py --rounds 5 --seconds 5 --sizes 50,200

Two appliances run side by side, one with `--workers 1` and one with `--workers 2`, each on its own copy of
search_load_bench's seeded catalog (1,500 packages), with their defaults (a ledger checkpoint every 0.1 s at
most, shared by the publishes that land in it). Measured:

1. Reads with wrk (32 connections): anonymous package data rotating over 200 packages, and searches
   (`/api/packages?q=...`, `Cache-Control: no-cache` so every one is ranked). Rounds alternate 1 and 2
   workers; the scaling is the median of the rounds' ratios. wrk shares the two cores, so the server's CPU
   µs per request (supervisor and workers summed) and the cores it kept busy are printed too.
2. Small publishes from 16 concurrent publishers, each bundle its own package; 201s and failures counted, then
   the ledger is read (read-only): one `publish` leaf per 201, dense indexes. A publish answers with its
   inclusion proof, so it waits for the next checkpoint, and checkpoints are spaced by
   `ledger.checkpoint_interval_seconds` (0.1 s): 16 publishers in a closed loop then make at most about 160 a
   second. `--intervals` runs the publishes again on fresh appliances with other intervals (1 s, the default
   before, caps them at about 16 a second).
3. 50 and 200 MiB bundles published to 2 workers against the physical limit of the same bytes
   (publish_bench's functions), with the workers' summed peak RSS per size.

The exit code is 1 when a request failed or the ledger check found a problem (not for a missed target).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from mcpstore_appliance.config import LedgerSettings

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.discovery_bench import load, prepare, sample_packages, uncached  # noqa: E402
from benchmarks.harness import Appliance, descendant_pids, read_tree_cpu_seconds, start_appliance  # noqa: E402
from benchmarks.report import machine_summary, print_table  # noqa: E402
from benchmarks.search_load_bench import search_paths  # noqa: E402
from benchmarks.workers_publish import ledger_check, ledger_size, publish_all, small_bundles  # noqa: E402

MIB = 2**20
READ_TARGET, PUBLISH_TARGET = 1.7, 100.0
COUNTS = (1, 2)
INTERVAL_SETTING = "MCPSTORE_LEDGER__CHECKPOINT_INTERVAL_SECONDS"


class Workers:
    """An appliance started with `--workers N`, measured as one server: supervisor plus workers."""

    def __init__(self, app: Appliance, count: int) -> None:
        self.app, self.count = app, count
        self.token = app.create_token("workersbench", scopes="read,publish", admin=False)

    def cpu_seconds(self) -> float:
        return read_tree_cpu_seconds(self.app.pid)

    def worker_pids(self) -> list[int]:
        return descendant_pids(self.app.pid) if self.count > 1 else [self.app.pid]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.app.port}"


def start_workers(count: int, data_dir: Path, env: dict[str, str], timeout: float = 60.0) -> Workers:
    """The harness returns at the first 200 from /readyz; with N workers, wait until N different ones answered
    (each connection goes to one of them), so no round runs before every worker listens."""
    app = start_appliance(data_dir=data_dir, extra_args=["--workers", str(count), "--log-level", "WARNING"], env=env)
    seen, deadline = set(), time.monotonic() + timeout
    while count > 1 and len(seen) < count:
        if time.monotonic() > deadline:
            app.close()
            raise RuntimeError(f"only {len(seen)} of {count} workers answered /readyz:\n{app.output()}")
        try:
            with urllib.request.urlopen(app.url("/readyz"), timeout=5) as response:
                seen.add(json.load(response)["worker"]["pid"])
        except (OSError, urllib.error.URLError):
            time.sleep(0.05)
    return Workers(app, count)


def start_pair(seeded: Path, scratch: Path, env: dict[str, str], stack: ExitStack) -> dict[int, Workers]:
    """1 and 2 workers, each on its own copy of the seeded catalog; stopped when `stack` closes."""
    servers = {}
    for count in COUNTS:
        data = Path(tempfile.mkdtemp(prefix=f"data-{count}-", dir=scratch))
        shutil.copyfile(seeded / "mcpstore.sqlite3", data / "mcpstore.sqlite3")
        servers[count] = start_workers(count, data, env)
        stack.callback(servers[count].app.close)
    return servers


def restart_seconds(server: Workers, kills: int = 3) -> list[float]:
    """SIGKILL worker 2 `kills` times; each time, seconds until a new worker 2 answers /readyz on a new
    connection (the supervisor notices the exit, starts the process, and it opens the port)."""
    times = []
    for _ in range(kills):
        victim = _answering(server, number=2)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        while _answering(server, number=2, once=True) in (None, victim):
            time.sleep(0.01)
        times.append(time.monotonic() - killed)
    return times


def _answering(server: Workers, number: int, once: bool = False) -> int | None:
    """The pid of worker `number`, from /readyz on new connections; with `once`, None unless the first says."""
    while True:
        try:
            with urllib.request.urlopen(server.app.url("/readyz"), timeout=5) as response:
                worker = json.load(response)["worker"]
            if worker["number"] == number:
                return worker["pid"]
        except (OSError, urllib.error.URLError):
            pass
        if once:
            return None


# ---------------------------------------------------------------------------------------------- 1. reads

def read_rounds(servers: dict[int, Workers], targets: dict[str, list[str]], rounds: int, seconds: float,
                connections: int) -> tuple[list[list[object]], dict[str, tuple[float, float]]]:
    results = {(row, n): [] for row in targets for n in servers}
    for _ in range(rounds):
        for row, paths in targets.items():
            for n, server in servers.items():
                result = load(server.base_url, paths, seconds, connections, server=server)
                if result.errors or result.non_2xx:
                    raise SystemExit(f"{row} on {n} workers: {result.errors} errors, {result.non_2xx} non-2xx")
                results[row, n].append(result)
    rows, scaling = [], {}
    for row in targets:
        ratios = [two.rps / one.rps for one, two in zip(results[row, 1], results[row, 2])]
        cpu = {n: statistics.median(r.cpu_us_per_request for r in results[row, n]) for n in servers}
        # What two cores could serve without wrk on them: 2 cores / CPU per request, against 1 core / CPU per
        # request for the one worker.
        scaling[row] = (statistics.median(ratios), 2 * cpu[1] / cpu[2])
        for n in servers:
            runs = results[row, n]
            rps = statistics.median(r.rps for r in runs)
            rows.append([row, n, round(rps), statistics.median(r.p99_ms for r in runs), round(cpu[n]),
                         f"{rps * cpu[n] / 1e6:.2f}", *([f"{x:.2f}x" for x in scaling[row]] if n == 2 else ["", ""])])
    return rows, scaling


def read_targets(seeded: Path) -> dict[str, list[str]]:
    packages = sample_packages(seeded, 200)
    return {"package data (anonymous)": [f"/api/packages/{ns}/{name}" for ns, name in packages],
            "search (no-cache)": uncached(search_paths(random.Random(22)))}


# ------------------------------------------------------------------------------------------- 2. publishes

def publish_rows(servers: dict[int, Workers], count: int, publishers: int,
                 interval: str) -> tuple[list[list[object]], int]:
    rows, problems_total = [], 0
    for n, server in servers.items():
        db_path = server.app.data_dir / "mcpstore.sqlite3"
        since = ledger_size(db_path)
        # Untimed: the first publish in each worker imports the bundle inspector.
        warm = publish_all(server.app.port, server.token, small_bundles(f"warm-{n}", publishers), publishers)
        timed = publish_all(server.app.port, server.token, small_bundles(f"pub-{n}", count), publishers, server)
        problems, checkpoints = ledger_check(db_path, since, warm.published + timed.published)
        failures = sum(warm.failures.values()) + sum(timed.failures.values())
        problems_total += len(problems) + failures
        if problems or failures:
            print(f"  {n} workers: failures {dict(warm.failures + timed.failures)}; ledger: {problems}", flush=True)
        rows.append([interval, n, round(timed.rate), len(timed.published), failures, f"{timed.p99_ms():.0f}",
                     round(timed.cpu_seconds / max(1, len(timed.published)) * 1e6),
                     f"{timed.cpu_seconds / timed.seconds:.2f}", checkpoints,
                     "ok" if not problems else "; ".join(problems)])
    return rows, problems_total


# ---------------------------------------------------------------------------------------------- 3. ingest

def ingest_rows(server: Workers, sizes: list[int], runs: int, folder: Path) -> list[list[object]]:
    """publish_bench's bundles and upload, against 2 workers; peak RSS summed over the workers."""
    from benchmarks.ingest_physical import physical_limit
    from benchmarks.publish_bench import build_payload, bundle_version, publish, reset_peak, vm_kib

    def rss() -> float:
        return sum(vm_kib(pid, "VmRSS") for pid in server.worker_pids()) / 1024

    rows = []
    for size_mib in sizes:
        payload = folder / f"payload-{size_mib}.zip"
        build_payload(payload, size_mib * MIB)
        before = rss()
        for pid in server.worker_pids():
            reset_peak(pid)
        times, cpu, limit = [], [], None
        for run in range(runs):
            path = bundle_version(payload, folder / f"bench-{size_mib}-{run}.mcpb", f"{size_mib}.0.{run}")
            limit = limit or physical_limit(path)
            cpu_before = server.cpu_seconds()
            seconds, body = publish(server.app.port, server.token, path)
            cpu.append(server.cpu_seconds() - cpu_before)
            times.append(seconds)
            size = path.stat().st_size
            path.unlink()
        payload.unlink()
        best = size / MIB / min(times)
        peak = sum(vm_kib(pid, "VmHWM") for pid in server.worker_pids()) / 1024
        rows.append([f"{size / MIB:.0f} MiB", f"{best:.0f}", f"{limit.mib_per_s:.0f}",
                     f"{best / limit.mib_per_s:.2f}", f"{before:.0f}", f"{peak:.0f}", f"{min(cpu) * 1000:.0f}"])
    return rows


# ------------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=1500, help="seeded catalog size (default 1500)")
    parser.add_argument("--data", type=Path, help="where the seeded catalog is kept (default "
                                                  "/tmp/mcpstore-search-load-N, shared with search_load_bench)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--publishes", type=int, default=1000, help="timed publishes per worker count")
    parser.add_argument("--publishers", type=int, default=16)
    parser.add_argument("--intervals", default="1,0", help="checkpoint intervals (s) to publish with as well as "
                        "the default, on fresh appliances ('' for the default only; default 1,0)")
    parser.add_argument("--sizes", default="50,200", help="large bundle sizes in MiB ('' to skip)")
    parser.add_argument("--runs", type=int, default=2, help="publishes per large size (best is printed)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    seeded = args.data or Path(f"/tmp/mcpstore-search-load-{args.packages}")
    print(f"Machine: {machine_summary()}", flush=True)
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    prepare(seeded, args.packages)
    limit = str((max(sizes, default=0) + 16) * MIB)
    env = {"MCPSTORE_PUBLISH__MAX_BUNDLE_BYTES": limit, "MCPSTORE_PUBLISH__MAX_UNCOMPRESSED_BYTES": limit}
    with tempfile.TemporaryDirectory(prefix="workers-bench-") as scratch, ExitStack() as stack:
        servers = start_pair(seeded, Path(scratch), env, stack)
        reads, scaling = read_rounds(servers, read_targets(seeded), args.rounds, args.seconds, args.connections)
        publishes, problems = publish_rows(servers, args.publishes, args.publishers,
                                           f"default ({LedgerSettings().checkpoint_interval_seconds:g} s)")
        ingest = ingest_rows(servers[2], sizes, args.runs, Path(scratch)) if sizes else []
        restarts = restart_seconds(servers[2])
        stack.close()  # the next appliances get the cores to themselves
        for interval in [i for i in args.intervals.split(",") if i]:
            with ExitStack() as again:
                pair = start_pair(seeded, Path(scratch), {**env, INTERVAL_SETTING: interval}, again)
                rows, more = publish_rows(pair, args.publishes, args.publishers, f"{interval} s")
            publishes, problems = publishes + rows, problems + more
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    report(args, reads, scaling, publishes, ingest)
    print("a killed worker answering again after: " + ", ".join(f"{s:.2f} s" for s in restarts)
          + f" (target <= 2 s): {'met' if max(restarts) <= 2 else 'missed'}")
    return 1 if problems else 0


def report(args, reads, scaling, publishes, ingest) -> None:
    print(f"\nReads: wrk -t2 -c{args.connections}, {args.seconds:g} s per run, medians of {args.rounds} rounds\n")
    print_table(["target", "workers", "req/s", "p99 ms", "server CPU µs/req", "server cores busy",
                 "2 workers / 1 by req/s", "by CPU (2 × µs₁ / µs₂)"], reads)
    print(f"\nSmall publishes: {args.publishers} concurrent publishers, {args.publishes} timed publishes per row, "
          "each its own package\n")
    print_table(["checkpoint interval", "workers", "publishes/s", "201s", "failed", "p99 ms", "server CPU µs/publish",
                 "server cores busy", "checkpoints signed", "ledger: one leaf per 201, dense"], publishes)
    if ingest:
        print(f"\nLarge bundles to 2 workers, best of {args.runs}\n")
        print_table(["size", "publish MiB/s", "physical MiB/s", "ratio", "workers' RSS before MiB (sum)",
                     "workers' peak RSS MiB (sum)",
                     "server CPU ms"], ingest)
    print()
    for row, (ratio, by_cpu) in scaling.items():
        print(f"{row}: 2 workers {ratio:.2f}x one by req/s with wrk on the same cores, {by_cpu:.2f}x by CPU per "
              f"request (target >= {READ_TARGET}x): {'met' if ratio >= READ_TARGET else 'missed'} by req/s, "
              f"{'met' if by_cpu >= READ_TARGET else 'missed'} by CPU")
    for row in publishes:
        print(f"checkpoint interval {row[0]}, {row[1]} worker(s): {row[2]} publishes/s (target >= "
              f"{PUBLISH_TARGET:g}/s): {'met' if row[2] >= PUBLISH_TARGET else 'missed'}")


if __name__ == "__main__":
    sys.exit(main())
