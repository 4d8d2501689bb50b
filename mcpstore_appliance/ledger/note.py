"""C2SP signed notes (= Go golang.org/x/mod/sumdb/note), Ed25519 keys and tlog-cosignature/v1 cosignatures.

A note is UTF-8 text (each line ending in "\\n"), a blank line, then signature lines
"— <key name> <base64(4-byte key id || signature)>". Verification follows the spec: lines from unknown keys are
ignored, a line from a known key must verify, and at least one known key must have signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
SIG_PREFIX = "\u2014 "  # EM DASH and a space
MAX_SIGNATURES = 100
COSIGNATURE_HEADER = "cosignature/v1\ntime {}\n"


class NoteError(ValueError):
    """A malformed note or key string."""


class UnverifiedNote(NoteError):
    """A note that no known key signed (or that a known key's signature fails)."""

    def __init__(self, message: str, *, bad_signature: bool):
        super().__init__(message)
        self.bad_signature = bad_signature  # True: a known key's line failed; False: no known key signed


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str = "value") -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError(f"{what} is not valid base64") from None


def key_id(name: str, alg: int, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()[:4]


def valid_key_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name) and name.isprintable()


@dataclass(frozen=True)
class Verifier:
    name: str
    alg: int
    key_id: bytes
    public_key: VerifyKey

    def vkey(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{b64(bytes([self.alg]) + bytes(self.public_key))}"


def parse_vkey(vkey: str) -> Verifier:
    """Parse "<name>+<hex key id>+<base64(alg || pubkey)>" for Ed25519 (0x01) or cosignature (0x04) keys."""
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise NoteError("a verifier key looks like name+hexid+base64key")
    name, hex_id, encoded = parts
    if not valid_key_name(name):
        raise NoteError("verifier key has an invalid name")
    if len(hex_id) != 8:
        raise NoteError("verifier key id must be 8 hex digits")
    try:
        wanted_id = bytes.fromhex(hex_id)
    except ValueError:
        raise NoteError("verifier key id must be 8 hex digits") from None
    raw = unb64(encoded, "verifier key")
    if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
        raise NoteError("verifier key must be an Ed25519 (0x01) or cosignature/v1 (0x04) key")
    if key_id(name, raw[0], raw[1:]) != wanted_id:
        raise NoteError("verifier key id does not match its name and key")
    return Verifier(name=name, alg=raw[0], key_id=wanted_id, public_key=VerifyKey(raw[1:]))


def verifier_for(name: str, signing_key: SigningKey, alg: int = ALG_ED25519) -> Verifier:
    public = bytes(signing_key.verify_key)
    return Verifier(name=name, alg=alg, key_id=key_id(name, alg, public), public_key=signing_key.verify_key)


def signer_key_string(name: str, signing_key: SigningKey) -> str:
    """Go's private key format, PRIVATE+KEY+<name>+<hexid>+<base64(0x01 || seed)>."""
    kid = key_id(name, ALG_ED25519, bytes(signing_key.verify_key))
    return f"PRIVATE+KEY+{name}+{kid.hex()}+{b64(bytes([ALG_ED25519]) + bytes(signing_key))}"


def parse_signer_key(skey: str) -> tuple[str, SigningKey]:
    parts = skey.strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise NoteError("a signer key looks like PRIVATE+KEY+name+hexid+base64key")
    name, hex_id, encoded = parts[2:]
    raw = unb64(encoded, "signer key")
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise NoteError("signer key must be an Ed25519 seed")
    key = SigningKey(raw[1:])
    if key_id(name, ALG_ED25519, bytes(key.verify_key)).hex() != hex_id.lower():
        raise NoteError("signer key id does not match its name and key")
    return name, key


# --- notes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes
    sig: bytes  # everything after the key id (64 bytes for Ed25519, 72 for a cosignature)

    def line(self) -> str:
        return f"{SIG_PREFIX}{self.name} {b64(self.key_id + self.sig)}\n"


@dataclass(frozen=True)
class Note:
    text: str  # the signed text, ending in "\n"
    signatures: tuple[Signature, ...]

    def render(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def sign_line(text: str, name: str, signing_key: SigningKey) -> Signature:
    kid = key_id(name, ALG_ED25519, bytes(signing_key.verify_key))
    return Signature(name, kid, signing_key.sign(text.encode("utf-8")).signature)


def sign(text: str, name: str, signing_key: SigningKey) -> str:
    _check_text(text)
    return Note(text, (sign_line(text, name, signing_key),)).render()


def _check_text(text: str) -> None:
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("note text must be non-empty lines, each ending in a newline")
    if any(ch != "\n" and (ord(ch) < 0x20 or ord(ch) == 0x7F) for ch in text):
        raise NoteError("note text contains control characters")


def parse(message: str) -> Note:
    """Split a note into text and signature lines, checking only the syntax."""
    if len(message.encode("utf-8")) > 1_000_000:
        raise NoteError("note is too large")
    cut = message.rfind("\n\n")
    if cut < 0:
        raise NoteError("note has no blank line before its signatures")
    text, sig_block = message[: cut + 1], message[cut + 2:]
    _check_text(text)
    if not sig_block.endswith("\n"):
        raise NoteError("signature block must end in a newline")
    signatures = []
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise NoteError("a signature line must start with an em dash and a space")
        name, sep, encoded = line[len(SIG_PREFIX):].partition(" ")
        if not sep or not valid_key_name(name) or " " in encoded:
            raise NoteError("malformed signature line")
        raw = unb64(encoded, "signature")
        if len(raw) < 5:
            raise NoteError("signature is too short")
        signatures.append(Signature(name, raw[:4], raw[4:]))
    if len(signatures) > MAX_SIGNATURES:
        raise NoteError("note has too many signatures")
    return Note(text, tuple(signatures))


def open_note(message: str, verifiers: list[Verifier]) -> tuple[Note, list[Verifier]]:
    """Parse and verify a note against log keys (Ed25519, alg 0x01). Returns the note and the keys that signed.

    Cosignature lines (alg 0x04) are not checked here: see `verify_cosignature`.
    """
    note = parse(message)
    known = {(v.name, v.key_id): v for v in verifiers if v.alg == ALG_ED25519}
    signed = []
    for signature in note.signatures:
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None:
            continue
        try:
            verifier.public_key.verify(note.text.encode("utf-8"), signature.sig)
        except (BadSignatureError, ValueError):
            raise UnverifiedNote(f"the signature of {verifier.name} does not verify", bad_signature=True) from None
        signed.append(verifier)
    if not signed:
        raise UnverifiedNote("the note carries no signature from a known key", bad_signature=False)
    return note, signed


# --- cosignatures (C2SP tlog-cosignature v1) ------------------------------------------------------------


def cosignature_message(text: str, timestamp: int) -> bytes:
    return (COSIGNATURE_HEADER.format(timestamp) + text).encode("utf-8")


def cosign(text: str, name: str, signing_key: SigningKey, timestamp: int) -> Signature:
    if timestamp <= 0:
        raise NoteError("cosignature timestamp must be positive")
    kid = key_id(name, ALG_COSIGNATURE_V1, bytes(signing_key.verify_key))
    sig = signing_key.sign(cosignature_message(text, timestamp)).signature
    return Signature(name, kid, struct.pack(">Q", timestamp) + sig)


def verify_cosignature(text: str, signature: Signature, verifier: Verifier) -> int:
    """Check one cosignature line against a witness key; return its timestamp or raise UnverifiedNote."""
    if verifier.alg != ALG_COSIGNATURE_V1 or (signature.name, signature.key_id) != (verifier.name, verifier.key_id):
        raise UnverifiedNote(f"not a cosignature by {verifier.name}", bad_signature=False)
    if len(signature.sig) != 72:
        raise UnverifiedNote(f"the cosignature of {verifier.name} has the wrong length", bad_signature=True)
    timestamp = struct.unpack(">Q", signature.sig[:8])[0]
    try:
        if timestamp == 0:
            raise ValueError("zero timestamp")
        verifier.public_key.verify(cosignature_message(text, timestamp), signature.sig[8:])
    except (BadSignatureError, ValueError):
        raise UnverifiedNote(f"the cosignature of {verifier.name} does not verify", bad_signature=True) from None
    return timestamp


def cosignatures_by(note: Note, verifiers: list[Verifier]) -> dict[str, int]:
    """Names of the witnesses (among `verifiers`) whose cosignature on `note` verifies, with timestamps."""
    found: dict[str, int] = {}
    for verifier in verifiers:
        for signature in note.signatures:
            if (signature.name, signature.key_id) == (verifier.name, verifier.key_id):
                found[verifier.name] = verify_cosignature(note.text, signature, verifier)
    return found
