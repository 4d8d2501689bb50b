"""C2SP tlog-checkpoint v1: "<origin>\\n<size>\\n<base64 root>\\n" as the text of a signed note."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from . import note as notes
from .merkle import HASH_SIZE

SIZE_LINE = re.compile(r"^(0|[1-9][0-9]{0,19})$")
MAX_TREE_SIZE = (1 << 63) - 1


class CheckpointError(ValueError):
    """Malformed checkpoint text."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    note: str  # the signed note, optionally followed by witness cosignature lines
    extensions: tuple[str, ...] = field(default=())

    @property
    def body(self) -> str:
        return format_body(self.origin, self.size, self.root, self.extensions)

    def summary(self) -> dict:
        return {"origin": self.origin, "size": self.size, "root": notes.b64(self.root)}


def valid_origin(origin: str) -> bool:
    return notes.valid_key_name(origin)


def format_body(origin: str, size: int, root: bytes, extensions: tuple[str, ...] = ()) -> str:
    if not valid_origin(origin):
        raise CheckpointError("origin must be non-empty, without spaces or '+'")
    if len(root) != HASH_SIZE or not 0 <= size <= MAX_TREE_SIZE:
        raise CheckpointError("bad size or root")
    return "".join(f"{line}\n" for line in (origin, str(size), notes.b64(root), *extensions))


def parse_body(text: str) -> tuple[str, int, bytes, tuple[str, ...]]:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise CheckpointError("a checkpoint has an origin, a size and a root line")
    origin, size_line, root_line, *extensions = lines[:-1]
    if not valid_origin(origin):
        raise CheckpointError("checkpoint origin is empty or has spaces or '+'")
    if not SIZE_LINE.match(size_line) or int(size_line) > MAX_TREE_SIZE:
        raise CheckpointError("checkpoint size must be a decimal number without leading zeros")
    try:
        root = notes.unb64(root_line, "checkpoint root")
    except notes.NoteError as exc:
        raise CheckpointError(str(exc)) from None
    if len(root) != HASH_SIZE or notes.b64(root) != root_line:
        raise CheckpointError("checkpoint root must be the base64 of a 32-byte hash")
    return origin, int(size_line), root, tuple(extensions)


def sign_checkpoint(origin: str, size: int, root: bytes, signing_key: SigningKey) -> Checkpoint:
    body = format_body(origin, size, root)
    return Checkpoint(origin, size, root, notes.sign(body, origin, signing_key))


def open_checkpoint(message: str, verifiers: list[notes.Verifier], origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint (raises notes.UnverifiedNote / NoteError / CheckpointError)."""
    note, _ = notes.open_note(message, verifiers)
    parsed_origin, size, root, extensions = parse_body(note.text)
    if origin is not None and parsed_origin != origin:
        raise CheckpointError(f"checkpoint is for origin {parsed_origin!r}, expected {origin!r}")
    return Checkpoint(parsed_origin, size, root, message, extensions)


def parse_unverified(message: str) -> Checkpoint:
    note = notes.parse(message)
    origin, size, root, extensions = parse_body(note.text)
    return Checkpoint(origin, size, root, message, extensions)


def add_signature_lines(message: str, lines: list[str]) -> str:
    """Append signature lines (for example witness cosignatures) to a signed note, skipping duplicates."""
    existing = set(message[message.rfind("\n\n") + 2:].splitlines(keepends=True))
    return message + "".join(line for line in lines if line not in existing)
