"""Foundation benchmark (issue 2, "Measured"): start-up, memory and the cheapest requests.

Starts `mcpstore serve` on a fresh data folder and a bare aiohttp "hello world" on loopback, then drives both
with wrk from a separate process in the same run:

- start to ready (spawn to first 200 from /readyz) on a fresh folder, and again on the same folder (restart);
- idle RSS after start-up, and peak RSS (VmHWM) after start-up and after the load;
- req/s, p50, p99 and server CPU time per request for the bare server, the appliance's /healthz and /api/me
  (Bearer token, scope read), with each appliance figure as a ratio to the bare server; /healthz once more
  with `--log-level WARNING` to show what the per-request access log line costs;
- clean shutdown on SIGTERM (exit code, seconds).

    python benchmarks/foundation_bench.py                  # about 40 s with the default 5 s per row
    python benchmarks/foundation_bench.py --seconds 10 --connections 32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import LoadResult, run_load, start_appliance, start_bare_server
from benchmarks.report import machine_summary, print_table

TARGET_READY_S = 1.0
TARGET_IDLE_RSS_MB = 60.0
TARGET_HEALTHZ_RATIO = 0.90


def measure_restarts(data_dir: Path, times: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds to ready on an existing data folder (keys, database, migrations already there)."""
    seconds = []
    for _ in range(times):
        with start_appliance(data_dir=data_dir) as again:
            seconds.append((again.ready_seconds, again.ready_cpu_seconds))
    return seconds


def ready_text(wall: float, cpu: float) -> str:
    return f"{wall:.2f} s (CPU {cpu:.2f} s)"


def mean_result(a: LoadResult, b: LoadResult) -> LoadResult:
    cpu = [r.cpu_us_per_request for r in (a, b) if r.cpu_us_per_request is not None]
    return replace(a, rps=(a.rps + b.rps) / 2, p50_ms=(a.p50_ms + b.p50_ms) / 2, p99_ms=(a.p99_ms + b.p99_ms) / 2,
                   requests=a.requests + b.requests, errors=a.errors + b.errors, non_2xx=a.non_2xx + b.non_2xx,
                   cpu_us_per_request=sum(cpu) / len(cpu) if cpu else None, raw=a.raw + b.raw)


def cpu_ratio(result: LoadResult, baseline: LoadResult) -> float:
    """Bare CPU per request / appliance CPU per request: the req/s ratio an otherwise idle core would give."""
    return (baseline.cpu_us_per_request or 0) / (result.cpu_us_per_request or float("inf"))


