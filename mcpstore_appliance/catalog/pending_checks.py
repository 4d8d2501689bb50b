"""Versions whose hosted check outlived their publish (catalog/publish.py, gateway/publish_check.py).

Such a version is stored quarantined with a `hosted_checks` row, which shows it to its managers as pending
("checking") and keeps it out of search, /v0.1, downloads and the gateway. When the check ends, `finish` decides
in one transaction: published (its ledger leaf, then "latest") if neither the check nor the rest of the scans
found anything that needs review, otherwise quarantined for an administrator with the check's findings.

A restart loses the running sandbox: `resume` starts each pending check again from the stored bundle, at most
MAX_ATTEMPTS times; one it cannot resume is quarantined with a finding that says why. Each row names the process
running it (`Runner`), so that with several worker processes only the checks of a process that is gone are
resumed (by the leader, at its start and every ORPHAN_SECONDS), never one another worker is still running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import audit
from ..audit.context import APPLIANCE
from ..blobs.base import BlobStore
from ..bundles.model import Finding
from ..db import Database
from ..ledger import events as ledger_events
from .dependencies import HostedCheck, HostedRun, ReleaseLedger
from .service import seal_org, refresh_latest

log = logging.getLogger("mcpstore.publish")
MAX_ATTEMPTS = 3  # a check that keeps being interrupted (a crash it causes, say) is not resumed forever
ORPHAN_SECONDS = 10.0


class Runner:
    """This process's name on the checks it runs: its pid, the kernel's start time of that pid (pids are
    reused), and a token of this PendingChecks (tests run several appliances one after another in one process)."""

    def __init__(self):
        self.name = f"{os.getpid()}:{_start_time(os.getpid())}:{secrets.token_hex(4)}"

    def runs(self, name: str | None) -> bool:
        """Whether the check named `name` still has a live runner: this one, or another live process."""
        if name is None:
            return False
        pid, start, _ = (name.split(":") + ["", ""])[:3]
        if name == self.name:
            return True
        if not pid.isdigit() or int(pid) == os.getpid():  # an earlier appliance of this process: it stopped
            return False
        return _start_time(int(pid)) == start


def _start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat (start time in clock ticks); "" when the process is gone or not Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]

PENDING_SQL = (
    "SELECT h.version_id, h.then_state, h.attempts, h.runner, v.version, v.sha256, v.size, v.findings_json,"
    " v.manifest_json, v.signer_fingerprint, v.package_id, p.namespace, p.name, p.org_id, p.owner_user_id,"
    " p.visibility, u.username AS publisher FROM hosted_checks h JOIN versions v ON v.id = h.version_id"
    " JOIN packages p ON p.id = v.package_id LEFT JOIN users u ON u.id = v.publisher_user_id")


class PendingChecks:
    def __init__(self, db: Database, blobs: BlobStore, ledger: ReleaseLedger, check: HostedCheck | None,
                 tmp_dir: Path):
        self.db, self.blobs, self.ledger, self.check, self.tmp_dir = db, blobs, ledger, check, tmp_dir
        self.runner = Runner()
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None

    def follow(self, version_id: int, run: HostedRun) -> None:
        """Wait for `run` in the background, then finish the version."""
        task = asyncio.create_task(self._follow(version_id, run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, version_id: int, run: HostedRun) -> None:
        try:
            found = await run.result()
        except asyncio.CancelledError:
            run.cancel()  # shutting down: the row stays, and the next start resumes the check
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed: a check that broke quarantines
            log.exception("hosted check of version %s failed", version_id)
            found = [_finding("check_failed", f"the start-up check failed: {exc}"[:300])]
        await self.finish(version_id, found)

    async def finish(self, version_id: int, found: list[Finding]) -> str | None:
        """Record the check's findings and decide the version; its new state (None: nothing was pending)."""
        async with self.db.write() as tx:
            row = await tx.fetch_one(PENDING_SQL + " WHERE h.version_id = ?", (version_id,))
            if row is None:
                return None
            await tx.execute("DELETE FROM hosted_checks WHERE version_id = ?", (version_id,))
            findings = json.loads(row["findings_json"]) + [dataclasses.asdict(f) for f in found]
            state = "published" if row["then_state"] == "published" and _passes(found) else "quarantined"
            now = time.time()
            index = None
            if state == "published":
                index = await self.ledger.append(tx, ledger_events.publish_event(
                    namespace=row["namespace"], name=row["name"], version=row["version"], sha256=row["sha256"],
                    size=row["size"], publisher=row["publisher"] or "unknown",
                    signer_fingerprint=row["signer_fingerprint"]), org_id=seal_org(row))
            await tx.execute(
                "UPDATE versions SET state = ?, ledger_index = coalesce(?, ledger_index), findings_json = ?,"
                " updated_at = ? WHERE id = ?",
                (state, index,
                 json.dumps(findings, ensure_ascii=False), now, version_id))
            await audit.record(tx, audit.SYSTEM, "package.hosted_check", org_id=row["org_id"],
                               target=f"{row['namespace']}/{row['name']}@{row['version']}",
                               details={"state": state, "findings": [f.check_id for f in found],
                                        "ledger_index": index}, where=APPLIANCE)
            await refresh_latest(tx, row["package_id"])
        log.info("hosted check of %s/%s@%s ended: %s", row["namespace"], row["name"], row["version"], state)
        return state

    def watch(self) -> None:
        """In the leader: resume interrupted checks now, then every ORPHAN_SECONDS (a worker may die)."""
        async def loop() -> None:
            while True:
                try:
                    await self.resume()
                except Exception:  # the database busy now: next time
                    log.exception("resuming interrupted hosted checks failed")
                await asyncio.sleep(ORPHAN_SECONDS)

        self._sweeper = asyncio.get_running_loop().create_task(loop(), name="pending-checks")

    async def resume(self) -> None:
        """Each check whose process is gone (a stop, a crash) begins again from the stored bundle, or fails clearly."""
        for row in await self.db.fetch_all(PENDING_SQL + " ORDER BY h.version_id"):
            if self.runner.runs(row["runner"]) or not await self._claim(row):
                continue
            why = await self._restart(row)
            if why is not None:
                await self.finish(row["version_id"], [_finding("interrupted", "the start-up check was interrupted "
                                                                              f"by a restart and {why}")])

    async def _claim(self, row: dict[str, Any]) -> bool:
        """Take the check over from its gone runner, unless another process took it first."""
        async with self.db.write() as tx:
            return await tx.changes(
                "UPDATE hosted_checks SET runner = ?, attempts = attempts + 1 WHERE version_id = ? AND runner IS ?",
                (self.runner.name, row["version_id"], row["runner"])) == 1

    async def _restart(self, row: dict[str, Any]) -> str | None:
        """None when the check runs again; otherwise why it could not."""
        if self.check is None:
            return "could not be resumed: the check is off now (no sandbox backend, or hosted.publish_check false)"
        if row["attempts"] >= MAX_ATTEMPTS:
            return f"was not resumed again after {row['attempts']} attempts"
        try:
            run = await self._start_from_blob(row["sha256"], json.loads(row["manifest_json"]))
        except Exception as exc:  # noqa: BLE001 - whatever stops it is the reason given
            return f"could not be resumed: {exc}"[:200]
        log.info("resuming the hosted check of %s/%s@%s", row["namespace"], row["name"], row["version"])
        self.follow(row["version_id"], run)
        return None

    async def _start_from_blob(self, sha256: str, manifest: dict[str, Any]) -> HostedRun:
        assert self.check is not None
        local = self.blobs.local_file(sha256)
        if local is not None:
            return await self.check.start(local, manifest)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.tmp_dir, suffix=".mcpb") as tmp:
            async for chunk in self.blobs.open_range(sha256):
                tmp.write(chunk)
            tmp.flush()
            return await self.check.start(Path(tmp.name), manifest)  # unpacked before it returns

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _passes(found: list[Finding]) -> bool:
    """The scan policy (bundles/inspector.py) says the check's findings need no review."""
    from ..bundles.inspector import decide_outcome  # late, as in publish.py: the bundles part is large

    return decide_outcome(found, ()) == "published"


def _finding(kind: str, message: str) -> Finding:
    return Finding(check_id=f"hosted.{kind}", severity="high", file="", message=message)
