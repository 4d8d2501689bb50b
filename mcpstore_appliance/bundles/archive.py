"""Safe reading of the ZIP inside a bundle. Nothing is extracted: entries are streamed through `zipfile` and
every limit is checked against the bytes actually produced, never against sizes the headers claim.

Structure checks (any failure rejects the bundle, all problems are listed with their entry path):
- the end-of-central-directory record sits exactly at the end of the ZIP bytes (only the signature block may
  follow), the central directory ends where it begins, no bytes precede the first entry, entries never overlap
  (the "overlapping files" bomb), and zipfile's own parse agrees with ours (no parser confusion);
- names: no absolute paths, drive letters or colons, backslashes, `.`/`..`/empty components, control
  characters, non-ASCII names without the UTF-8 flag, or a Unicode-path extra field that disagrees;
- no symlinks or other special files (Unix mode bits in external_attr), no encryption, only stored/deflate;
- no duplicate names, also after Unicode NFC + case folding, and no file that is also a directory.

Limits (`BundleLimits`, rejected with a `bundle_*` code): entries and inflated bytes counted over the bundle and
every archive nested in it (zip, gzip, bzip2, xz are opened and counted), a per-entry compression ratio for
entries above `ratio_min_bytes`, and a nesting depth. Problems *inside* a nested archive that are not limits
(it is corrupt, say) become findings instead: third-party packages do ship broken test fixtures.

This module checks the structure and keeps the Budget; archive_walk.py reads the entries.
"""

from __future__ import annotations

import re
import stat
import struct
import threading
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import Unprocessable
from .model import BundleLimits

EOCD_SIG = b"PK\x05\x06"
LOCAL_SIG = b"PK\x03\x04"
Z64_LOCATOR_SIG = b"PK\x06\x07"
Z64_EOCD_SIG = b"PK\x06\x06"
EOCD_SIZE = 22
MAX_COMMENT = 0xFFFF
CHUNK = 1024 * 1024  # how much of an entry is read at a time
ALLOWED_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
LIMIT_CODES = {"bundle_too_many_entries", "bundle_too_large", "bundle_compression_ratio", "bundle_nesting"}
_DRIVE = re.compile(r"^[A-Za-z]:")


def reject(code: str, message: str, problems: list[dict] | None = None) -> Unprocessable:
    return Unprocessable(message, code=code, details=problems or [{"path": "", "message": message}])


class Region:
    """A read-only, seekable view of fh[0:end] so zipfile never sees the signature block."""

    def __init__(self, fh: BinaryIO, end: int):
        self._fh, self._end, self._pos = fh, end, 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._end}[whence]
        self._pos = min(max(0, base + offset), self._end)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or self._pos + n > self._end:
            n = self._end - self._pos
        self._fh.seek(self._pos)
        data = self._fh.read(n)
        self._pos += len(data)
        return data


@dataclass(frozen=True)
class CentralDirectory:
    eocd_pos: int
    offset: int
    size: int
    entries: int
    comment_length: int


def _read_at(fh: BinaryIO, offset: int, size: int) -> bytes:
    fh.seek(offset)
    return fh.read(size)


def locate_central_directory(fh: BinaryIO, end: int, sig_block_len: int | None) -> CentralDirectory:
    """Find the EOCD that ends exactly at `end` (or, for the comment-length signing variant, whose declared
    comment is exactly the signature block that follows)."""
    if end == 0:
        raise reject("bundle_empty", "the bundle is empty")
    tail_start = max(0, end - MAX_COMMENT - EOCD_SIZE)
    tail = _read_at(fh, tail_start, end - tail_start)
    pos = tail.rfind(EOCD_SIG)
    while pos >= 0:
        if pos + EOCD_SIZE <= len(tail):
            (disk, cd_disk, disk_entries, entries, cd_size, cd_offset,
             comment_length) = struct.unpack_from("<HHHHIIH", tail, pos + 4)
            framed = pos + EOCD_SIZE + comment_length == len(tail)
            variant = sig_block_len is not None and pos + EOCD_SIZE == len(tail) and comment_length == sig_block_len
            if framed or variant:
                if disk or cd_disk or disk_entries != entries:
                    raise reject("bundle_corrupt", "multi-disk ZIP archives are not supported")
                cd = CentralDirectory(tail_start + pos, cd_offset, cd_size, entries, comment_length)
                return _check_directory_bounds(fh, cd)
        pos = tail.rfind(EOCD_SIG, 0, pos)
    head = _read_at(fh, 0, 4)
    if head != LOCAL_SIG and EOCD_SIG not in tail:
        raise reject("bundle_not_zip", "the bundle is not a ZIP archive")
    if EOCD_SIG in tail:
        raise reject("bundle_trailing_data", "unexpected bytes after the end of the ZIP archive "
                     "(only an MCPB signature block may follow it)")
    raise reject("bundle_truncated", "the ZIP archive is truncated (no end-of-central-directory record)")


