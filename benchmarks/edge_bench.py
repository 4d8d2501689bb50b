"""The HTTP edge under load, in one run against a bare aiohttp "hello world": anonymous package data, a small
bundle by hash, the storefront home page, and package data again behind the nginx recipe's shared cache
(packaging/nginx.conf).

    .venv/bin/python benchmarks/edge_bench.py                  # ~1 minute
    .venv/bin/python benchmarks/edge_bench.py --seconds 5 --rounds 3

A fresh appliance gets one public package published over HTTP (its bundle is about 1 KB). Each round runs the
hello world, then every target, for `--seconds` each with wrk (32 connections); a row's ratio is the median of
its rounds' ratios to the hello world of the same round, because this shared machine's speed drifts within
minutes. nginx (Debian's, installed with apt-get when missing and running as root) runs the recipe as it is,
with this run's ports and a temporary cache folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import find_debian_tool, free_port, run_load, start_appliance, start_bare_server
from benchmarks.report import format_table
from tests.data.bundles import bundle_bytes, node_manifest

RECIPE = Path(__file__).resolve().parent.parent / "packaging" / "nginx.conf"
TARGETS = {  # (row, path, ratio target as a share of the hello world's req/s)
    "package data": ("/api/packages/{user}/edge-tool", 0.50),
    "1 KB bundle by hash": ("/bundles/{sha256}.mcpb", 0.50),
    "home page": ("/", 0.25),
}


def publish(appliance, token: str, user: str) -> str:
    data = bundle_bytes(node_manifest(name="edge-tool", version="1.0.0", description="Edge benchmark tool",
                                      author={"name": "Bench", "email": "bench@example.com"}))
    request = urllib.request.Request(appliance.url("/api/packages"), data=data, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    print(f"published {user}/edge-tool: bundle of {len(data)} bytes")
    return answer["sha256"]


def start_nginx(upstream_port: int, folder: Path) -> tuple[subprocess.Popen, int]:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    nginx = nginx or find_debian_tool("nginx", "nginx-light")
    port = free_port()
    recipe = (RECIPE.read_text().replace("/var/cache/nginx/mcpstore", str(folder / "cache"))
              .replace("127.0.0.1:8080", f"127.0.0.1:{upstream_port}").replace("listen 80;", f"listen 127.0.0.1:{port};"))
    temp = "\n".join(f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = folder / "nginx.conf"
    config.write_text(f"{'user root;' if os.geteuid() == 0 else ''}\nworker_processes 1;\ndaemon off;\n"
                      f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} warn;\n"
                      f"events {{ worker_connections 1024; }}\nhttp {{\naccess_log off;\n{temp}\n{recipe}\n}}\n")
    process = subprocess.Popen([nginx, "-c", str(config), "-p", str(folder)], stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("nginx did not start: " + process.stderr.read().decode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    with start_bare_server() as bare, start_appliance(extra_args=["--log-level", "WARNING"]) as appliance, \
            tempfile.TemporaryDirectory(prefix="edge-nginx-") as folder:
        token = appliance.create_token("edgebench", scopes="read,publish", admin=False)
        sha256 = publish(appliance, token, "edgebench")
        nginx, nginx_port = start_nginx(appliance.port, Path(folder))
        try:
            urls = {row: appliance.url(path.format(user="edgebench", sha256=sha256)) for row, (path, _) in TARGETS.items()}
            urls["package data behind nginx (repeated)"] = f"http://127.0.0.1:{nginx_port}/api/packages/edgebench/edge-tool"
            ratios: dict[str, list[float]] = {row: [] for row in urls}
            rates: dict[str, list[float]] = {row: [] for row in ["hello world", *urls]}
            for _ in range(args.rounds):
                hello = run_load(bare.url("/"), args.seconds, connections=args.connections)
                rates["hello world"].append(hello.rps)
                for row, url in urls.items():
                    result = run_load(url, args.seconds, connections=args.connections)
                    assert result.non_2xx == 0, (row, result)
                    rates[row].append(result.rps)
                    ratios[row].append(result.ratio_to(hello))
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)
    alone = statistics.median(rates["package data"])
    rows = [("hello world", f"{statistics.median(rates['hello world']):,.0f}", "1.00", "")]
    for row in urls:
        target = dict((name, share) for name, (_, share) in TARGETS.items()).get(row)
        note = f">= {target:.0%}" if target else f"{statistics.median(rates[row]) / alone:.1f}x the appliance alone (>= 3x)"
        rows.append((row, f"{statistics.median(rates[row]):,.0f}", f"{statistics.median(ratios[row]):.2f}", note))
    print(format_table(["target", "req/s (median)", "ratio to hello world (median)", "target"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
