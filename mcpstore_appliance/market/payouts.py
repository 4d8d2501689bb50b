"""Creator payouts: payout methods, and batches that pay each creator's available balance once it reaches the
minimum of its currency (`mcpstore admin payouts run`, and on a timer).

Exactly once, across crashes. A payout is first RESERVED: one write transaction inserts its row under an
idempotency key and posts `payout:<key>` (creator -amount, clearing of the payer's provider +amount, guarded so a
creator is never paid more than they have). Only then is the provider involved, and every later step can be
repeated: a fetched invoice is stored before it is paid (SENDING), and a sending payout is looked up at the
provider before anything is sent again. A definite failure posts `payout-return:<key>` (the exact opposite), so
the amount is the creator's again and the next batch tries anew; a payout whose provider did not answer stays
open and is resumed by the next run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import audit
from ..accounts.models import Principal
from ..catalog.pricing import to_minor_units
from ..errors import Forbidden, InvalidInput, NotFound, UpstreamFailed
from . import journal
from .journal import Line
from .money import JOURNAL_CURRENCY, PER_PRICE_UNIT
from .providers.payers import Outcome, Payer

log = logging.getLogger("mcpstore.market")
METHOD_CURRENCIES = {"lightning": ("msat",), "stripe": ("usd", "eur")}
OPEN = ("reserved", "sending")


def creator_of(principal: Principal, org: str | None) -> tuple[str, int | None]:
    """(creator account owner, org id) the caller speaks for: themselves, or an org they own or administer."""
    if org is None:
        if not principal.acts_as_owner:
            raise Forbidden("a token bound to an org speaks for that org only: pass its slug as `org`",
                            code="org_required")
        return f"user:{principal.id}", None
    org_id = next((oid for oid, slug in principal.org_slugs.items() if slug == org), None)
    if org_id is None or (principal.token_org_id not in (None, org_id)):
        raise NotFound("no such org of yours", code="org_not_found")
    if principal.memberships.get(org_id) not in ("owner", "admin"):
        raise Forbidden("only an owner or admin of the org sees its earnings and payouts", code="not_org_admin")
    return f"org:{org_id}", org_id


def minimum(settings, currency: str) -> int:
    """The payout minimum of a journal currency in journal units (msat for sat)."""
    shown = {v: k for k, v in JOURNAL_CURRENCY.items()}[currency]
    given = settings.payouts.minimum.get(shown)
    if given is None:
        return 0
    return to_minor_units(given, shown) * PER_PRICE_UNIT[shown]


@dataclass
class Report:
    batch: str
    paid: list[dict]
    failed: list[dict]
    open: list[dict]  # the provider did not answer: resumed by the next run

    def as_json(self) -> dict:
        return {"batch": self.batch, "paid": self.paid, "failed": self.failed, "open": self.open}


class Payouts:
    def __init__(self, db, settings, payers: dict[str, Payer], base_url: str):
        self.db = db
        self.settings = settings
        self.payers = payers  # by method: lightning, stripe
        self.base_url = base_url.rstrip("/")
        self._running = asyncio.Lock()

    # -- methods ------------------------------------------------------------------------------------------

    async def methods(self, creator: str) -> list[dict]:
        rows = await self.db.fetch_all("SELECT kind, destination, ready, updated_at FROM market_payout_methods"
                                       " WHERE creator = ? ORDER BY kind", (creator,))
        return [{"kind": r["kind"], "destination": r["destination"], "ready": bool(r["ready"]),
                 "currencies": list(METHOD_CURRENCIES[r["kind"]]), "updated_at": r["updated_at"]} for r in rows]

    async def set_method(self, principal: Principal, creator: str, org_id: int | None, kind: str,
                         destination: str | None) -> dict:
        """A Lightning destination (checked for form here, reached at payout time), or a Stripe Connect account:
        made on first use, answered with its onboarding link."""
        payer = self.payers.get(kind)
        if payer is None:
            raise InvalidInput(f"{kind} payouts are not set up on this registry; available: "
                               f"{', '.join(self.payers) or 'none'}", code="payout_method_unavailable")
        link = None
        if kind == "stripe":
            existing = await self.db.fetch_value("SELECT destination FROM market_payout_methods WHERE creator = ?"
                                                 " AND kind = 'stripe'", (creator,))
            try:
                destination, link = await payer.onboard(creator, principal.user.email, existing,
                                                        f"{self.base_url}/account/earnings")
                ready = await payer.ready(destination)
            except Exception as exc:  # the SDK raises its own kinds: the caller gets a 502 and tries again
                log.warning("Stripe Connect onboarding failed: %s", type(exc).__name__)
                raise UpstreamFailed("Stripe did not answer as expected; try again", code="provider_failed") from None
        else:
            if not isinstance(destination, str) or not 3 <= len(destination) <= 2000:
                raise InvalidInput("give the Lightning address, lnurl or LNURL-pay URL as `destination`",
                                   code="invalid_payout_destination")
            destination, ready = await payer.check_destination(destination), True
        async with self.db.write() as tx:
            await tx.execute("INSERT INTO market_payout_methods (creator, kind, destination, ready, updated_at)"
                             " VALUES (?, ?, ?, ?, ?) ON CONFLICT (creator, kind) DO UPDATE SET destination ="
                             " excluded.destination, ready = excluded.ready, updated_at = excluded.updated_at",
                             (creator, kind, destination, int(ready), time.time()))
            await audit.record(tx, audit.Actor(principal.id, principal.user.username), "market.payout_method",
                               target=creator, org_id=org_id, details={"kind": kind})
        return {"kind": kind, "destination": destination, "ready": ready, "onboarding_url": link}

    async def refresh_ready(self, creator: str | None = None) -> None:
        """Stripe accounts that finished onboarding since (asked at Stripe; all of them when `creator` is None)."""
        if "stripe" not in self.payers:
            return
        rows = await self.db.fetch_all("SELECT creator, destination FROM market_payout_methods WHERE kind = 'stripe'"
                                       " AND ready = 0 AND (? IS NULL OR creator = ?)", (creator, creator))
        for row in rows:
            if await self.payers["stripe"].ready(row["destination"]):
                async with self.db.write() as tx:
                    await tx.execute("UPDATE market_payout_methods SET ready = 1 WHERE creator = ? AND kind = 'stripe'",
                                     (row["creator"],))

    async def list(self, creator: str, limit: int = 100) -> list[dict]:
        rows = await self.db.fetch_all("SELECT id, batch, currency, amount, method, destination, status,"
                                       " provider_ref, error, created_at, finished_at FROM market_payouts"
                                       " WHERE creator = ? ORDER BY id DESC LIMIT ?", (creator, limit))
        return [dict(row) for row in rows]

    # -- batches ------------------------------------------------------------------------------------------

    async def run(self, now: float | None = None, progress: Callable[[str], None] = lambda line: None) -> Report:
        """Resume the open payouts, then pay every creator above the minimum who has a ready method. One batch at
        a time in this process (the timer and an admin's request); another process's batch is safe too, only
        slower: the balance guard, the stored invoice and the providers' idempotency keep each payout single."""
        async with self._running:
            return await self._run(time.time() if now is None else now, progress)

    async def _run(self, now: float, progress: Callable[[str], None]) -> Report:
        report = Report(f"b{int(now * 1000)}", [], [], [])
        for row in await self.db.fetch_all("SELECT * FROM market_payouts WHERE status IN ('reserved', 'sending')"
                                           " ORDER BY id"):
            progress(f"resuming payout {row['id']} ({row['creator']}, {row['amount']} {row['currency']})")
            await self._advance(dict(row), report)
        try:
            await self.refresh_ready()
        except Exception as exc:  # Stripe down: the accounts ready before are still paid
            log.warning("could not ask Stripe about onboarding: %s", type(exc).__name__)
        for creator, currency, method in await self._due():
            payout = await self._reserve(creator, currency, method, report.batch)
            if payout is not None:
                progress(f"paying {payout['creator']} {payout['amount']} {currency} by {method}")
                await self._advance(payout, report)
        progress(f"batch {report.batch}: {len(report.paid)} paid, {len(report.failed)} failed (returned),"
                 f" {len(report.open)} open")
        return report

    async def _due(self) -> list[tuple[str, str, str]]:
        rows = await self.db.fetch_all(
            "SELECT a.owner, a.currency, a.balance, m.kind FROM market_accounts a JOIN market_payout_methods m"
            " ON m.creator = a.owner AND m.ready = 1 WHERE a.kind = 'creator' AND a.balance > 0 ORDER BY a.id")
        due = []
        for row in rows:
            if row["kind"] in self.payers and row["currency"] in METHOD_CURRENCIES[row["kind"]] \
                    and row["balance"] >= max(1, minimum(self.settings, row["currency"])):
                due.append((row["owner"], row["currency"], row["kind"]))
        return due

    async def _reserve(self, creator: str, currency: str, method: str, batch: str) -> dict | None:
        payer = self.payers[method]
        async with self.db.write() as tx:
            destination = await tx.fetch_value("SELECT destination FROM market_payout_methods WHERE creator = ?"
                                               " AND kind = ?", (creator, method))
            balance = await tx.fetch_value("SELECT balance FROM market_accounts WHERE kind = 'creator' AND owner = ?"
                                           " AND currency = ?", (creator, currency), 0)
            amount = payer.payable(currency, balance)
            if amount <= 0 or amount < minimum(self.settings, currency):
                return None
            n = await tx.fetch_value("SELECT count(*) FROM market_payouts WHERE creator = ? AND currency = ?",
                                     (creator, currency), 0)
            key = f"{creator}:{currency}:{n + 1}"
            payout_id = await tx.insert("market_payouts", {
                "idempotency_key": key, "batch": batch, "creator": creator, "currency": currency, "amount": amount,
                "method": method, "destination": destination, "status": "reserved", "created_at": time.time()})
            await journal.post(tx, "payout", f"payout:{key}", currency, [
                Line("creator", creator, -amount, guard=True), Line("clearing", payer.provider, amount)],
                memo=f"payout {payout_id}")
            return await tx.fetch_one("SELECT * FROM market_payouts WHERE id = ?", (payout_id,))

    async def _advance(self, payout: dict, report: Report) -> None:
        payer = self.payers.get(payout["method"])
        summary = {"id": payout["id"], "creator": payout["creator"], "amount": payout["amount"],
                   "currency": payout["currency"], "method": payout["method"]}
        try:
            if payer is None:
                raise RuntimeError(f"{payout['method']} payouts are no longer configured")
            outcome = await self._step(payer, payout)
        except Exception as exc:  # the provider did not answer: asked again by the next run
            log.warning("payout %s stays open: %s", payout["id"], type(exc).__name__)
            report.open.append({**summary, "error": type(exc).__name__})
            return
        if outcome.state == "paid":
            await self._finish(payout, "paid", outcome)
            report.paid.append(summary)
        elif outcome.state == "failed":
            await self._finish(payout, "failed", outcome)
            report.failed.append({**summary, "error": outcome.error})
        else:
            report.open.append({**summary, "error": "pending at the provider"})

    async def _step(self, payer: Payer, payout: dict) -> Outcome:
        if payout["status"] == "reserved":
            prepared = await payer.prepare(payout)
            if prepared.error:
                return Outcome("failed", None, prepared.error)
            async with self.db.write() as tx:  # stored before any money moves: a re-run pays this, or nothing
                await tx.execute("UPDATE market_payouts SET status = 'sending', bolt11 = ?, provider_ref = ?"
                                 " WHERE id = ? AND status = 'reserved'",
                                 (prepared.bolt11, prepared.provider_ref, payout["id"]))
                # Another batch (another process) may have stored its own invoice first: only the stored one is
                # ever paid, and a payout it finished meanwhile is left as it is.
                payout.update(await tx.fetch_one("SELECT * FROM market_payouts WHERE id = ?", (payout["id"],)))
            if payout["status"] in ("paid", "failed"):
                return Outcome(payout["status"], payout["provider_ref"], payout["error"])
        known = await payer.status(payout)
        return known if known is not None else await payer.send(payout)

    async def _finish(self, payout: dict, status: str, outcome: Outcome) -> None:
        key = payout["idempotency_key"]
        async with self.db.write() as tx:
            changed = await tx.changes(
                "UPDATE market_payouts SET status = ?, provider_ref = coalesce(?, provider_ref), error = ?,"
                " finished_at = ? WHERE id = ? AND status IN ('reserved', 'sending')",
                (status, outcome.provider_ref, outcome.error, time.time(), payout["id"]))
            if not changed:
                return  # finished by another run meanwhile
            if status == "failed":
                await journal.reverse(tx, f"payout-return:{key}", f"payout:{key}", kind="payout_return")
            await audit.record(tx, audit.SYSTEM, f"market.payout_{status}", target=payout["creator"],
                               details={"payout": payout["id"], "amount": payout["amount"],
                                        "currency": payout["currency"], "error": outcome.error})

    async def close(self) -> None:
        for payer in self.payers.values():
            await payer.close()
