"""Jinja filters for showing values: dates, sizes, counts, prices. Presentation only, no rules."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode, urlsplit

from ...catalog.pricing import CURRENCY_DECIMALS, format_minor_units

CURRENCY_SIGNS = {"usd": "$", "eur": "€"}
PRICING_WORDS = {"free": "Free", "per_call": "per call", "subscription": "per month"}


def _timestamp(value: Any) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromtimestamp(float(value), tz=dt.timezone.utc)


def date(value: Any) -> str:
    stamp = _timestamp(value)
    return stamp.strftime("%Y-%m-%d") if stamp else ""


def datetime(value: Any) -> str:
    stamp = _timestamp(value)
    return stamp.strftime("%Y-%m-%d %H:%M UTC") if stamp else ""


def isodate(value: Any) -> str:
    stamp = _timestamp(value)
    return stamp.isoformat() if stamp else ""


def filesize(value: Any) -> str:
    size = float(value or 0)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def count(value: Any) -> str:
    """1234 -> 1.2k: compact counts for cards and facets."""
    number = int(value or 0)
    if number < 1000:
        return str(number)
    if number < 1_000_000:
        return f"{number / 1000:.1f}k".replace(".0k", "k")
    return f"{number / 1_000_000:.1f}M".replace(".0M", "M")


def money(amount: Any, currency: str | None) -> str:
    """Minor units to a display price: (10, "usd") -> "$0.10", (2500, "sat") -> "2500 sat"."""
    if not currency or currency not in CURRENCY_DECIMALS:
        return "Free"
    text = format_minor_units(int(amount or 0), currency)
    sign = CURRENCY_SIGNS.get(currency)
    return f"{sign}{text}" if sign else f"{text} {currency}"


def price(pricing: Any) -> str:
    """A pricing dict {model, amount, currency} or an object with those attributes -> "$0.10 per call"."""
    get = pricing.get if isinstance(pricing, dict) else (lambda k, d=None: getattr(pricing, k, d))
    model = get("model") or "free"
    if model == "free":
        return "Free"
    return f"{money(get('amount'), get('currency'))} {PRICING_WORDS.get(model, model)}"


def rating(value: Any) -> str:
    return "not rated" if value in (None, "") else f"{float(value):.1f} / 5"


def safe_url(value: Any) -> str | None:
    """A link target from package data, or None: only absolute http(s) URLs become links (no javascript:,
    data:, protocol-relative or relative tricks). Escaping of the URL text is left to autoescape."""
    if not isinstance(value, str) or len(value) > 2048:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() or ord(c) < 32 for c in value):
        return None
    return value.strip()


def short_hash(value: Any, length: int = 12) -> str:
    return str(value or "")[:length]


def with_query(base: dict[str, Any], **changes: Any) -> str:
    """A search URL's query string with some parameters changed (None removes one); the cursor resets."""
    merged = {k: v for k, v in base.items() if v not in (None, "") and k != "cursor"}
    for key, value in changes.items():
        if value in (None, ""):
            merged.pop(key, None)
        else:
            merged[key] = value
    return "?" + urlencode(merged) if merged else "?"


FILTERS = {
    "date": date, "datetime": datetime, "isodate": isodate, "filesize": filesize, "count": count,
    "money": money, "price": price, "rating": rating, "safe_url": safe_url, "short_hash": short_hash,
}


def icon_url(package: dict[str, Any]) -> str:
    """The icon's URL carries its hash, so a matching URL can be cached for good."""
    return f"/packages/{package['namespace']}/{package['name']}/icon?v={package['icon_sha256'][:16]}"
