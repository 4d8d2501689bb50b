"""Instructions per request, counted by valgrind (callgrind): a yardstick that does not drift with the machine.

On a shared VM the same build's req/s and CPU per request move by 20-50% between runs, more than most changes
being judged. The number of instructions the server executes for a request does not: this script starts the
bare aiohttp hello world and the appliance under `valgrind --tool=callgrind`, sends each target a fixed number
of keep-alive requests with counting switched on, and prints instructions per request and their ratio to the
hello world (equal within ~0.5% between runs).

It is a yardstick, not the verdict: issue 5's target is in req/s, and time per request also pays for cache
misses and for the kernel's side of each socket write, which instructions leave out (measured: package data
executes 1.4-1.5x the hello world's instructions but costs 1.8-2x its CPU time). `--cache-sim` adds
callgrind's simulated misses (a 32 KiB L1 and a 1 MiB last level, as one core of this machine's EPYC) to show
where that gap comes from.

    python -m benchmarks.instructions                        # a 2,000-package catalog (seeded once), ~3 min
    python -m benchmarks.instructions --data /tmp/seed100k   # a discovery benchmark catalog
    python -m benchmarks.instructions --cache-sim --only "package data"

Needs Debian's valgrind (installed with apt-get when missing and run as root).
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.discovery_bench import prepare, sample_packages
from benchmarks.harness import find_debian_tool, start_appliance, start_bare_server
from benchmarks.report import machine_summary, print_table

# Valgrind runs the servers 5-50x slower: start-up and the first requests need far longer than usual.
START_TIMEOUT = 600.0


@dataclass
class Counted:
    label: str
    requests: int
    events: dict[str, int]

    def per_request(self, event: str) -> float:
        return self.events.get(event, 0) / self.requests

    @property
    def last_level_misses(self) -> float:
        return sum(self.per_request(event) for event in ("ILmr", "DLmr", "DLmw"))


class Callgrind:
    """One server process under callgrind, counting only between start() and stop()."""

    def __init__(self, out_dir: Path, cache_sim: bool):
        self.out_dir = out_dir
        self.cache_sim = cache_sim

    def wrapper(self, name: str) -> list[str]:
        # A fixed hash seed: with random ones, dict and set probing differ between runs by a few % of the count.
        argv = ["env", "PYTHONHASHSEED=0", "valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={self.out_dir}/{name}.%p"]
        if self.cache_sim:
            argv += ["--cache-sim=yes", "--I1=32768,8,64", "--D1=32768,8,64", "--LL=1048576,16,64"]
        return argv

    @staticmethod
    def control(pid: int, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120)

    def count(self, pid: int, label: str, port: int, paths: list[str], requests: int, connections: int) -> Counted:
        drive(port, paths, requests, connections)  # warm: caches filled, code paths taken once
        self.control(pid, "--zero")
        self.control(pid, "--instr=on")
        drive(port, paths, requests, connections)
        self.control(pid, "--instr=off")
        before = set(self.out_dir.iterdir())
        self.control(pid, "--dump=" + re.sub(r"[^\w-]+", "_", label))  # callgrind takes one plain word
        dump = _new_file(self.out_dir, before)
        return Counted(label, requests, read_totals(dump))


def _new_file(folder: Path, before: set[Path], timeout: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [path for path in set(folder.iterdir()) - before if path.stat().st_size]
        if new:
            time.sleep(0.2)  # the dump is written before callgrind_control returns; be safe on slow disks
            return new[0]
        time.sleep(0.05)
    raise RuntimeError(f"callgrind wrote no dump in {folder}")


def read_totals(dump: Path) -> dict[str, int]:
    """{event: count} from a callgrind dump's `events:` and `totals:` lines."""
    text = dump.read_text(errors="replace")
    events = re.search(r"^events: (.+)$", text, re.M).group(1).split()
    totals = re.search(r"^totals: (.+)$", text, re.M).group(1).split()
    return dict(zip(events, map(int, totals)))


def drive(port: int, paths: list[str], requests: int, connections: int) -> int:
    """`requests` keep-alive GETs over `connections` connections, one request in flight on each, rotating over
    `paths`; returns the number answered. Any answer but 200 stops the run: a count of error answers would
    measure the wrong thing."""
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    buffers = [b""] * connections
    answered = 0
    try:
        for start in range(0, requests, connections):
            batch = list(enumerate(sockets))[:requests - start]
            for index, sock in batch:
                path = paths[(start + index) % len(paths)]
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            for index, sock in batch:
                status, buffers[index] = _read_response(sock, buffers[index])
                if status != 200:
                    raise RuntimeError(f"{paths[(start + index) % len(paths)]} answered {status}")
                answered += 1
    finally:
        for sock in sockets:
            sock.close()
    return answered


