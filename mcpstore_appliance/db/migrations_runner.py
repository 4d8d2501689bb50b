"""Apply `migrations/NNN_name.sql` in order, each once, each in its own transaction, recorded in
`schema_migrations`. An upgrade of the appliance migrates the database on the next start; an older appliance
refuses to start on a database that a newer one migrated (it would not know what the newer tables mean)."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import aiosqlite

from ..config import ConfigError
from ..resources import migrations_dir

log = logging.getLogger("mcpstore.migrations")
MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def discover(folder: Path | None = None) -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted((folder or migrations_dir()).iterdir()):
        match = MIGRATION_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), match.group(2), path))
    numbers = [number for number, _, _ in found]
    if len(numbers) != len(set(numbers)):
        raise RuntimeError(f"two migrations share a number: {numbers}")
    return found


async def apply_migrations(conn: aiosqlite.Connection, folder: Path | None = None) -> list[int]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    async with conn.execute("SELECT version FROM schema_migrations") as cursor:
        done = {row[0] for row in await cursor.fetchall()}
    known = discover(folder)
    _refuse_newer_schema(done, {number for number, _, _ in known})
    applied = []
    for number, name, path in known:
        if number in done:
            continue
        script = path.read_text(encoding="utf-8")
        started = time.monotonic()
        if done:  # an upgrade (a new database is created silently): some migrations rebuild indexes for seconds
            log.info("upgrading the database: migration %03d_%s", number, name)
        # executescript commits any open transaction first, so the whole migration and its record
        # go in one explicit transaction inside the script.
        try:
            await conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\n;"
                f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({number}, '{name}', {time.time()});"
                "\nCOMMIT;"
            )
        except Exception:
            # executescript stops at the failing statement with the transaction still open: undo it all.
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
        applied.append(number)
        if done:
            log.info("migration %03d_%s applied in %.1f s", number, name, time.monotonic() - started)
    return applied


def _refuse_newer_schema(done: set[int], known: set[int]) -> None:
    newer = sorted(done - known)
    if newer:
        raise ConfigError(
            f"the database was migrated by a newer mcpstore (schema {max(done):03d}; this version knows up to "
            f"{max(known):03d}): run that version again, or restore a backup made before the upgrade "
            "(mcpstore restore); starting an older version on it could corrupt it")
