"""Pure logic of discovery: query parsing, FTS quoting, typo suggestions, facets, cursors, byte ranges,
markdown sanitizing, update-check rules and RFC 3339 parsing."""

from __future__ import annotations

import sqlite3

import pytest

from mcpstore_appliance.catalog import semver
from mcpstore_appliance.catalog.cursors import CursorCodec, scope_digest
from mcpstore_appliance.lru import LRU
from mcpstore_appliance.catalog.package_view import config_field, iso, render_markdown, requires_payment
from mcpstore_appliance.catalog.registry_view import parse_rfc3339
from mcpstore_appliance.catalog.search.facets import fold_facets
from mcpstore_appliance.catalog.search.query import fts_expression, parse_search_params, terms_of
from mcpstore_appliance.catalog.search.spelling import Speller, edit_distance
from mcpstore_appliance.errors import InvalidInput
from mcpstore_appliance.web.bundle_files import parse_range


# --- query parsing -----------------------------------------------------------------------------------------

def test_parse_defaults_and_values():
    query = parse_search_params({})
    assert (query.q, query.limit, query.sort, query.cursor) == ("", 20, None, None)
    assert query.effective_sort() == "downloads"
    assert parse_search_params({"q": "weather"}).effective_sort() == "relevance"
    assert parse_search_params({"q": "!!!", "sort": "relevance"}).effective_sort() == "downloads"
    query = parse_search_params({"q": "x", "category": "data", "platform": "darwin", "runtime": "node",
                                 "pricing": "paid", "max_price": "250", "min_rating": "4.5", "verified": "true",
                                 "tier": "pro", "org": "acme", "sort": "rating", "limit": "100"})
    assert query.filters() == {"category": "data", "platform": "darwin", "runtime": "node", "pricing": "paid",
                               "max_price": 250, "min_rating": 4.5, "verified": True, "tier": "pro", "org": "acme"}
    assert parse_search_params({"verified": "0"}).verified is False


@pytest.mark.parametrize("params, code", [
    ({"bogus": "1"}, "unknown_parameter"), ({"sort": "best"}, "invalid_sort"), ({"limit": "0"}, "invalid_parameter"),
    ({"limit": "101"}, "invalid_parameter"), ({"limit": "1.5"}, "invalid_parameter"),
    ({"limit": "99999999999999999999"}, "invalid_parameter"), ({"max_price": "-1"}, "invalid_parameter"),
    ({"min_rating": "5.5"}, "invalid_parameter"), ({"min_rating": "nan"}, "invalid_parameter"),
    ({"verified": "yes please"}, "invalid_parameter"), ({"platform": "Darwin"}, "invalid_parameter"),
    ({"category": "a" * 65}, "invalid_parameter"), ({"org": "Acme"}, "invalid_parameter"),
    ({"q": "x" * 257}, "query_too_long"), ({"q": " ".join(f"w{i}" for i in range(17))}, "query_too_long"),
    ({"q": "a\x00b"}, "invalid_parameter"),
])
def test_parse_rejects(params, code):
    with pytest.raises(InvalidInput) as error:
        parse_search_params(params)
    assert error.value.code == code


def test_terms_are_folded_like_the_index():
    assert terms_of("Café  CAFÉ café") == ["cafe"]
    assert terms_of('NEAR("a" b*) -c name:d') == ["near", "a", "b", "c", "name", "d"]
    assert terms_of("🌦️ ☔ -- ** ()") == []
    assert terms_of("weather_tools v2.0") == ["weather", "tools", "v2", "0"]
    assert terms_of("Ünïcödé naïve") == ["unicode", "naive"]


@pytest.mark.parametrize("text", ['"', 'a"b', 'NEAR(a b)', 'a OR b', 'a AND NOT b', '-a', '*', 'col:a', '^a',
                                  '(((', 'a + b', "'", "\\", "a\"\"b"])
