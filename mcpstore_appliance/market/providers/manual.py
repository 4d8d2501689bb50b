"""The manual provider: an org admin or site administrator grants access or records an offline payment (a bank
transfer, an internal charge-back) with its reference. It is the default when no provider is configured. The record is
the payment (market.service.Market.record_payment); there is nobody to re-check it with."""

from __future__ import annotations

from collections.abc import Mapping

from ...errors import InvalidInput
from .base import Charge, Hint, Payment, Started


class ManualProvider:
    name = "manual"
    currencies = frozenset({"usd", "eur", "sat"})

    async def start(self, charge: Charge, webhook_url: str) -> Started:
        raise InvalidInput("manual payments are recorded by an administrator with a reference",
                           code="manual_provider")

    async def check(self, reference: str) -> Payment | None:
        return None  # nobody to ask: reconciliation skips this provider

    async def recent(self, since: float) -> list[Payment]:
        return []

    async def refunded(self, payment_id: str) -> bool:
        return False

    def webhook(self, raw: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> list[Hint]:
        raise InvalidInput("the manual provider takes no webhooks", code="no_webhooks")

    async def close(self) -> None:
        return None
