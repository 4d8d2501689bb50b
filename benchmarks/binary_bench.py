"""The `mcpstore` binary (packaging/build.sh) against its targets: size <= 40 MB, exec to /readyz answering
200 <= 1 s on a warm disk, idle RSS <= 60 MB.

    packaging/build.sh && packaging/build.sh --onefile --out dist/onefile    # the two layouts
    .venv/bin/python benchmarks/binary_bench.py [--onedir dist] [--binary dist/onefile/mcpstore] [--runs 7]

For each layout: the size shipped (the file, or the folder's .tar.gz), `--version` wall time, exec to the first
200 from /readyz on an existing data folder (median and best of --runs, after one run that warms the disk
cache) and on a fresh one (keys and migrations made at start), and the idle RSS 3 s after ready, summed over
the process tree (a one-file binary is a small unpacking parent and the Python child). The one-file binary
unpacks itself into $TMPDIR at every start: that cost is in its start figures. The same figures from source
(this interpreter, `python -m mcpstore_appliance.cli.main`) are the yardstick of the run: on a loaded machine
absolute start times mean little.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import free_port, read_memory_kb  # noqa: E402
from benchmarks.report import machine_summary, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8",
       "MCPSTORE_HOSTED__BACKEND": "off"}  # no sandbox probing: what is measured is the binary's own start


def tree_rss_mb(pid: int) -> float:
    """Resident MB of a process and its descendants."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += read_memory_kb(current)["VmRSS"]
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, KeyError):
            continue
    return total / 1024


def start_to_ready(executable: Path, data: Path, idle_seconds: float = 0) -> tuple[float, float | None]:
    """(seconds from exec to the first 200 from /readyz, idle RSS MB after idle_seconds or None)."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen([str(executable), "serve", "--data", str(data), "--port", str(port)], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{executable} serve exited {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.005)
        elapsed = time.perf_counter() - started
        rss = None
        if idle_seconds:
            time.sleep(idle_seconds)
            rss = tree_rss_mb(process.pid)
        return elapsed, rss
    finally:
        process.terminate()
        process.wait(30)


def version_seconds(executable: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(executable), "--version"], env=ENV, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def source_command(folder: Path) -> Path:
    """`mcpstore` as a pip install runs it (this interpreter), wrapped in a script: the same figures from source."""
    script = folder / "mcpstore-from-source"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mcpstore_appliance.cli.main "$@"\n')
    script.chmod(0o755)
    return script


def measure(name: str, executable: Path, shipped: Path | None, runs: int) -> list:
    with tempfile.TemporaryDirectory(prefix="binary-bench-") as tmp:
        fresh, _ = start_to_ready(executable, Path(tmp) / "fresh")
        start_to_ready(executable, Path(tmp) / "fresh")  # warms the disk cache and the folder
        times = [start_to_ready(executable, Path(tmp) / "fresh")[0] for _ in range(runs)]
        _, rss = start_to_ready(executable, Path(tmp) / "fresh", idle_seconds=3)
    size = f"{shipped.stat().st_size / 2**20:.1f} MB" if shipped else "-"
    return [name, size, f"{version_seconds(executable, runs):.2f} s",
            f"{statistics.median(times):.2f} s ({min(times):.2f} s)", f"{fresh:.2f} s", f"{rss:.1f} MB"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onedir", type=Path, default=ROOT / "dist",
                        help="the default build's output folder (holds mcpstore.tar.gz and mcpstore/)")
    parser.add_argument("--binary", type=Path, default=ROOT / "dist" / "onefile" / "mcpstore",
                        help="a --onefile build")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = []
    if (args.onedir / "mcpstore.tar.gz").is_file():
        rows.append(measure("one folder in a .tar.gz (the default)", args.onedir / "mcpstore" / "mcpstore",
                            args.onedir / "mcpstore.tar.gz", args.runs))
    if args.binary.is_file():
        rows.append(measure("one file (--onefile)", args.binary, args.binary, args.runs))
    if not rows:
        raise SystemExit(f"no build in {args.onedir} nor at {args.binary}: run packaging/build.sh first")
    with tempfile.TemporaryDirectory(prefix="binary-bench-src-") as tmp:  # the yardstick of the same run
        rows.append(measure("from source (pip install)", source_command(Path(tmp)), None, args.runs))
    print(f"{machine_summary()}, load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after")
    print_table(["layout", "size (<= 40 MB)", "--version", "exec to /readyz 200, median (best) (<= 1 s)",
                 "same, fresh folder", "idle RSS (<= 60 MB)"], rows)


if __name__ == "__main__":
    main()
