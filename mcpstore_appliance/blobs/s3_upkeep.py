"""The S3 store's share of housekeeping (kept apart from s3.py, which is long enough): how old a blob is, for
the orphan sweep, and the sweep of its local spool files."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

from mcpstore_appliance.tempfiles import remove_stale

SPOOL_PREFIX = "s3-put-"


class S3Upkeep:
    async def modified_at(self, sha256: str) -> float | None:
        """The object's Last-Modified (seconds since the epoch), or None when it is absent. A server that sends
        no date gets "now": a blob of unknown age is never old enough to sweep."""
        from .s3 import S3Error  # s3.py imports this module

        try:
            response = await self._request("HeadObject", "HEAD", self._object_path(self.key_for(sha256)))
        except S3Error as exc:
            if exc.status == 404:
                return None
            raise
        response.release()
        try:
            return parsedate_to_datetime(response.headers["Last-Modified"]).timestamp()
        except (KeyError, TypeError, ValueError):
            return time.time()

    def sweep_temp(self, max_age_seconds: float = 24 * 3600) -> int:
        """Remove spool files of puts a crash interrupted; young ones may belong to a put in flight."""
        return remove_stale(self.spool_dir, max_age_seconds, (SPOOL_PREFIX,))
