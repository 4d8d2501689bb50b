"""Exact decimal prices to integer minor units, and the pricing/tier rules of a publish request."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpstore_appliance.catalog.pricing import (
    MAX_MINOR_UNITS,
    Pricing,
    format_minor_units,
    parse_pricing,
    to_minor_units,
)
from mcpstore_appliance.errors import InvalidInput


@pytest.mark.parametrize("text,currency,expected", [
    ("0.10", "usd", 10), ("0.1", "usd", 10), ("0.100", "usd", 10), ("12", "eur", 1200), ("0", "usd", 0),
    ("19.99", "eur", 1999), ("2500", "sat", 2500), ("2500.000", "sat", 2500), ("0.29", "usd", 29),
    ("0.57", "usd", 57), ("1.15", "usd", 115), ("9999999999.99", "usd", 999999999999),
])
def test_exact_minor_units(text, currency, expected):
    # 0.29, 0.57 and 1.15 are the classic float traps: float("0.29") * 100 == 28.999999999999996.
    assert to_minor_units(text, currency) == expected


@pytest.mark.parametrize("text,currency", [
    ("0.105", "usd"), ("0.5", "sat"), ("1e3", "usd"), ("-1", "usd"), (" 1", "usd"), ("1 ", "usd"),
    ("1,00", "eur"), ("", "usd"), (".5", "usd"), ("5.", "usd"), ("0x10", "usd"), ("١٢", "usd"),
    ("1\n", "usd"), ("NaN", "usd"), ("inf", "usd"), ("+1", "usd"), ("10000000000.01", "usd"),
])
def test_inexact_or_malformed_amounts_are_refused(text, currency):
    with pytest.raises(InvalidInput) as info:
        to_minor_units(text, currency)
    assert info.value.details == {"field": "amount"}


@pytest.mark.parametrize("currency", ["USD", "btc", "", "msat", None])
def test_unknown_currency(currency):
    with pytest.raises(InvalidInput) as info:
        to_minor_units("1", currency)
    assert info.value.details == {"field": "currency"}


@given(st.integers(min_value=0, max_value=MAX_MINOR_UNITS), st.sampled_from(["usd", "eur", "sat"]))
def test_format_round_trips(minor, currency):
    assert to_minor_units(format_minor_units(minor, currency), currency) == minor


def test_format_examples():
    assert format_minor_units(10, "usd") == "0.10"
    assert format_minor_units(123456, "eur") == "1234.56"
    assert format_minor_units(2500, "sat") == "2500"


def test_defaults_are_free_hobbyist():
    assert parse_pricing(None, None, None, None, None) == Pricing("free", 0, None, "hobbyist", None)


def test_free_with_zero_amount_is_free():
    assert parse_pricing("free", "0.00", "usd", None, None) == Pricing("free", 0, None, "hobbyist", None)


def test_per_call_and_subscription():
    assert parse_pricing("per_call", "0.10", "usd", "hobbyist", None) == Pricing("per_call", 10, "usd", "hobbyist", None)
    assert parse_pricing("subscription", "5000", "sat", "pro", "https://mcp.example.com/mcp") == Pricing(
        "subscription", 5000, "sat", "pro", "https://mcp.example.com/mcp")


@pytest.mark.parametrize("args,field", [
    (("free", "1.00", "usd", None, None), "amount"),
    (("per_call", None, "usd", None, None), "amount"),
    (("per_call", "0", "usd", None, None), "amount"),
    (("per_call", "0.00", "eur", None, None), "amount"),
    (("subscription", "5", None, None, None), "currency"),
    (("per_call", "5", "gbp", None, None), "currency"),
    (("monthly", "5", "usd", None, None), "pricing"),
    (("free", None, None, "enterprise", None), "tier"),
    (("free", None, None, "pro", None), "endpoint"),
    (("free", None, None, "pro", "http://mcp.example.com"), "endpoint"),
    (("free", None, None, "pro", "https://"), "endpoint"),
    (("free", None, None, "pro", "https://user:pw@mcp.example.com"), "endpoint"),
    (("free", None, None, "pro", "https://mcp.example.com:99999/"), "endpoint"),
    (("free", None, None, "pro", "https://mcp.example.com/a b"), "endpoint"),
    (("free", None, None, "pro", "javascript:alert(1)"), "endpoint"),
    (("free", None, None, "hobbyist", "https://mcp.example.com"), "endpoint"),
])
def test_pricing_rules(args, field):
    with pytest.raises(InvalidInput) as info:
        parse_pricing(*args)
    assert info.value.details == {"field": field}
    assert info.value.code == "invalid_pricing"


def test_to_dict_shows_the_decimal_text():
    assert parse_pricing("per_call", "0.10", "usd", None, None).to_dict() == {
        "model": "per_call", "amount": 10, "amount_display": "0.10", "currency": "usd", "tier": "hobbyist",
        "endpoint": None}
