"""Reading a checked bundle (archive.py's SafeZip): every entry once, front to back, counting the bytes it
really inflates to against the Budget, keeping each file's first bytes, feeding them to the content scanners,
and opening nested archives (zip, gzip, bzip2, xz) one level deeper. Big bundles are read by several threads,
each a contiguous run of entries.
"""

from __future__ import annotations

import bz2
import lzma
import os
import tempfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from ..errors import Unprocessable
from .archive import CHUNK, EOCD_SIG, LIMIT_CODES, LOCAL_SIG, Budget, SafeZip, Stopped, reject
from .model import BundleLimits, Finding
from .sigblock import split_signature_blocks

HEAD_BYTES = 256
SPOOL_IN_MEMORY = 8 * 1024 * 1024
PARALLEL_MIN_BYTES = 8 * 1024 * 1024  # below this, one walker thread is as fast as several


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int  # bytes actually produced when read
    compressed_size: int
    mode: int  # Unix permission bits (0 when the packer set none)
    head: bytes  # the first HEAD_BYTES bytes, for magic numbers


class ContentSink(Protocol):
    def feed(self, path: str, chunk: bytes) -> None: ...
    def close(self, path: str) -> None: ...


class Walker:
    """Reads every entry once: counts bytes, keeps heads, feeds content scanners, opens nested archives."""

    def __init__(self, limits: BundleLimits, budget: Budget, tmpdir: str | os.PathLike[str], sink: ContentSink):
        self.limits, self.budget, self.tmpdir, self.sink = limits, budget, tmpdir, sink
        self.findings: list[Finding] = []

    def walk(self, szip: SafeZip, depth: int = 0, prefix: str = "") -> list[FileInfo]:
        return [self._read_entry(szip, info, depth, prefix + info.orig_filename)
                for info in szip.entries if not info.is_dir()]

    def walk_parallel(self, szip: SafeZip, threads: int) -> list[FileInfo]:
        """`walk` of the top-level archive with its entries split into `threads` contiguous runs of about equal
        compressed size, one thread each (inflating, CRC and scanning release the GIL). Results, findings and
        the error raised are those of the first run in archive order that has them, whatever the timing."""
        runs = split_runs([i for i in szip.entries if not i.is_dir()], threads)
        if len(runs) < 2:
            return self.walk(szip)
        walkers = [self] + [Walker(self.limits, self.budget, self.tmpdir, self.sink) for _ in runs[1:]]
        with ThreadPoolExecutor(len(runs) - 1, thread_name_prefix="bundle-walk") as pool:
            futures = [pool.submit(w._read_run, szip, run) for w, run in zip(walkers[1:], runs[1:])]
            outcomes = [_outcome(self._read_run, szip, runs[0])]
            outcomes += [_outcome(future.result) for future in futures]
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Stopped):
                raise outcome
        for walker in walkers[1:]:
            self.findings += walker.findings
        return [info for run_infos in outcomes for info in run_infos]  # type: ignore[union-attr]

    def _read_run(self, szip: SafeZip, infos: list[zipfile.ZipInfo]) -> list[FileInfo]:
        try:
            return [self._read_entry(szip, info, 0, info.orig_filename) for info in infos]
        except BaseException:
            self.budget.stop()
            raise

    def _read_entry(self, szip: SafeZip, info: zipfile.ZipInfo, depth: int, path: str) -> FileInfo:
        produced, head, nested = 0, b"", None
        try:
            with szip.zf.open(info) as stream:
                while chunk := stream.read(CHUNK):
                    if not produced:
                        head = chunk[:HEAD_BYTES]
                        nested = self._nested_for(head, path, depth)
                    produced += len(chunk)
                    self.budget.add_bytes(len(chunk), path)
                    self.budget.check_ratio(path, produced, info.compress_size)
                    self.sink.feed(path, chunk)
                    if nested:
                        nested.feed(chunk)
        except (zipfile.BadZipFile, EOFError, zlib.error, ValueError, OSError, NotImplementedError) as exc:
            if nested:
                nested.discard()
            raise reject("bundle_corrupt", f"corrupt ZIP entry: {exc}",
                         [{"path": path, "message": f"corrupt entry ({type(exc).__name__})"}]) from None
        self.sink.close(path)
        if nested:
            nested.finish()
        return FileInfo(path, produced, info.compress_size, (info.external_attr >> 16) & 0o7777, head)

    def _nested_for(self, head: bytes, path: str, depth: int):
        kind = archive_kind(head)
        if kind is None:
            return None
        if depth + 1 > self.limits.max_nesting:
            raise reject("bundle_nesting", f"archives are nested more than {self.limits.max_nesting} deep",
                         [{"path": path, "message": f"nested {kind} archive beyond the nesting limit"}])
        if kind == "zip":
            return NestedZip(self, path, depth + 1)
        return NestedStream(self, path, kind)


