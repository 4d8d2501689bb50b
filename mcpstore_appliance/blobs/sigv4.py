"""AWS Signature Version 4 for S3: signed headers and presigned (query-string) URLs.

Pure functions over strings and bytes, no I/O, so they can be checked against published vectors.
The secret key is only ever fed to HMAC; it is not stored in any string this module returns.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def uri_encode(value: str, *, keep_slash: bool = False) -> str:
    """RFC 3986 encoding as SigV4 wants it: only A-Z a-z 0-9 - _ . ~ stay literal."""
    return quote(value, safe="-_.~/" if keep_slash else "-_.~")


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    pairs = sorted((uri_encode(k), uri_encode(v)) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in pairs)


def amz_date(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class SigV4Signer:
    def __init__(self, access_key_id: str, secret_access_key: str, region: str, service: str = "s3"):
        self.access_key_id = access_key_id
        self._secret = secret_access_key
        self.region = region
        self.service = service
        self._keys: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"SigV4Signer(access_key_id={self.access_key_id!r}, region={self.region!r})"

    def _signing_key(self, datestamp: str) -> bytes:
        key = self._keys.get(datestamp)
        if key is None:
            key = _hmac(("AWS4" + self._secret).encode(), datestamp)
            for part in (self.region, self.service, "aws4_request"):
                key = _hmac(key, part)
            self._keys = {datestamp: key}  # one day's key; older ones are never needed again
        return key

    def _scope(self, datestamp: str) -> str:
        return f"{datestamp}/{self.region}/{self.service}/aws4_request"

    def _signature(self, timestamp: str, canonical_request: str) -> str:
        datestamp = timestamp[:8]
        string_to_sign = "\n".join(
            [ALGORITHM, timestamp, self._scope(datestamp), hashlib.sha256(canonical_request.encode()).hexdigest()]
        )
        return hmac.new(self._signing_key(datestamp), string_to_sign.encode(), hashlib.sha256).hexdigest()

    def sign_headers(
        self,
        method: str,
        host: str,
        path: str,
        query: Iterable[tuple[str, str]],
        headers: Mapping[str, str],
        payload_hash: str,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """Headers to send: the given ones plus host, x-amz-date, x-amz-content-sha256 and Authorization.

        Signed are host and every x-amz-* header; others (content-length, range) may be changed by
        the HTTP client and are left unsigned, as S3 allows.
        """
        timestamp = amz_date(now)
        out = {k.lower(): v for k, v in headers.items()}
        out.update({"host": host, "x-amz-date": timestamp, "x-amz-content-sha256": payload_hash})
        names = sorted(k for k in out if k == "host" or k.startswith("x-amz-"))
        canonical_headers = "".join(f"{k}:{' '.join(out[k].split())}\n" for k in names)
        signed = ";".join(names)
        canonical_request = "\n".join(
            [method, uri_encode(path, keep_slash=True), canonical_query(query), canonical_headers, signed, payload_hash]
        )
        signature = self._signature(timestamp, canonical_request)
        out["authorization"] = (
            f"{ALGORITHM} Credential={self.access_key_id}/{self._scope(timestamp[:8])}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return out

    def presign(
        self,
        method: str,
        host: str,
        path: str,
        query: Iterable[tuple[str, str]],
        expires_seconds: int,
        now: datetime | None = None,
    ) -> str:
        """The query string (without `?`) of a presigned request: only `host` is a signed header."""
        timestamp = amz_date(now)
        params = list(query) + [
            ("X-Amz-Algorithm", ALGORITHM),
            ("X-Amz-Credential", f"{self.access_key_id}/{self._scope(timestamp[:8])}"),
            ("X-Amz-Date", timestamp),
            ("X-Amz-Expires", str(expires_seconds)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        query_string = canonical_query(params)
        canonical_request = "\n".join(
            [method, uri_encode(path, keep_slash=True), query_string, f"host:{host}\n", "host", UNSIGNED_PAYLOAD]
        )
        return f"{query_string}&X-Amz-Signature={self._signature(timestamp, canonical_request)}"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()
