"""Blob store benchmark: local disk and S3 (moto_server on loopback) throughput and latency.

    python benchmarks/blobs_bench.py                 # about 40 s: 64 MiB local, 48 MiB S3
    python benchmarks/blobs_bench.py --size-mib 256 --s3-size-mib 96
    python benchmarks/blobs_bench.py --no-s3

Local: put_stream of 64 KiB chunks (what an upload gives us), the same put again (dedup), put_file
by hard link (same file system) and by copy (from /dev/shm), full read, random 4 KiB ranges; each
against a baseline of plain hashlib + write + fsync of the same bytes in one thread.
S3: single PUT, multipart PUT (8 MiB parts), GET, HEAD latency, small puts, ListObjectsV2, all
against moto_server on 127.0.0.1 (a Python server: it bounds these numbers), and the same PUT/GET
through boto3 when it is installed, as a ratio. Also prints what boto3 would add to the binary.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the package importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcpstore_appliance.blobs import LocalBlobStore, S3BlobStore
from mcpstore_appliance.blobs.sigv4 import EMPTY_SHA256, SigV4Signer
from mcpstore_appliance.config import S3Settings

MiB = 1024 * 1024


def rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / MiB / seconds:8.1f} MiB/s"


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms"


async def chunks(data: bytes, size: int = 64 * 1024):
    view = memoryview(data)
    for i in range(0, len(data), size):
        yield bytes(view[i : i + size])


async def timed(coro) -> tuple[float, object]:
    start = time.perf_counter()
    result = await coro
    return time.perf_counter() - start, result


def baseline_write(data: bytes, folder: Path) -> float:
    start = time.perf_counter()
    digest = hashlib.sha256()
    with open(folder / "baseline", "wb") as fh:
        for i in range(0, len(data), MiB):
            digest.update(data[i : i + MiB])
            fh.write(data[i : i + MiB])
        fh.flush()
        os.fsync(fh.fileno())
    seconds = time.perf_counter() - start
    os.unlink(folder / "baseline")
    return seconds


async def bench_local(size: int) -> None:
    data = os.urandom(size)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        root = Path(tmp)
        store = LocalBlobStore(root / "blobs")
        base = baseline_write(data, root)
        print(f"local, {size // MiB} MiB blob, root on {root}")
        print(f"  baseline hash+write+fsync   {rate(size, base)}")
        seconds, blob = await timed(store.put_stream(chunks(data)))
        print(f"  put_stream                  {rate(size, seconds)}  ({base / seconds:.2f}x baseline)")
        seconds, _ = await timed(store.put_stream(chunks(data)))
        print(f"  put_stream again (dedup)    {rate(size, seconds)}")
        await store.delete(blob.sha256)
        source = root / "upload.bin"
        source.write_bytes(data)
        seconds, _ = await timed(store.put_file(source, blob.sha256))
        print(f"  put_file, hard link         {rate(size, seconds)}  (hash only, no copy)")
        await store.delete(blob.sha256)
        shm = Path("/dev/shm") / f"blobs-bench-{os.getpid()}"
        if Path("/dev/shm").is_dir():
            shm.write_bytes(data)
            try:
                seconds, _ = await timed(store.put_file(shm, blob.sha256))
                print(f"  put_file, copy from tmpfs   {rate(size, seconds)}")
            finally:
                shm.unlink()
        seconds, total = await timed(_drain(store, blob.sha256))
        print(f"  read whole blob             {rate(total, seconds)}")
        latencies = []
        for _ in range(500):
            start = random.randrange(0, size - 4096)
            elapsed, _ = await timed(_drain(store, blob.sha256, start, start + 4096))
            latencies.append(elapsed)
        print(f"  4 KiB ranged reads x500     {ms(latencies)}")
        await store.close()


async def _drain(store, digest, start=0, end=None) -> int:
    total = 0
    async for chunk in store.open_range(digest, start, end):
        total += len(chunk)
    return total


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = Path(sys.executable).with_name("moto_server")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "moto.server"]
    process = subprocess.Popen([*command, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("moto_server did not start (pip install 'moto[server]')")


async def create_bucket(endpoint: str, name: str) -> None:
    import aiohttp

    host = endpoint.split("://", 1)[1]
    headers = SigV4Signer("bench", "bench-secret", "us-east-1").sign_headers("PUT", host, f"/{name}", [], {},
                                                                            EMPTY_SHA256)
    async with aiohttp.ClientSession() as session, session.put(f"{endpoint}/{name}", headers=headers) as response:
        assert response.status == 200, await response.text()


async def bench_s3(size: int) -> None:
    process, endpoint = start_moto()
    try:
        await create_bucket(endpoint, "bench")
        settings = S3Settings(endpoint=endpoint, bucket="bench", access_key_id="bench", secret_access_key="bench-secret",
                              multipart_threshold_bytes=16 * MiB, part_size_bytes=8 * MiB)
        with tempfile.TemporaryDirectory() as spool:
            store = S3BlobStore(settings, spool_dir=Path(spool))
            print(f"S3 on moto_server {endpoint}")
            await store.put_stream(chunks(b"warm-up"))  # first connection and moto's first-request set-up
            single = os.urandom(8 * MiB)
            seconds, small_blob = await timed(store.put_stream(chunks(single)))
            print(f"  put 8 MiB, single PUT       {rate(len(single), seconds)}")
            parts = -(-size // (8 * MiB))
            one_at_a_time = S3BlobStore(settings.model_copy(update={"upload_concurrency": 1}), spool_dir=Path(spool))
            seconds, _ = await timed(one_at_a_time.put_stream(chunks(os.urandom(size))))
            await one_at_a_time.close()
            print(f"  put {size // MiB} MiB, multipart       {rate(size, seconds)}  ({parts} parts, one at a time)")
            big = os.urandom(size)
            seconds, blob = await timed(store.put_stream(chunks(big)))
            print(f"  put {size // MiB} MiB, multipart       {rate(size, seconds)}  ({parts} parts, "
                  f"{settings.upload_concurrency} at a time)")
            seconds, _ = await timed(store.put_stream(chunks(big)))
            print(f"  put {size // MiB} MiB again (dedup)    {rate(size, seconds)}  (spool + hash + HEAD)")
            seconds, total = await timed(_drain(store, blob.sha256))
            print(f"  get {size // MiB} MiB                  {rate(total, seconds)}")
            heads = [(await timed(store.size(blob.sha256)))[0] for _ in range(200)]
            print(f"  HEAD x200                   {ms(heads)}")
            puts = [(await timed(store.put_stream(chunks(os.urandom(4096)))))[0] for _ in range(200)]
            print(f"  4 KiB puts x200             {ms(puts)}")
            seconds, digests = await timed(_list(store))
            print(f"  list {len(digests)} digests             {seconds * 1000:8.1f} ms")
            await _boto3_ratio(endpoint, single, big, small_blob.sha256, blob.sha256, store)
            await store.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _list(store) -> list[str]:
    return [digest async for digest in store.list_digests()]


async def _boto3_ratio(endpoint, single, big, single_sha, big_sha, store) -> None:
    try:
        import boto3
        from boto3.s3.transfer import TransferConfig
    except ImportError:
        print("  boto3 not installed: no comparison")
        return
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                          aws_secret_access_key="bench-secret")
    config = TransferConfig(multipart_threshold=16 * MiB, multipart_chunksize=8 * MiB, max_concurrency=1)

    def boto_put(data: bytes, key: str) -> float:
        import io

        start = time.perf_counter()
        client.upload_fileobj(io.BytesIO(data), "bench", key, Config=config)
        return time.perf_counter() - start

    def boto_get(key: str) -> float:
        start = time.perf_counter()
        body = client.get_object(Bucket="bench", Key=key)["Body"]
        while body.read(MiB):
            pass
        return time.perf_counter() - start

    boto_big_put = await asyncio.to_thread(boto_put, big, "boto/big")
    boto_big_get = await asyncio.to_thread(boto_get, f"blobs/{big_sha}")
    ours_get, _ = await timed(_drain(store, big_sha))
    print(f"  boto3 put {len(big) // MiB} MiB (1 thread)    {rate(len(big), boto_big_put)}")
    print(f"  boto3 get {len(big) // MiB} MiB               {rate(len(big), boto_big_get)}  "
          f"(our GET speed / boto3's in the same run: {boto_big_get / ours_get:.2f})")
    site = Path(boto3.__file__).resolve().parent.parent
    sizes = {name: _du(site / name) for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil")}
    ours = sum(_du(Path(__file__).resolve().parent.parent / "mcpstore_appliance" / "blobs" / name)
               for name in ("s3.py", "sigv4.py"))
    listed = ", ".join(f"{k} {v / MiB:.1f}" for k, v in sizes.items())
    print(f"  installed size: boto3 stack {sum(sizes.values()) / MiB:.1f} MiB ({listed}); "
          f"our s3.py + sigv4.py {ours / 1024:.0f} KiB")


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--s3-size-mib", type=int, default=48)
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    asyncio.run(bench_local(args.size_mib * MiB))
    if not args.no_s3:
        asyncio.run(bench_s3(args.s3_size_mib * MiB))


if __name__ == "__main__":
    main()
