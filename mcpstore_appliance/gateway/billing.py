"""Billing of hosted calls: a per-call package's `tools/call` is charged before it runs, so a caller without
credit gets a clear refusal (402, or a JSON-RPC error on /mcp) and nothing runs; a call that does not succeed
(an error, a timeout) is given back afterwards through the meter's `on_call`, so only successful calls cost.

A caller with a usage token that pre-authorised calls pays from that reservation (tokens/calls.py); any other
caller (an API token, a browser session, a usage token without calls) from their credit wallet through the
market's atomic `debit_call`. `HostedRules` carries the access rule and the billing into the gateway
when app.py builds it (tokens.hosted_rules makes the market's).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .metering import Invocation


class CallBilling(Protocol):
    async def charge(self, principal, session) -> str | None:
        """Charge one call before it runs: the charge's id, None when nothing is charged; raises
        PaymentRequired (InsufficientFunds) when the caller cannot pay."""

    async def on_call(self, invocation: Invocation) -> None:
        """After the call: give back the charge of a call that did not succeed."""


class FreeCalls:
    """No marketplace: nothing is charged."""

    async def charge(self, principal, session) -> str | None:
        return None

    async def on_call(self, invocation: Invocation) -> None:
        return None


class MarketBilling:
    def __init__(self, market, calls):
        self.market = market  # market.Market: debit_call, refund_call
        self.calls = calls  # tokens.calls.Calls: bill, unbill

    async def charge(self, principal, session) -> str | None:
        if session.pricing_model != "per_call":
            return None
        call_id = secrets.token_hex(12)
        grant = principal.usage
        if grant is not None and grant.calls > 0:
            await self.calls.bill(grant.jti, call_id)
            return f"{grant.jti}:{call_id}"
        await self.market.debit_call(principal.id, session.package_id, call_id, principal.member_org_ids())
        return call_id

    async def on_call(self, invocation: Invocation) -> None:
        if invocation.charge is None or invocation.outcome == "ok":
            return
        jti, _, call_id = invocation.charge.rpartition(":")
        if jti:
            await self.calls.unbill(jti, call_id)
        else:
            await self.market.refund_call(call_id)


async def free_only(principal, package: dict[str, Any]) -> bool:
    """The access rule without a marketplace: free packages only."""
    return package["pricing_model"] == "free"


@dataclass(frozen=True)
class HostedRules:
    """Who may call a hosted package, and how its calls are paid for (tokens.hosted_rules makes the market's)."""

    entitlement_check: Callable[[Any, dict], Awaitable[bool]] = free_only
    billing: CallBilling = field(default_factory=FreeCalls)
