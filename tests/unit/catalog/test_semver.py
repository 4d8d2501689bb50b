import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpstore_appliance.catalog.semver import is_sort_key, is_valid, parse
from mcpstore_appliance.errors import InvalidInput

# The precedence example from semver.org, in ascending order.
ORDERED = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
           "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "10.0.0"]


def test_semver_org_precedence_for_objects_and_sort_keys():
    versions = [parse(v) for v in ORDERED]
    assert sorted(reversed(versions)) == versions
    assert sorted(v.sort_key() for v in versions) == [v.sort_key() for v in versions]


@pytest.mark.parametrize("bad", ["1", "1.0", "v1.0.0", "01.0.0", "1.0.0-", "1.0.0+", "1.0.0-01", " 1.0.0", "1.0.0 ",
                                 "latest", "", "1.0.0-α", "9" * 300])
def test_invalid_versions_are_refused(bad):
    assert not is_valid(bad)
    with pytest.raises(InvalidInput):
        parse(bad)


def test_build_metadata_is_kept_but_ignored_for_order():
    assert parse("1.0.0+build.5") == parse("1.0.0")
    assert str(parse("1.0.0-rc.1+build.5")) == "1.0.0-rc.1+build.5"


identifier = st.one_of(st.integers(0, 10**6).map(str), st.from_regex(r"[a-zA-Z-][0-9a-zA-Z-]{0,5}", fullmatch=True))
version_text = st.builds(
    lambda a, b, c, pre: f"{a}.{b}.{c}" + ("-" + ".".join(pre) if pre else ""),
    st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), st.lists(identifier, max_size=3))


@given(version_text, version_text)
def test_sort_key_order_matches_precedence(a, b):
    va, vb = parse(a), parse(b)
    assert (va < vb) == (va.sort_key() < vb.sort_key())
    assert (va == vb) == (va.sort_key() == vb.sort_key())


@pytest.mark.parametrize("lower, higher", [("1.0.0-alpha", "1.0.0-alpha-x"), ("1.0.0-a.b", "1.0.0-a-b"),
                                           ("1.0.0-rc", "1.0.0-rc-1"), ("1.0.0-rc.1", "1.0.0-rc-1"),
                                           ("1.0.0-x-", "1.0.0-x--"), ("1.0.0-9", "1.0.0--")])
def test_an_identifier_precedes_a_longer_one_it_starts_even_with_a_hyphen(lower, higher):
    """'-' sorts before '.' in ASCII: the sort key must not let a hyphen decide against semver precedence."""
    assert parse(lower) < parse(higher)
    assert parse(lower).sort_key() < parse(higher).sort_key()
    assert is_sort_key(parse(lower).sort_key()) and is_sort_key(parse(higher).sort_key())


@pytest.mark.parametrize("text", ["0000000000000001.0000000000000000.0000000000000000~", "", "~", None, 7,
                                  "0000000000000001,0000000000000000,0000000000000000-1rc.",
                                  "0000000000000001,0000000000000000,0000000000000000-", "' OR 1=1 --",
                                  "0000000000000001,0000000000000000,0000000000000000~\n"])
def test_what_is_not_a_sort_key(text):
    assert not is_sort_key(text)  # keys in the format before migration 007 included
