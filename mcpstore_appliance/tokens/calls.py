"""Per-call billing against usage tokens: reservations at issue, calls reported against a `jti`, releases.

A usage token of a per-call package carries `calls`: that many calls' price moves at issue from the buyer's
wallet (journal account wallet `user:<id>`, or when it covers no call an org's `org:<id>` of theirs) to its hold
(wallet `hold:user:<id>` or `hold:org:<id>`), so a publisher is never owed money the buyer does not have. Each
call reported against the token (by the publisher's server with its API token, or billed by the gateway) moves one
price from the hold to the creator and the platform, split as fixed at issue; a call id is billed once however
often it is reported (the journal reference call:<jti>:<call id>), and never beyond the reservation. What is
left when the token has expired (plus REPORT_GRACE for late reports) goes back to the wallet it came from.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from ..accounts.models import Principal
from ..catalog.visibility import can_manage
from ..errors import Conflict, InvalidInput, NotFound
from ..market import journal
from ..lru import LRU
from ..market.batch import GroupPoster
from ..market.journal import PLATFORM, InsufficientFunds, Line
from ..market.money import split, to_journal
from ..market.orders import Product, creator_share_bp

REPORT_GRACE = 120  # seconds after a token's expiry during which its calls may still be reported


def hold_of(user_id: int) -> str:
    return f"hold:user:{user_id}"


def funded_by(token: dict) -> str:
    """The wallet a token's reservation came from: the buyer's own, or an org's (usage_tokens.wallet)."""
    return token["wallet"] or f"user:{token['user_id']}"


class Reservations:
    """The per-token cap of grouped call debits (market.batch.Quota): `used` never passes `calls`, and a closed
    reservation (released, or past its report grace) takes no more calls."""

    async def load(self, tx, keys: list[str]) -> dict[str, tuple[int, int, Exception]]:
        rows = await tx.fetch_all(f"SELECT jti, used, calls, released_at, expires_at FROM usage_tokens"
                                  f" WHERE jti IN ({','.join('?' * len(keys))})", keys)
        now, counts = time.time(), {}
        for row in rows:
            if row["released_at"] is not None or now > row["expires_at"] + REPORT_GRACE:
                counts[row["jti"]] = (0, 0, Conflict("this token's reservation is closed (it expired); its unused"
                                                     " calls went back to the buyer", code="reservation_closed"))
            else:
                counts[row["jti"]] = (row["used"], row["calls"], InsufficientFunds(
                    f"this token was pre-authorised for {row['calls']} calls, all reported",
                    code="reservation_exhausted", details={"calls": row["calls"]}))
        return counts

    async def store(self, tx, increments: dict[str, int]) -> None:
        await tx.execute_many("UPDATE usage_tokens SET used = used + ? WHERE jti = ?",
                              [(n, jti) for jti, n in increments.items()])


