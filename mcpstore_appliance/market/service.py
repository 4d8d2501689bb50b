"""The market: buying, crediting from provider reports, manual grants, per-call debits, a buyer's view.

Plain values in and out; the web layer (web/api_market.py) and the CLI call these. Access rules live here: a buyer
buys what they may see; an org's owner or admin buys for the org; grants and offline payments are recorded by the
package's managers or a site administrator.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from .. import audit
from ..accounts.models import Principal
from ..catalog.visibility import can_manage
from ..errors import DomainError, Forbidden, InvalidInput, NotFound, UpstreamFailed
from . import entitlements, journal, orders, renewals, settle
from .batch import GroupPoster
from .journal import PLATFORM, AlreadyPosted, InsufficientFunds, Line
from .money import split, to_journal
from .orders import Product, order_json
from .providers.base import Charge, Provider

log = logging.getLogger("mcpstore.market")
KINDS = ("subscription", "credits")
FLOWS = ("checkout", "intent")


def actor(principal: Principal) -> audit.Actor:
    return audit.Actor(principal.id, principal.user.username)


async def asked(provider: Provider, call):
    """A provider's answer; its failure (down, refusing, nonsense) becomes a 502 that names the provider, so the
    buyer retries later and a webhook sender delivers again."""
    try:
        return await call
    except DomainError:
        raise
    except Exception as exc:  # the provider's SDK or client raises its own kinds
        log.warning("%s failed: %s", provider.name, type(exc).__name__)
        raise UpstreamFailed(f"the payment provider {provider.name} did not answer as expected; try again",
                             code="provider_failed") from None


@dataclass(frozen=True)
class Debit:
    reservation_id: str
    amount: int
    currency: str
    balance: int
    repeated: bool = False  # the reservation was debited before; nothing was taken now


class Market:
    def __init__(self, db, settings, providers: dict[str, Provider], base_url: str, payouts=None):
        self.db = db
        self.settings = settings
        self.providers = providers
        self.base_url = base_url.rstrip("/")
        self._timer: asyncio.Task | None = None
        self.grouped = GroupPoster(db)  # per-call debits
        self._prices: dict[int, tuple[dict | None, float]] = {}
        self.payouts = payouts  # market.payouts.Payouts: creator payouts (build_market makes it)

    # -- buying -------------------------------------------------------------------------------------------

    def provider_for(self, currency: str, wanted: str | None) -> Provider:
        if wanted is not None:
            provider = self.providers.get(str(wanted)[:20])
            if provider is None or wanted == "manual":
                raise InvalidInput(f"payment provider {str(wanted)[:20]!r} is not available here; available: "
                                   f"{', '.join(n for n in self.providers if n != 'manual') or 'none'}",
                                   code="provider_unavailable")
            if currency not in provider.currencies:
                raise InvalidInput(f"{wanted} does not take {currency}", code="provider_unavailable")
            return provider
        for provider in self.providers.values():
            if provider.name != "manual" and currency in provider.currencies:
                return provider
        raise InvalidInput(f"this registry takes no online payments in {currency}: ask its administrator for access"
                           " (manual grants)", code="provider_unavailable")

    async def buy(self, principal: Principal, namespace: str, name: str, body: Mapping) -> dict:
        item = await orders.product(self.db, principal, namespace, name)
        if item.pricing_model == "free" or item.currency is None:
            raise InvalidInput(f"{item.ref} is free: download it", code="free_package")
        if item.major is None:
            raise InvalidInput(f"{item.ref} has no published version to buy", code="nothing_to_buy")
        kind = "subscription" if item.pricing_model == "subscription" else "credits"
        org_id, scope, seats = await orders.buyer_scope(self.db, principal, body.get("org"), body.get("seats"))
        if kind == "credits" and scope == "seats":
            raise InvalidInput("per-call packages are paid from credits: buy them for yourself or for the whole org"
                               " (its members' calls use them)", code="org_credits_unsupported")
        provider = self.provider_for(item.currency, body.get("provider"))
        if kind == "credits":
            amount = await self._credit_amount(body.get("amount"), item, provider)
        else:
            amount = item.price * await orders.seat_count(self.db, org_id, scope, seats)
        return await self._order(principal, provider, kind, amount, item.currency, body.get("flow"), item=item,
                                 org_id=org_id, scope=scope, seats=seats)

    async def top_up(self, principal: Principal, body: Mapping) -> dict:
        """Credits for the caller, or with `org` for an org (by its owner or admin): the org's wallet pays its
        members' per-call calls when their own credits do not cover them."""
        currency = body.get("currency")
        amount = orders.amount_of(body.get("amount"), currency if isinstance(currency, str) else "")
        org_id, scope, _ = await orders.buyer_scope(self.db, principal, body.get("org"), None)
        provider = self.provider_for(currency, body.get("provider"))
        return await self._order(principal, provider, "credits", amount, currency, body.get("flow"), org_id=org_id,
                                 scope=scope)

    async def _credit_amount(self, given: object, item: Product, provider: Provider) -> int:
        if given is not None:
            amount = orders.amount_of(given, item.currency)
        elif provider.name == "stripe":
            amount = orders.to_minor_units(self.settings.card_minimum.get(item.currency, "10.00"), item.currency)
        else:
            amount = item.price * 100
        if amount < item.price:
            raise InvalidInput("a credit pack covers at least one call", code="invalid_amount")
        return amount

    async def _order(self, principal: Principal, provider: Provider, kind: str, amount: int, currency: str,
                     flow: object, *, item: Product | None = None, org_id: int | None = None, scope: str = "user",
                     seats: list[int] = ()) -> dict:
        flow = flow or "checkout"
        if flow not in FLOWS:
            raise InvalidInput(f"flow is one of {', '.join(FLOWS)}", code="invalid_flow")
        if provider.name == "stripe":
            orders.check_card_minimum(self.settings, amount, currency)
        async with self.db.write() as tx:
            order = await orders.create(
                tx, kind=kind, buyer_user_id=principal.id, buyer_org_id=org_id, scope=scope, seats=list(seats),
                package_id=item.id if item else None, major=item.major if item else None, amount=amount,
                currency=currency, creator=item.creator if item else None,
                creator_share_bp=orders.creator_share_bp(self.settings, item) if item else 0,
                provider=provider.name)
            await audit.record(tx, actor(principal), "market.order", target=f"order:{order['id']}", org_id=org_id,
                               details={"package": item.ref if item else None, "kind": kind, "amount": amount,
                                        "currency": currency, "provider": provider.name})
        what = f"{item.ref} ({kind})" if item else f"credits ({currency})"
        charge = Charge(order["id"], amount, currency, f"mcpstore: {what}", kind == "subscription",
                        f"{self.base_url}/account/purchases?order={order['id']}",
                        f"{self.base_url}/account/purchases?cancelled={order['id']}", str(flow))
        started = await asked(provider, provider.start(charge, f"{self.base_url}/api/payments/{provider.name}/webhook"))
        async with self.db.write() as tx:
            await tx.execute("UPDATE market_orders SET provider_ref = ?, pay_url = ?, bolt11 = ?, expires_at = ?"
                             " WHERE id = ?", (started.reference, started.pay_url, started.bolt11,
                                               started.expires_at, order["id"]))
            order = await tx.fetch_one("SELECT * FROM market_orders WHERE id = ?", (order["id"],))
        return {**order_json(order), "client_secret": started.client_secret}

    async def order(self, principal: Principal, order_id: int, *, refresh: bool = False) -> dict:
        """A buyer's own order; `refresh` asks its provider first (the success page and `mcpstore buy` poll this)."""
        order = await self.db.fetch_one("SELECT * FROM market_orders WHERE id = ? AND buyer_user_id = ?",
                                        (order_id, principal.id))
        if order is None:
            raise NotFound("no such order", code="order_not_found")
        provider = self.providers.get(order["provider"])
        if refresh and order["status"] == "pending" and provider is not None and order["provider_ref"]:
            await settle.settle(self.db, provider, order, await asked(provider, provider.check(order["provider_ref"])))
            order = await self.db.fetch_one("SELECT * FROM market_orders WHERE id = ?", (order_id,))
        return order_json(order)

    # -- provider reports -----------------------------------------------------------------------------------

    async def webhook(self, provider_name: str, raw: bytes, headers: Mapping[str, str],
                      query: Mapping[str, str]) -> list[str]:
        """A webhook delivery: verified by its provider (a forgery raises InvalidInput before anything changes),
        then each hint re-checked with the provider and settled."""
        provider = self.providers.get(provider_name)
        if provider is None or provider_name == "manual":
            raise NotFound(f"no {provider_name[:20]} payments are configured here", code="provider_unavailable")
        outcomes = []
        try:
            for hint in provider.webhook(raw, headers, query):
                outcome = await asked(provider, self._follow(provider, hint))
                await settle.seen_event(self.db, provider.name, hint.event_id, hint.kind, outcome)
                outcomes.append(outcome)
        except DomainError as exc:  # forged, stale, malformed, or the provider could not be asked
            await settle.webhook_failure(self.db, provider.name, exc.code, exc.message)
            raise
        return outcomes

    async def _follow(self, provider: Provider, hint) -> str:
        if hint.kind == "refund":
            if not hint.payment_id or not await provider.refunded(hint.payment_id):
                return "not_refunded"
            return "refunded" if await settle.refund(self.db, provider.name, hint.payment_id) else "unknown"
        if hint.kind not in ("payment", "renewal"):
            return "ignored"
        renewed = await renewals.order_of(self.db, provider.name, hint.reference)
        if renewed is not None:  # a subscription period's own invoice: credited by its own payment hash
            return await settle.settle(self.db, provider, renewed, await provider.check(hint.reference))
        payment = await provider.check(hint.reference) if hint.reference else None
        order = await self._order_for(provider.name, hint.reference, hint.order_id or (payment and payment.order_id))
        if order is None:
            return "unknown_order"
        if hint.kind == "payment" and order["provider_ref"] != hint.reference:
            payment = await provider.check(order["provider_ref"])  # a checkout's intent: credit by the session
        return await settle.settle(self.db, provider, order, payment)

    async def _order_for(self, provider: str, reference: str | None, order_id: int | None) -> dict | None:
        if reference:
            order = await self.db.fetch_one("SELECT * FROM market_orders WHERE provider = ? AND provider_ref = ?",
                                            (provider, reference))
            if order is not None:
                return order
        if order_id is not None:
            return await self.db.fetch_one("SELECT * FROM market_orders WHERE provider = ? AND id = ?",
                                           (provider, order_id))
        return None

    async def cancel(self, principal: Principal, order_id: int) -> dict:
        """The caller's Lightning subscription ends with its paid period (market/renewals.py)."""
        return await renewals.cancel(self.db, actor(principal), order_id)

    # -- manual provider ----------------------------------------------------------------------------------

    async def grant(self, principal: Principal, namespace: str, name: str, body: Mapping) -> dict:
        """Access without a payment, or with an offline payment recorded (`amount` and `reference`): by the
        package's managers (an org admin for the org's packages) or a site administrator."""
        item = await orders.product(self.db, principal, namespace, name)
        if not (principal.is_admin or can_manage(principal, item.as_package())):
            raise Forbidden("only the package's managers or a site administrator grant access", code="not_manager")
        reference = body.get("reference")
        if not isinstance(reference, str) or not 1 <= len(reference) <= 200:
            raise InvalidInput("a grant needs a reference (1-200 characters): an invoice, a ticket, a note",
                               code="invalid_reference")
        user_id, org_id, scope, seats = await self._grantee(body)
        major = body.get("major", item.major)
        if type(major) is not int or major < 0:
            raise InvalidInput("major is the major version number the grant covers", code="invalid_major")
        async with self.db.write() as tx:
            if body.get("amount") is not None:
                await self._record_offline(tx, item, body["amount"], reference, user_id or principal.id, org_id)
            entitlement = await entitlements.grant(tx, package_id=item.id, major=major, kind="grant", scope=scope,
                                                   user_id=user_id, org_id=org_id, reference=reference, seats=seats)
            await audit.record(tx, actor(principal), "market.grant", target=item.ref, org_id=item.org_id,
                               details={"entitlement": entitlement, "major": major, "scope": scope,
                                        "reference": reference, "offline_amount": body.get("amount")})
        return {"entitlement_id": entitlement, "package": item.ref, "major": major, "scope": scope}

    async def _grantee(self, body: Mapping) -> tuple[int | None, int | None, str, list[int]]:
        if isinstance(body.get("user"), str):
            row = await self.db.fetch_one("SELECT id FROM users WHERE username = ?", (body["user"][:100],))
            if row is None:
                raise NotFound("no such user", code="user_not_found")
            return row["id"], None, "user", []
        if isinstance(body.get("org"), str):
            org = await self.db.fetch_one("SELECT id FROM orgs WHERE slug = ?", (body["org"][:100],))
            if org is None:
                raise NotFound("no such org", code="org_not_found")
            seats = body.get("seats") or []
            rows = await self.db.fetch_all(
                f"SELECT u.id FROM users u JOIN memberships m ON m.user_id = u.id WHERE m.org_id = ?"
                f" AND u.username IN ({','.join('?' * len(seats))})", (org["id"], *seats)) if seats else []
            if len(rows) != len(seats):
                raise InvalidInput("seats must be members of the org", code="invalid_seats")
            return None, org["id"], "seats" if seats else "org", [row["id"] for row in rows]
        raise InvalidInput("name the grantee: `user` (a user name) or `org` (a slug, with optional `seats`)",
                           code="invalid_grantee")

    async def _record_offline(self, tx, item: Product, given: object, reference: str, buyer: int,
                              org_id: int | None) -> None:
        amount = orders.amount_of(given, item.currency or "usd")
        if await tx.fetch_value("SELECT 1 FROM market_payments WHERE provider = 'manual' AND reference = ?",
                                (reference,)):
            raise InvalidInput(f"an offline payment with reference {reference!r} is already recorded",
                               code="duplicate_reference")
        order = await orders.create(tx, kind="purchase", buyer_user_id=buyer, buyer_org_id=org_id,
                                    scope="org" if org_id else "user", package_id=item.id, major=item.major,
                                    amount=amount, currency=item.currency or "usd", creator=item.creator,
                                    creator_share_bp=orders.creator_share_bp(self.settings, item),
                                    provider="manual", provider_ref=reference, status="paid", paid_at=time.time())
        txn = await settle.post_payment(tx, "manual", reference, order)
        await tx.insert("market_payments", {"provider": "manual", "reference": reference, "order_id": order["id"],
                                            "amount": amount, "currency": order["currency"], "transaction_id": txn,
                                            "credited_at": time.time()})

    async def revoke(self, principal: Principal, namespace: str, name: str, entitlement_id: int) -> None:
        item = await orders.product(self.db, principal, namespace, name)
        if not (principal.is_admin or can_manage(principal, item.as_package())):
            raise Forbidden("only the package's managers or a site administrator revoke access", code="not_manager")
        async with self.db.write() as tx:
            exists = await tx.fetch_value("SELECT 1 FROM market_entitlements WHERE id = ? AND package_id = ?",
                                          (entitlement_id, item.id))
            if not exists:
                raise NotFound("no such entitlement for this package", code="entitlement_not_found")
            await entitlements.revoke(tx, entitlement_id)
            await audit.record(tx, actor(principal), "market.revoke", target=item.ref, org_id=item.org_id,
                               details={"entitlement": entitlement_id})

    # -- per-call debits ----------------------------------------------------------------------------------

    async def debit_call(self, user_id: int, package_id: int, reservation_id: str,
                         org_ids: Collection[int] = ()) -> Debit:
        """Take one call's price from the caller's credits, or when they do not cover it from the credits of one
        of `org_ids` (the caller's orgs), split between creator and platform, atomically and never below zero
        (InsufficientFunds, a 402, otherwise). `reservation_id` makes it idempotent: the gateway (and the
        usage-token reservations) pass the id of the call they bill."""
        row = await self._priced(package_id)
        if row is None or row["pricing_model"] != "per_call":
            raise InvalidInput("only per-call packages are debited per call", code="not_per_call")
        item = Product(row["id"], "", "per_call", row["price_amount"], row["currency"], row["tier"],
                       row["visibility"], row["org_id"], row["owner_user_id"], None)
        amount, currency = to_journal(item.price, item.currency)
        creator, platform = split(amount, orders.creator_share_bp(self.settings, item))
        wallets = [f"user:{user_id}", *(f"org:{org}" for org in sorted(org_ids))]
        for n, wallet in enumerate(wallets):
            try:  # grouped with the calls debited at the same moment: one write transaction (market/batch.py)
                balance = await self.grouped.post("debit", f"call:{reservation_id}", currency, [
                    Line("wallet", wallet, -amount, guard=True), Line("creator", item.creator, creator),
                    Line("revenue", PLATFORM, platform)])
                return Debit(reservation_id, amount, currency, balance)
            except AlreadyPosted:
                return Debit(reservation_id, amount, currency,
                             await journal.balance(self.db, "wallet", wallet, currency), repeated=True)
            except InsufficientFunds:
                if n == len(wallets) - 1:
                    raise

    async def _priced(self, package_id: int) -> dict | None:
        """A package's price terms, read at most once a second per package (a busy per-call package would
        otherwise read them for every call; a new price applies within a second)."""
        kept = self._prices.get(package_id)
        if kept is None or time.monotonic() - kept[1] > 1.0:
            row = await self.db.fetch_one("SELECT id, pricing_model, price_amount, currency, tier, visibility,"
                                          " org_id, owner_user_id FROM packages WHERE id = ?", (package_id,))
            kept = (row, time.monotonic())
            self._prices[package_id] = kept
        return kept[0]

    async def refund_call(self, reservation_id: str) -> bool:
        """Give back a call's debit (its server failed: only successful calls are billed); once."""
        async with self.db.write() as tx:
            try:
                return await journal.reverse(tx, f"uncall:{reservation_id}", f"call:{reservation_id}") is not None
            except AlreadyPosted:
                return False

    async def pay_out(self, creator: str, currency: str, amount: int, provider: str, reference: str) -> int:
        """Record money sent to a creator through `provider` (never more than the creator's balance). The seam of
        batched payouts (Lightning addresses, Stripe Connect transfers), which come later and call this."""
        async with self.db.write() as tx:
            return await journal.post(tx, "payout", f"payout:{reference}", currency, [
                Line("creator", creator, -amount, guard=True), Line("clearing", provider, amount)])

    # -- a buyer's view -----------------------------------------------------------------------------------

    async def purchases(self, principal: Principal) -> dict:
        rows = await self.db.fetch_all("SELECT * FROM market_orders WHERE buyer_user_id = ?"
                                       " ORDER BY created_at DESC LIMIT 200", (principal.id,))
        access = await self.db.fetch_all(
            "SELECT e.id, p.namespace || '/' || p.name AS package, e.major, e.kind, e.scope, e.period_end,"
            " e.revoked_at FROM market_entitlements e JOIN packages p ON p.id = e.package_id"
            " WHERE e.user_id = ? OR e.org_id IN (SELECT org_id FROM memberships WHERE user_id = ?)"
            " OR e.id IN (SELECT entitlement_id FROM market_seats WHERE user_id = ?) ORDER BY e.id DESC LIMIT 200",
            (principal.id, principal.id, principal.id))
        return {"balances": await self.wallet_balances(f"user:{principal.id}"),
                "orders": [order_json(row) for row in rows], "entitlements": access,
                "renewals_due": await renewals.due_for(self.db, principal.id)}

    async def wallet_balances(self, owner: str) -> dict[str, int]:
        """A credit wallet's balances by journal currency (`org:<id>` for an org's credits)."""
        rows = await self.db.fetch_all("SELECT currency, balance FROM market_accounts WHERE kind = 'wallet'"
                                       " AND owner = ?", (owner,))
        return {row["currency"]: row["balance"] for row in rows}

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self, reconcile) -> None:
        interval = self.settings.reconcile_interval_seconds
        if interval > 0 and any(name != "manual" for name in self.providers):
            self._timer = asyncio.create_task(self._every(interval, reconcile))

    async def _every(self, interval: float, reconcile) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await reconcile(self)
                await renewals.invoice_due(self)
            except Exception:  # a provider that is down now is asked again next time
                log.exception("reconciliation or renewal invoices failed")

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        if self.payouts is not None:
            await self.payouts.close()
        for provider in self.providers.values():
            await provider.close()