def _read_response(sock: socket.socket, buffer: bytes) -> tuple[int, bytes]:
    while b"\r\n\r\n" not in buffer:
        buffer += _recv(sock)
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
    while len(rest) < length:
        rest += _recv(sock)
    return int(head.split(b" ", 2)[1]), rest[length:]


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(1 << 16)
    if not chunk:
        raise RuntimeError("the server closed the connection")
    return chunk


def targets(packages: list[tuple[str, str]]) -> list[tuple[str, str, list[str]]]:
    """(server, label, paths): the discovery benchmark's hot reads, each over many URLs."""
    pages = [f"/api/packages/{namespace}/{name}" for namespace, name in packages]
    words = ["github", "search", "slack", "files", "notes", "weather", "calendar", "database"]
    return [
        ("bare", "bare aiohttp hello world", ["/"]),
        ("bare", "bare aiohttp: package-data shape, no work", pages),
        ("appliance", "appliance /healthz", ["/healthz"]),
        ("appliance", f"package data ({len(pages):,} packages)", pages),
        ("appliance", "version list", [page + "/versions" for page in pages]),
        ("appliance", "update check", [page + "/latest?current=1.0.0" for page in pages]),
        ("appliance", "search, one word (recent pages)", [f"/api/packages?q={word}" for word in words]),
        ("appliance", "VS Code probe /v0.1/servers?limit=1", ["/v0.1/servers?limit=1"]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=2000, help="catalog size to seed (default 2,000)")
    parser.add_argument("--data", type=Path, help="a seeded data folder to reuse (or create)")
    parser.add_argument("--sample", type=int, default=1000, help="packages rotated over (default 1,000)")
    parser.add_argument("--requests", type=int, default=2000, help="requests counted per target")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--cache-sim", action="store_true", help="also count simulated cache misses")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="only the rows whose label contains TEXT (the hello world is always measured)")
    args = parser.parse_args(argv)
    if not (find_debian_tool("valgrind", "valgrind") and find_debian_tool("callgrind_control", "valgrind")):
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    print(f"Machine: {machine_summary()}", flush=True)
    data = args.data or Path(tempfile.gettempdir()) / f"mcpstore-instructions-{args.packages}"
    prepare(data, args.packages)
    packages = sample_packages(data, args.sample)
    chosen = [t for t in targets(packages) if t[1] == "bare aiohttp hello world" or not args.only
              or any(text in t[1] for text in args.only)]
    with tempfile.TemporaryDirectory(prefix="callgrind-") as out:
        callgrind = Callgrind(Path(out), args.cache_sim)
        print("starting both servers under valgrind (about a minute)", flush=True)
        with start_bare_server(timeout=START_TIMEOUT, wrapper=callgrind.wrapper("bare")) as bare, \
                start_appliance(data, extra_args=["--log-level", "WARNING"], timeout=START_TIMEOUT,
                                wrapper=callgrind.wrapper("appliance")) as app:
            servers = {"bare": bare, "appliance": app}
            rows = []
            for server, label, paths in chosen:
                print(f"  counting: {label}", flush=True)
                rows.append(callgrind.count(servers[server].pid, label, servers[server].port, paths,
                                            args.requests, args.connections))
    report(rows, args)
    return 0


def report(rows: list[Counted], args: argparse.Namespace) -> None:
    hello = rows[0].per_request("Ir")
    headers = ["target", "instructions/request", "hello world / this"]
    if args.cache_sim:
        headers += ["L1i misses", "L1d misses", "last-level misses"]
    table = []
    for row in rows:
        line = [row.label, f"{row.per_request('Ir'):,.0f}", f"{hello / row.per_request('Ir'):.0%}"]
        if args.cache_sim:
            line += [f"{row.per_request('I1mr'):,.0f}", f"{row.per_request('D1mr') + row.per_request('D1mw'):,.0f}",
                     f"{row.last_level_misses:,.1f}"]
        table.append(line)
    print(f"\n{args.requests:,} requests per target over {args.connections} keep-alive connections, counted "
          "after as many uncounted ones; user-space instructions of the server process (all its threads)")
    print_table(headers, table)


if __name__ == "__main__":
    sys.exit(main())
