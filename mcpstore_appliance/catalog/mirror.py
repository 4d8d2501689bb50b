"""The curated mirror: an administrator imports an approved release from an upstream registry (another
appliance, or anything serving the same /api/packages and /ledger API) into an organization here.

An import (1) fetches the release's metadata and streams its bundle to a private file, hashing it; (2) checks
the upstream's ledger with the client check `mcpstore verify` uses (ledger/client_check.py): the checkpoint
signed by the upstream key pinned here, consistent with the last upstream checkpoint kept, the release's
publish leaf recording exactly these bytes (sha256 and size), and its inclusion proof against that checkpoint;
(3) publishes the bytes through this appliance's own pipeline (catalog/publish.py: inspection, scans,
quarantine, our own ledger leaf) and, in that same transaction, writes the provenance record (upstream URL,
leaf index, the leaf, the checkpoint verbatim, the proof, who and when). Any refusal before the commit stores
nothing.

Upstream keys are pinned per upstream: given by the administrator (`--key`, what the upstream's operator hands
out with `mcpstore ledger keys`), or the key the upstream serves when it is added, recorded as "first-use" and
pinned from then on. Newer upstream versions of mirrored packages are found by `check` and wait as pending
until an administrator approves (an import as above) or rejects them (catalog/mirror_updates.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import audit
from ..accounts.models import Principal
from ..config import Settings
from ..db import Database, Transaction
from ..errors import Conflict, InvalidInput, NotFound, Unprocessable, UpstreamFailed
from ..ledger import note as notes
from ..ledger.client_check import BundleVerifier, TrustState, VerifyFailure, parse_release
from . import semver
from .mirror_fetch import UpstreamClient, path_of, upstream_url
from .mirror_updates import MirrorUpdates
from .names import NAMESPACE, PACKAGE_NAME
from .publish import Publisher
from .publish_options import PublishOptions, Target
from .service import actor_of

SHA256_CHARS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Release:
    namespace: str
    name: str
    version: str

    @classmethod
    def parse(cls, text: str) -> "Release":
        try:
            namespace, name, version = parse_release(text if isinstance(text, str) else "")
            semver.parse(version)
        except (ValueError, InvalidInput):
            raise InvalidInput("a release is written namespace/name@version (a semantic version)",
                               code="invalid_release", details={"release": str(text)[:200]}) from None
        if not NAMESPACE.fullmatch(namespace) or not PACKAGE_NAME.fullmatch(name):
            raise InvalidInput("not a namespace/name of this registry's shape", code="invalid_release",
                               details={"release": text[:200]})
        return cls(namespace, name, version)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}@{self.version}"


@dataclass(frozen=True)
class Verified:
    """What the upstream's ledger proved about the bytes."""

    index: int
    leaf: str
    event: dict[str, Any]
    checkpoint: str  # verbatim, with any cosignatures
    tree_size: int
    proof: list[str]
    newest_checkpoint: str | None  # what the trust state keeps after this check


