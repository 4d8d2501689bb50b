"""Stripe Connect payouts: a creator's Express account (onboarding link), paid by transfers from the platform's
balance (reference payments.md §2.3, "separate charges and transfers", which fits periodic payouts).

Each transfer carries the payout's idempotency key twice: as Stripe's `Idempotency-Key` (a repeat within 24 h
returns the same transfer) and as its `transfer_group`, by which `status` finds a transfer made before a crash
at any later time, so a payout is never transferred twice.
"""

from __future__ import annotations

import stripe

from ...errors import InvalidInput
from .payers import Outcome, Prepared


class ConnectPayer:
    method = "stripe"
    provider = "stripe"
    currencies = frozenset({"usd", "eur"})

    def __init__(self, client: stripe.StripeClient):
        self.client = client  # the card provider's: one HTTP client for both

    async def onboard(self, creator: str, email: str | None, account: str | None, return_url: str) -> tuple[str, str]:
        """(account id, onboarding link): a new Express account unless the creator has one."""
        if account is None:
            params = {"type": "express", "capabilities": {"transfers": {"requested": True}},
                      "metadata": {"creator": creator}}
            if email:
                params["email"] = email
            made = await self.client.v1.accounts.create_async(
                params=params, options={"idempotency_key": f"mcpstore-connect-{creator}"})
            account = made.id
        link = await self.client.v1.account_links.create_async(params={
            "account": account, "type": "account_onboarding", "refresh_url": return_url, "return_url": return_url})
        return account, link.url

    async def ready(self, account: str) -> bool:
        found = await self.client.v1.accounts.retrieve_async(account)
        return bool(found["payouts_enabled"]) if "payouts_enabled" in found else False

    async def check_destination(self, destination: str) -> str:
        if not destination.startswith("acct_") or len(destination) > 64:
            raise InvalidInput("a Stripe payout goes to a Connect account id (acct_…): use the onboarding link",
                               code="invalid_payout_destination")
        return destination

    def payable(self, currency: str, amount: int) -> int:
        return amount

    async def prepare(self, payout: dict) -> Prepared:
        return Prepared()

    async def status(self, payout: dict) -> Outcome | None:
        found = await self.client.v1.transfers.list_async(params={"transfer_group": payout["idempotency_key"],
                                                                  "limit": 1})
        if not found.data:
            return None
        transfer = found.data[0]
        if transfer["reversed"] if "reversed" in transfer else False:
            return Outcome("failed", transfer.id, "the transfer was reversed")
        return Outcome("paid", transfer.id)

    async def send(self, payout: dict) -> Outcome:
        try:
            transfer = await self.client.v1.transfers.create_async(params={
                "amount": payout["amount"], "currency": payout["currency"], "destination": payout["destination"],
                "transfer_group": payout["idempotency_key"], "metadata": {"payout": str(payout["id"])}},
                options={"idempotency_key": f"mcpstore-{payout['idempotency_key']}"})
        except (stripe.InvalidRequestError, stripe.PermissionError, stripe.CardError) as exc:
            return Outcome("failed", None, (exc.user_message or str(exc))[:300])
        return Outcome("paid", transfer.id)

    async def close(self) -> None:
        return None  # the client belongs to the card provider, which closes it
