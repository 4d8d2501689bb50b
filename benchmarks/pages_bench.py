"""HTML pages under load at catalog scale: home, a search page and a package page, next to the JSON API answers
for the same data and a bare aiohttp "hello world", all measured in the same run.

    .venv/bin/python benchmarks/pages_bench.py                      # 100,000 packages, 5 s per target
    .venv/bin/python benchmarks/pages_bench.py --packages 10000 --seconds 3
    .venv/bin/python benchmarks/pages_bench.py --data DIR           # reuse a folder seeded by an earlier run

The catalog is seeded with the discovery benchmark's generator (benchmarks/discovery_seed.py: realistic
manifests, several versions per package, 10% private or org packages), then `mcpstore serve` runs on it as a
separate process and wrk (or the harness's Python load generator) drives it from another process.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.discovery_seed import seed  # noqa: E402
from benchmarks.harness import run_load, start_appliance, start_bare_server  # noqa: E402
from benchmarks.report import format_table  # noqa: E402

SEARCH_WORD = "github"


def prepare(data_dir: Path, packages: int) -> None:
    from mcpstore_appliance.db import Database

    db_path = data_dir / "mcpstore.sqlite3"
    if db_path.exists():
        have = sqlite3.connect(db_path).execute("SELECT count(*) FROM packages").fetchone()[0]
        if have >= packages:
            print(f"reusing {data_dir}: {have} packages")
            return

    async def migrate() -> None:
        db = await Database(db_path).open()
        await db.close()

    data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(migrate())
    started = time.perf_counter()
    counts = seed(db_path, packages)
    print(f"seeded {counts} in {time.perf_counter() - started:.0f} s")


def sample_package(data_dir: Path) -> tuple[str, str]:
    """A public package with a published latest version and a long description: a typical package page."""
    conn = sqlite3.connect(data_dir / "mcpstore.sqlite3")
    row = conn.execute(
        "SELECT p.namespace, p.name FROM packages p JOIN versions v ON v.id = p.latest_version_id"
        " WHERE p.visibility = 'public' AND p.name LIKE ? ORDER BY p.downloads DESC LIMIT 1",
        (f"{SEARCH_WORD}-%",)).fetchone()
    conn.close()
    return row


def targets(namespace: str, name: str) -> list[tuple[str, str, str]]:
    """(label, kind, path): each page with the JSON API answer for the same data right after it."""
    package = f"{namespace}/{name}"
    return [
        ("home page", "html", "/"),
        ("  JSON: top 6 by downloads", "json", "/api/packages?sort=downloads&limit=6"),
        (f"search page ?q={SEARCH_WORD}", "html", f"/search?q={SEARCH_WORD}"),
        (f"  JSON: ?q={SEARCH_WORD}&limit=20", "json", f"/api/packages?q={SEARCH_WORD}&limit=20"),
        ("search page, filter only", "html", "/search?category=productivity&pricing=free"),
        ("  JSON: filter only", "json", "/api/packages?category=productivity&pricing=free&limit=20"),
        (f"package page {package}", "html", f"/packages/{package}"),
        ("  JSON: package data", "json", f"/api/packages/{package}"),
        ("  JSON: versions", "json", f"/api/packages/{package}/versions?limit=100"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--data", type=Path, help="data folder to seed or reuse (default: a temporary one)")
    args = parser.parse_args(argv)

    scratch = None
    if args.data is None:
        scratch = tempfile.TemporaryDirectory(prefix="pages-bench-")
        args.data = Path(scratch.name) / "data"
    try:
        prepare(args.data, args.packages)
        namespace, name = sample_package(args.data)
        with start_appliance(data_dir=args.data) as app, start_bare_server() as bare:
            print(f"appliance ready in {app.ready_seconds:.2f} s; pages measured with {args.connections} connections")
            for _, _, path in targets(namespace, name):  # warm caches (facets, package JSON, templates)
                run_load(app.url(path), seconds=0.5, connections=4)
            baseline = run_load(bare.url("/"), seconds=args.seconds, connections=args.connections, server=bare)
            rows = [["bare aiohttp hello world", f"{baseline.rps:.0f}", f"{baseline.p50_ms:.2f}",
                     f"{baseline.p99_ms:.2f}", "1.00", f"{baseline.cpu_us_per_request or 0:.0f}", ""]]
            for label, kind, path in targets(namespace, name):
                result = run_load(app.url(path), seconds=args.seconds, connections=args.connections, server=app)
                failed = result.errors + result.non_2xx
                rows.append([label, f"{result.rps:.0f}", f"{result.p50_ms:.2f}", f"{result.p99_ms:.2f}",
                             f"{result.ratio_to(baseline):.2f}", f"{result.cpu_us_per_request or 0:.0f}",
                             f"{failed} failed" if failed else ""])
            print(f"\n{args.packages:,} packages; {args.seconds:g} s per target; RSS after the run "
                  f"{app.memory_mb()['rss']:.0f} MB (peak {app.memory_mb()['peak']:.0f} MB)\n")
            print(format_table(["target", "req/s", "p50 ms", "p99 ms", "x bare", "server CPU µs/req", ""], rows))
    finally:
        if scratch is not None:
            scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
