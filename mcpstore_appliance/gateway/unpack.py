"""Unpack a stored bundle for hosting, with the same zip safety as publishing (bundles/archive.py): the
structure checks of SafeZip (no absolute or `..` paths, links, duplicates, overlapping entries) and the
entry/size/ratio budget counted on the bytes actually inflated. The result is shared read-only by every
sandbox of that version, so it is unpacked once per sha256, into a temporary folder renamed into place.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from ..bundles.archive import CHUNK, Budget, SafeZip, reject
from ..bundles.model import BundleLimits
from ..bundles.sigblock import split_signature_blocks


def unpack_bundle(bundle: Path, dest: Path, limits: BundleLimits) -> None:
    """Unpack `bundle` into the new folder `dest` (it must not exist). Raises errors.Unprocessable."""
    with open(bundle, "rb") as fh:
        zip_end, blocks = split_signature_blocks(fh, os.fstat(fh.fileno()).st_size)
        budget = Budget(limits)
        szip = SafeZip(fh, zip_end, budget, blocks[-1].length if blocks else None)
        dest.mkdir(mode=0o755)
        root = dest.resolve()
        for info in szip.entries:
            target = (root / info.orig_filename).resolve()
            if root not in target.parents:  # SafeZip refused such names already: a second lock on the door
                raise reject("bundle_unsafe_entry", f"entry outside the bundle: {info.orig_filename}")
            if info.is_dir():
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            _write_entry(szip, info, target, budget)


def _write_entry(szip: SafeZip, info: zipfile.ZipInfo, target: Path, budget: Budget) -> None:
    executable = (info.external_attr >> 16) & 0o111
    # O_EXCL | O_NOFOLLOW: never through a link, never over a file written before (duplicates are refused anyway)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755 if executable else 0o644)
    produced = 0
    with os.fdopen(fd, "wb") as out, szip.zf.open(info) as stream:
        while chunk := stream.read(CHUNK):
            produced += len(chunk)
            budget.add_bytes(len(chunk), info.orig_filename)
            out.write(chunk)
    budget.check_ratio(info.orig_filename, produced, info.compress_size)


def unpacked_dir(cache: Path, sha256: str, bundle: Path, limits: BundleLimits) -> Path:
    """The unpacked bundle of `sha256` under `cache`, unpacked on first use."""
    final = cache / sha256
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    staging = cache / f".{sha256}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        unpack_bundle(bundle, staging, limits)
        try:
            staging.rename(final)
        except OSError:  # another session unpacked it first
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
