"""Group commit for the hot postings (per-call debits): postings that arrive while a write is running are posted
together in the next write transaction.

`journal.post` costs about sixteen trips to the writer's thread (three lines of four statements each, the
reference check, the transaction row, BEGIN and COMMIT); one call of a busy per-call package would pay them all
and wait for every call before it. Here a whole group costs about eight trips: the references already posted and
the guarded balances are read once, the postings are decided in order in Python inside the same BEGIN IMMEDIATE
transaction (the single writer: nothing changes those balances meanwhile, in this process or another), and
transactions, entries and balances are written with one executemany each. Each posting keeps the journal's
rules: balanced, posted once per reference, a guarded account never below zero; a refused posting changes
nothing and the others of its group are unaffected.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from .journal import AlreadyPosted, InsufficientFunds, Line, account_id
from .money import exact_int

CHUNK = 400  # SQLite's bound parameters per IN (...) list


class Quota(Protocol):
    """A count that caps postings besides the balance (a usage token's pre-authorised calls), read and written in
    the group's transaction: `load` gives key -> (used, limit, refusal when the limit is reached)."""

    async def load(self, tx, keys: list[str]) -> dict[str, tuple[int, int, Exception]]: ...

    async def store(self, tx, increments: dict[str, int]) -> None: ...


@dataclass
class _Posting:
    kind: str
    reference: str
    currency: str
    lines: list[Line]
    future: asyncio.Future
    quota: tuple[Quota, str] | None = None  # (the quota, this posting's key in it): one more use if posted


class GroupPoster:
    def __init__(self, db):
        self.db = db
        self._queue: list[_Posting] = []
        self._flushing = False
        self._accounts: dict[tuple[str, str, str], int] = {}  # account rows are never deleted: ids are stable

    async def post(self, kind: str, reference: str, currency: str, lines: list[Line],
                   quota: tuple[Quota, str] | None = None) -> int:
        """Post one balanced transaction with at most one guarded line; returns that account's balance after it.
        Raises AlreadyPosted or InsufficientFunds as journal.post does, or the quota's refusal."""
        lines = [line for line in lines if exact_int(line.amount) != 0]
        if sum(line.amount for line in lines) != 0 or sum(line.guard for line in lines) > 1:
            raise ValueError(f"a grouped posting is balanced with at most one guarded line: {reference}")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Posting(kind, reference, currency, lines, future, quota))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                group, self._queue = self._queue, []
                try:
                    outcomes = await self._write(group)
                except BaseException as exc:  # the whole group failed (the database): each caller hears it
                    self._accounts.clear()  # ids of accounts made in the rolled-back transaction are void
                    outcomes = [exc] * len(group)
                for posting, outcome in zip(group, outcomes):
                    if posting.future.done():  # its caller went away (cancelled)
                        continue
                    if isinstance(outcome, BaseException):
                        posting.future.set_exception(outcome)
                    else:
                        posting.future.set_result(outcome)
        finally:
            self._flushing = False

    async def _write(self, group: list[_Posting]) -> list[int | Exception]:
        async with self.db.write() as tx:
            posted = await self._posted(tx, [p.reference for p in group])
            ids = {key: await self._account(tx, *key) for p in group for key in
                   ((line.kind, line.owner, p.currency) for line in p.lines)}
            guarded = sorted({ids[(line.kind, line.owner, p.currency)] for p in group for line in p.lines
                              if line.guard})
            balances = await self._balances(tx, guarded)
            counts = {}  # quota -> key -> [used, limit, refusal]
            for quota in {p.quota[0] for p in group if p.quota}:
                keys = sorted({p.quota[1] for p in group if p.quota and p.quota[0] is quota})
                counts[quota] = {key: list(value) for key, value in (await quota.load(tx, keys)).items()}
            used_before = {quota: {key: c[0] for key, c in by_key.items()} for quota, by_key in counts.items()}
            next_id = await tx.fetch_value("SELECT coalesce(max(id), 0) FROM market_transactions") + 1
            outcomes, transactions, entries, deltas = [], [], [], {}
            now = time.time()
            for posting in group:
                outcome = self._decide(posting, ids, posted, balances, counts)
                outcomes.append(outcome)
                if isinstance(outcome, Exception):
                    continue
                posted.add(posting.reference)
                transactions.append((next_id, posting.kind, posting.reference, posting.currency, now))
                for line in posting.lines:
                    account = ids[(line.kind, line.owner, posting.currency)]
                    entries.append((next_id, account, line.amount))
                    deltas[account] = deltas.get(account, 0) + line.amount
                next_id += 1
            if transactions:
                await tx.execute_many("INSERT INTO market_transactions (id, kind, reference, currency, created_at)"
                                      " VALUES (?, ?, ?, ?, ?)", transactions)
                await tx.execute_many("INSERT INTO market_entries (transaction_id, account_id, amount)"
                                      " VALUES (?, ?, ?)", entries)
                await tx.execute_many("UPDATE market_accounts SET balance = balance + ? WHERE id = ?",
                                      [(delta, account) for account, delta in deltas.items() if delta])
                for quota, by_key in counts.items():
                    await quota.store(tx, {key: c[0] - used_before[quota][key] for key, c in by_key.items()
                                           if c[0] != used_before[quota][key]})
        return outcomes

    @staticmethod
    def _decide(posting: _Posting, ids: dict, posted: set[str], balances: dict[int, int],
                counts: dict) -> int | Exception:
        if posting.reference in posted:
            return AlreadyPosted(posting.reference)
        count = counts[posting.quota[0]].get(posting.quota[1]) if posting.quota else None
        if posting.quota and (count is None or count[0] >= count[1]):
            return count[2] if count else LookupError(posting.quota[1])
        balance_after = 0
        for line in posting.lines:
            if line.guard:
                account = ids[(line.kind, line.owner, posting.currency)]
                if balances[account] + line.amount < 0:
                    return InsufficientFunds(f"the balance does not cover {-line.amount} {posting.currency}",
                                             details={"currency": posting.currency, "needed": -line.amount})
                balances[account] += line.amount
                balance_after = balances[account]
        if count is not None:
            count[0] += 1
        return balance_after

    async def _account(self, tx, kind: str, owner: str, currency: str) -> int:
        key = (kind, owner, currency)
        if key not in self._accounts:
            self._accounts[key] = await account_id(tx, kind, owner, currency)
        return self._accounts[key]

    @staticmethod
    async def _posted(tx, references: list[str]) -> set[str]:
        found = set()
        for start in range(0, len(references), CHUNK):
            chunk = references[start:start + CHUNK]
            rows = await tx.fetch_all(f"SELECT reference FROM market_transactions WHERE reference IN"
                                      f" ({','.join('?' * len(chunk))})", chunk)
            found.update(row["reference"] for row in rows)
        return found

    @staticmethod
    async def _balances(tx, accounts: list[int]) -> dict[int, int]:
        balances = {}
        for start in range(0, len(accounts), CHUNK):
            chunk = accounts[start:start + CHUNK]
            rows = await tx.fetch_all(f"SELECT id, balance FROM market_accounts WHERE id IN"
                                      f" ({','.join('?' * len(chunk))})", chunk)
            balances.update((row["id"], row["balance"]) for row in rows)
        return balances