class Calls:
    def __init__(self, db, market_settings=None):
        self.db = db
        self.market_settings = market_settings  # the operator's splits (market.orders.creator_share_bp)
        self.grouped = GroupPoster(db)
        self.reservations = Reservations()
        self._tokens = LRU(8192)

    async def reserve(self, tx, jti: str, user_id: int, package: dict, wanted: int,
                      org_ids: Collection[int] = ()) -> dict:
        """Move up to `wanted` calls' price from the wallet to the hold (as many as the balance covers; 402 with
        none): the buyer's own wallet, or when it covers no call the first of their orgs' (`org_ids`) that does.
        Returns the usage_tokens columns of the reservation."""
        price, currency = to_journal(package["price_amount"], package["currency"])
        for wallet in (f"user:{user_id}", *(f"org:{org}" for org in sorted(org_ids))):
            balance = await tx.fetch_value("SELECT balance FROM market_accounts WHERE kind = 'wallet' AND owner = ?"
                                           " AND currency = ?", (wallet, currency), 0)
            calls = min(wanted, balance // price)
            if calls >= 1:
                break
        else:
            raise InsufficientFunds(f"your {currency} credits do not cover one call of this package; top up first",
                                    details={"currency": currency, "price": price, "balance": balance})
        await journal.post(tx, "reserve", f"reserve:{jti}", currency, [
            Line("wallet", wallet, -calls * price, guard=True), Line("wallet", f"hold:{wallet}", calls * price)])
        item = Product(package["id"], "", "per_call", package["price_amount"], package["currency"], package["tier"],
                       package["visibility"], package["org_id"], package["owner_user_id"], None)
        return {"calls": calls, "price": price, "currency": currency, "creator": item.creator,
                "creator_share_bp": creator_share_bp(self.market_settings, item),
                "wallet": None if wallet == f"user:{user_id}" else wallet}

    async def report(self, principal: Principal, jti: object, call_id: object) -> dict:
        """A publisher's server reports one call against a token of its package (with its API token)."""
        if not isinstance(jti, str) or not 1 <= len(jti) <= 100:
            raise InvalidInput("jti is the usage token's id", code="invalid_jti")
        row = await self.db.fetch_one(
            "SELECT p.id, p.org_id, p.owner_user_id, p.visibility FROM usage_tokens t"
            " JOIN packages p ON p.id = t.package_id WHERE t.jti = ?", (jti,))
        if row is None or not can_manage(principal, row):
            raise NotFound("no usage token with this jti for a package you publish", code="usage_token_not_found")
        billed = await self.bill(jti, call_id)
        used = await self.db.fetch_value("SELECT used FROM usage_tokens WHERE jti = ?", (jti,))
        return {**billed, "used": used}

    async def bill(self, jti: str, call_id: object) -> dict:
        """One call against the token's reservation: {"billed": bool, "calls"}; `billed` is false for a call id
        billed before. 402 beyond the reservation, 409 once the reservation is closed. Grouped with the calls
        billed at the same moment into one write transaction (market/batch.py)."""
        if not isinstance(call_id, str) or not 1 <= len(call_id) <= 200:
            raise InvalidInput("call_id identifies the call (1-200 characters): reporting it again bills it once",
                               code="invalid_call_id")
        token = await self._token(jti)
        creator, platform = split(token["price"], token["creator_share_bp"])
        try:
            await self.grouped.post("debit", f"call:{jti}:{call_id}", token["currency"], [
                Line("wallet", f"hold:{funded_by(token)}", -token["price"], guard=True),
                Line("creator", token["creator"], creator), Line("revenue", PLATFORM, platform)],
                quota=(self.reservations, jti))
            return {"billed": True, "calls": token["calls"]}
        except journal.AlreadyPosted:
            return {"billed": False, "calls": token["calls"]}

    async def _token(self, jti: str) -> dict:
        """What never changes of a token (its reservation's terms), kept by jti."""
        token = self._tokens.get(jti)
        if token is None:
            token = await self.db.fetch_one("SELECT user_id, wallet, calls, price, currency, creator,"
                                            " creator_share_bp FROM usage_tokens WHERE jti = ?", (jti,))
            if token is None:
                raise NotFound("no such usage token", code="usage_token_not_found")
            self._tokens.put(jti, token)
        if token["calls"] == 0:
            raise InvalidInput("this token's package is not paid per call", code="not_per_call")
        return token

    async def unbill(self, jti: str, call_id: str) -> None:
        """Take back a call billed by the gateway whose server failed (only successful calls cost)."""
        async with self.db.write() as tx:
            try:
                if await journal.reverse(tx, f"uncall:{jti}:{call_id}", f"call:{jti}:{call_id}") is None:
                    return
            except journal.AlreadyPosted:
                return
            await tx.execute("UPDATE usage_tokens SET used = used - 1 WHERE jti = ?", (jti,))

    async def release_expired(self, now: float | None = None, batch: int = 500) -> int:
        """Give back what expired tokens did not use; returns how many reservations were closed."""
        now = time.time() if now is None else now
        async with self.db.write() as tx:
            rows = await tx.fetch_all("SELECT * FROM usage_tokens WHERE released_at IS NULL AND calls > 0"
                                      " AND expires_at < ? LIMIT ?", (now - REPORT_GRACE, batch))
            for row in rows:
                unused = (row["calls"] - row["used"]) * row["price"]
                if unused:
                    await journal.post(tx, "release", f"release:{row['jti']}", row["currency"], [
                        Line("wallet", f"hold:{funded_by(row)}", -unused, guard=True),
                        Line("wallet", funded_by(row), unused)])
                await tx.execute("UPDATE usage_tokens SET released_at = ? WHERE jti = ?", (now, row["jti"]))
        return len(rows)

    async def held(self, user_id: int, currency: str) -> int:
        return await journal.balance(self.db, "wallet", hold_of(user_id), currency)