class _KeepingVerifier(BundleVerifier):
    """The client check, keeping the leaves it read (the provenance record holds the publish leaf)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.leaves: dict[int, bytes] = {}

    def entry(self, index: int) -> tuple[bytes, dict[str, Any]]:
        leaf, event = super().entry(index)
        self.leaves[index] = leaf
        return leaf, event


def provenance_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"upstream": row["upstream_url"], "release": row["upstream_release"], "leaf_index": row["leaf_index"],
            "leaf": row["leaf"], "tree_size": row["tree_size"], "checkpoint": row["checkpoint"],
            "inclusion_proof": json.loads(row["inclusion_proof"]), "sha256": row["sha256"],
            "mirrored_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["mirrored_at"])),
            "mirrored_by": row.get("mirrored_by_name")}


PROVENANCE_SQL = ("SELECT m.*, u.username AS mirrored_by_name FROM mirror_provenance m"
                  " LEFT JOIN users u ON u.id = m.mirrored_by")


class Mirror(MirrorUpdates):
    def __init__(self, db: Database, publisher: Publisher, settings: Settings):
        self.db = db
        self.publisher = publisher
        self.timeout = settings.mirror.timeout_seconds
        self.max_bundle_bytes = settings.publish.max_bundle_bytes
        self.tmp_dir = Path(settings.data_dir) / "tmp"

    def client(self, url: str) -> UpstreamClient:
        return UpstreamClient(url, self.timeout, self.max_bundle_bytes)

    # --- upstreams ---------------------------------------------------------------------------------------

    async def add_upstream(self, admin: Principal, url: str, key: str | None = None,
                           ip: str | None = None) -> dict[str, Any]:
        """Pin an upstream's ledger key: the one given, or (first use) the one it serves now. Adding it again
        with the same key changes nothing; with another key it is refused."""
        url = upstream_url(url)
        if key:
            try:
                key, pinned = notes.parse_vkey(key.strip()).vkey(), "given"
            except notes.NoteError as exc:
                raise InvalidInput(f"not a ledger verifier key: {exc}", code="invalid_key") from None
        else:
            async with self.client(url) as http:
                status, body = await http.get("/ledger/key")
            try:
                key, pinned = notes.parse_vkey(body.decode("utf-8", "replace").strip()).vkey(), "first-use"
            except notes.NoteError:
                raise UpstreamFailed(f"{url} serves no ledger key (HTTP {status} for /ledger/key)",
                                     code="upstream_no_ledger") from None
        existing = await self.db.fetch_one("SELECT * FROM mirror_upstreams WHERE url = ?", (url,))
        if existing is not None:
            if existing["ledger_key"] != key:
                raise Conflict(f"{url} is pinned to ledger key {existing['ledger_key']}; the key is not replaced",
                               code="upstream_key_differs", details={"pinned": existing["ledger_key"]})
            return {**_upstream_view(existing), "created": False}
        async with self.db.write() as tx:
            upstream_id = await tx.insert("mirror_upstreams", {
                "url": url, "ledger_key": key, "pinned": pinned, "checkpoint": None, "created_by": admin.id,
                "created_at": time.time()})
            await audit.record(tx, actor_of(admin, ip), "mirror.upstream_add", target=url,
                               details={"ledger_key": key, "pinned": pinned})
            row = await tx.fetch_one("SELECT * FROM mirror_upstreams WHERE id = ?", (upstream_id,))
        return {**_upstream_view(row), "created": True}

    async def upstreams(self) -> list[dict[str, Any]]:
        return [_upstream_view(row) for row in await self.db.fetch_all("SELECT * FROM mirror_upstreams ORDER BY id")]

    async def upstream(self, url: str) -> dict[str, Any]:
        row = await self.db.fetch_one("SELECT * FROM mirror_upstreams WHERE url = ?", (upstream_url(url),))
        if row is None:
            raise NotFound(f"{url[:200]} is not an upstream of this mirror: add it first (mcpstore admin mirror "
                           "upstream add URL --key KEY)", code="unknown_upstream")
        return row

    # --- imports -----------------------------------------------------------------------------------------

    async def import_release(self, admin: Principal, url: str, release: str, org: str, *, ip: str | None = None,
                             pending_id: int | None = None, visibility: str | None = None) -> dict[str, Any]:
        """Import one upstream release into `org` (a new package there is visible to the org's members unless
        `visibility` says otherwise). Importing it again answers what the first import made."""
        wanted = Release.parse(release)
        options = PublishOptions.parse({"visibility": visibility} if visibility else {})
        upstream = await self.upstream(url)
        target = await self._target(org)
        done = await self.db.fetch_one(
            PROVENANCE_SQL + " WHERE m.upstream_id = ? AND m.upstream_release = ?", (upstream["id"], str(wanted)))
        if done is not None:
            return await self._existing(done, target)
        path = self.tmp_dir / f"mirror-{secrets.token_hex(8)}.mcpb"
        try:
            async with self.client(upstream["url"]) as http:
                meta = await http.json(path_of("api", "packages", wanted.namespace, wanted.name, "versions",
                                               wanted.version))
                sha256 = meta.get("sha256") if isinstance(meta, dict) else None
                if not isinstance(sha256, str) or len(sha256) != 64 or not set(sha256) <= SHA256_CHARS:
                    raise UpstreamFailed(f"the upstream's metadata of {wanted} names no sha256",
                                         code="upstream_malformed")
                got, size = await http.download(f"/bundles/{sha256}.mcpb", path)
                if got != sha256:
                    raise Unprocessable(f"the upstream served bytes with sha256 {got} for {wanted}, whose metadata "
                                        f"says {sha256}; nothing was imported", code="upstream_bytes_mismatch")
                verified = await self._verify(http, upstream, wanted, got, size)
            also = self._provenance_writer(admin, upstream, wanted, verified, got, ip, pending_id)
            result = await self.publisher.publish(admin, options, _chunks(path), declared_size=size,
                                                  ip=ip, target=target, also=also)
        finally:
            path.unlink(missing_ok=True)
        answer = result.to_dict()
        row = await self.db.fetch_one(PROVENANCE_SQL + " WHERE m.version_id = ?", (result.version_id,))
        return {**answer, "mirrored_from": provenance_view(row), "created": True}

    async def _target(self, org: str) -> Target:
        row = await self.db.fetch_one("SELECT id, slug FROM orgs WHERE slug = ?", (org,))
        if row is None:
            raise NotFound(f"no organization {str(org)[:60]!r}", code="no_such_org")
        return Target(row["slug"], row["id"], None)

    async def _existing(self, row: dict[str, Any], target: Target) -> dict[str, Any]:
        """A release imported before: the same answer again, or a clear refusal to import it a second time
        elsewhere (one upstream release has one home here)."""
        version = await self.db.fetch_one(
            "SELECT v.id, v.version, v.state, v.sha256, v.size, v.ledger_index, p.namespace, p.name FROM versions v"
            " JOIN packages p ON p.id = v.package_id WHERE v.id = ?", (row["version_id"],))
        if version["namespace"] != target.namespace:
            raise Conflict(f"{row['upstream_release']} was imported before as {version['namespace']}/"
                           f"{version['name']}@{version['version']}", code="already_mirrored",
                           details={"namespace": version["namespace"], "name": version["name"]})
        return {**version, "mirrored_from": provenance_view(row), "created": False}

    async def _verify(self, http: UpstreamClient, upstream: dict[str, Any], wanted: Release, sha256: str,
                      size: int) -> Verified:
        state = TrustState(key=upstream["ledger_key"], checkpoint=upstream["checkpoint"])
        verifier = _KeepingVerifier(http.blocking_fetch(asyncio.get_running_loop()), state,
                                    key=upstream["ledger_key"])
        try:
            result = await asyncio.to_thread(verifier.run, sha256, size, release=str(wanted))
        except VerifyFailure as failure:
            if failure.kind == "registry_error":
                raise UpstreamFailed(f"upstream ledger: {failure.message}", code="upstream_ledger_error") from None
            raise Unprocessable(f"the upstream's ledger does not vouch for {wanted} ({failure.kind.replace('_', ' ')}"
                                f"): {failure.message}; nothing was imported", code=f"upstream_{failure.kind}",
                                details={"kind": failure.kind}) from None
        event = result.event
        if (event.get("namespace"), event.get("name"), event.get("version")) != \
                (wanted.namespace, wanted.name, wanted.version):
            raise Unprocessable(f"the upstream's ledger entry {result.index} is about another release",
                                code="upstream_bad_proof")
        return Verified(result.index, verifier.leaves[result.index].decode("utf-8"), event, result.checkpoint.note,
                        result.checkpoint.size, verifier.proofs[result.index], state.checkpoint)

    def _provenance_writer(self, admin: Principal, upstream: dict[str, Any], wanted: Release, verified: Verified,
                           sha256: str, ip: str | None, pending_id: int | None):
        async def write(tx: Transaction, version_id: int, state: str) -> None:
            package = await tx.fetch_one("SELECT p.id, p.org_id, p.namespace, p.name FROM versions v JOIN packages p"
                                         " ON p.id = v.package_id WHERE v.id = ?", (version_id,))
            follows = await tx.fetch_one("SELECT * FROM mirror_follows WHERE package_id = ?", (package["id"],))
            source = (upstream["id"], wanted.namespace, wanted.name)
            if follows is None:
                await tx.insert("mirror_follows", {"package_id": package["id"], "upstream_id": source[0],
                                                   "upstream_namespace": source[1], "upstream_name": source[2]})
            elif (follows["upstream_id"], follows["upstream_namespace"], follows["upstream_name"]) != source:
                raise Conflict(f"{package['namespace']}/{package['name']} mirrors another upstream package",
                               code="mirrors_another_package")
            await tx.insert("mirror_provenance", {
                "version_id": version_id, "upstream_id": upstream["id"], "upstream_url": upstream["url"],
                "upstream_release": str(wanted), "leaf_index": verified.index, "leaf": verified.leaf,
                "tree_size": verified.tree_size, "checkpoint": verified.checkpoint,
                "inclusion_proof": json.dumps(verified.proof), "sha256": sha256, "mirrored_by": admin.id,
                "mirrored_at": time.time()})
            # The newest verified upstream checkpoint: later imports must be consistent with it.
            await tx.execute("UPDATE mirror_upstreams SET checkpoint = ? WHERE id = ?",
                             (verified.newest_checkpoint, upstream["id"]))
            if pending_id is not None:
                await tx.execute("UPDATE mirror_pending SET status = 'approved', decided_by = ?, decided_at = ?"
                                 " WHERE id = ? AND status = 'pending'", (admin.id, time.time(), pending_id))
            await audit.record(tx, actor_of(admin, ip), "mirror.import", org_id=package["org_id"],
                               target=f"{package['namespace']}/{package['name']}@{wanted.version}",
                               details={"upstream": upstream["url"], "release": str(wanted), "state": state,
                                        "leaf_index": verified.index, "sha256": sha256,
                                        "approved_pending": pending_id})

        return write


def _upstream_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "url": row["url"], "ledger_key": row["ledger_key"], "pinned": row["pinned"],
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["created_at"]))}


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as fh:
        while True:
            chunk = await asyncio.to_thread(fh.read, 1024 * 1024)
            if not chunk:
                return
            yield chunk
