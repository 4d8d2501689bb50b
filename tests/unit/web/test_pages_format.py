"""Display helpers of the web pages: prices from minor units, safe link targets, the SVG chart geometry."""

import pytest

from mcpstore_appliance.web.pages.chart import bar_chart, nice_ceiling
from mcpstore_appliance.web.pages.format import count, filesize, money, price, safe_url, with_query


@pytest.mark.parametrize("amount, currency, shown", [
    (10, "usd", "$0.10"), (1999, "eur", "€19.99"), (2500, "sat", "2500 sat"), (0, None, "Free"), (5, "xyz", "Free")])
def test_money(amount, currency, shown):
    assert money(amount, currency) == shown


def test_price_words():
    assert price({"model": "per_call", "amount": 10, "currency": "usd"}) == "$0.10 per call"
    assert price({"model": "subscription", "amount": 500, "currency": "eur"}) == "€5.00 per month"
    assert price({"model": "free", "amount": 0, "currency": None}) == "Free"


@pytest.mark.parametrize("url, expected", [
    ("https://example.com/a?b=c", "https://example.com/a?b=c"),
    ("http://example.com", "http://example.com"),
    ("javascript:alert(1)", None), ("JaVaScRiPt:alert(1)", None), (" javascript:alert(1)", None),
    ("data:text/html,<script>", None), ("//evil.example/x", None), ("/relative", None), ("vbscript:x", None),
    ("https://exa mple.com", None), ("https://example.com/\nx", None), (None, None), (42, None),
])
def test_safe_url_allows_only_absolute_http_links(url, expected):
    assert safe_url(url) == expected


def test_counts_and_sizes():
    assert [count(n) for n in (0, 999, 1000, 1234, 2_500_000)] == ["0", "999", "1k", "1.2k", "2.5M"]
    assert filesize(512) == "512 bytes" and filesize(2048) == "2.0 KB" and filesize(5 * 1024**2) == "5.0 MB"


def test_with_query_changes_one_parameter_and_drops_the_cursor():
    base = {"q": "git hub", "category": "dev", "cursor": "abc", "sort": ""}
    assert with_query(base, category=None) == "?q=git+hub"
    assert with_query(base, sort="newest") == "?q=git+hub&category=dev&sort=newest"


@pytest.mark.parametrize("value, ceiling", [(0, 1), (1, 1), (3, 5), (7, 10), (11, 20), (450, 500), (501, 1000)])
def test_nice_ceiling(value, ceiling):
    assert nice_ceiling(value) == ceiling


def test_bar_chart_geometry():
    series = [{"day": f"2026-01-{d:02d}", "count": c} for d, c in zip(range(1, 5), (0, 5, 10, 2))]
    chart = bar_chart(series, width=440, height=200)
    assert [b.count for b in chart.bars] == [0, 5, 10, 2] and chart.total == 17 and chart.peak == 10
    tallest = max(chart.bars, key=lambda b: b.height)
    assert tallest.count == 10 and tallest.y + tallest.height == chart.axis_y
    assert chart.bars[0].height == 0 and chart.bars[1].height == pytest.approx(tallest.height / 2)
    assert all(chart.left <= b.x and b.x + b.width <= chart.right for b in chart.bars)
    assert [t.label for t in chart.ticks] == ["0", "5", "10"]


def test_bar_chart_of_no_downloads_is_flat():
    chart = bar_chart([{"day": "2026-01-01", "count": 0}] * 30)
    assert len(chart.bars) == 30 and all(b.height == 0 for b in chart.bars) and chart.total == 0