def test_fts_expressions_are_always_valid_and_literal(text):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(name, body)")
    conn.execute("INSERT INTO t VALUES ('near or and not', 'col a b')")
    terms = terms_of(text)
    if terms:
        expression = fts_expression(terms)
        conn.execute("SELECT count(*) FROM t WHERE t MATCH ?", (expression,)).fetchone()  # never a syntax error
        for term in terms:
            assert f'"{term}"' in expression


def test_fts_expression_shape():
    assert fts_expression(["weather", "fore"]) == '"weather" "fore"*'
    assert fts_expression(["a"]) == '"a"'  # a one-letter prefix would match everything
    assert fts_expression(['x"y']) == '"x""y"*'


# --- typo correction ---------------------------------------------------------------------------------------

def test_edit_distance():
    assert edit_distance("weather", "weather", 2) == 0
    assert edit_distance("wether", "weather", 2) == 1
    assert edit_distance("waether", "weather", 2) == 1  # a swap of neighbours is one edit
    assert edit_distance("githb", "github", 2) == 1
    assert edit_distance("kitten", "sitting", 2) == 3  # capped at limit + 1
    assert edit_distance("abc", "abcdefgh", 2) == 3


def test_speller_suggests_near_known_words():
    speller = Speller({"weather": 40, "whether": 2, "github": 30, "gitlab": 10, "postgres": 5, "query": 9})
    assert speller.suggestions("wether")[0] == "weather"  # distance 1 to both: the more common wins
    assert speller.suggestions("githbu")[0] == "github"
    assert speller.suggestions("qurey") == ["query"]
    assert speller.suggestions("xqzvbnm") == []
    assert speller.suggestions("ab") == []  # too short to guess
    assert speller.knows("weather") and not speller.knows("weat")
    assert speller.knows("weat", as_prefix=True) and not speller.knows("zzz", as_prefix=True)


# --- facets ------------------------------------------------------------------------------------------------

def test_facets_fold_groups():
    groups = [("data", "free", ",darwin,", ",node,", 3), ("data", "per_call", "", ",node,python,", 2),
              (None, "free", ",linux,win32,", "", 1)]
    total, facets = fold_facets(groups)
    assert total == 6
    assert facets["category"] == {"data": 5}
    assert facets["pricing"] == {"free": 4, "per_call": 2}
    # No declared platform counts for every platform (that package matches each platform filter).
    assert facets["platform"] == {"darwin": 5, "linux": 3, "win32": 3}
    assert facets["runtime"] == {"node": 5, "python": 2}
    assert list(facets["pricing"]) == ["free", "per_call"]  # biggest first


# --- cursors -----------------------------------------------------------------------------------------------

def test_cursor_round_trip_and_refusals():
    now = [1_000_000.0]
    codec = CursorCodec(b"k" * 32, max_age=3600, clock=lambda: now[0])
    scope = scope_digest(["weather"], [], "relevance")
    token = codec.encode("search", scope, [{"keys": [-1.25, 7]}])
    assert codec.decode(token, "search", scope) == [{"keys": [-1.25, 7]}]

    def refused(text, kind="search", scope_=scope):
        with pytest.raises(InvalidInput) as error:
            codec.decode(text, kind, scope_)
        assert error.value.code == "invalid_cursor"
        return error.value.message

    payload, signature = token.split(".")
    assert "not issued by this registry" in refused(payload + "." + signature[:-1] + ("A" if signature[-1] != "A"
                                                                                       else "B"))
    assert "not issued" in refused(payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + signature)
    assert "not issued" in refused(CursorCodec(b"o" * 32, clock=lambda: now[0]).encode("search", scope, [1]))
    assert "different query" in refused(token, "versions")
    assert "different query" in refused(token, "search", scope_digest(["other"], [], "relevance"))
    for garbage in ("", ".", "a.b.c", "x" * 3000, "%%%.%%%", "bm90IGpzb24.AAAA"):
        refused(garbage)
    now[0] += 3601
    assert "expired" in refused(token)


