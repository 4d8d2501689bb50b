"""Prices as integers: an exact decimal string becomes minor units of its currency, never through float.

| currency | minor unit | decimals |
|---|---|---|
| usd, eur | cent | 2 |
| sat | whole satoshi | 0 |

"0.10" usd is 10; "0.105" usd is refused (no silent rounding); "1e3", "-1", " 1", "1,00" are refused.
The pricing rules of a package: `free` has no amount (or zero); `per_call` and `subscription` need an amount
above zero and a currency. Tier `hobbyist` is hosted by this registry; tier `pro` runs on the publisher's own
`https` endpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import InvalidInput

CURRENCY_DECIMALS = {"usd": 2, "eur": 2, "sat": 0}
PRICING_MODELS = ("free", "per_call", "subscription")
TIERS = ("hobbyist", "pro")
MAX_MINOR_UNITS = 10**12  # 10 billion dollars, or 10^12 sat: beyond any sane price, far inside int64
MAX_ENDPOINT_LENGTH = 2048
_DECIMAL = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,15}))?")  # ASCII digits only: \d takes "٣"


def _bad(message: str, field: str, code: str = "invalid_pricing") -> InvalidInput:
    return InvalidInput(message, code=code, details={"field": field})


def check_currency(currency: str) -> str:
    if not isinstance(currency, str) or currency not in CURRENCY_DECIMALS:
        raise _bad(f"currency must be one of {', '.join(CURRENCY_DECIMALS)}, not {str(currency)[:20]!r}", "currency")
    return currency


def to_minor_units(amount: str, currency: str) -> int:
    """Parse a plain decimal string exactly: "0.10" usd -> 10, "2500" sat -> 2500."""
    decimals = CURRENCY_DECIMALS[check_currency(currency)]
    match = _DECIMAL.fullmatch(amount) if isinstance(amount, str) else None
    if not match:
        raise _bad(f"amount must be a plain decimal number like 0.10, not {str(amount)[:40]!r}", "amount")
    whole, fraction = match.group(1), match.group(2) or ""
    fraction = fraction.rstrip("0")  # "0.100" is exactly 0.10
    if len(fraction) > decimals:
        unit = "whole satoshis" if decimals == 0 else f"at most {decimals} decimals"
        raise _bad(f"amount {amount} {currency} is not exact in {unit}; no rounding is done", "amount")
    minor = int(whole) * 10**decimals + int(fraction.ljust(decimals, "0") or 0)
    if minor > MAX_MINOR_UNITS:
        raise _bad(f"amount {amount} {currency} is too large", "amount")
    return minor


def format_minor_units(minor: int, currency: str) -> str:
    """The inverse of `to_minor_units`: 10 usd -> "0.10", 2500 sat -> "2500"."""
    decimals = CURRENCY_DECIMALS[check_currency(currency)]
    if decimals == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**decimals)
    return f"{sign}{whole}.{fraction:0{decimals}d}"


@dataclass(frozen=True)
class Pricing:
    model: str  # free | per_call | subscription
    amount: int  # minor units of `currency`; 0 for free
    currency: str | None
    tier: str  # hobbyist | pro
    endpoint: str | None  # pro only

    def to_dict(self) -> dict:
        display = format_minor_units(self.amount, self.currency) if self.currency else "0"
        return {"model": self.model, "amount": self.amount, "amount_display": display,
                "currency": self.currency, "tier": self.tier, "endpoint": self.endpoint}


def check_endpoint(url: str) -> str:
    """A pro-tier endpoint: an absolute https URL with a host and no credentials."""
    if not isinstance(url, str) or len(url) > MAX_ENDPOINT_LENGTH or any(c.isspace() for c in url):
        raise _bad("endpoint must be an https URL without spaces (at most 2048 characters)", "endpoint")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise _bad(f"endpoint {url[:80]!r} is not a valid URL", "endpoint") from None
    if parts.scheme != "https" or not parts.hostname:
        raise _bad("endpoint must be an https:// URL with a host name", "endpoint")
    if parts.username or parts.password:
        raise _bad("endpoint must not carry a user name or password", "endpoint")
    return url


def parse_pricing(model: str | None, amount: str | None, currency: str | None, tier: str | None,
                  endpoint: str | None) -> Pricing:
    """Check one publish request's pricing options (strings as given, None when absent)."""
    model = model or "free"
    tier = tier or "hobbyist"
    if model not in PRICING_MODELS:
        raise _bad(f"pricing must be one of {', '.join(PRICING_MODELS)}, not {model[:30]!r}", "pricing")
    if tier not in TIERS:
        raise _bad(f"tier must be one of {', '.join(TIERS)}, not {tier[:30]!r}", "tier")
    if currency is not None:
        check_currency(currency)
    if model == "free":
        minor = to_minor_units(amount, currency or "usd") if amount not in (None, "") else 0
        if minor != 0:
            raise _bad("a free package has no amount; use --pricing per_call or subscription to charge", "amount")
        currency = None
    else:
        if amount in (None, ""):
            raise _bad(f"{model} pricing needs an amount (for example 0.10)", "amount")
        if currency is None:
            raise _bad(f"{model} pricing needs a currency: {', '.join(CURRENCY_DECIMALS)}", "currency")
        minor = to_minor_units(amount, currency)
        if minor <= 0:
            raise _bad(f"{model} pricing needs an amount above zero", "amount")
    if tier == "pro":
        if not endpoint:
            raise _bad("the pro tier runs on your own server: give its https endpoint", "endpoint")
        endpoint = check_endpoint(endpoint)
    elif endpoint:
        raise _bad("hobbyist packages are hosted by this registry; an endpoint is only for the pro tier", "endpoint")
    else:
        endpoint = None
    return Pricing(model, minor, currency, tier, endpoint)


def check_price_bounds(pricing: Pricing, bounds: Any) -> None:
    """A paid price within the operator's bounds (config `market`: per call and subscription, in the currency's
    own units, sat bounds separately), so a typo does not publish a 1000-dollar call."""
    if pricing.model == "free" or pricing.currency is None:
        return
    key = f"{pricing.model}_bounds" + ("_sat" if pricing.currency == "sat" else "")
    low, high = getattr(bounds, key)
    if not to_minor_units(low, pricing.currency) <= pricing.amount <= to_minor_units(high, pricing.currency):
        what = "per-call" if pricing.model == "per_call" else "monthly subscription"
        raise InvalidInput(f"a {what} price in {pricing.currency} must be between {low} and {high} on this registry",
                           code="price_out_of_bounds", details={"field": "amount", "min": low, "max": high})


def pricing_of(row: Any) -> dict[str, Any]:
    """The `pricing` object of API answers from a packages row (columns pricing_model, price_amount, currency)."""
    return {"model": row["pricing_model"], "amount": row["price_amount"], "currency": row["currency"]}
