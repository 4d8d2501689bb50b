"""The publish pipeline (invariant 2 in docs/architecture.md): atomic, fail-closed, immutable versions.

1. Check the options and the caller's right to the namespace, before reading a byte of the body.
2. Stream the body into a private temp file while hashing it, the size cap enforced as it streams.
3. Inspect the bundle in a worker thread (safe zip reading, strict manifest, signature, scans).
4. Decide: rejected -> 4xx listing the findings, nothing stored; otherwise published or quarantined.
5. Put the blob (content-addressed: identical uploads share one copy, a retry reuses it).
6. ONE write transaction: (namespace, name, version) still free, the package row on first publish, the version
   row, its ledger leaf (published versions only), the audit event, "latest".
7. After the commit: the inclusion proof against a signed checkpoint, for the response.

The options are parsed in publish_options.py; what the inspection decides and the result returned are in
publish_result.py.

A failure at any step before the commit leaves no version row, no ledger leaf and no blob (orphans.py takes
the publish's blobs back unless a version refers to them); the temp file is always removed, and what a crash
leaves is swept later. Concurrent publishes of one version serialize on the single writer; the re-check
inside the transaction (backed by the UNIQUE constraints) lets exactly one win.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any, Awaitable, Callable

from .. import audit
from ..accounts.models import ROLES_THAT_PUBLISH, Principal
from ..blobs.base import BlobStore
from ..bundles.model import BundleLimits, BundleReport, SignatureTrust
from ..config import ConfigError, Settings
from ..db import Database, Transaction
from ..errors import Conflict, DomainError, Forbidden, Unprocessable
from ..ledger import events as ledger_events
from . import semver
from .dependencies import Counters, HostedCheck, HostedRun, ReleaseLedger
from .orphans import StoredForPublish
from .pending_checks import PendingChecks
from .pricing import Pricing, check_price_bounds, parse_pricing
from .publish_options import PublishOptions, Target, check_visibility
from .publish_result import PublishResult, check_name_and_version, decide, rejection
from .service import actor_of, ledger_proof, refresh_latest, seal_org
from .uploads import Upload, spooled
from .visibility import can_manage

log = logging.getLogger("mcpstore.publish")

Inspector = Callable[..., BundleReport]  # (path, BundleLimits, SignatureTrust, *, file_sha256) -> BundleReport
# Rows another part writes with the version, in its transaction: (tx, version id, state); the curated mirror's
# provenance record (catalog/mirror.py). Raising there rolls the whole publish back.
AlsoWrite = Callable[[Transaction, int, str], Awaitable[None]]


def default_inspector() -> Inspector:
    from ..bundles import inspect_bundle  # imported late: the bundles part is large and optional for unit tests

    return inspect_bundle


class Publisher:
    def __init__(self, db: Database, blobs: BlobStore, ledger: ReleaseLedger, settings: Settings, *,
                 metrics: Counters | None = None, inspector: Inspector | None = None,
                 hosted_check: HostedCheck | None = None):
        self.db = db
        self.blobs = blobs
        self.ledger = ledger
        self.settings = settings
        self.metrics = metrics
        self.max_bytes = settings.publish.max_bundle_bytes
        self.tmp_dir = Path(settings.data_dir) / "tmp"
        self.limits = BundleLimits.from_settings(settings.publish)
        try:
            self.trust = SignatureTrust.from_settings(settings.publish)
        except OSError as exc:
            raise ConfigError(f"config: cannot read publish.trusted_ca_file: {exc.strerror or exc}") from None
        self._inspector = inspector
        self.hosted_check = hosted_check
        self.pending = PendingChecks(db, blobs, ledger, hosted_check, self.tmp_dir)  # checks outliving a publish
        # Inspection is CPU- and memory-heavy; bound how many run at once so a burst of uploads queues
        # instead of exhausting the worker threads everything else shares.
        self._inspections = asyncio.Semaphore(max(2, min(4, os.cpu_count() or 2)))

    # --- entry point --------------------------------------------------------------------------------

    async def publish(self, principal: Principal, options: PublishOptions, chunks: AsyncIterable[bytes], *,
                      declared_size: int | None = None, ip: str | None = None, target: Target | None = None,
                      also: AlsoWrite | None = None) -> PublishResult:
        """`target`: where an operator's import goes (the mirror decides it; otherwise the caller's right to the
        namespace does); `also`: rows written in the publish's own transaction."""
        outcome = "error"
        try:
            result = await self._publish(principal, options, chunks, declared_size, ip, target, also)
            outcome = result.state
            return result
        except Unprocessable as exc:
            outcome = "rejected" if exc.code != "inspection_failed" else "error"
            raise
        except DomainError:
            outcome = "refused"
            raise
        finally:
            if self.metrics is not None:
                self.metrics.inc("mcpstore_publishes_total", outcome=outcome,
                               help="Publish requests by outcome: published, quarantined, rejected, refused, error")

    async def _publish(self, principal: Principal, options: PublishOptions, chunks: AsyncIterable[bytes],
                       declared_size: int | None, ip: str | None, target: Target | None,
                       also: AlsoWrite | None) -> PublishResult:
        target = target or await self.target_for(principal, options.namespace)
        check_visibility(target, options.visibility)
        if options.pricing is not None:
            check_price_bounds(options.pricing, self.settings.market)
        clock = _Clock()
        async with spooled(chunks, self.tmp_dir, self.max_bytes, declared_size=declared_size) as upload:
            clock.lap("receive")
            # Flush the upload to disk while the CPU inspects it, so the blob store's own fsync finds little
            # left to write.
            flushing = asyncio.create_task(asyncio.to_thread(_flush, upload.path))
            try:
                report = await self.inspect(upload)
            finally:
                await flushing
            clock.lap("inspect")
            report, running = await self._checked_as_hosted(target, options, report, upload)
            try:
                state = decide(report, self.settings.publish.require_signature)
                if state == "rejected":
                    raise rejection(report)
                name, version = report.metadata.name, report.metadata.version
                parsed = check_name_and_version(name, version)
                await self._precheck_free(target, name, version, parsed)
                async with StoredForPublish(self.db, self.blobs) as stored:
                    await stored.put_file(upload.path, upload.sha256)
                    icon = await stored.put_bytes(report.icon_png) if report.icon_png else None
                    clock.lap("blob")
                    result = await self._commit(principal, target, options, upload, report, state, parsed, icon,
                                                ip, also, pending=running is not None)
            except BaseException:
                if running is not None:
                    running.cancel()
                raise
            if running is not None:
                self.pending.follow(result.version_id, running)
                state = result.state
            clock.lap("commit")
        result.ledger = await ledger_proof(self.ledger, result.ledger_index) if state == "published" else None
        clock.lap("proof")
        log.debug("published %s/%s@%s (%s, %d bytes): %s", target.namespace, result.name, result.version, state,
                  upload.size, clock)
        return result

    # --- authorization --------------------------------------------------------------------------------

    async def target_for(self, principal: Principal, namespace: str | None) -> Target:
        """The caller's own namespace, or an org where they hold a publishing role. Anything else is refused
        with one message whether the namespace exists or not, so the answer reveals no names."""
        namespace = namespace or principal.user.username
        row = await self.db.fetch_one("SELECT name, user_id, org_id FROM namespaces WHERE name = ?", (namespace,))
        if row is not None and row["user_id"] is not None and row["user_id"] == principal.id:
            if principal.token_org_id is not None:
                raise Forbidden("this token is bound to an organization and can publish only there",
                                code="namespace_forbidden", details={"namespace": namespace})
            return Target(namespace, None, principal.id)
        if row is not None and row["org_id"] is not None:
            role = principal.role_in(row["org_id"])
            if role in ROLES_THAT_PUBLISH:
                return Target(namespace, row["org_id"], None)
            if role is not None:
                raise Forbidden(f"your role in {namespace!r} is {role}; publishing needs owner, admin or publisher",
                                code="namespace_forbidden", details={"namespace": namespace, "role": role})
        raise Forbidden(f"you cannot publish to namespace {namespace[:60]!r}: publish to your own namespace or to "
                        "an organization where you are an owner, admin or publisher",
                        code="namespace_forbidden", details={"namespace": namespace[:60]})

    # --- inspection -------------------------------------------------------------------------------------

    async def inspect(self, upload: Upload) -> BundleReport:
        inspector = self._inspector or default_inspector()
        async with self._inspections:
            try:
                # The upload's sha256 spares the inspector a hashing pass over an unsigned bundle.
                return await asyncio.to_thread(inspector, upload.path, self.limits, self.trust,
                                               file_sha256=upload.sha256)
            except DomainError:
                raise
            except Exception:
                # A crash of the reader itself leaves us no manifest to quarantine under: refuse (fail
                # closed) with a 4xx, and keep the traceback for the operator.
                log.exception("bundle inspection crashed")
                raise Unprocessable("the bundle could not be inspected (an internal error, logged for the "
                                    "operator); nothing was stored", code="inspection_failed") from None

    async def _checked_as_hosted(self, target: Target, options: PublishOptions, report: BundleReport,
                                 upload: Upload) -> tuple[BundleReport, HostedRun | None]:
        """A bundle this registry hosts (hobbyist tier) is started once in the sandbox; what goes wrong joins the
        scans' findings under the same policy. A check still running after its budget is returned to go on in
        the background (the version pending)."""
        if self.hosted_check is None or report.outcome == "rejected":
            return report, None
        tier = options.pricing.tier if options.pricing is not None else await self.db.fetch_value(
            "SELECT tier FROM packages WHERE namespace = ? AND name = ?",
            (target.namespace, report.metadata.name), default="hobbyist")
        if tier != "hobbyist":
            return report, None
        run = await self.hosted_check.start(upload.path, report.manifest)
        try:
            found = await run.wait(self.hosted_check.budget)
        except BaseException:
            run.cancel()
            raise
        if found is None:
            return report, run
        if not found:
            return report, None
        from ..bundles.inspector import decide_outcome  # late, as default_inspector: the bundles part is large
        findings = report.findings + tuple(found)
        return dataclasses.replace(report, findings=findings,
                                   outcome=decide_outcome(findings, report.scanner_errors)), None

    # --- storing -------------------------------------------------------------------------------------

    async def _precheck_free(self, target: Target, name: str, version: str, parsed: semver.Version) -> None:
        """Refuse a taken version before storing its blob (the authoritative check is in the transaction, so
        one query without a snapshot transaction is enough here)."""
        await _ensure_free(self.db, target.namespace, name, version, parsed)

    async def _commit(self, principal: Principal, target: Target, options: PublishOptions, upload: Upload,
                      report: BundleReport, state: str, parsed: semver.Version, icon: str | None,
                      ip: str | None, also: AlsoWrite | None = None, pending: bool = False
                      ) -> PublishResult:
        """`pending`: the hosted check goes on; stored quarantined (fail closed) and shown as pending until it
        ends (pending_checks.py), then published if `state` (what the scans decided) allows."""
        meta = report.metadata
        then_state, state = state, ("pending" if pending else state)
        try:
            async with self.db.write() as tx:
                await _ensure_free(tx, target.namespace, meta.name, meta.version, parsed)
                package, created = await self._package(tx, principal, target, meta.name, options)
                pricing = options.pricing or package_pricing(package)
                version_id = await tx.insert("versions", version_row(
                    package["id"], report, "quarantined" if pending else state, parsed, upload, options.changelog,
                    pricing, principal.id, icon))
                if pending:
                    await tx.insert("hosted_checks", {"version_id": version_id, "then_state": then_state,
                                                      "started_at": time.time(), "runner": self.pending.runner.name})
                index = None
                if state == "published":
                    event = ledger_events.publish_event(
                        namespace=target.namespace, name=meta.name, version=meta.version, sha256=upload.sha256,
                        size=upload.size, publisher=principal.user.username,
                        signer_fingerprint=report.signature.fingerprint_sha256)
                    index = await self.ledger.append(tx, event, org_id=seal_org(package))
                    await tx.execute("UPDATE versions SET ledger_index = ? WHERE id = ?", (index, version_id))
                if also is not None:
                    await also(tx, version_id, state)
                await audit.record(tx, actor_of(principal, ip), "package.publish", org_id=package["org_id"],
                                   target=f"{target.namespace}/{meta.name}@{meta.version}",
                                   details={"state": state, "sha256": upload.sha256, "size": upload.size,
                                            "signature": report.signature.status, "ledger_index": index,
                                            "findings": len(report.findings), "package_created": created})
                latest = await refresh_latest(tx, package["id"])
        except sqlite3.IntegrityError:
            # The in-transaction check makes this unreachable with one writer; the constraint is the backstop.
            raise version_exists(target.namespace, meta.name, meta.version, None) from None
        result = PublishResult(version_id, package["id"], target.namespace, meta.name, meta.version, state,
                               upload.sha256, upload.size, report, pricing, package["visibility"],
                               package["category"], created, latest == version_id, ledger_index=index,
                               icon_sha256=icon)
        return result

    async def _package(self, tx: Transaction, principal: Principal, target: Target, name: str,
                       options: PublishOptions) -> tuple[dict[str, Any], bool]:
        """The package row, created on first publish; options given on a later publish update it."""
        package = await tx.fetch_one("SELECT * FROM packages WHERE namespace = ? AND name = ?",
                                     (target.namespace, name))
        now = time.time()
        pricing = options.pricing
        if package is None:
            pricing = pricing or parse_pricing(None, None, None, None, None)
            default_visibility = "org" if target.org_id is not None else "public"
            package_id = await tx.insert("packages", {
                "namespace": target.namespace, "name": name, "org_id": target.org_id,
                "owner_user_id": target.owner_user_id, "visibility": options.visibility or default_visibility,
                "category": options.category, "pricing_model": pricing.model, "price_amount": pricing.amount,
                "currency": pricing.currency, "tier": pricing.tier, "endpoint_url": pricing.endpoint,
                "created_at": now, "updated_at": now})
            return await tx.fetch_one("SELECT * FROM packages WHERE id = ?", (package_id,)), True
        if not can_manage(principal, package) or package["org_id"] != target.org_id:
            raise Forbidden(f"you may not publish new versions of {target.namespace}/{name}",
                            code="not_package_manager")
        updates: dict[str, Any] = {}
        if options.visibility:
            updates["visibility"] = options.visibility
        if options.category:
            updates["category"] = options.category
        if pricing is not None:
            updates.update({"pricing_model": pricing.model, "price_amount": pricing.amount,
                            "currency": pricing.currency, "tier": pricing.tier, "endpoint_url": pricing.endpoint})
        if updates:
            assignments = ", ".join(f"{column} = ?" for column in updates)
            await tx.execute(f"UPDATE packages SET {assignments}, updated_at = ? WHERE id = ?",
                             (*updates.values(), now, package["id"]))
            package = await tx.fetch_one("SELECT * FROM packages WHERE id = ?", (package["id"],))
        return package, False


