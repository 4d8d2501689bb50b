"""Opaque, tamper-evident keyset cursors.

A cursor carries the sort key of the last row a client saw, the kind of listing, a digest of the query it
belongs to and when it was issued, HMAC-SHA256-signed with a key kept in the data folder. Decoding refuses,
with a clear 400 (`invalid_cursor`), anything that was not issued by this appliance, was altered, belongs to
another query or listing, or is older than `max_age` seconds. The payload is only base64, not encrypted: it
holds sort values of a row the caller was already shown, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from ..errors import InvalidInput

MAX_CURSOR_LENGTH = 2048
DEFAULT_MAX_AGE = 24 * 3600.0
CLOCK_SKEW = 300.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def scope_digest(*parts: Any) -> str:
    """A short digest of everything a cursor is bound to (the query, filters, sort, package...)."""
    canonical = json.dumps(parts, separators=(",", ":"), sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def invalid(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_cursor", details={"parameter": "cursor"})


class CursorCodec:
    def __init__(self, key: bytes, max_age: float = DEFAULT_MAX_AGE, clock=time.time):
        if len(key) < 16:
            raise ValueError("cursor key must be at least 16 bytes")
        self._key = key
        self.max_age = max_age
        self._clock = clock

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:16])

    def encode(self, kind: str, scope: str, keys: list[Any]) -> str:
        payload = _b64(json.dumps([kind, scope, int(self._clock()), keys], separators=(",", ":"),
                                  ensure_ascii=True).encode())
        return f"{payload}.{self._sign(payload)}"

    def decode(self, token: str, kind: str, scope: str) -> list[Any]:
        """The sort keys of a cursor issued for this `kind` and `scope`; InvalidInput otherwise."""
        if not isinstance(token, str) or not token or len(token) > MAX_CURSOR_LENGTH or token.count(".") != 1:
            raise invalid("malformed cursor: pass back the next_cursor value exactly as it was returned")
        payload, signature = token.split(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise invalid("invalid cursor: it was not issued by this registry or was altered")
        try:
            cursor_kind, cursor_scope, issued, keys = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            raise invalid("malformed cursor") from None
        if cursor_kind != kind or cursor_scope != scope:
            raise invalid("this cursor belongs to a different query; start again without a cursor")
        now = self._clock()
        if not isinstance(issued, int) or issued > now + CLOCK_SKEW or now - issued > self.max_age:
            raise invalid("this cursor has expired; start again without a cursor")
        if not isinstance(keys, list):
            raise invalid("malformed cursor")
        return keys
