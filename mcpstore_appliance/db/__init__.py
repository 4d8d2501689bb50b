"""SQLite access: one `Database` object owns every connection to the file. Which access to use when:

| access | use it for | runs |
|---|---|---|
| `async with db.write() as tx:` | every write; statements that must commit together | the single writer connection (aiosqlite): `BEGIN IMMEDIATE` ... `COMMIT`, or `ROLLBACK` on any exception; writers queue on one lock, so keep the block short |
| `await db.fetch_one/fetch_all/fetch_value(...)`, `async with db.read() as r:` | ordinary reads off the hot path (accounts, admin, the ledger's entries); `read()` for several queries on one snapshot | a pool of query-only aiosqlite connections, one worker-thread hop per call |
| `db.inline(fn)` | short indexed LIMITed reads on a hot path (a package by its key, a page of versions, ledger hashes by primary key) | `fn(conn)` on the event-loop thread, plain sqlite3: no thread hop, which costs more than such a read |
| `db.bounded(fn)` | reads that are short when caches are warm but not always (a search page) | like `inline`, with a budget of SQLite VM steps (`loop_steps`); past it `TooBigForTheLoop` is raised and the caller redoes the work with `threaded` |
| `await db.threaded(fn)` | work that grows with the catalog (full-text search, facet counts, substring scans) | `fn(conn)` on one of a few reader threads, each with its own connection; SQLite releases the GIL |
| `snapshot(conn, fn)` | several statements inside `inline`/`bounded`/`threaded` that must see one state | `BEGIN` ... `COMMIT` around `fn(conn)` |
| `db.dedicated_reader()` | a background thread of your own (rebuilding the typo index) | a read connection opened for the block and closed after it |

All read connections are query-only and see what the writer committed (WAL mode). `db.stamp()` moves at once
on this object's commits and within EXTERNAL_CHECK_SECONDS (1 s) on anyone else's (another process, the CLI):
caches keyed by it skip SQLite while nothing was written; take it before the reads it guards.
`db.per_stamp(read)` caches one value read inline until the stamp moves.

Portability: SQLite-specific SQL (PRAGMAs, `BEGIN IMMEDIATE`, FTS5) stays here and in the query modules that own
it; services take a `Database` and call these methods, so another backend can be added behind them.
"""

from .database import Database, Params, Queries, Transaction, row_to_dict
from .stamp import EXTERNAL_CHECK_SECONDS, CommitStamp, PerStamp
from .sync_reads import TooBigForTheLoop, connect_readonly, open_scan_connection, read_only_uri, snapshot, within_steps

__all__ = ["EXTERNAL_CHECK_SECONDS", "CommitStamp", "Database", "Params", "PerStamp", "Queries", "TooBigForTheLoop",
           "Transaction", "connect_readonly", "open_scan_connection", "read_only_uri", "row_to_dict", "snapshot", "within_steps"]
