"""Publish throughput and server memory for 1, 50 and 200 MiB bundles, next to the physical limit.

    .venv/bin/python -m benchmarks.publish_bench [--sizes 1,50,200] [--runs 3] [--dir /tmp]

The server runs as its own process (`mcpstore serve` on a fresh data folder, local blobs). Each bundle is a
valid node bundle whose payload is incompressible random bytes, written with zipfile (deflate, as `mcpb pack`
does). Each run publishes a distinct version (same payload, its own manifest), so every run does the whole
pipeline: stream to a temp file while hashing, inspect (zip structure, every entry inflated, scans), put the
blob, one transaction with the ledger leaf, a signed checkpoint and the inclusion proof.

Printed per size: the best publish time as MiB/s (client send to 201 response), the physical limit measured on
the same bytes in the same run (`benchmarks/ingest_physical.physical_limit`: sha256 of the file + reading every
zip entry, one thread), their ratio, and the server's peak RSS while publishing that size (VmHWM from
/proc/<pid>/status, reset before each size): flat across sizes means memory does not grow with bundle size.
Then the server's CPU time for one publish (least of the runs, all threads, from /proc/<pid>/stat) next to the
physical limit's time: on a machine shared with other work, CPU time moves much less than wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from benchmarks.harness import read_cpu_seconds
from benchmarks.ingest_physical import physical_limit

MIB = 1024 * 1024
PAYLOAD_FILE = 4 * MIB


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_payload(path: Path, total_bytes: int) -> None:
    """A zip of incompressible files (no manifest yet), about `total_bytes`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        written, index = 0, 0
        while written < total_bytes:
            size = min(PAYLOAD_FILE, total_bytes - written)
            zf.writestr(f"server/assets/blob{index}.bin", os.urandom(size))
            written += size
            index += 1


def bundle_version(payload: Path, target: Path, version: str) -> Path:
    """The payload plus a manifest and an entry point: a valid bundle whose bytes differ per version."""
    shutil.copyfile(payload, target)
    manifest = {"manifest_version": "0.2", "name": "bench", "version": version, "description": "benchmark",
                "author": {"name": "Bench"},
                "server": {"type": "node", "entry_point": "server/index.js",
                           "mcp_config": {"command": "node", "args": ["${__dirname}/server/index.js"]}}}
    with zipfile.ZipFile(target, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        zf.writestr("server/index.js", "process.stdin.resume();\n")
    return target


def make_token(data_dir: Path, settings_env: dict[str, str]) -> str:
    from mcpstore_appliance.app import build_services, close_services
    from mcpstore_appliance.config import load_settings

    async def work() -> str:
        services = await build_services(load_settings(environ=settings_env, data_dir=str(data_dir)))
        try:
            user = await services.accounts.create_user("bench@example.com", "bench", None)
            principal = await services.accounts.principal_for_user(user.id)
            return (await services.accounts.create_token(principal, "bench", ["read", "publish"]))[0]
        finally:
            await close_services(services)

    return asyncio.run(work())


def start_server(data_dir: Path, port: int, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "mcpstore_appliance.cli.main", "serve", "--data", str(data_dir),
                             "--port", str(port), "--log-level", os.environ.get("BENCH_LOG_LEVEL", "WARNING")], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=None if os.environ.get("BENCH_LOG_LEVEL") else subprocess.DEVNULL,
                            start_new_session=True)
    for _ in range(600):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit("the server exited during start-up")
        time.sleep(0.05)
    raise SystemExit("the server did not become ready")


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak(pid: int) -> None:
    """Make VmHWM start again from the current RSS (Linux: 5 > clear_refs), so each size shows its own peak."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def publish(port: int, token: str, path: Path) -> tuple[float, dict]:
    """Upload like the CLI does (one streamed body), with big socket writes; return (seconds, response)."""
    size = path.stat().st_size
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600, blocksize=MIB)
    with open(path, "rb") as fh:
        start = time.perf_counter()
        conn.request("POST", "/api/packages", body=fh, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream",
            "Content-Length": str(size)})
        response = conn.getresponse()
        body = json.loads(response.read())
        elapsed = time.perf_counter() - start
    conn.close()
    if response.status != 201:
        raise SystemExit(f"publish failed: {response.status} {body}")
    return elapsed, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,50,200", help="bundle sizes in MiB, comma separated")
    parser.add_argument("--runs", type=int, default=3, help="publishes per size (best is printed)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where bundles and the data folder go")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    work = Path(tempfile.mkdtemp(prefix="publish-bench-", dir=args.dir))
    data_dir = work / "data"
    env = {"MCPSTORE_PUBLISH__MAX_BUNDLE_BYTES": str((max(sizes) + 16) * MIB),
           "MCPSTORE_PUBLISH__MAX_UNCOMPRESSED_BYTES": str((max(sizes) + 16) * MIB),
           "MCPSTORE_LEDGER__CHECKPOINT_INTERVAL_SECONDS": "0", "MCPSTORE_SERVER__ACCESS_LOG": "false"}
    token = make_token(data_dir, env)
    port = free_port()
    server = start_server(data_dir, port, env)
    try:
        print(f"server pid {server.pid}; idle RSS {vm_kib(server.pid, 'VmRSS') / 1024:.1f} MiB; "
              f"{os.cpu_count()} CPUs; data in {work}")
        print(f"{'size':>9} {'publish MiB/s':>14} {'physical MiB/s':>15} {'ratio':>6} {'(median MiB/s)':>15} "
              f"{'peak RSS MiB':>13} {'server CPU ms':>14} {'physical ms':>12}")
        for size_mib in sizes:
            payload = work / f"payload-{size_mib}.zip"
            build_payload(payload, size_mib * MIB)
            reset_peak(server.pid)
            times, sizes_seen, cpu = [], [], []
            limit = None
            for run in range(args.runs):
                path = bundle_version(payload, work / f"bench-{size_mib}-{run}.mcpb", f"{size_mib}.0.{run}")
                if limit is None:
                    limit = physical_limit(path)
                cpu_before = read_cpu_seconds(server.pid)
                seconds, body = publish(port, token, path)
                cpu.append(read_cpu_seconds(server.pid) - cpu_before)
                assert body["state"] == "published", body
                times.append(seconds)
                sizes_seen.append(path.stat().st_size)
                path.unlink()
            payload.unlink()
            size = sizes_seen[0]
            best = size / MIB / min(times)
            median = size / MIB / sorted(times)[len(times) // 2]
            print(f"{size / MIB:8.1f}M {best:14.1f} {limit.mib_per_s:15.1f} {best / limit.mib_per_s:6.2f} "
                  f"{median:15.1f} {vm_kib(server.pid, 'VmHWM') / 1024:13.1f} {min(cpu) * 1000:14.0f} "
                  f"{limit.seconds * 1000:12.1f}", flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
