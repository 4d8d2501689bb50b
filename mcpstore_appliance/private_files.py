"""Folders and files only the service user may read: the data folder, and what the appliance writes in it.

The data folder is 0700, so no other user of the machine reaches anything inside; what the appliance creates
in it is private too (folders 0700, files 0600), so that a copy (`mcpstore backup`) or a folder opened up by
mistake still keeps the database, the keys and the bundles to the service user. Folders and files that an
earlier version left open are closed when they are opened again.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_OTHERS = 0o077  # the group's and everyone else's permission bits


def private_dir(path: Path) -> Path:
    """`path` as a folder that only its owner can enter; missing parents are created private too."""
    path = Path(path)
    create_private_dirs(path)
    close_to_others(path, PRIVATE_DIR_MODE)
    return path


def create_private_dirs(path: Path) -> list[Path]:
    """Create `path` and its missing parents with mode 0700; return the folders made here, outermost first."""
    missing = []
    current = Path(path)
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    created = []
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by someone else
        created.append(folder)
    return created


def write_private_text(path: Path, text: str) -> None:
    private_file(path).write_text(text)


def private_file(path: Path) -> Path:
    """`path` as a file (created empty if missing) that only its owner can read or write."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        close_to_others(path, PRIVATE_FILE_MODE)
    return path


def close_to_others(path: Path, mode: int) -> None:
    """Set `mode` on an existing file or folder where the group or others have any permission."""
    try:
        if os.stat(path).st_mode & _OTHERS:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
