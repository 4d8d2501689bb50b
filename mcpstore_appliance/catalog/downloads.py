"""Download counting without a write per download.

A download only increments a counter in memory (`record`, O(1), no I/O). A background task folds the buffer
into the database every `interval` seconds (30 s by default, so counts show in the API within a minute): one
write transaction adds each package's total to `packages.downloads` and each (package, day, version) count to
`download_days`. Popular packages therefore cost one UPDATE per fold, not one per download (the hot-row
problem of registries that `+1` on every request). The buffer is also folded on shutdown. A crash loses at
most one interval of counts, which is acceptable for statistics. Several processes may each fold their own
buffers: the writes are increments, so they add up.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections import Counter
from typing import Any

from ..db import Database

log = logging.getLogger("mcpstore.downloads")

DEFAULT_INTERVAL = 30.0
MAX_DAYS = 366


def utc_day(timestamp: float | None = None) -> str:
    return _day_name(int((time.time() if timestamp is None else timestamp) // 86400))


@functools.lru_cache(maxsize=8)
def _day_name(days_since_epoch: int) -> str:
    """Named once per day: every download asks."""
    return (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=days_since_epoch)).strftime("%Y-%m-%d")


class DownloadCounter:
    def __init__(self, db: Database, interval: float = DEFAULT_INTERVAL):
        self.db = db
        self.interval = interval
        self._pending: Counter[tuple[int, int, str]] = Counter()  # (package_id, version_id, day) -> count
        self._task: asyncio.Task | None = None
        self._flush_lock = asyncio.Lock()
        self.epoch = 0  # counts folds that wrote something: cached search pages keyed by it see new counts

    def record(self, package_id: int, version_id: int) -> None:
        self._pending[(package_id, version_id, utc_day())] += 1

    @property
    def pending(self) -> int:
        return sum(self._pending.values())

    async def flush(self) -> int:
        """Fold the buffered downloads into the database; returns how many were written."""
        async with self._flush_lock:
            batch, self._pending = self._pending, Counter()
            if not batch:
                return 0
            per_package: Counter[int] = Counter()
            for (package_id, _, _), count in batch.items():
                per_package[package_id] += count
            try:
                async with self.db.write() as tx:
                    await tx.execute_many(
                        "UPDATE packages SET downloads = downloads + ? WHERE id = ?",
                        [(count, package_id) for package_id, count in sorted(per_package.items())])
                    await tx.execute_many(
                        "INSERT INTO download_days (package_id, day, version_id, count)"
                        " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM versions WHERE id = ?)"
                        " ON CONFLICT (package_id, day, version_id) DO UPDATE SET count = count + excluded.count",
                        [(package_id, day, version_id, count, version_id)
                         for (package_id, version_id, day), count in sorted(batch.items())])
            except Exception:
                # Keep the counts for the next fold rather than dropping them.
                self._pending.update(batch)
                raise
            self.epoch += 1
            return sum(batch.values())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="download-fold")

    async def stop(self) -> None:
        """Stop the periodic fold and write what is still buffered."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:  # a locked or failing database must not end the loop; retried next interval
                log.exception("folding download counts failed; will retry")

    async def daily(self, package_id: int, days: int = 30) -> list[dict[str, Any]]:
        """Downloads per UTC day for the last `days` days (oldest first, zero-filled), for charts."""
        days = max(1, min(days, MAX_DAYS))
        today = dt.datetime.now(dt.timezone.utc).date()
        first = today - dt.timedelta(days=days - 1)
        rows = await self.db.fetch_all(
            "SELECT day, sum(count) AS count FROM download_days WHERE package_id = ? AND day >= ?"
            " GROUP BY day", (package_id, first.isoformat()))
        found = {row["day"]: row["count"] for row in rows}
        dates = [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]
        return [{"day": day, "count": found.get(day, 0)} for day in dates]

    async def by_version(self, package_id: int) -> dict[int, int]:
        rows = await self.db.fetch_all(
            "SELECT version_id, sum(count) AS count FROM download_days WHERE package_id = ? GROUP BY version_id",
            (package_id,))
        return {row["version_id"]: row["count"] for row in rows}