# --- helpers ----------------------------------------------------------------------------------------------

def _flush(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Clock:
    """Phase timings of one publish, for the debug log (where the time of a slow publish went)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.laps: list[tuple[str, float]] = []
        self.cpu_start = time.process_time()  # the whole process: other requests count too

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps.append((name, now - self.last))
        self.last = now

    def __str__(self) -> str:
        cpu = time.process_time() - self.cpu_start
        return " ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in self.laps) + \
            f" (process CPU {cpu * 1000:.0f} ms)"


def version_exists(namespace: str, name: str, version: str, existing: dict | None) -> Conflict:
    detail = ""
    if existing is not None:
        status = "yanked" if existing.get("yanked_at") is not None else existing["state"]
        same = "" if existing["version"] == version else f" as {existing['version']}"
        detail = f" ({status}{same})"
    return Conflict(f"{namespace}/{name}@{version} already exists{detail}; versions are immutable, publish a new "
                    "version number", code="version_exists",
                    details={"namespace": namespace, "name": name, "version": version})


async def _ensure_free(q: Any, namespace: str, name: str, version: str, parsed: semver.Version) -> None:
    existing = await q.fetch_one(
        "SELECT v.version, v.state, v.yanked_at FROM versions v JOIN packages p ON p.id = v.package_id"
        " WHERE p.namespace = ? AND p.name = ? AND (v.version = ? OR v.semver_key = ?)",
        (namespace, name, version, parsed.sort_key()))
    if existing is not None:
        raise version_exists(namespace, name, version, existing)


def package_pricing(package: dict[str, Any]) -> Pricing:
    return Pricing(package["pricing_model"], package["price_amount"], package["currency"], package["tier"],
                   package["endpoint_url"])


def version_row(package_id: int, report: BundleReport, state: str, parsed: semver.Version, upload: Upload,
                changelog: str | None, pricing: Pricing, publisher_id: int, icon: str | None) -> dict[str, Any]:
    data = report.to_dict()
    meta, signature = report.metadata, report.signature
    now = time.time()
    return {
        "package_id": package_id, "version": meta.version, "semver_key": parsed.sort_key(),
        "is_prerelease": int(parsed.is_prerelease), "state": state,
        "sha256": upload.sha256, "size": upload.size, "unsigned_sha256": report.unsigned_sha256,
        "manifest_version": meta.manifest_version,
        "manifest_json": json.dumps(report.manifest, ensure_ascii=False, separators=(",", ":")),
        "metadata_json": json.dumps(data["metadata"], ensure_ascii=False, separators=(",", ":")),
        "platforms": json.dumps(sorted(meta.platforms)),
        "runtimes": json.dumps(sorted(meta.runtimes)),  # runtime names; the ranges are in metadata_json
        "signature_status": signature.status, "signer_subject": signature.subject,
        "signer_issuer": signature.issuer, "signer_not_before": data["signature"]["not_before"],
        "signer_not_after": data["signature"]["not_after"], "signer_fingerprint": signature.fingerprint_sha256,
        "signature_reason": signature.reason or None,
        "findings_json": json.dumps(data["findings"], ensure_ascii=False),
        "changelog": changelog,
        "pricing_model": pricing.model, "price_amount": pricing.amount, "currency": pricing.currency,
        "tier": pricing.tier, "endpoint_url": pricing.endpoint,
        "publisher_user_id": publisher_id, "icon_sha256": icon,
        "published_at": now, "updated_at": now,
    }
