"""`inspect_bundle`: one .mcpb file in, a verdict out. Synchronous and CPU/IO bound: run it in a thread.

Order: signature block split -> [signature maths: one hashing pass on a thread of its own; its verdict wins
over any ZIP error, so a byte changed after signing reads as an invalid signature] -> ZIP structure -> manifest (fail fast, before the
expensive pass) -> one streaming pass over every entry (limits on real bytes, nested archives, content
scans) -> bundle scanners -> outcome. Nothing is extracted; nested ZIPs are spooled into a private temporary
folder (mode 0700, removed on return).
"""

from __future__ import annotations

import os
import struct
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import Unprocessable
from .archive import EOCD_SIG, EOCD_SIZE, Budget, SafeZip, reject
from .archive_walk import PARALLEL_MIN_BYTES, Walker
from .manifest import extract_metadata, validate_manifest_bytes
from .manifest_rules import clean_relative, is_remote, png_size
from .model import BundleLimits, BundleReport, Finding, SignatureInfo, SignatureTrust
from .scans import BundleView, ScanRun
from .sigblock import PositionalReader, SignatureBlock, hash_prefixes, split_signature_blocks
from .signature import verify_cms

MAX_ICON_BYTES = 1024 * 1024
WALK_THREADS = min(4, os.cpu_count() or 1)


class ZipFiles:
    """FileLookup over a SafeZip (used by the manifest's registry rules and by bundle scanners)."""

    def __init__(self, szip: SafeZip):
        self.szip = szip
        self.infos = {i.orig_filename: i for i in szip.entries if not i.is_dir()}
        dirs = {i.orig_filename.rstrip("/") for i in szip.entries if i.is_dir()}
        for name in self.infos:
            parts = name.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        self.dirs = dirs

    def is_file(self, path: str) -> bool:
        return path in self.infos

    def is_dir(self, path: str) -> bool:
        return path in self.dirs

    def info(self, path: str) -> zipfile.ZipInfo | None:
        return self.infos.get(path)

    def read(self, path: str, limit: int) -> bytes:
        info = self.infos.get(path)
        return self.szip.read(info, limit) if info else b""


def decide_outcome(findings: list[Finding] | tuple[Finding, ...], scanner_errors: tuple[str, ...] | list[str]) -> str:
    """critical => rejected; high or a crashed scanner => quarantined; otherwise published."""
    severities = {f.severity for f in findings}
    if "critical" in severities:
        return "rejected"
    if "high" in severities or scanner_errors:
        return "quarantined"
    return "published"


def inspect_bundle(path: Path, limits: BundleLimits, trust: SignatureTrust, *,
                   scan_run: ScanRun | None = None, file_sha256: str | None = None) -> BundleReport:
    """Read and judge one bundle. Raises errors.Unprocessable for a bundle that must be rejected outright.

    `file_sha256`: the SHA-256 of the whole file if the caller already has it (the upload hashed it while
    streaming). An unsigned bundle's unsigned_sha256 is exactly that, so the hashing pass is skipped.
    """
    with open(path, "rb") as fh, PrivateTempDir() as tmpdir:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise reject("bundle_empty", "the bundle is empty")
        zip_end, blocks = split_signature_blocks(fh, size)
        sig_len = blocks[-1].length if blocks else None
        if trust.require_signature and not blocks:
            raise Unprocessable("this registry only accepts signed bundles", code="signature_required",
                                details=[{"path": "(signature block)", "message": "the bundle is not signed"}])
        # Hashing (for the signature and unsigned_sha256) runs on its own thread, beside the ZIP work. Its
        # verdict still comes first: a byte changed after signing must read as "invalid signature", not as
        # whatever damage it happens to do to the ZIP.
        # An unsigned bundle whose hash is known needs no hashing at all: no thread for it.
        check_signature = (_Background if blocks or not file_sha256 else _Inline)(
            _signature, PositionalReader(fh.fileno()), zip_end, blocks, trust, file_sha256)
        try:
            budget = Budget(limits)
            szip = SafeZip(fh, zip_end, budget, sig_len)
            files = ZipFiles(szip)
            manifest, check = _manifest(files, limits)
            # Below PARALLEL_MIN_BYTES a scan thread costs more to start and join than it saves.
            run = scan_run or ScanRun(threaded=size >= PARALLEL_MIN_BYTES)
            walker = Walker(limits, budget, tmpdir, run)
            with run:  # content scanners work on a thread while the walker inflates
                infos = walker.walk_parallel(szip, WALK_THREADS)
        except Unprocessable:
            _raise_if_invalid(check_signature.result()[0])
            raise
        finally:
            check_signature.join()
        signature, unsigned_sha256 = check_signature.result()
        _raise_if_invalid(signature)
        run.run_bundle_scanners(BundleView(manifest, infos, files.read))

        findings = list(walker.findings)
        findings += [Finding("manifest.warning", "low", "manifest.json", f"{w['path']}: {w['message']}")
                     for w in check.warnings]
        if len(blocks) > 1:
            findings.append(Finding("signature.nested", "medium", "", f"signed {len(blocks)} times; the status "
                                    "is that of the outermost signature"))
        icon_png, icon_findings = _icon(manifest, files)
        findings += icon_findings + run.findings
        errors = tuple(sorted(run.errors))
        return BundleReport(
            manifest=manifest,
            metadata=extract_metadata(manifest, check.version or ""),
            signature=signature,
            findings=tuple(findings),
            outcome=decide_outcome(findings, errors),  # type: ignore[arg-type]
            unsigned_sha256=unsigned_sha256,
            icon_png=icon_png,
            scanner_errors=errors,
            file_count=len(infos),
            uncompressed_bytes=sum(i.size for i in infos),
        )


