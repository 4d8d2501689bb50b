"""The ledger's origin, fixed in the data folder on first start.

The origin is the checkpoint's first line and the name of the checkpoint key (C2SP signed note): clients pin
"<origin>+<key id>+<key>" on first use and refuse anything else. So it is fixed in the data folder the first
time the ledger starts (`keys/ledger.origin`, next to the key it names, so backups carry both): from
`ledger.origin` if set, else from the public URL (`<host[:port]>/ledger`). A later start on another host or
port keeps it. Changing it is an operator's explicit act (`mcpstore ledger set-origin`, which warns that pinned
clients will reject the new name); a `ledger.origin` setting that differs from the fixed one stops the start.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import ConfigError, Settings
from ..db import Database
from ..private_files import PRIVATE_FILE_MODE
from .checkpoint import valid_origin

ORIGIN_FILE = "ledger.origin"


async def fixed_origin(db: Database, settings: Settings, keys_dir: Path) -> str:
    """The data folder's origin, fixed on first use (see the module's docstring)."""
    path = Path(keys_dir) / ORIGIN_FILE
    origin = stored_origin(path)
    if origin is None:
        # A data folder from before the origin was fixed: its checkpoints carry the origin clients pinned.
        origin = await _signed_origin(db) or check_origin(settings.ledger_origin, "ledger.origin")
        origin = _keep_first(path, origin)
    wanted = settings.ledger.origin
    if wanted and wanted != origin:
        raise ConfigError(
            f"config: ledger.origin {wanted!r} differs from this data folder's ledger origin {origin!r}, the name "
            f"clients pinned with its key; remove the setting, or change the origin on purpose with "
            f"`mcpstore ledger set-origin {wanted}` (it explains what that breaks)")
    return origin


def stored_origin(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return check_origin(text, str(path))


def check_origin(origin: str, where: str) -> str:
    if not valid_origin(origin):
        raise ConfigError(f"config: ledger origin {origin!r} ({where}) must be non-empty, without spaces or '+'")
    return origin


def store_origin(path: Path, origin: str) -> None:
    """Replace the fixed origin (the operator's command): written whole, then renamed over the old one."""
    temp = path.with_name(path.name + ".new")
    temp.unlink(missing_ok=True)
    _write_new(temp, check_origin(origin, "the new origin"))
    os.replace(temp, path)


def _keep_first(path: Path, origin: str) -> str:
    """Store `origin` unless another process stored one first; return the stored one."""
    try:
        _write_new(path, origin)
    except FileExistsError:
        return stored_origin(path) or origin
    return origin


def _write_new(path: Path, origin: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(origin + "\n")
        fh.flush()
        os.fsync(fh.fileno())


async def _signed_origin(db: Database) -> str | None:
    note = await db.fetch_value("SELECT note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1")
    origin = note.split("\n", 1)[0] if note else ""
    return origin if valid_origin(origin) else None
