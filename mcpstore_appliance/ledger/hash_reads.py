"""Reading the tree's stored hashes (storedhash.py's layout in `ledger_leaves.hashes`), with an LRU of committed
ones: stored hashes never change once committed, and the top-of-tree ones are shared by every proof.

Committed hashes are read inline on the event loop (`Database.inline`): a proof is one primary-key query for at
most ~2·log2(n) short rows, cheaper than a hop to an aiosqlite thread. Appends read through the caller's write
transaction, which sees its own uncommitted rows, and never cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..db import Database, Queries
from . import storedhash as sh

MAX_IN_PARAMS = 500  # stay far below SQLite's bound-parameter limit
HASH_CACHE_SIZE = 200_000  # ~ 20 MB

Rows = Callable[[str, Sequence[Any]], Awaitable[list]]


class MissingHashes(LookupError):
    """Stored hashes that a computation needs are not (yet) in the table."""


class StoredHashes:
    def __init__(self, db: Database, cache_size: int = HASH_CACHE_SIZE):
        self.db = db
        self.cache_size = cache_size
        self._cache: OrderedDict[sh.Node, bytes] = OrderedDict()

    async def _committed_rows(self, sql: str, params: Sequence[Any]) -> list:
        return self.db.inline(lambda conn: conn.execute(sql, params).fetchall())

    async def committed(self, nodes: Sequence[sh.Node], cache: bool = True) -> dict[sh.Node, bytes]:
        return await self._read(self._committed_rows, nodes, cache)

    async def in_transaction(self, tx: Queries, nodes: Sequence[sh.Node]) -> dict[sh.Node, bytes]:
        async def rows(sql: str, params: Sequence[Any]) -> list:
            return [tuple(row.values()) for row in await tx.fetch_all(sql, params)]

        return await self._read(rows, nodes, cache=False)

    async def _read(self, rows: Rows, nodes: Sequence[sh.Node], cache: bool) -> dict[sh.Node, bytes]:
        found: dict[sh.Node, bytes] = {}
        wanted: dict[int, list[sh.Node]] = {}
        for node in nodes:
            h = self._cache.get(node) if cache else None
            if h is None:
                wanted.setdefault(sh.row_of(node)[0], []).append(node)
            else:
                self._cache.move_to_end(node)
                found[node] = h
        indices = list(wanted)
        for start in range(0, len(indices), MAX_IN_PARAMS):
            chunk = indices[start:start + MAX_IN_PARAMS]
            marks = ",".join("?" * len(chunk))
            for idx, blob in await rows(f"SELECT idx, hashes FROM ledger_leaves WHERE idx IN ({marks})", chunk):
                for node in wanted[idx]:
                    offset = sh.row_of(node)[1]
                    found[node] = bytes(blob[offset:offset + 32])
        if len(found) < len(set(nodes)):
            raise MissingHashes()
        if cache and wanted:
            self._remember(wanted, found)
        return found

    def forget(self) -> None:
        """Drop every cached hash (the file was replaced under the running process, as by a bad restore)."""
        self._cache.clear()

    def _remember(self, wanted: dict[int, list[sh.Node]], found: dict[sh.Node, bytes]) -> None:
        for node_list in wanted.values():
            for node in node_list:
                self._cache[node] = found[node]
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
