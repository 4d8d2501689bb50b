"""Update checks of the package views: the newest installable version for a client, kept in memory per
(package, platform, pre-releases) while nothing is committed, with the answers hosts share."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..accounts.models import Principal
from ..errors import InvalidInput
from . import semver
from .package_text import access_of, check_names, dumps, iso, not_found, version_path
from .search.query import PLATFORMS
from .visibility import can_see

MAX_CHANGELOG_ENTRIES = 50
# An update check's versions are kept in memory only when their changelogs are at most this long in all
# (typically a few hundred characters; each may be 20,000): the cache of 2,048 entries stays under ~32 MB.
MAX_KEPT_CHANGELOG_CHARS = 16_000
# Update-check answers kept per installable entry, in characters of JSON (an answer is ~600 without changelogs):
# the 2,048 entries add at most ~16 MB however many distinct `current` values clients send.
MAX_KEPT_ANSWER_CHARS = 8_192


@dataclass(frozen=True)
class _Installable:
    """What an update check chooses from, for one (package, platform, pre-releases or not): the newest
    installable versions with their semver sort keys, as read at `stamp` (Database.stamp)."""

    stamp: tuple
    access: dict  # visibility, org_id, owner_user_id: for can_see
    pricing_model: str
    versions: list[tuple[str, sqlite3.Row]]  # (semver sort key, row), newest first
    latest: semver.Version | None  # the first of them, parsed
    # update-check answers as JSON text by the client's `current` (the same for every caller who may see the
    # package), so that the hosts polling for the same installed version share one answer
    answers: dict[str | None, str] = field(default_factory=dict)
    package_id: int | None = None


class UpdateChecks:
    """PackageView's update checks (a mixin: it reads the view's database, caches and entitlement check)."""

    def update_check_json(self, principal: Principal | None, namespace: str, name: str, current: str | None,
                          platform: str | None, prerelease: bool,
                          admit: Callable[[sqlite3.Row], bool] | None = None) -> str:
        """The newest installable version for a client running `current` on `platform`, as JSON text.

        Semver precedence; pre-releases only when asked for; yanked, quarantined and rejected versions never;
        versions that name platforms must name this one. A higher major version is a breaking change.
        The answer is kept with the installable entry it came from (so it is dropped with it as soon as
        anything is committed), up to MAX_KEPT_ANSWER_CHARS per entry. `admit` (an org's policy, policy/enforce.py)
        leaves out the versions it refuses; such an answer is the caller's own and is not kept.
        """
        check_names(namespace, name)
        if platform is not None and platform not in PLATFORMS:
            raise InvalidInput(f"platform must be one of {', '.join(PLATFORMS)}", code="invalid_parameter",
                               details={"parameter": "platform"})
        installable = self._installable_versions(namespace, name, platform, prerelease)
        visible = installable is not None and can_see(principal, installable.access)
        if visible and admit is not None:
            installable = _admitted(installable, admit)
        # A signed-in caller of a paid package gets requires_payment from their own entitlement, so that answer
        # is not shared (nor kept); everyone else shares one.
        shared = admit is None and (principal is None or installable is None or installable.pricing_model == "free")
        kept = installable.answers.get(current) if visible and shared else None
        if kept is not None:
            return kept
        current_version = semver.parse(current) if current else None  # a bad `current` is a 400 before a 404
        if not visible:
            raise not_found(namespace, name)
        answer = self._update_answer(installable, namespace, name, current, current_version)
        if not shared and answer["update_available"]:
            package = {**installable.access, "pricing_model": installable.pricing_model,
                       "package_id": installable.package_id}
            answer["requires_payment"] = not self.may_use(principal, package, installable.latest.major)
        text = dumps(answer)
        if not shared:
            return text
        answers = installable.answers
        if sum(map(len, answers.values())) + len(text) > MAX_KEPT_ANSWER_CHARS:
            answers.clear()  # rare: many distinct `current` values, or long changelogs
        if len(text) <= MAX_KEPT_ANSWER_CHARS:
            answers[current] = text
        return text

    def _update_answer(self, installable: _Installable, namespace: str, name: str, current: str | None,
                       current_version: semver.Version | None) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "id": f"{namespace}/{name}", "current_version": current, "latest_version": None,
            "update_available": False, "download_url": None, "bundle_url": None, "sha256": None, "size": None,
            "published_at": None, "changelog": [], "breaking_changes": False, "requires_payment": False,
            "deprecated": False, "deprecation_reason": None}
        if not installable.versions:
            return answer
        latest_version, latest = installable.latest, installable.versions[0][1]
        current_key = current_version.sort_key() if current_version else ""  # "" sorts before every key
        newer = list(itertools.takewhile(lambda entry: entry[0] > current_key, installable.versions))
        available = bool(newer)
        breaking = current_version is not None and latest_version.major > current_version.major
        answer.update({
            "latest_version": latest["version"], "update_available": available,
            "download_url": version_path(self.base_url, namespace, name, latest["version"]) + "/download",
            "bundle_url": f"{self.base_url}/bundles/{latest['sha256']}.mcpb",
            "sha256": latest["sha256"], "size": latest["size"], "published_at": iso(latest["published_at"]),
            "changelog": [{"version": r["version"], "published_at": iso(r["published_at"]), "changes": r["changelog"]}
                          for _, r in newer[:MAX_CHANGELOG_ENTRIES]],
            "breaking_changes": breaking,
            "requires_payment": available and requires_payment(installable.pricing_model, breaking,
                                                               current_version),
            "deprecated": latest["deprecated_at"] is not None, "deprecation_reason": latest["deprecation_reason"],
        })
        return answer

    def _installable_versions(self, namespace: str, name: str, platform: str | None,
                              prerelease: bool) -> _Installable | None:
        """From memory while nothing was committed since it was read (the same rule as package pages), else
        read again: update checks are what every host sends for every installed bundle, again and again. The
        entry is the same for every caller; the caller's right to see the package is checked on it."""
        stamp = self.db.stamp()  # before any read: an entry never carries a stamp newer than its data
        key = (namespace, name, platform, prerelease)  # only names that passed _check_names are ever kept
        cached = self._installable.get(key)
        if cached is not None and cached.stamp == stamp:
            return cached
        package = self.db.inline(lambda c: c.execute(
            "SELECT p.id, p.visibility, p.org_id, p.owner_user_id, p.pricing_model FROM packages p"
            " WHERE p.namespace = ? AND p.name = ?", (namespace, name)).fetchone())
        if package is None:
            return None
        rows = self.db.inline(lambda c: c.execute(
            "SELECT v.version, v.semver_key, v.is_prerelease, v.changelog, v.sha256, v.size, v.published_at,"
            " v.deprecated_at, v.deprecation_reason, v.signature_status FROM versions v"
            " WHERE v.package_id = ? AND v.state = 'published' AND v.yanked_at IS NULL"
            " AND (? OR v.is_prerelease = 0)"
            " AND (? IS NULL OR v.platforms = '[]' OR EXISTS (SELECT 1 FROM json_each(v.platforms) j"
            "      WHERE j.value = ?))"
            " ORDER BY v.semver_key DESC LIMIT ?",
            (package["id"], int(prerelease), platform, platform, MAX_CHANGELOG_ENTRIES + 1)).fetchall())
        access = access_of(package)
        installable = _Installable(stamp, access, package["pricing_model"],
                                   [(row["semver_key"], row) for row in rows],
                                   semver.parse(rows[0]["version"]) if rows else None, package_id=package["id"])
        if sum(len(row["changelog"] or "") for row in rows) <= MAX_KEPT_CHANGELOG_CHARS:
            self._installable.put(key, installable)
        return installable


def _admitted(installable: _Installable, admit: Callable[[sqlite3.Row], bool]) -> _Installable:
    """The entry with only the versions `admit` allows (a copy with no kept answers)."""
    versions = [entry for entry in installable.versions if admit(entry[1])]
    latest = semver.parse(versions[0][1]["version"]) if versions else None
    return dataclasses.replace(installable, versions=versions, latest=latest, answers={})


def requires_payment(pricing_model: str, breaking: bool, current: semver.Version | None) -> bool:
    """Whether installing the update needs a new purchase.

    The rule is: the package is paid and the caller's entitlement covers only an older major version.
    This is the answer for a caller without credentials (the shared, kept one): the entitlement is assumed
    to cover the major version the caller runs, so a major upgrade (or a first install, with no current
    version) requires payment and a minor or patch update does not. A signed-in caller's answer comes from
    their entitlements instead (`update_check_json`, market.entitlements.covers).
    """
    if pricing_model == "free":
        return False
    return current is None or breaking
