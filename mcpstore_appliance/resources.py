"""One place that finds the files shipped beside the code: templates, static assets, SQL migrations, and the
build facts a binary carries (packaging/build.sh writes `_build_info.json` into it).

The same code runs from a checkout, an installed wheel and a PyInstaller binary; each lays the files out
differently, so every lookup goes through `resource_dir`.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _candidates(name: str) -> list[Path]:
    frozen_root = getattr(sys, "_MEIPASS", None)
    roots = []
    if frozen_root:  # PyInstaller unpacks data next to the code under _MEIPASS
        roots.append(Path(frozen_root))
    roots += [
        PACKAGE_DIR.parent,  # a checkout or an editable install: <repo>/templates
        PACKAGE_DIR / "_resources",  # a wheel that bundles them inside the package
        Path(sys.prefix) / "share" / "mcpstore",  # a wheel installing them as data files
    ]
    return [root / name for root in roots]


@cache
def resource_dir(name: str) -> Path:
    """Return the folder `name` ("templates", "static") wherever this install keeps it."""
    for candidate in _candidates(name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"resource folder {name!r} not found in {[str(c) for c in _candidates(name)]}")


def migrations_dir() -> Path:
    return PACKAGE_DIR / "db" / "migrations"


BUILD_INFO = PACKAGE_DIR / "_build_info.json"


def version_line() -> str:
    """`mcpstore --version`: the version, and for a built binary the git revision it was built from."""
    from . import __version__

    try:
        info = json.loads(BUILD_INFO.read_text())
    except (OSError, ValueError):  # a checkout or a wheel: no build facts
        return f"mcpstore {__version__}"
    return f"mcpstore {__version__} (git {info.get('revision', 'unknown')}, built {info.get('built', 'unknown')})"
