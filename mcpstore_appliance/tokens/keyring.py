"""The Ed25519 keys that sign usage tokens, kept in the data folder (`keys/usage/`, files 0600), and their JWKS.

`ring.json` names the current key and the retired ones with the time they were retired. Rotation
(`mcpstore admin rotate-usage-key`) makes a new current key; a retired key stays in the JWKS until every token
it signed has expired (TOKEN_SECONDS plus a minute of clock skew), then its file is deleted. A running appliance
(every worker of `serve --workers N`) notices a rotation by the file's mtime, looked at most once a second.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..keys import write_secret_file
from ..private_files import private_dir

TOKEN_SECONDS = 15 * 60
SKEW_SECONDS = 60
RING_FILE = "ring.json"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(public: Ed25519PublicKey) -> dict:
    x = b64url(public.public_bytes(Encoding.Raw, PublicFormat.Raw))
    # RFC 7638 thumbprint: the required members in lexicographic order, no spaces
    thumbprint = b64url(hashlib.sha256(json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x},
                                                  separators=(",", ":"), sort_keys=True).encode()).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": thumbprint, "use": "sig", "alg": "EdDSA"}


@dataclass(frozen=True)
class RingState:
    current: str
    private: dict[str, Ed25519PrivateKey]
    retired: dict[str, float]  # kid -> when it stopped signing
    jwks: dict
    etag: str


class KeyRing:
    def __init__(self, folder: Path):
        self.folder = private_dir(Path(folder))
        self._lock = threading.Lock()
        self._state: RingState | None = None
        self._mtime = 0.0
        self._checked = 0.0

    # -- reading --------------------------------------------------------------------------------------------

    def state(self) -> RingState:
        now = time.monotonic()
        if self._state is not None and now - self._checked < 1.0:
            return self._state
        self._checked = now
        ring = self.folder / RING_FILE
        if not ring.exists():
            self.rotate()
        mtime = ring.stat().st_mtime_ns
        if self._state is None or mtime != self._mtime:
            self._state, self._mtime = self._load(), mtime
        return self._state

    def _load(self) -> RingState:
        data = json.loads((self.folder / RING_FILE).read_text())
        keep = [data["current"], *(kid for kid, at in data["retired"].items() if not self._expired(at))]
        private = {kid: Ed25519PrivateKey.from_private_bytes((self.folder / f"{kid}.key").read_bytes())
                   for kid in keep if (self.folder / f"{kid}.key").exists()}
        if data["current"] not in private:
            raise ValueError(f"{self.folder}: the current usage key {data['current']} is missing")
        jwks = {"keys": [public_jwk(key.public_key()) for key in private.values()]}
        etag = '"' + hashlib.sha256(json.dumps(jwks, sort_keys=True).encode()).hexdigest()[:32] + '"'
        retired = {kid: at for kid, at in data["retired"].items() if kid in private}
        return RingState(data["current"], private, retired, jwks, etag)

    @staticmethod
    def _expired(retired_at: float) -> bool:
        return retired_at + TOKEN_SECONDS + SKEW_SECONDS < time.time()

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        state = self.state()
        return state.current, state.private[state.current]

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        key = self.state().private.get(kid)
        return key.public_key() if key is not None else None

    # -- rotation -------------------------------------------------------------------------------------------

    def rotate(self) -> str:
        """A new current key; the old one is retired (still published until its tokens expired). Returns its kid."""
        with self._lock:
            ring = self.folder / RING_FILE
            data = json.loads(ring.read_text()) if ring.exists() else {"current": None, "retired": {}}
            key = Ed25519PrivateKey.generate()
            kid = public_jwk(key.public_key())["kid"]
            write_secret_file(self.folder / f"{kid}.key", key.private_bytes_raw())
            retired = dict(data["retired"])
            if data["current"]:
                retired[data["current"]] = time.time()
            for old, at in list(retired.items()):
                if self._expired(at):
                    (self.folder / f"{old}.key").unlink(missing_ok=True)
                    del retired[old]
            tmp = self.folder / f".{RING_FILE}.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            write_secret_file(tmp, json.dumps({"current": kid, "retired": retired}, indent=1).encode())
            os.replace(tmp, ring)  # atomic: a worker reads the old ring or the new one, never half of it
            self._checked = 0.0
            return kid
