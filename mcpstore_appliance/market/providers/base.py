"""The interface every payment provider implements, and the plain values it speaks.

A provider starts a payment for an order (a Checkout link, a Lightning invoice), tells what it knows about a
payment when asked (`check`: the only answer the market trusts before crediting), lists recent payments for
reconciliation, and turns a webhook delivery into hints (which order or payment to re-check). A webhook is never
trusted for money by itself: it only says where to look.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Charge:
    """What a buyer is asked to pay, in the price's minor units (cents, sat)."""

    order_id: int
    amount: int
    currency: str  # usd, eur, sat
    description: str
    subscription: bool
    success_url: str
    cancel_url: str
    flow: str = "checkout"  # stripe: checkout (a hosted page) or intent (a PaymentIntent's client secret)
    expiry_seconds: int | None = None  # an invoice's life where the provider's default does not fit (renewals)


@dataclass(frozen=True)
class Started:
    reference: str  # the provider's handle of this payment: the exactly-once key
    pay_url: str | None = None
    bolt11: str | None = None
    client_secret: str | None = None
    expires_at: float | None = None


@dataclass(frozen=True)
class Payment:
    """A provider's own account of one payment."""

    reference: str  # the handle Started gave (or a subscription period's invoice)
    paid: bool
    amount: int  # in the price's minor units
    currency: str
    fee: int = 0
    order_id: int | None = None  # from the provider's metadata, when it carries ours
    payment_id: str | None = None  # a handle for refunds (a PaymentIntent)
    refunded: bool = False
    period: str | None = None  # a subscription period's own reference (an invoice), credited once each


@dataclass(frozen=True)
class Hint:
    """What a webhook says happened; the market re-checks it with the provider."""

    event_id: str
    kind: str  # payment, refund, renewal, ignored
    reference: str | None = None
    order_id: int | None = None
    payment_id: str | None = None


class Provider(Protocol):
    name: str
    currencies: frozenset[str]

    async def start(self, charge: Charge, webhook_url: str) -> Started: ...

    async def check(self, reference: str) -> Payment | None:
        """The provider's answer for a reference; None when it does not know it."""

    async def recent(self, since: float) -> list[Payment]:
        """Payments made since `since` (unix seconds), for reconciliation."""

    async def refunded(self, payment_id: str) -> bool:
        """Whether the provider says this payment was refunded or disputed (checked before reversing it)."""

    def webhook(self, raw: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> list[Hint]:
        """Hints from one delivery; raises InvalidInput (answered 400, nothing changed) when it is forged."""

    async def close(self) -> None: ...