def split_runs(infos: list[zipfile.ZipInfo], parts: int) -> list[list[zipfile.ZipInfo]]:
    """Contiguous runs of entries (archive order, so each thread reads the file front to back) of about equal
    compressed size; one run when the archive is too small for threads to pay off."""
    total = sum(info.compress_size for info in infos)
    if parts < 2 or total < PARALLEL_MIN_BYTES:
        return [infos] if infos else []
    runs: list[list[zipfile.ZipInfo]] = [[]]
    done = 0
    for info in infos:
        if done >= total * len(runs) / parts and len(runs) < parts:
            runs.append([])
        runs[-1].append(info)
        done += info.compress_size
    return [run for run in runs if run]


def _outcome(fn, *args):
    """fn's value, or the exception it raised (so every thread's result can be looked at in order)."""
    try:
        return fn(*args)
    except BaseException as exc:  # noqa: BLE001 - re-raised by the caller in archive order
        return exc


def archive_kind(head: bytes) -> str | None:
    if head.startswith(LOCAL_SIG) or head.startswith(EOCD_SIG):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and len(head) > 3 and head[3:4].isdigit():
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return None


class NestedZip:
    """Spools a nested ZIP into the private temp folder, then walks it one level deeper."""

    def __init__(self, walker: Walker, path: str, depth: int):
        self.walker, self.path, self.depth = walker, path, depth
        self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=walker.tmpdir)

    def feed(self, chunk: bytes) -> None:
        self.spool.write(chunk)

    def discard(self) -> None:
        self.spool.close()

    def finish(self) -> None:
        walker = self.walker
        try:
            size = self.spool.tell()
            fh = self.spool
            end, blocks = split_signature_blocks(fh, size)  # type: ignore[arg-type]
            inner = SafeZip(fh, end, walker.budget, blocks[-1].length if blocks else None)  # type: ignore[arg-type]
            files = walker.walk(inner, self.depth, self.path + "!/")
            walker.findings.append(Finding("archive.nested", "info", self.path,
                                           f"nested ZIP archive with {len(files)} files (counted and scanned)"))
        except Unprocessable as exc:
            if exc.code in LIMIT_CODES:
                raise
            walker.findings.append(Finding("archive.nested_unreadable", "medium", self.path,
                                           f"nested archive could not be read safely: {exc.message}"))
        finally:
            self.spool.close()


class NestedStream:
    """Inflates a nested gzip/bzip2/xz stream as it arrives, counting and scanning what comes out."""

    def __init__(self, walker: Walker, path: str, kind: str):
        self.walker, self.path, self.kind = walker, path + "!", kind
        self.fed = self.produced = 0
        self.broken = False
        self.dec = self._new()

    def _new(self):
        if self.kind == "gzip":
            return zlib.decompressobj(wbits=31)
        return bz2.BZ2Decompressor() if self.kind == "bzip2" else lzma.LZMADecompressor()

    def feed(self, chunk: bytes) -> None:
        if self.broken:
            return
        self.fed += len(chunk)
        try:
            self._inflate(chunk)
        except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
            self.broken = True
            self.walker.sink.close(self.path)
            self.walker.findings.append(Finding("archive.nested_unreadable", "medium", self.path[:-1],
                                                f"nested {self.kind} stream is corrupt: {exc}"))

    def _inflate(self, data: bytes) -> None:
        # max_length bounds each output piece, so a bomb never materializes in memory.
        while True:
            if self.kind == "gzip":
                out = self.dec.decompress(data, CHUNK)
                data = self.dec.unconsumed_tail
            else:
                out = self.dec.decompress(data, CHUNK)
                data = b""
            if out:
                self.produced += len(out)
                self.walker.budget.add_bytes(len(out), self.path)
                self.walker.budget.check_ratio(self.path, self.produced, self.fed)
                self.walker.sink.feed(self.path, out)
            if self.dec.eof:
                rest = data + self.dec.unused_data
                if not rest.strip(b"\0"):
                    return
                self.dec = self._new()  # a multi-member stream
                data = rest
                continue
            # More output may be pending: input left over, or (zlib) a full piece came out.
            more = bool(data) or len(out) == CHUNK if self.kind == "gzip" else not self.dec.needs_input
            if not more:
                return

    def discard(self) -> None:
        if not self.broken:
            self.broken = True
            self.walker.sink.close(self.path)

    def finish(self) -> None:
        if not self.broken:
            self.walker.sink.close(self.path)
            self.walker.findings.append(Finding("archive.nested", "info", self.path[:-1],
                                                f"nested {self.kind} stream, {self.produced} bytes inflated "
                                                "(counted and scanned)"))