def load_row(name: str, result: LoadResult, baseline: LoadResult | None) -> list[object]:
    ratio = f"{result.ratio_to(baseline):.0%}" if baseline else "100%"
    cpu = result.cpu_us_per_request if result.cpu_us_per_request is not None else "n/a"
    return [name, result.rps, ratio, result.p50_ms, result.p99_ms, cpu, result.requests,
            result.non_2xx + result.errors]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Foundation benchmark: start-up, RSS, /healthz and /api/me")
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per endpoint (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--restarts", type=int, default=1,
                        help="extra timed starts on the same data folder, besides the --log-level WARNING one")
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator: wrk (default when installed) or the Python fallback")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds to idle before reading idle RSS")
    args = parser.parse_args(argv)
    load = {"seconds": args.seconds, "threads": args.threads, "connections": args.connections, "tool": args.tool}

    print(f"Machine: {machine_summary()}", flush=True)
    with start_bare_server() as bare, start_appliance() as app:
        time.sleep(args.settle)
        idle = app.memory_mb()
        bare_idle = bare.memory_mb()
        token = app.create_token(scopes="read")
        auth = {"Authorization": f"Bearer {token}"}

        before = run_load(bare.url("/"), server=bare, **load)
        base_json = run_load(bare.url("/healthz"), server=bare, **load)
        healthz = run_load(app.url("/healthz"), server=app, **load)
        me = run_load(app.url("/api/me"), headers=auth, server=app, **load)
        after = run_load(bare.url("/"), server=bare, **load)
        base = mean_result(before, after)  # the baseline brackets the appliance rows, to dampen drift
        peak = app.memory_mb()
        app_exit, app_stop_s = app.stop()
        restarts = measure_restarts(app.data_dir, args.restarts)  # the data folder lives until the with ends
        # Diagnostic: the same /healthz with logging at WARNING, i.e. without the per-request access log line.
        with start_appliance(data_dir=app.data_dir, extra_args=["--log-level", "WARNING"]) as quiet:
            restarts.append((quiet.ready_seconds, quiet.ready_cpu_seconds))
            quiet_healthz = run_load(quiet.url("/healthz"), server=quiet, **load)

    print(f"\nLoad: {base.tool} -t{args.threads} -c{args.connections} -d{args.seconds:g}s per row; ratio = req/s "
          "relative to the bare aiohttp hello world in this run; CPU = server CPU time per request\n")
    print_table(["target", "req/s", "ratio", "p50 ms", "p99 ms", "CPU µs/req", "requests", "errors/non-2xx"], [
        load_row("bare aiohttp GET / (hello world), first", before, base),
        load_row("bare aiohttp GET / (hello world), last", after, base),
        load_row("bare baseline = mean of first and last", base, None),
        load_row("bare aiohttp GET /healthz (same JSON)", base_json, base),
        load_row("appliance GET /healthz", healthz, base),
        load_row("appliance GET /healthz, --log-level WARNING", quiet_healthz, base),
        load_row("appliance GET /api/me (Bearer)", me, base),
    ])
    restart_wall = statistics.median(wall for wall, _ in restarts)
    restart = f"{ready_text(restart_wall, statistics.median(cpu for _, cpu in restarts))}, median of {len(restarts)}"
    print()
    print_table(["measure", "value", "target", "verdict"], [
        ["start to ready, fresh data folder", ready_text(app.ready_seconds, app.ready_cpu_seconds),
         f"< {TARGET_READY_S:g} s",
         verdict(app.ready_seconds < TARGET_READY_S)],
        ["start to ready, existing data folder", restart, f"< {TARGET_READY_S:g} s",
         verdict(restart_wall < TARGET_READY_S)],
        ["idle RSS (VmRSS after start-up)", f"{idle['rss']:.1f} MB", f"< {TARGET_IDLE_RSS_MB:g} MB",
         verdict(idle["rss"] < TARGET_IDLE_RSS_MB)],
        ["peak RSS during start-up (VmHWM)", f"{idle['peak']:.1f} MB", "", ""],
        ["RSS / peak RSS after the load", f"{peak['rss']:.1f} / {peak['peak']:.1f} MB", "", ""],
        ["bare server idle RSS", f"{bare_idle['rss']:.1f} MB", "", ""],
        ["/healthz vs bare, by req/s", f"{healthz.ratio_to(base):.0%}", f">= {TARGET_HEALTHZ_RATIO:.0%}",
         verdict(healthz.ratio_to(base) >= TARGET_HEALTHZ_RATIO)],
        ["/healthz vs bare, by CPU per request", f"{cpu_ratio(healthz, base):.0%}", f">= {TARGET_HEALTHZ_RATIO:.0%}",
         verdict(cpu_ratio(healthz, base) >= TARGET_HEALTHZ_RATIO)],
        ["/api/me vs bare hello world (req/s; CPU)", f"{me.ratio_to(base):.0%}; {cpu_ratio(me, base):.0%}", "", ""],
        ["shutdown on SIGTERM", f"exit {app_exit} in {app_stop_s:.2f} s", "exit 0", verdict(app_exit == 0)],
    ])
    failed = [r for r in (healthz, quiet_healthz, me) if r.non_2xx or r.errors]
    if failed:
        print("\nwarning: some requests failed (non-2xx or socket errors); see the errors column", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
