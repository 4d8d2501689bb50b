"""CatalogReader.bounded: reads tried on the event loop with a budget of SQLite work per statement."""

from __future__ import annotations

import sqlite3

import pytest

from mcpstore_appliance.catalog.reader import CatalogReader, TooBigForTheLoop, snapshot

COUNT_TO = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < ?) SELECT count(*) FROM r"


@pytest.fixture
def reader(tmp_path):
    path = tmp_path / "catalog.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.commit()
    conn.close()
    reader = CatalogReader(path)
    yield reader
    reader.close()


def test_small_reads_run_and_big_ones_are_handed_back(reader):
    reader.loop_steps = 1000
    assert reader.bounded(lambda c: c.execute(COUNT_TO, (10,)).fetchone()[0]) == 10
    with pytest.raises(TooBigForTheLoop):
        reader.bounded(lambda c: c.execute(COUNT_TO, (100_000,)).fetchone())
    # The snapshot was closed and the budget removed: the connection is usable without limit afterwards.
    with pytest.raises(TooBigForTheLoop):
        reader.bounded(lambda c: snapshot(c, lambda s: s.execute(COUNT_TO, (100_000,)).fetchone()))
    assert not reader.inline(lambda c: c.in_transaction)
    assert reader.inline(lambda c: c.execute(COUNT_TO, (100_000,)).fetchone()[0]) == 100_000


def test_other_errors_are_not_hidden(reader):
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        reader.bounded(lambda c: c.execute("SELECT * FROM missing").fetchall())

    def refuses(conn):
        raise TooBigForTheLoop()

    with pytest.raises(TooBigForTheLoop):
        reader.bounded(refuses)


def test_the_budget_covers_all_statements_of_a_call_and_ends_with_it(reader):
    """The budget is for the whole call (SQLite counts progress steps per prepared statement across runs,
    so a per-statement budget would fire at random); the next call starts afresh."""
    reader.loop_steps = 5000
    for _ in range(200):  # far more steps in all than one budget, over many calls
        assert reader.bounded(lambda c: snapshot(c, lambda s: s.execute(COUNT_TO, (200,)).fetchone()[0])) == 200
    with pytest.raises(TooBigForTheLoop):
        reader.bounded(lambda c: [c.execute(COUNT_TO, (200,)).fetchone() for _ in range(100)])
    assert not reader.inline(lambda c: c.in_transaction)
