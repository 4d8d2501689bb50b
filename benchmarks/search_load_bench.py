"""Search under load with publishes (issue 18): 50 concurrent clients, a 2% share of publishes, 1,500 packages.

    .venv/bin/python benchmarks/search_load_bench.py                  # two 20 s phases, about 1 min
    .venv/bin/python benchmarks/search_load_bench.py --seconds 30 --runs 3

The catalog is seeded by discovery_seed (as the discovery benchmark) into a fresh data folder per run. The
appliance runs as its own process with its defaults; the clients are asyncio workers in this process, each
sending one request at a time (a closed loop, like wrk), so a slow answer holds its client up as it would a
real one. Each request is a publish with the given probability (a new package through `POST /api/packages`,
named and described with the words the searches look for), else a search (`/api/packages`) drawn from one
word, two words, a four-letter prefix or a category + platform filter, without `Cache-Control`, as a real
client sends them. Every publish changes what some of those searches find.

Two phases per run: no publishes, then the publish share. Printed per phase: searches per second, search
p50 / p99 / max latency, publishes done (with their p50), failed requests (any answer but 200 / 201, or no
answer), and the appliance's CPU time per request.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import sys
import tempfile
import time
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.discovery_bench import prepare  # noqa: E402  (after the path set-up above)
from benchmarks.discovery_seed import CATEGORIES, NOUNS, SERVICES  # noqa: E402
from benchmarks.harness import start_appliance  # noqa: E402
from benchmarks.report import machine_summary, print_table  # noqa: E402

TARGET_P99_MS = 150.0


def run_async(coroutine) -> None:
    """On uvloop when it is installed (as `mcpstore serve` runs): the cheaper loop for the load."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


def search_paths(rng: random.Random) -> list[str]:
    words = [w for w in SERVICES if len(w) >= 4][:40]
    quote = urllib.parse.quote
    return ([f"/api/packages?q={w}" for w in words]
            + [f"/api/packages?q={quote(w + ' ' + rng.choice(NOUNS).split('_')[0])}" for w in words]
            + [f"/api/packages?q={w[:4]}" for w in words]
            + [f"/api/packages?category={c}&platform={p}" for c in CATEGORIES for p in ("darwin", "linux")])


def bundle(rng: random.Random, name: str) -> bytes:
    """A small valid node bundle whose name and description hold words the searches look for."""
    service, noun = rng.choice(SERVICES), rng.choice(NOUNS).replace("_", " ")
    return node_bundle(name, "1.0.0", f"{service.title()} {noun} tools for agents", [service, noun])


def node_bundle(name: str, version: str, description: str, keywords: list[str]) -> bytes:
    """A minimal valid node bundle (manifest 0.2 and an entry point), packed in memory."""
    manifest = {"manifest_version": "0.2", "name": name, "version": version, "description": description,
                "keywords": keywords, "author": {"name": "Load Bench"},
                "server": {"type": "node", "entry_point": "server/index.js",
                           "mcp_config": {"command": "node", "args": ["${__dirname}/server/index.js"]}}}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        zf.writestr("server/index.js", "process.stdin.resume();\n")
    return out.getvalue()


