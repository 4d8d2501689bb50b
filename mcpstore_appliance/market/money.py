"""Amounts in integer minor units, and the revenue split. No float ever touches money here.

Prices are in the catalog's units (usd and eur in cents, sat in whole satoshis); the journal keeps Lightning in
millisatoshis, so a sat price becomes `msat` in the journal (x1000) and fiat stays in cents.
"""

from __future__ import annotations

JOURNAL_CURRENCY = {"usd": "usd", "eur": "eur", "sat": "msat"}
PER_PRICE_UNIT = {"usd": 1, "eur": 1, "sat": 1000}
FULL_SHARE_BP = 10_000  # basis points: 8000 is 80 %


def exact_int(value: object, what: str = "amount") -> int:
    """`value` if it is a real int (bool and float are refused: a float has no place in money code)."""
    if type(value) is not int:
        raise TypeError(f"{what} must be an int in minor units, not {type(value).__name__}")
    return value


def to_journal(amount: int, price_currency: str) -> tuple[int, str]:
    """A price in the catalog's units as (minor units, journal currency): 2500 sat -> (2_500_000, "msat")."""
    return exact_int(amount) * PER_PRICE_UNIT[price_currency], JOURNAL_CURRENCY[price_currency]


def split(amount: int, creator_share_bp: int) -> tuple[int, int]:
    """(creator, platform) of a gross amount; the creator's part is rounded down, the platform keeps the rest,
    so the two always add up to the amount exactly."""
    exact_int(amount)
    if not 0 <= exact_int(creator_share_bp, "share") <= FULL_SHARE_BP:
        raise ValueError("a share is between 0 and 10000 basis points")
    creator = amount * creator_share_bp // FULL_SHARE_BP
    return creator, amount - creator


def journal_text(currency: str, minor: int) -> str:
    """A journal amount for people: (1_600_500, "msat") -> "1600.5 sat", (2000, "usd") -> "20.00 usd"."""
    from ..catalog.pricing import format_minor_units

    shown = {v: k for k, v in JOURNAL_CURRENCY.items()}[currency]
    per_unit = PER_PRICE_UNIT[shown]
    if per_unit == 1:
        return f"{format_minor_units(minor, shown)} {shown}"
    whole, rest = divmod(abs(minor), per_unit)
    sign = "-" if minor < 0 else ""
    return f"{sign}{whole}{('.%03d' % rest).rstrip('0') if rest else ''} {shown}"
