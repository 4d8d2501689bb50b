"""Secret key files in the data folder: created once with mode 0600, reused on every start."""

from __future__ import annotations

import os
from pathlib import Path

from nacl.signing import SigningKey

from .private_files import PRIVATE_FILE_MODE, private_dir


def write_secret_file(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 from the first byte on (no window where others could read it)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def load_or_create_signing_key(path: Path) -> SigningKey:
    """An Ed25519 key kept as its 32-byte seed."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            os.chmod(path, PRIVATE_FILE_MODE)
        seed = path.read_bytes()
        if len(seed) != 32:
            raise ValueError(f"{path} does not hold a 32-byte Ed25519 seed")
        return SigningKey(seed)
    key = SigningKey.generate()
    write_secret_file(path, bytes(key))
    return key


def load_or_create_secret(path: Path, size: int = 32) -> bytes:
    if path.exists():
        return path.read_bytes()
    secret = os.urandom(size)
    write_secret_file(path, secret)
    return secret
