"""The double-entry journal: every posting is a set of entries that sums to zero, in one currency.

Sign convention: wallet, creator and revenue accounts grow with positive entries (what the platform holds for
someone, or has earned); a clearing account goes negative by what came in through its provider, and positive by
what went out (payouts, fees); the fees account is the platform's expense, negative. So a card payment of 1000
for a package with an 80 % share posts clearing -1000, creator +800, revenue +200; the provider's fee of 59
posts clearing +59, fees -59.

Each account's `balance` column is kept equal to the sum of its entries in the same write transaction; it exists
so that a debit can refuse to overdraw with one guarded UPDATE. `check` proves both rules from the entries.
All functions here take an open write transaction (`db.write()`): a posting is part of its caller's change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import PaymentRequired
from .money import exact_int

KINDS = ("wallet", "creator", "revenue", "fees", "clearing")
PLATFORM = "platform"


class InsufficientFunds(PaymentRequired):
    code = "insufficient_funds"


class AlreadyPosted(Exception):
    """A posting with this reference exists: the caller's change was already made once."""


@dataclass(frozen=True)
class Line:
    kind: str
    owner: str
    amount: int
    guard: bool = False  # refuse (InsufficientFunds) if the account would go below zero


async def account_id(tx, kind: str, owner: str, currency: str) -> int:
    if kind not in KINDS:
        raise ValueError(f"unknown account kind {kind!r}")
    await tx.execute("INSERT OR IGNORE INTO market_accounts (kind, owner, currency) VALUES (?, ?, ?)",
                     (kind, owner, currency))
    return await tx.fetch_value("SELECT id FROM market_accounts WHERE kind = ? AND owner = ? AND currency = ?",
                                (kind, owner, currency))


async def is_posted(tx, reference: str) -> bool:
    return await tx.fetch_value("SELECT 1 FROM market_transactions WHERE reference = ?", (reference,)) is not None


async def post(tx, kind: str, reference: str, currency: str, lines: list[Line], *, order_id: int | None = None,
               memo: str = "") -> int:
    """Add one balanced transaction; raises AlreadyPosted for a reference seen before (nothing is added) and
    InsufficientFunds when a guarded line would overdraw (the caller's transaction then rolls back)."""
    lines = [line for line in lines if exact_int(line.amount) != 0]
    if sum(line.amount for line in lines) != 0:
        raise ValueError(f"unbalanced posting {reference}: {lines}")
    if await is_posted(tx, reference):
        raise AlreadyPosted(reference)
    txn = await tx.execute("INSERT INTO market_transactions (kind, reference, currency, order_id, memo, created_at)"
                           " VALUES (?, ?, ?, ?, ?, ?)", (kind, reference, currency, order_id, memo, time.time()))
    for line in lines:
        account = await account_id(tx, line.kind, line.owner, currency)
        changed = await tx.changes(
            "UPDATE market_accounts SET balance = balance + ? WHERE id = ? AND (? = 0 OR balance + ? >= 0)",
            (line.amount, account, int(line.guard), line.amount))
        if not changed:
            raise InsufficientFunds(f"the balance does not cover {-line.amount} {currency}", details={
                "currency": currency, "needed": -line.amount})
        await tx.execute("INSERT INTO market_entries (transaction_id, account_id, amount) VALUES (?, ?, ?)",
                         (txn, account, line.amount))
    return txn


async def reverse(tx, reference: str, original_reference: str, kind: str = "refund") -> int | None:
    """Post the exact opposite of an earlier transaction (a refund or dispute); None if it was never posted."""
    original = await tx.fetch_one("SELECT id, currency, order_id FROM market_transactions WHERE reference = ?",
                                  (original_reference,))
    if original is None:
        return None
    rows = await tx.fetch_all("SELECT a.kind, a.owner, e.amount FROM market_entries e"
                              " JOIN market_accounts a ON a.id = e.account_id WHERE e.transaction_id = ?",
                              (original["id"],))
    lines = [Line(row["kind"], row["owner"], -row["amount"]) for row in rows]
    return await post(tx, kind, reference, original["currency"], lines, order_id=original["order_id"],
                      memo=f"reverses {original_reference}")


async def balance(db, kind: str, owner: str, currency: str) -> int:
    return await db.fetch_value("SELECT balance FROM market_accounts WHERE kind = ? AND owner = ? AND currency = ?",
                                (kind, owner, currency), 0)


async def check(db) -> list[str]:
    """What breaks the journal's rules (empty when it is sound): a currency whose entries do not sum to zero,
    a transaction that does not, an account whose balance differs from its entries."""
    problems = []
    for row in await db.fetch_all("SELECT a.currency, SUM(e.amount) AS total FROM market_entries e"
                                  " JOIN market_accounts a ON a.id = e.account_id GROUP BY a.currency"):
        if row["total"] != 0:
            problems.append(f"currency {row['currency']} sums to {row['total']}")
    for row in await db.fetch_all("SELECT transaction_id, SUM(amount) AS total FROM market_entries"
                                  " GROUP BY transaction_id HAVING SUM(amount) <> 0"):
        problems.append(f"transaction {row['transaction_id']} sums to {row['total']}")
    for row in await db.fetch_all(
            "SELECT a.id, a.kind, a.owner, a.currency, a.balance,"
            " (SELECT coalesce(SUM(e.amount), 0) FROM market_entries e WHERE e.account_id = a.id) AS entries"
            " FROM market_accounts a"):
        if row["balance"] != row["entries"]:
            problems.append(f"account {row['kind']}:{row['owner']}:{row['currency']} balance {row['balance']}"
                            f" != entries {row['entries']}")
    return problems
