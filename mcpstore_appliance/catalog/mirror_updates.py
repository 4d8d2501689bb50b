"""Updates of mirrored packages wait for approval: `check` asks each followed upstream package for its versions
and keeps the newer ones as pending; an administrator approves one (an import, catalog/mirror.py) or rejects it.
Nothing is imported without approval. The timer (`[mirror] check_interval_seconds`, 0 = off) only checks."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .. import audit
from ..accounts.models import Principal
from ..errors import Conflict, DomainError, NotFound
from . import semver
from .mirror_fetch import path_of
from .service import actor_of

log = logging.getLogger("mcpstore.mirror")
MAX_UPSTREAM_VERSIONS = 100  # the newest ones; older versions than what is mirrored are never offered

PENDING_SQL = (
    "SELECT m.id, m.version, m.status, m.found_at, m.decided_at, m.reason, p.namespace, p.name, o.slug AS org,"
    " u.url AS upstream, f.upstream_namespace, f.upstream_name, d.username AS decided_by"
    " FROM mirror_pending m JOIN packages p ON p.id = m.package_id JOIN orgs o ON o.id = p.org_id"
    " JOIN mirror_follows f ON f.package_id = m.package_id JOIN mirror_upstreams u ON u.id = f.upstream_id"
    " LEFT JOIN users d ON d.id = m.decided_by")


def pending_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "package": f"{row['namespace']}/{row['name']}", "version": row["version"],
            "org": row["org"], "status": row["status"], "upstream": row["upstream"],
            "upstream_release": f"{row['upstream_namespace']}/{row['upstream_name']}@{row['version']}",
            "found_at": _iso(row["found_at"]), "decided_at": _iso(row["decided_at"]),
            "decided_by": row["decided_by"], "reason": row["reason"]}


def _iso(at: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)) if at is not None else None


class MirrorUpdates:
    """Mixed into `Mirror` (db, client(), import_release)."""

    _task: asyncio.Task | None = None

    async def check(self) -> dict[str, Any]:
        """Find newer upstream versions of every mirrored package; {"found": new pending, "errors": [...]}."""
        follows = await self.db.fetch_all(
            "SELECT f.*, u.url, p.namespace, p.name, p.org_id FROM mirror_follows f JOIN mirror_upstreams u"
            " ON u.id = f.upstream_id JOIN packages p ON p.id = f.package_id ORDER BY f.package_id")
        found, errors = [], []
        for follow in follows:
            try:
                found += await self._check_one(follow)
            except DomainError as exc:  # one unreachable upstream must not hide the others' updates
                errors.append({"package": f"{follow['namespace']}/{follow['name']}", "upstream": follow["url"],
                               "code": exc.code, "message": exc.message})
        return {"found": found, "errors": errors}

    async def _check_one(self, follow: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.client(follow["url"]) as http:
            answer = await http.json(path_of("api", "packages", follow["upstream_namespace"],
                                             follow["upstream_name"], "versions"), {"limit": MAX_UPSTREAM_VERSIONS})
        offered = answer.get("versions") if isinstance(answer, dict) else None
        versions = [v for v in offered or [] if isinstance(v, dict) and v.get("state") == "published"
                    and not v.get("yanked") and isinstance(v.get("version"), str)]
        newest_key = await self.db.fetch_value("SELECT max(semver_key) FROM versions WHERE package_id = ?",
                                               (follow["package_id"],))
        fresh = []
        for item in versions:
            try:
                key = semver.parse(item["version"]).sort_key()
            except DomainError:
                continue  # not a version this registry could hold
            if newest_key is None or key > newest_key:
                fresh.append((key, item["version"]))
        fresh = [version for _, version in sorted(fresh)]  # oldest first, as they were released
        created = []
        async with self.db.write() as tx:
            for version in fresh:
                if await tx.fetch_value("SELECT 1 FROM mirror_pending WHERE package_id = ? AND version = ?",
                                        (follow["package_id"], version)):
                    continue  # found before: pending, or decided (a rejected version is not offered again)
                created.append(await tx.insert("mirror_pending", {
                    "package_id": follow["package_id"], "version": version, "found_at": time.time()}))
                await audit.record(tx, audit.SYSTEM, "mirror.update_found", org_id=follow["org_id"],
                                   target=f"{follow['namespace']}/{follow['name']}@{version}",
                                   details={"upstream": follow["url"]})
        return [pending_view(row) for row in await self.db.fetch_all(
            PENDING_SQL + f" WHERE m.id IN ({', '.join('?' * len(created))}) ORDER BY m.id", created)] if created else []

    async def pending(self, status: str | None = "pending") -> list[dict[str, Any]]:
        where, params = ("WHERE m.status = ?", (status,)) if status else ("", ())
        return [pending_view(row) for row in await self.db.fetch_all(f"{PENDING_SQL} {where} ORDER BY m.id", params)]

    async def _pending_row(self, pending_id: int) -> dict[str, Any]:
        row = await self.db.fetch_one(PENDING_SQL + " WHERE m.id = ?", (pending_id,))
        if row is None:
            raise NotFound(f"no pending mirror update {pending_id}", code="no_such_update")
        if row["status"] != "pending":
            raise Conflict(f"update {pending_id} was already {row['status']}", code="already_decided",
                           details={"status": row["status"]})
        return row

    async def approve(self, admin: Principal, pending_id: int, ip: str | None = None) -> dict[str, Any]:
        """Import the pending version, verified and scanned like any import; it stays pending if that fails."""
        row = await self._pending_row(pending_id)
        release = f"{row['upstream_namespace']}/{row['upstream_name']}@{row['version']}"
        answer = await self.import_release(admin, row["upstream"], release, row["org"], ip=ip, pending_id=pending_id)
        if not answer["created"]:  # imported by hand meanwhile: the update is settled all the same
            async with self.db.write() as tx:
                await tx.execute("UPDATE mirror_pending SET status = 'approved', decided_by = ?, decided_at = ?"
                                 " WHERE id = ? AND status = 'pending'", (admin.id, time.time(), pending_id))
        return answer

    async def reject(self, admin: Principal, pending_id: int, reason: str | None = None,
                     ip: str | None = None) -> dict[str, Any]:
        row = await self._pending_row(pending_id)
        async with self.db.write() as tx:
            changed = await tx.changes(
                "UPDATE mirror_pending SET status = 'rejected', decided_by = ?, decided_at = ?, reason = ?"
                " WHERE id = ? AND status = 'pending'", (admin.id, time.time(), reason, pending_id))
            if not changed:
                raise Conflict(f"update {pending_id} was decided meanwhile", code="already_decided")
            await audit.record(tx, actor_of(admin, ip), "mirror.reject",
                               org_id=await tx.fetch_value("SELECT id FROM orgs WHERE slug = ?", (row["org"],)),
                               target=f"{row['namespace']}/{row['name']}@{row['version']}",
                               details={"upstream": row["upstream"], "reason": reason})
        return pending_view(await self.db.fetch_one(PENDING_SQL + " WHERE m.id = ?", (pending_id,)))

    # --- the timer ----------------------------------------------------------------------------------------

    def start(self, interval: float) -> None:
        """Check every `interval` seconds (0: never; `mcpstore admin mirror check` still works)."""
        if interval <= 0:
            return

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    result = await self.check()
                    if result["found"] or result["errors"]:
                        log.info("mirror check: %d new pending, %d errors", len(result["found"]), len(result["errors"]))
                except Exception:  # a failed round must not end the timer
                    log.exception("mirror check failed")

        self._task = asyncio.get_running_loop().create_task(loop(), name="mirror-check")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