def _check_directory_bounds(fh: BinaryIO, cd: CentralDirectory) -> CentralDirectory:
    cd_end = cd.eocd_pos
    if cd.eocd_pos >= 20 and _read_at(fh, cd.eocd_pos - 20, 4) == Z64_LOCATOR_SIG:
        _, _, z64_offset, _ = struct.unpack("<IIQI", _read_at(fh, cd.eocd_pos - 20, 20))
        record = _read_at(fh, z64_offset, 56)
        if len(record) < 56 or record[:4] != Z64_EOCD_SIG:
            raise reject("bundle_corrupt", "broken ZIP64 end-of-central-directory record")
        (record_size, _, _, _, _, _, entries, size, offset) = struct.unpack_from("<QHHIIQQQQ", record, 4)
        if z64_offset + 12 + record_size != cd.eocd_pos - 20:
            raise reject("bundle_corrupt", "unexpected bytes around the ZIP64 end-of-central-directory record")
        cd = CentralDirectory(cd.eocd_pos, offset, size, entries, cd.comment_length)
        cd_end = z64_offset
    if cd.offset + cd.size != cd_end:
        raise reject("bundle_corrupt", "the central directory does not end where the end record begins "
                     "(truncated, or data inserted or prepended)")
    return cd


class Budget:
    """Entries and inflated bytes, counted over the bundle and all nested archives. Walker threads share one
    budget, so the counts are kept under a lock; once one thread has failed, `stop()` makes the others give up
    at their next chunk."""

    def __init__(self, limits: BundleLimits):
        self.limits = limits
        self.entries = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    def add_entries(self, count: int) -> None:
        with self._lock:
            self.entries += count
            entries = self.entries
        if entries > self.limits.max_entries:
            raise reject("bundle_too_many_entries",
                         f"the bundle has more than {self.limits.max_entries} entries (nested archives included)")

    def add_bytes(self, count: int, path: str) -> None:
        if self._stopped:
            raise Stopped()
        with self._lock:
            self.bytes += count
            total = self.bytes
        if total > self.limits.max_uncompressed_bytes:
            raise reject("bundle_too_large",
                         f"the bundle inflates to more than {self.limits.max_uncompressed_bytes} bytes",
                         [{"path": path, "message": "inflated size limit reached while reading this entry"}])

    def check_ratio(self, path: str, produced: int, compressed: int) -> None:
        ratio = self.limits.max_compression_ratio
        if produced > self.limits.ratio_min_bytes and produced > ratio * max(compressed, 1):
            raise reject("bundle_compression_ratio",
                         f"an entry inflates more than {ratio}:1 (zip bomb?)",
                         [{"path": path, "message": f"compression ratio above {ratio}:1"}])


class Stopped(Exception):
    """Another walker thread failed first; this one stops reading (its own result is discarded)."""


def _name_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.orig_filename
    if not name or name == "/":
        return "empty entry name"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "control character in entry name"
    if "\\" in name:
        return "backslash in entry name"
    if name.startswith("/"):
        return "absolute path"
    if _DRIVE.match(name) or ":" in name:
        return "drive letter or colon in entry name"
    parts = (name[:-1] if name.endswith("/") else name).split("/")
    if ".." in parts:
        return "path traversal ('..')"
    if any(part in ("", ".") for part in parts):
        return "empty or '.' path component"
    if not info.flag_bits & 0x800 and any(ord(ch) > 127 for ch in name):
        return "non-ASCII entry name without the UTF-8 flag"
    unicode_name = _unicode_path_extra(info.extra)
    if unicode_name is not None and unicode_name != name:
        return "the Unicode path extra field names a different file"
    return None


def _unicode_path_extra(extra: bytes) -> str | None:
    pos = 0
    while pos + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, pos)
        if kind == 0x7075 and size >= 5:
            return extra[pos + 9:pos + 4 + size].decode("utf-8", "replace")
        pos += 4 + size
    return None


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    problem = _name_problem(info)
    if problem:
        return problem
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        return "symbolic link entry"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "special file entry (device, fifo or socket)"
    if info.flag_bits & 0x41:
        return "encrypted entry"
    if info.compress_type not in ALLOWED_METHODS:
        return f"unsupported compression method {info.compress_type}"
    if info.is_dir() and info.file_size:
        return "directory entry with content"
    return None


