"""The policy as devices receive it: canonical JSON (canonical.canonical_bytes: sorted keys, no spaces,
UTF-8, no floats) signed with the appliance's policy key (Ed25519, `keys/policy.key`, 0600).

    {"signature": {"alg": "Ed25519", "kid": "<16 hex>", "public_key": "<base64>", "value": "<base64>"},
     "signed": {"org": "acme", "policy_version": 3, "sha256": "<of the policy>", "iat": ..., "exp": ...,
                "registry": "https://…", "policy": {...}}}

The signature covers canonical_bytes(signed). `org`, `policy_version`, `iat` and `exp` stop a replayed or
rolled-back document: a verifier keeps the highest version it saw and refuses an expired one. `iat` moves
once a day (never before the version was written), so the bytes, and with them the ETag, stay the same all
day and devices revalidate with a cheap 304.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ..canonical import canonical_bytes

DAY = 86_400
VALID_DAYS = 7


@dataclass(frozen=True)
class SignedPolicy:
    body: bytes  # the envelope, canonical JSON
    etag: str  # strong: sha256 of the body
    version: int


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def signed_document(org: str, version: int, sha256: str, policy: dict[str, Any], registry: str, *,
                    created_at: float | None, now: float) -> dict[str, Any]:
    issued = max(int(now) // DAY * DAY, int(created_at or 0))
    return {"org": org, "policy_version": version, "sha256": sha256, "iat": issued, "exp": issued + VALID_DAYS * DAY,
            "registry": registry, "policy": policy}


def sign(key: SigningKey, document: dict[str, Any]) -> SignedPolicy:
    public = bytes(key.verify_key)
    signature = key.sign(canonical_bytes(document)).signature
    body = canonical_bytes({"signed": document, "signature": {
        "alg": "Ed25519", "kid": key_id(public), "public_key": base64.b64encode(public).decode(),
        "value": base64.b64encode(signature).decode()}})
    return SignedPolicy(body, '"' + hashlib.sha256(body).hexdigest() + '"', document["policy_version"])


class BadPolicySignature(ValueError):
    pass


def verify(body: bytes, public_key: bytes, *, now: float) -> dict[str, Any]:
    """The signed document of an envelope, if `public_key` (the pinned one) signed it and it has not expired."""
    envelope = json.loads(body)
    signature = envelope.get("signature") or {}
    if signature.get("alg") != "Ed25519" or signature.get("kid") != key_id(public_key):
        raise BadPolicySignature("signed by another key")
    try:
        VerifyKey(public_key).verify(canonical_bytes(envelope["signed"]), base64.b64decode(signature["value"]))
    except (BadSignatureError, KeyError, ValueError):
        raise BadPolicySignature("the signature does not match the document") from None
    if envelope["signed"]["exp"] <= now:
        raise BadPolicySignature("the document has expired")
    return envelope["signed"]
