"""A user's `user_config` values for a hosted package (API keys, mostly), kept encrypted at rest.

Each row is sealed with XChaCha20-Poly1305 under a key in the data folder (0600), with the user and package
ids as associated data: a row copied onto another user's or package's row does not open. Values reach the
sandbox only as environment variables (gateway/runtime.py); what is shown back never includes a sensitive
value, only whether it is set.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from nacl import bindings
from nacl.exceptions import CryptoError
from nacl.utils import random as random_bytes

from ..errors import Conflict, InvalidInput, NotFound
from ..keys import load_or_create_secret

log = logging.getLogger(__name__)
MAX_VALUE_CHARS = 4096
MAX_LIST_ITEMS = 32
HOSTED_TYPES = ("string", "number", "boolean")  # a sandbox has no host folders or files to point at
NONCE_BYTES = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES


class SealedUserConfig:
    def __init__(self, db, key_path: Path):
        self.db = db
        self.key = load_or_create_secret(key_path, bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES)

    async def values(self, user_id: int, package_id: int) -> dict[str, Any]:
        row = await self.db.fetch_one("SELECT sealed FROM hosted_user_config WHERE user_id = ? AND package_id = ?",
                                     (user_id, package_id))
        return self._open(row["sealed"], user_id, package_id) if row else {}

    async def describe(self, user_id: int, package_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """Each option of the manifest: whether it is set, and its value unless it is sensitive."""
        values = await self.values(user_id, package_id)
        shown = {}
        for key, spec in fields.items():
            spec = spec if isinstance(spec, dict) else {}
            entry: dict[str, Any] = {"type": spec.get("type"), "required": bool(spec.get("required")),
                                     "sensitive": bool(spec.get("sensitive")), "set": key in values}
            if key in values and not spec.get("sensitive"):
                entry["value"] = values[key]
            shown[key] = entry
        return shown

    async def replace(self, user_id: int, package_id: int, fields: dict[str, Any], given: Any) -> list[str]:
        """Store `given` (checked against the manifest's options) in place of what was kept; the keys kept."""
        values = checked_values(fields, given)
        sealed = self._seal(values, user_id, package_id)
        async with self.db.write() as tx:
            await tx.execute(
                "INSERT INTO hosted_user_config (user_id, package_id, sealed, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, package_id) DO UPDATE SET sealed = excluded.sealed,"
                " updated_at = excluded.updated_at", (user_id, package_id, sealed, time.time()))
        return sorted(values)

    async def clear(self, user_id: int, package_id: int) -> None:
        async with self.db.write() as tx:
            removed = await tx.changes("DELETE FROM hosted_user_config WHERE user_id = ? AND package_id = ?",
                                      (user_id, package_id))
            if removed == 0:
                raise NotFound("no settings are kept for this package", code="user_config_not_found")

    def _seal(self, values: dict[str, Any], user_id: int, package_id: int) -> bytes:
        nonce = random_bytes(NONCE_BYTES)
        plain = json.dumps(values, separators=(",", ":")).encode()
        return nonce + bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            plain, _bound_to(user_id, package_id), nonce, self.key)

    def _open(self, sealed: bytes, user_id: int, package_id: int) -> dict[str, Any]:
        nonce, box = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        try:
            plain = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(box, _bound_to(user_id, package_id), nonce,
                                                                         self.key)
        except CryptoError:
            log.warning("kept settings of user %s for package %s do not open (changed, or another key)",
                        user_id, package_id)
            raise Conflict("your kept settings for this package cannot be read; set them again",
                           code="user_config_unreadable") from None
        return json.loads(plain)


def _bound_to(user_id: int, package_id: int) -> bytes:
    return f"user_config:{user_id}:{package_id}".encode()


def checked_values(fields: dict[str, Any], given: Any) -> dict[str, Any]:
    """`given` as values of the manifest's options: known keys, the option's type, bounded sizes."""
    if not isinstance(given, dict):
        raise InvalidInput("settings are a JSON object of option names to values", code="invalid_user_config")
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise InvalidInput(f"this package has no option named {', '.join(map(repr, unknown))}",
                           code="invalid_user_config", details={"unknown": unknown})
    values = {}
    for key, value in given.items():
        if value is None:
            continue  # cleared: the default applies again
        spec = fields[key] if isinstance(fields[key], dict) else {}
        values[key] = _checked(key, spec, value)
    return values


def _checked(key: str, spec: dict[str, Any], value: Any) -> Any:
    kind = spec.get("type")
    if kind not in HOSTED_TYPES:
        raise InvalidInput(f"option {key!r} is a {kind}: hosted servers have no host folders or files",
                           code="invalid_user_config")
    if spec.get("multiple") and isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            raise InvalidInput(f"option {key!r} takes at most {MAX_LIST_ITEMS} values", code="invalid_user_config")
        return [_scalar(key, kind, spec, item) for item in value]
    return _scalar(key, kind, spec, value)


def _scalar(key: str, kind: str, spec: dict[str, Any], value: Any) -> Any:
    wrong = InvalidInput(f"option {key!r} takes a {kind}", code="invalid_user_config")
    if kind == "boolean":
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise wrong
        low, high = spec.get("min"), spec.get("max")
        if (isinstance(low, (int, float)) and value < low) or (isinstance(high, (int, float)) and value > high):
            raise InvalidInput(f"option {key!r} must be between {low} and {high}", code="invalid_user_config")
        return value
    if not isinstance(value, str) or "\x00" in value:
        raise wrong
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidInput(f"option {key!r} is longer than {MAX_VALUE_CHARS} characters", code="invalid_user_config")
    return value
