"""The read side of the catalog, wired together: search, package data, the MCP Registry view and download
counting, over one `CatalogReader` and one cursor key."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from ..db import Database
from ..keys import load_or_create_secret
from .cursors import CursorCodec
from .downloads import DEFAULT_INTERVAL, DownloadCounter
from .package_view import PackageView
from .reader import CatalogReader
from .registry_view import RegistryView
from .search.service import SearchService

CURSOR_KEY_FILE = "cursor.key"
log = logging.getLogger("mcpstore.discovery")


@dataclass
class Discovery:
    reader: CatalogReader
    cursors: CursorCodec
    search: SearchService
    packages: PackageView
    registry: RegistryView
    downloads: DownloadCounter

    @classmethod
    def open(cls, db: Database, keys_dir: Path, base_url: str, registry_prefix: str,
             fold_interval: float = DEFAULT_INTERVAL) -> "Discovery":
        reader = CatalogReader(db.path)
        # A secret of its own (0600 in the data folder): cursors stay valid across restarts, and a forged
        # or edited cursor is refused.
        cursors = CursorCodec(load_or_create_secret(keys_dir / CURSOR_KEY_FILE))
        downloads = DownloadCounter(db, fold_interval)
        return cls(reader=reader, cursors=cursors,
                   search=SearchService(reader, cursors, base_url, fold_epoch=lambda: downloads.epoch),
                   packages=PackageView(reader, cursors, base_url),
                   registry=RegistryView(reader, cursors, base_url, registry_prefix,
                                         fold_epoch=lambda: downloads.epoch),
                   downloads=downloads)

    def start(self) -> None:
        """Background work of a serving appliance: the periodic download fold, and the typo index built
        ahead of the first search that needs it. Needs a running event loop."""
        self.downloads.start()
        self._warm_up = asyncio.get_running_loop().create_task(self.search.warm_up(), name="speller-warm-up")

    async def stop(self) -> None:
        """Stop the fold and write the last buffered download counts (the database must still be open)."""
        await self.downloads.stop()
        warm_up = getattr(self, "_warm_up", None)
        if warm_up is not None:
            try:
                await warm_up
            except Exception:  # a failed warm-up only means the first misspelled search builds the index
                log.exception("building the typo index at start failed")

    async def close(self) -> None:
        await self.stop()
        self.reader.close()