# --- byte ranges -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("header, expected", [
    (None, None), ("", None), ("bytes=0-9", (0, 10)), ("bytes=5-", (5, 100)), ("bytes=-10", (90, 100)),
    ("bytes=-1000", (0, 100)), ("bytes=90-200", (90, 100)), ("bytes=99-99", (99, 100)),
    ("bytes=100-", "unsatisfiable"), ("bytes=150-160", "unsatisfiable"), ("bytes=-0", "unsatisfiable"),
    ("bytes=9-3", None), ("bytes=0-1,4-5", None), ("lines=0-1", None), ("bytes=a-b", None), ("bytes=-", None),
    (" bytes=0-0 ", (0, 1)),
])
def test_parse_range(header, expected):
    assert parse_range(header, 100) == expected


def test_empty_file_ranges():
    assert parse_range("bytes=0-", 0) == "unsatisfiable"
    assert parse_range("bytes=-5", 0) == "unsatisfiable"


# --- package data helpers ----------------------------------------------------------------------------------

def test_markdown_is_rendered_and_sanitized():
    html = render_markdown("# T\n\n**b** [ok](https://x.example) [bad](javascript:alert(1)) "
                           "<b onclick=x>raw</b>\n\n![i](https://x.example/i.png)")
    assert "<h1>T</h1>" in html and "<strong>b</strong>" in html
    assert '<a href="https://x.example" rel="noopener noreferrer nofollow">ok</a>' in html
    assert "javascript:" not in html.replace("(javascript:alert(1))", "")  # only ever as plain text
    assert "<b onclick" not in html and "&lt;b onclick=x&gt;" in html
    assert '<img src="https://x.example/i.png" alt="i">' in html
    assert render_markdown(None) == "" and render_markdown("") == ""


def test_sensitive_defaults_are_hidden():
    field = {"key": "token", "type": "string", "title": "T", "description": "d", "sensitive": True, "default": "s"}
    assert config_field(field)["default"] is None and config_field(field)["sensitive"] is True
    assert config_field({**field, "sensitive": False})["default"] == "s"


def test_requires_payment_rule():
    one = semver.parse("1.4.0")
    assert requires_payment("free", True, one) is False
    assert requires_payment("per_call", False, one) is False  # same major: covered by the entitlement
    assert requires_payment("subscription", True, one) is True  # a new major
    assert requires_payment("per_call", False, None) is True  # nothing installed yet


def test_timestamps():
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1.2345) == "1970-01-01T00:00:01.234Z"
    assert iso(None) is None
    assert parse_rfc3339("2025-08-07T13:15:04.280Z") == pytest.approx(1754572504.28)
    assert parse_rfc3339("2025-08-07T15:15:04+02:00") == pytest.approx(1754572504)
    assert parse_rfc3339("2025-08-07T13:15:04.123456789Z") == pytest.approx(1754572504.123456)
    for bad in ("2025-08-07", "yesterday", "2025-08-07T13:15:04", "2025-13-07T13:15:04Z", "", "2025-08-07T25:00:00Z"):
        with pytest.raises(InvalidInput):
            parse_rfc3339(bad)


# --- the package view's caches -----------------------------------------------------------------------------

def test_package_caches_are_bounded_by_count_and_by_weight():
    cache = LRU(3, max_weight=10, weigh=len)
    for key in "abcd":
        cache.put(key, "xx")
    assert [cache.get(k) for k in "abcd"] == [None, "xx", "xx", "xx"] and cache.weight == 6  # the oldest went
    cache.put("b", "x" * 6)  # replacing an entry counts its new weight only
    assert cache.weight == 10 and cache.get("c") == "xx"
    cache.put("e", "xxx")  # over 10: the least recently used go first ("d", then "b")
    assert cache.get("d") is None and cache.get("b") is None and cache.weight == 5
    cache.put("huge", "x" * 11)  # heavier than the whole budget: never kept, and nothing else lost for it
    assert cache.get("huge") is None and cache.get("c") == "xx" and cache.get("e") == "xxx" and cache.weight == 5
    cache.put("c", "x" * 11)  # a key whose new value is too heavy is dropped, not left stale
    assert cache.get("c") is None and cache.weight == 3
    unweighed = LRU(2)
    unweighed.put("a", "x" * 10**6)
    assert unweighed.weight == 0 and unweighed.get("a") is not None