@dataclass
class Phase:
    label: str
    seconds: float = 0.0
    searches: list[float] = field(default_factory=list)  # seconds each
    publishes: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    client_cpu_seconds: float = 0.0

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1

    def row(self) -> list[object]:
        ms = sorted(s * 1000 for s in self.searches)

        def pick(q: float) -> float:
            return ms[min(len(ms) - 1, int(q * len(ms)))] if ms else 0.0

        done = len(self.searches) + len(self.publishes)
        publish_p50 = sorted(self.publishes)[len(self.publishes) // 2] * 1000 if self.publishes else 0.0
        return [self.label, round(len(self.searches) / self.seconds), pick(0.5), pick(0.99), ms[-1] if ms else 0.0,
                f"{len(self.publishes)} ({publish_p50:.0f} ms)", sum(self.failures.values()),
                round(self.cpu_seconds / max(1, done) * 1e6), round(self.client_cpu_seconds / max(1, done) * 1e6)]


class Client(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight: a few microseconds of CPU per request,
    where an aiohttp client session costs about as much as the server's answer (the load must not take the
    CPU it measures). Answers must carry Content-Length, as the appliance's do."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end])
        length = CONTENT_LENGTH.search(head)
        if length is None:
            self.waiter.set_exception(ConnectionError(f"no Content-Length in {head[:60]!r}"))
            self.waiter = None
            return
        total = end + 4 + int(length.group(1))
        if len(self.buffer) >= total:
            del self.buffer[:total]
            self.waiter.set_result(int(head[9:12]))
            self.waiter = None

    def connection_lost(self, exc) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    async def request(self, raw: bytes) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await asyncio.wait_for(self.waiter, 60)


CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


def get_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()


def publish_request(token: str, body: bytes) -> bytes:
    return (f"POST /api/packages HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def drive(port: int, token: str, phase: Phase, clients: int, share: float, paths: list[str],
                bundles: list[bytes], seconds: float, server) -> None:
    """`clients` connections, one request in flight each, for `seconds`."""
    loop = asyncio.get_running_loop()
    searches = [get_request(path) for path in paths]
    deadline = time.perf_counter() + seconds

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        _, client = await loop.create_connection(Client, "127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                publishing = share > 0 and bundles and rng.random() < share
                raw = publish_request(token, bundles.pop()) if publishing else rng.choice(searches)
                started = time.perf_counter()
                try:
                    status = await client.request(raw)
                except (ConnectionError, asyncio.TimeoutError) as exc:
                    phase.fail(type(exc).__name__)
                    client.transport.close()
                    _, client = await loop.create_connection(Client, "127.0.0.1", port)
                    continue
                if status != (201 if publishing else 200):
                    phase.fail(f"HTTP {status}")
                    continue
                (phase.publishes if publishing else phase.searches).append(time.perf_counter() - started)
        finally:
            client.transport.close()

    cpu_before, client_before, began = server.cpu_seconds(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    phase.seconds = time.perf_counter() - began
    phase.cpu_seconds = server.cpu_seconds() - cpu_before
    phase.client_cpu_seconds = time.process_time() - client_before


def one_run(args: argparse.Namespace, seeded: Path, run: int) -> list[Phase]:
    rng = random.Random(run)
    paths = search_paths(rng)
    # Enough bundles that no phase runs out: the publish share of a generous request rate.
    bundles = [bundle(rng, f"{rng.choice(SERVICES)}-load-{run}-{i}")
               for i in range(int(args.share * 4000 * args.seconds) + 100)]
    with tempfile.TemporaryDirectory(prefix="search-load-") as scratch:
        data = Path(scratch) / "data"
        data.mkdir()
        (data / "mcpstore.sqlite3").write_bytes((seeded / "mcpstore.sqlite3").read_bytes())
        with start_appliance(data_dir=data, extra_args=["--log-level", "WARNING"]) as app:
            token = app.create_token("loadbench", scopes="read,publish", admin=False)
            phases = [Phase("warm-up"), Phase("no publishes"), Phase(f"{args.share:.0%} publishes")]
            # The warm-up publishes too: the first publish after start imports the bundle inspector.
            shares = [args.share or 0.02, 0.0, args.share]
            lengths = [5.0, args.seconds, args.seconds]
            for phase, share, seconds in zip(phases, shares, lengths):
                run_async(drive(app.port, token, phase, args.clients, share, paths, bundles, seconds, app))
    return phases[1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Search latency under concurrent clients and publishes")
    parser.add_argument("--packages", type=int, default=1500)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--share", type=float, default=0.02, help="share of requests that publish (default 0.02)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase (default 20)")
    parser.add_argument("--runs", type=int, default=1, help="runs, each on a freshly seeded copy (default 1)")
    parser.add_argument("--data", type=Path, help="where the seeded catalog is kept between invocations "
                                                  "(default /tmp/mcpstore-search-load-N)")
    args = parser.parse_args(argv)
    seeded = args.data or Path(f"/tmp/mcpstore-search-load-{args.packages}")
    print(f"Machine: {machine_summary()}", flush=True)
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    prepare(seeded, args.packages)
    rows, worst = [], 0.0
    for run in range(args.runs):
        for phase in one_run(args, seeded, run):
            rows.append([f"run {run + 1}: {phase.label}", *phase.row()[1:]])
            if phase.publishes:
                worst = max(worst, phase.row()[3])
            print(f"  {rows[-1][0]}: search p99 {phase.row()[3]:.1f} ms, failures {phase.failures or 0}",
                  flush=True)
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    print(f"\n{args.clients} clients, one request in flight each; {args.packages:,} packages; "
          f"{args.seconds:g} s per phase\n")
    print_table(["phase", "searches/s", "search p50 ms", "search p99 ms", "search max ms", "publishes (p50)",
                 "failed", "server CPU µs/req", "client CPU µs/req"], rows)
    failed = sum(row[6] for row in rows)
    verdict = "ok" if worst < TARGET_P99_MS and not failed else "MISSED"
    print(f"\nsearch p99 with publishes < {TARGET_P99_MS:g} ms and no failed requests: worst {worst:.1f} ms, "
          f"{failed} failed: {verdict}")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
