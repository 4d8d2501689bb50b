"""What pays a creator: the interface of payout methods, and the outcome values they speak.

A payer is asked in three steps, each safe to repeat after a crash (market/payouts.py keeps the state):
`prepare` gets what the payment needs before money moves (a Lightning invoice from the creator's LNURL-pay
endpoint), `status` asks the provider what became of a payout it may already have (None: it never got it, so
sending is safe), `send` pays. A payer raises for what may be transient (the provider did not answer): the
payout then stays open and the next batch asks again; a definite refusal is an Outcome "failed".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Outcome:
    state: str  # paid, failed, pending
    provider_ref: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Prepared:
    """What `prepare` found out: the invoice and its hash (Lightning); an empty one when nothing is needed."""

    bolt11: str | None = None
    provider_ref: str | None = None
    error: str | None = None  # the destination cannot be paid: the payout fails before any money moved


class Payer(Protocol):
    method: str  # lightning, stripe
    provider: str  # the clearing account the money leaves by (lnbits, stripe)
    currencies: frozenset[str]  # journal currencies

    async def check_destination(self, destination: str) -> str:
        """The destination as stored (normalised), or InvalidInput."""

    def payable(self, currency: str, amount: int) -> int:
        """The part of `amount` this payer can send (Lightning: whole sats)."""

    async def prepare(self, payout: dict) -> Prepared: ...

    async def status(self, payout: dict) -> Outcome | None: ...

    async def send(self, payout: dict) -> Outcome: ...

    async def close(self) -> None: ...