class _Inline:
    """_Background's interface for work done on the spot."""

    def __init__(self, fn, *args):
        self._value, self._error = None, None
        try:
            self._value = fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed to the caller in result(), like _Background
            self._error = exc

    def join(self) -> None:
        return None

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


class PrivateTempDir:
    """A private (0700) temporary folder made only when first asked for: most bundles nest no archive large
    enough to spool to disk, and making and removing a folder costs about as much as inspecting a small bundle."""

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> "PrivateTempDir":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._dir is not None:
            self._dir.cleanup()

    def __fspath__(self) -> str:
        with self._lock:  # walker threads may ask at the same time
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(prefix="mcpstore-inspect-")
        return self._dir.name


class _Background(threading.Thread):
    """Runs fn(*args) on a thread; result() joins and returns its value or re-raises its exception."""

    def __init__(self, fn, *args):
        super().__init__(name="bundle-signature", daemon=True)
        self._fn, self._args = fn, args
        self._value: Any = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._value = self._fn(*self._args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller in result()
            self._error = exc

    def result(self) -> Any:
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


def _raise_if_invalid(signature: SignatureInfo) -> None:
    if signature.status == "invalid":
        raise Unprocessable(f"invalid signature: {signature.reason}", code="signature_invalid",
                            details=[{"path": "(signature block)", "message": signature.reason}])


def _manifest(files: ZipFiles, limits: BundleLimits):
    info = files.info("manifest.json")
    if info is None:
        raise reject("manifest_missing", "the bundle has no manifest.json at its root")
    if info.file_size > limits.max_manifest_bytes:
        raise reject("manifest_too_large", f"manifest.json is larger than {limits.max_manifest_bytes} bytes",
                     [{"path": "manifest.json", "message": "too large"}])
    raw = files.read("manifest.json", limits.max_manifest_bytes + 1)
    return validate_manifest_bytes(raw, files, limits.max_manifest_bytes)


def _comment_variant_patch(fh: BinaryIO, zip_end: int, block_length: int) -> tuple[int, int] | None:
    """Where the upstream-main signer patched the EOCD comment_length to the block length, if it did:
    then the end record is the last 22 bytes of the ZIP and declares exactly the block as its comment."""
    if zip_end < EOCD_SIZE:
        return None
    fh.seek(zip_end - EOCD_SIZE)
    record = fh.read(EOCD_SIZE)
    if record[:4] == EOCD_SIG and struct.unpack_from("<H", record, 20)[0] == block_length:
        return (zip_end - 2, zip_end)
    return None


def _signature(fh: BinaryIO, zip_end: int, blocks: tuple[SignatureBlock, ...], trust: SignatureTrust,
               file_sha256: str | None = None) -> tuple[SignatureInfo, str]:
    """Verify every block (outermost first) and return the outermost status + the unsigned file's SHA-256."""
    if not blocks:
        digest = file_sha256.lower() if file_sha256 else hash_prefixes(fh, [zip_end])[zip_end].hex()
        return SignatureInfo(status="unsigned", reason="no signature block"), digest
    patch = _comment_variant_patch(fh, zip_end, blocks[-1].length)
    cuts = [block.start for block in blocks]
    computed: dict[str, dict[int, bytes]] = {"sha256": hash_prefixes(fh, cuts, patch)}

    def source_for(block: SignatureBlock):
        def digests(name: str) -> dict[str, bytes]:
            if name not in computed:
                computed[name] = hash_prefixes(fh, cuts, patch, algorithm=name)
            table = computed[name]
            found = {"prefix": table[block.start]}
            if patch and block.start == zip_end and -zip_end in table:
                found["comment-zeroed"] = table[-zip_end]
            return found
        return digests

    outer: SignatureInfo | None = None
    for block in blocks:
        info = verify_cms(block.der, source_for(block), trust)
        if info.status == "invalid":
            return info, ""
        outer = outer or info
    assert outer is not None and outer.digest_variant in ("prefix", "comment-zeroed")
    digests = source_for(blocks[0])("sha256")
    return outer, digests[outer.digest_variant].hex()


def _icon(manifest: dict, files: ZipFiles) -> tuple[bytes | None, list[Finding]]:
    icon = manifest.get("icon")
    if not isinstance(icon, str) or is_remote(icon):
        return None, []
    local = clean_relative(icon)
    info = files.info(local or "")
    if info is None:
        return None, []
    if info.file_size > MAX_ICON_BYTES:
        return None, [Finding("manifest.icon_too_large", "low", local or icon,
                              f"icon is larger than {MAX_ICON_BYTES} bytes and is not shown")]
    data = files.read(local or "", MAX_ICON_BYTES + 1)
    size = png_size(data)
    findings = []
    if size and (size[0] != size[1] or size[0] < 64):
        findings.append(Finding("manifest.icon_size", "info", local or icon,
                                f"icon is {size[0]}x{size[1]}; a square 512x512 PNG is recommended"))
    return (data if len(data) <= MAX_ICON_BYTES else None), findings

