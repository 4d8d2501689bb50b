"""Ledger events and their canonical leaf encoding.

A leaf is the canonical JSON of one event: keys sorted, no spaces, UTF-8, no floats (their text form is not
canonical across languages), at most 65,535 bytes (the tlog-tiles entry bundle limit).

Kinds:
- `publish`: namespace, name, version, sha256, size, publisher, signer_fingerprint (or null), time
- `yank`, `unyank`, `deprecate`, `quarantine-release`: namespace, name, version, time; optionally sha256 (so the
  bundle's lookup finds its status changes), actor and reason.
- `audit-seal`: chain, last_seq, head_hash, seal_sha256, time: a signed checkpoint of an org's audit chain
  (audit/seals.py), sealed (private) for an org's chain.

`time` is an RFC 3339 UTC string (see `utc_now`). Extra keys are kept as given (strings, ints, bools, null,
lists and objects of those).

Private (org) releases are written *sealed*: the public leaf is only a salted commitment to the event, so the
ledger's public views never show an org's package names; the opening (salt + event) stays in the database for
views that pass the tenancy check.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from typing import Any

from ..canonical import canonical_json
from ..errors import InvalidInput

PUBLISH = "publish"
STATUS_KINDS = ("yank", "unyank", "deprecate", "quarantine-release")
AUDIT_SEAL = "audit-seal"
KINDS = (PUBLISH, *STATUS_KINDS, AUDIT_SEAL)
SEALED = "sealed"
MAX_LEAF_BYTES = 65_535
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
SEAL_DOMAIN = b"mcpstore-ledger-seal/v1\n"

_REQUIRED = {
    PUBLISH: {"namespace": str, "name": str, "version": str, "sha256": str, "size": int, "publisher": str,
              "signer_fingerprint": (str, type(None)), "time": str},
    AUDIT_SEAL: {"chain": int, "last_seq": int, "head_hash": str, "seal_sha256": str, "time": str},
}
_STATUS_REQUIRED = {"namespace": str, "name": str, "version": str, "time": str}


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


_SCALARS = (str, bool, type(None))


def _check_values(value: Any, path: str) -> None:
    if type(value) in _SCALARS:  # the common case, checked first: this runs for every field of every leaf
        return
    if type(value) is int:
        if abs(value) >= 1 << 53:  # beyond what every JSON reader keeps exactly
            raise InvalidInput(f"ledger event field {path} is too large an integer")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_values(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"ledger event field {path} has a non-string key")
            _check_values(item, f"{path}.{key}")
        return
    raise InvalidInput(f"ledger event field {path} must be a string, integer, boolean, null, list or object")


def validate(event: dict[str, Any]) -> None:
    if not isinstance(event, dict):
        raise InvalidInput("a ledger event is a JSON object")
    kind = event.get("kind")
    if kind not in KINDS:
        raise InvalidInput(f"ledger event kind must be one of {', '.join(KINDS)}")
    required = _REQUIRED.get(kind, _STATUS_REQUIRED)
    for key, types in required.items():
        if key not in event:
            raise InvalidInput(f"a {kind} ledger event needs {key!r}")
        if not isinstance(event[key], types) or isinstance(event[key], bool):
            raise InvalidInput(f"ledger event field {key!r} has the wrong type")
    sha = event.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not SHA256_HEX.match(sha)):
        raise InvalidInput("ledger event sha256 must be 64 lowercase hex digits")
    if kind == PUBLISH and event["size"] < 0:
        raise InvalidInput("ledger event size must not be negative")
    _check_values(event, "event")


def encode(event: dict[str, Any]) -> bytes:
    validate(event)
    data = canonical_json(event).encode()
    if len(data) > MAX_LEAF_BYTES:
        raise InvalidInput(f"ledger event is {len(data)} bytes; the limit is {MAX_LEAF_BYTES}")
    return data


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value  # fits a 64-bit INTEGER column everywhere


def lookup_keys(event: dict[str, Any]) -> tuple[int | None, int | None]:
    """Index hints for lookups by bundle sha256 and by release (the first 8 bytes of the sha256, and of
    sha256(namespace NUL name NUL version)); lookups confirm every match against the leaf itself."""
    sha = event.get("sha256")
    sha_key = _signed64(int(sha[:16], 16)) if isinstance(sha, str) and SHA256_HEX.match(sha) else None
    namespace, name, version = event.get("namespace"), event.get("name"), event.get("version")
    release_key = None
    if isinstance(namespace, str) and isinstance(name, str) and isinstance(version, str):
        digest = hashlib.sha256(f"{namespace}\0{name}\0{version}".encode("utf-8")).digest()
        release_key = _signed64(int.from_bytes(digest[:8], "big"))
    return sha_key, release_key


def seal(data: bytes) -> tuple[bytes, str]:
    """The public leaf for a private event and its salt (hex). The commitment binds the exact event bytes."""
    salt = secrets.token_bytes(32)
    commitment = hashlib.sha256(SEAL_DOMAIN + salt + data).hexdigest()
    return canonical_json({"commitment": commitment, "kind": SEALED}).encode(), salt.hex()


def opens(leaf: bytes, salt_hex: str, data: bytes) -> bool:
    """Does (salt, data) open the sealed leaf?"""
    try:
        sealed = json.loads(leaf)
        salt = bytes.fromhex(salt_hex)
    except (ValueError, TypeError):
        return False
    expected = hashlib.sha256(SEAL_DOMAIN + salt + data).hexdigest()
    return isinstance(sealed, dict) and sealed.get("kind") == SEALED and sealed.get("commitment") == expected


def publish_event(*, namespace: str, name: str, version: str, sha256: str, size: int, publisher: str,
                  signer_fingerprint: str | None, time: str | None = None) -> dict[str, Any]:
    return {"kind": PUBLISH, "namespace": namespace, "name": name, "version": version, "sha256": sha256,
            "size": size, "publisher": publisher, "signer_fingerprint": signer_fingerprint,
            "time": time or utc_now()}


def status_event(kind: str, *, namespace: str, name: str, version: str, sha256: str | None = None,
                 actor: str | None = None, reason: str | None = None, time: str | None = None) -> dict[str, Any]:
    if kind not in STATUS_KINDS:
        raise InvalidInput(f"status event kind must be one of {', '.join(STATUS_KINDS)}")
    event: dict[str, Any] = {"kind": kind, "namespace": namespace, "name": name, "version": version,
                             "time": time or utc_now()}
    for key, value in (("sha256", sha256), ("actor", actor), ("reason", reason)):
        if value is not None:
            event[key] = value
    return event
