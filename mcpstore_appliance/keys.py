"""Secret key files in the data folder: created once with mode 0600, reused on every start."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from nacl.signing import SigningKey

from .private_files import PRIVATE_FILE_MODE, private_dir


def write_secret_file(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 from the first byte on (no window where others could read it). Raises
    FileExistsError if it exists."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _load_or_create(path: Path, create: Callable[[], bytes]) -> bytes:
    """The file's bytes, created first if absent. Two processes starting at once (the workers of `serve
    --workers N`, a CLI command beside the server) agree: the key is written under a temporary name and linked
    into place, which fails if another process got there first; then its key is read."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            os.chmod(path, PRIVATE_FILE_MODE)
        return path.read_bytes()
    data = create()
    draft = path.with_name(f".{path.name}.{os.getpid()}.new")
    write_secret_file(draft, data)
    try:
        os.link(draft, path)
    except FileExistsError:
        data = path.read_bytes()
    finally:
        draft.unlink()
    return data


def load_or_create_signing_key(path: Path) -> SigningKey:
    """An Ed25519 key kept as its 32-byte seed."""
    seed = _load_or_create(path, lambda: bytes(SigningKey.generate()))
    if len(seed) != 32:
        raise ValueError(f"{path} does not hold a 32-byte Ed25519 seed")
    return SigningKey(seed)


def load_or_create_secret(path: Path, size: int = 32) -> bytes:
    return _load_or_create(path, lambda: os.urandom(size))
