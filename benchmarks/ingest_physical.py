"""The "physical limit" of ingesting a bundle, and our inspector measured against it.

    from benchmarks.ingest_physical import build_bundle, physical_limit
    build_bundle(path, 50 * 2**20)          # a valid node bundle of about that size
    limit = physical_limit(path)            # sha256 of the file + inflating every ZIP entry, in one thread
    print(limit.mib_per_s)

The publish benchmark reports its throughput next to `physical_limit` of the same bytes in the same run.
Run alone, this script prints the limit and `inspect_bundle`'s throughput and peak RSS for several sizes:

    .venv/bin/python -m benchmarks.ingest_physical [--sizes 1,50,200]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import random
import resource
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mcpstore_appliance.memory import keep_freed_memory

CHUNK = 1024 * 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class Throughput:
    bytes: int
    seconds: float
    hash_seconds: float = 0.0
    read_seconds: float = 0.0

    @property
    def mib_per_s(self) -> float:
        return self.bytes / MIB / self.seconds if self.seconds else float("inf")


def physical_limit(path: Path, repeat: int = 3) -> Throughput:
    """Best of `repeat` runs of: SHA-256 over the file, then reading every ZIP entry to its end (inflate +
    CRC). That is the least work any ingest must do on these bytes, with the same libraries we use."""
    keep_freed_memory()  # the allocator settings `mcpstore serve` runs with (memory.py), so both pay the same
    best: Throughput | None = None
    size = path.stat().st_size
    for _ in range(repeat):
        start = time.perf_counter()
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        hashed = time.perf_counter()
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                with zf.open(info) as stream:
                    while stream.read(CHUNK):
                        pass
        done = time.perf_counter()
        run = Throughput(size, done - start, hashed - start, done - hashed)
        if best is None or run.seconds < best.seconds:
            best = run
    assert best is not None
    return best


def build_bundle(path: Path, total_bytes: int, *, seed: int = 1) -> Path:
    """A valid node bundle of about `total_bytes`: a manifest, a server, a node_modules tree of JavaScript-ish
    text (compresses ~3:1) and some binary assets (incompressible), the mix a real node bundle has."""
    rng = random.Random(seed)
    manifest = {"manifest_version": "0.2", "name": "bench-bundle", "version": "1.0.0", "description": "benchmark",
                "author": {"name": "Bench"}, "server": {"type": "node", "entry_point": "server/index.js",
                                                         "mcp_config": {"command": "node",
                                                                        "args": ["${__dirname}/server/index.js"]}}}
    words = [f"{rng.choice(['const', 'let', 'function', 'return', 'await'])} v{i} = require('m{i % 97}');"
             for i in range(4000)]
    written = 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        zf.writestr("server/index.js", "process.stdin.resume();\n")
        index = 0
        while written < total_bytes:
            if index % 4 == 3:  # a quarter of the files are binary assets
                data = rng.randbytes(min(2 * MIB, max(1, total_bytes - written)))
                name = f"assets/blob{index}.bin"
            else:
                lines = rng.choices(words, k=rng.randint(200, 6000))
                data = "\n".join(lines).encode()
                name = f"node_modules/pkg{index % 50}/lib/file{index}.js"
            zf.writestr(name, data)
            written += zf.getinfo(name).compress_size
            index += 1
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _inspect_in_child(path: str, file_sha256: str | None, queue) -> None:
    from mcpstore_appliance.bundles import BundleLimits, SignatureTrust, inspect_bundle
    limits = BundleLimits(max_uncompressed_bytes=4 * 1024 * MIB)
    inspect_bundle(Path(path), limits, SignatureTrust())  # warm: schema compilation, page cache
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        report = inspect_bundle(Path(path), limits, SignatureTrust(), file_sha256=file_sha256)
        best = min(best, time.perf_counter() - start)
    queue.put((best, report.outcome, _peak_rss_kib()))


def _peak_rss_kib() -> int:
    # VmHWM belongs to this process image only; getrusage's ru_maxrss would also count the parent's peak,
    # which Linux carries into a child across fork + exec.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def inspect_throughput(path: Path, file_sha256: str | None = None) -> tuple[Throughput, str, int]:
    """Best of three inspect_bundle runs in a fresh process: (throughput, outcome, peak RSS in KiB).
    With `file_sha256` (what an upload computes while streaming) an unsigned bundle skips its hashing pass."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_inspect_in_child, args=(str(path), file_sha256, queue))
    child.start()
    seconds, outcome, peak_kib = queue.get()
    child.join()
    return Throughput(path.stat().st_size, seconds), outcome, peak_kib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,50,200", help="bundle sizes in MiB, comma separated")
    parser.add_argument("--dir", default="/tmp", help="where to write the bundles")
    args = parser.parse_args()
    print(f"{'size':>8} {'physical MiB/s':>15} {'(hash / read s)':>16} {'inspect MiB/s':>14} {'ratio':>6} "
          f"{'+sha256 known':>14} {'ratio':>6} {'peak RSS MiB':>13} outcome")
    for size_mib in (int(s) for s in args.sizes.split(",")):
        path = Path(args.dir) / f"bench-{size_mib}mib.mcpb"
        build_bundle(path, size_mib * MIB)
        limit = physical_limit(path)
        ours, outcome, peak = inspect_throughput(path)
        known, _, known_peak = inspect_throughput(path, _sha256(path))
        peak = max(peak, known_peak)
        print(f"{path.stat().st_size / MIB:7.1f}M {limit.mib_per_s:15.1f} "
              f"{limit.hash_seconds:7.2f}/{limit.read_seconds:<7.2f} {ours.mib_per_s:14.1f} "
              f"{ours.mib_per_s / limit.mib_per_s:6.2f} {known.mib_per_s:14.1f} "
              f"{known.mib_per_s / limit.mib_per_s:6.2f} {peak / 1024:13.1f} {outcome}")
        path.unlink()


if __name__ == "__main__":
    main()
