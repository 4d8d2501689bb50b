"""Running the scanners over one bundle: content scanners as the archive walker's sink, bundle scanners once
at the end over a BundleView. A scanner that raises is recorded, never ignored."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..archive_walk import FileInfo
from ..manifest_rules import clean_relative
from ..model import Finding
from ..secret_rules import MAX_SECRET_LENGTH
from .registry import SCANNERS, Scanner

SMALL_FILE = 1024 * 1024  # package.json, pyproject.toml, entry points: read at most this much
MAX_FINDINGS_PER_SCANNER = 50


class BundleView:
    """What bundle scanners see. `read` re-reads one (small) file from the archive."""

    def __init__(self, manifest: dict, files: list[FileInfo], reader: Callable[[str, int], bytes]):
        self.manifest = manifest
        self.files: dict[str, FileInfo] = {f.path: f for f in files}
        self._reader = reader
        dirs: set[str] = set()
        for path in self.files:
            parts = path.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        self.dirs = frozenset(dirs)

    @property
    def server(self) -> dict:
        server = self.manifest.get("server")
        return server if isinstance(server, dict) else {}

    @property
    def entry_point(self) -> str | None:
        entry = self.server.get("entry_point")
        return clean_relative(entry) if isinstance(entry, str) else None

    def is_file(self, path: str) -> bool:
        return path in self.files

    def is_dir(self, path: str) -> bool:
        return path in self.dirs

    def read(self, path: str, limit: int = SMALL_FILE) -> bytes:
        return self._reader(path, limit)

    def read_json(self, path: str) -> Any:
        try:
            return json.loads(self.read(path).decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None


class ScanRun:
    """Runs the registry: content scanners as a sink for the archive walker, bundle scanners at the end.

    Use it as a context manager around the walk: content scanners then run on a worker thread fed through a
    small bounded queue (at most QUEUE_CHUNKS chunks of 1 MiB in flight), so scanning overlaps with inflating;
    zlib, hashlib and the Aho-Corasick search all release the GIL. Leaving the block drains and joins it.
    """

    WINDOW_OVERLAP = MAX_SECRET_LENGTH
    QUEUE_CHUNKS = 8

    def __init__(self, scanners: list[Scanner] | None = None, *, threaded: bool = True):
        chosen = SCANNERS if scanners is None else scanners
        self.content = [s for s in chosen if s.kind == "content"]
        self.bundle = [s for s in chosen if s.kind == "bundle"]
        self.errors: dict[str, str] = {}
        self._findings: dict[tuple[str, str, str], Finding] = {}
        self._per_scanner: dict[str, int] = {}
        self._carry: dict[str, bytes] = {}
        self._threaded = threaded
        self._queue: queue.Queue | None = None
        self._worker: threading.Thread | None = None
        self._inline = threading.Lock()

    def __enter__(self) -> "ScanRun":
        if self._threaded and self.content:
            self._queue = queue.Queue(maxsize=self.QUEUE_CHUNKS)
            self._worker = threading.Thread(target=self._work, name="bundle-content-scan", daemon=True)
            self._worker.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._worker is not None and self._queue is not None:
            self._queue.put(None)
            self._worker.join()
            self._worker = self._queue = None

    # ContentSink protocol
    def feed(self, path: str, chunk: bytes) -> None:
        if self._queue is not None:
            self._queue.put((path, chunk))
        else:
            with self._inline:  # several walker threads may feed at once
                self._scan(path, chunk)

    def close(self, path: str) -> None:
        if self._queue is not None:
            self._queue.put((path, None))
        else:
            self._carry.pop(path, None)

    def _work(self) -> None:
        assert self._queue is not None
        while (item := self._queue.get()) is not None:
            path, chunk = item
            try:
                if chunk is None:
                    self._carry.pop(path, None)
                else:
                    self._scan(path, chunk)
            except Exception as exc:  # noqa: BLE001 - a bug outside any scanner still fails closed
                self.errors.setdefault("content_scan", f"{type(exc).__name__}: {exc}"[:300])

    def _scan(self, path: str, chunk: bytes) -> None:
        window = self._carry.get(path, b"") + chunk if path in self._carry else chunk
        self._carry[path] = window[-self.WINDOW_OVERLAP:]
        for scanner in self.content:
            self._run(scanner, scanner.fn, path, window)

    def run_bundle_scanners(self, view: BundleView) -> None:
        for scanner in self.bundle:
            self._run(scanner, scanner.fn, view)

    def _run(self, scanner: Scanner, fn: Callable[..., Iterable[Finding]], *args: Any) -> None:
        if scanner.name in self.errors:
            return
        try:
            found = list(fn(*args))
        except Exception as exc:  # noqa: BLE001 - any crash must quarantine, never publish
            self.errors[scanner.name] = f"{type(exc).__name__}: {exc}"[:300]
            return
        for finding in found:
            key = (finding.check_id, finding.file, finding.message)  # windows overlap: same hit twice
            if key not in self._findings and self._per_scanner.get(scanner.name, 0) < MAX_FINDINGS_PER_SCANNER:
                self._findings[key] = finding
                self._per_scanner[scanner.name] = self._per_scanner.get(scanner.name, 0) + 1

    @property
    def findings(self) -> list[Finding]:
        crashed = [Finding(f"scanner_error.{name}", "high", "",
                           f"scanner {name} crashed ({message}); quarantined until an admin reviews the bundle")
                   for name, message in self.errors.items()]
        return list(self._findings.values()) + crashed
