"""Fixtures of the unit tests: services run on a real SQLite file (the appliance's Database, migrations applied)."""

from __future__ import annotations

import pytest

from mcpstore_appliance.db import Database


@pytest.fixture
async def db(tmp_path):
    database = await Database(tmp_path / "mcpstore.sqlite3").open()
    yield database
    await database.close()
