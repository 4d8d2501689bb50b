"""The read side of the catalog: search, package data, the MCP Registry view and download counting, built
together in `app.py` over the one `Database` and one cursor key."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass, field

from .cursors import CursorCodec
from .downloads import DownloadCounter
from .package_view import PackageView
from .registry_view import RegistryView
from .search.service import SearchService

CURSOR_KEY_FILE = "cursor.key"
log = logging.getLogger("mcpstore.discovery")


def read_search_generation(conn: sqlite3.Connection) -> int:
    """The catalog's search generation: moved by the triggers of 005_search.sql on every change a search or a
    listing can see, so cached pages keyed by it are exact (`Database.per_stamp` reads it again only after a
    commit)."""
    return conn.execute("SELECT generation FROM search_state WHERE id = 1").fetchone()[0]


@dataclass
class Discovery:
    cursors: CursorCodec
    search: SearchService
    packages: PackageView
    registry: RegistryView
    downloads: DownloadCounter
    _warm_up: asyncio.Task | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        """Background work of a serving appliance: the periodic download fold, and the typo index built
        ahead of the first search that needs it. Needs a running event loop."""
        self.downloads.start()
        self._warm_up = asyncio.get_running_loop().create_task(self.search.warm_up(), name="speller-warm-up")

    async def stop(self) -> None:
        """Stop the fold and write the last buffered download counts (the database must still be open)."""
        await self.downloads.stop()
        if self._warm_up is not None:
            try:
                await self._warm_up
            except Exception:  # a failed warm-up only means the first misspelled search builds the index
                log.exception("building the typo index at start failed")