class SafeZip:
    """A checked, open ZIP. `entries` are the file and directory ZipInfos in on-disk order."""

    def __init__(self, fh: BinaryIO, end: int, budget: Budget, sig_block_len: int | None = None):
        self.cd = locate_central_directory(fh, end, sig_block_len)
        budget.add_entries(self.cd.entries)  # before zipfile builds an object per entry
        try:
            self.zf = zipfile.ZipFile(Region(fh, end))  # type: ignore[arg-type]
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, UnicodeDecodeError, struct.error,
                NotImplementedError) as exc:  # NotImplementedError: an unknown 'version needed to extract'
            raise reject("bundle_corrupt", f"the ZIP central directory is unreadable: {exc}") from None
        infos = self.zf.infolist()
        if getattr(self.zf, "start_dir", self.cd.offset) != self.cd.offset or len(infos) != self.cd.entries:
            raise reject("bundle_corrupt", "the ZIP central directory is ambiguous (parsers would disagree)")
        self._fh = fh
        self.entries = sorted(infos, key=lambda i: i.header_offset)
        self._check(budget.limits)

    def _check(self, limits: BundleLimits) -> None:
        problems = [{"path": i.orig_filename, "message": p} for i in self.entries if (p := _entry_problem(i))]
        problems += _duplicates(self.entries)
        if problems:
            codes = {"symbolic link entry": "bundle_symlink", "encrypted entry": "bundle_encrypted"}
            code = next((codes[p["message"]] for p in problems if p["message"] in codes), "bundle_unsafe_entry")
            if all(p["message"].startswith("duplicate") for p in problems):
                code = "bundle_duplicate_entry"
            raise reject(code, f"the bundle has {len(problems)} unsafe or invalid entries", problems)
        self._check_layout()
        declared = sum(i.file_size for i in self.entries)
        if declared > limits.max_uncompressed_bytes:
            raise reject("bundle_too_large", f"the bundle declares {declared} inflated bytes, more than "
                         f"{limits.max_uncompressed_bytes}")

    def _check_layout(self) -> None:
        """Entries start at byte 0, follow each other, never overlap, and their local headers agree."""
        expected_next = 0
        for info in self.entries:
            if info.header_offset < expected_next:
                raise reject("bundle_corrupt", "ZIP entries overlap (overlapping-file zip bomb?)",
                             [{"path": info.orig_filename, "message": "overlaps the previous entry"}])
            if expected_next == 0 and info.header_offset != 0:
                raise reject("bundle_corrupt", "unexpected bytes before the first ZIP entry")
            local = _read_at(self._fh, info.header_offset, 30)
            if len(local) < 30 or local[:4] != LOCAL_SIG:
                raise reject("bundle_corrupt", "missing local file header",
                             [{"path": info.orig_filename, "message": "missing local file header"}])
            flags, method = struct.unpack_from("<HH", local, 6)
            name_len, extra_len = struct.unpack_from("<HH", local, 26)
            if method != info.compress_type or (flags & 0x41) != (info.flag_bits & 0x41):
                raise reject("bundle_corrupt", "a local header disagrees with the central directory",
                             [{"path": info.orig_filename, "message": "local header mismatch"}])
            expected_next = info.header_offset + 30 + name_len + extra_len + info.compress_size
        if self.entries and expected_next > self.cd.offset:
            raise reject("bundle_corrupt", "the last ZIP entry runs into the central directory")

    def read(self, info: zipfile.ZipInfo, limit: int) -> bytes:
        """At most `limit` bytes of one entry (used for small files: manifest, package.json...)."""
        try:
            with self.zf.open(info) as stream:
                return stream.read(limit)
        except (zipfile.BadZipFile, EOFError, zlib.error, ValueError, OSError, NotImplementedError) as exc:
            raise reject("bundle_corrupt", f"corrupt entry: {exc}",
                         [{"path": info.orig_filename, "message": "corrupt entry"}]) from None


def _duplicates(entries: list[zipfile.ZipInfo]) -> list[dict]:
    problems, seen, files, dirs = [], {}, {}, set()
    for info in entries:
        name = info.orig_filename.rstrip("/")
        key = unicodedata.normalize("NFC", name).casefold()
        if key in seen:
            exact = seen[key] == info.orig_filename
            problems.append({"path": info.orig_filename, "message": "duplicate entry name" if exact else
                             f"duplicate entry name (differs from {seen[key]!r} only by case or normalization)"})
            continue
        seen[key] = info.orig_filename
        if info.is_dir():
            dirs.add(key)
        else:
            files[key] = info.orig_filename
        parts = key.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    problems += [{"path": files[k], "message": "duplicate entry name (a file is also a directory)"}
                 for k in files.keys() & dirs]
    return problems
