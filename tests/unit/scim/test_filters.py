"""SCIM filters to SQL: the values the client sends are bound parameters, never part of the SQL text."""

import pytest

from mcpstore_appliance.scim.errors import ScimError
from mcpstore_appliance.scim.filters import to_sql
from mcpstore_appliance.scim.service import USER_COLUMNS


def test_eq_and_and_become_bound_conditions():
    sql, params = to_sql('userName eq "a@b.c" and externalId eq "x" AND active eq false', USER_COLUMNS)
    assert sql == "s.user_name = ? COLLATE NOCASE AND s.external_id = ? AND s.active = ?"
    assert params == ["a@b.c", "x", 0]


def test_the_schema_urn_prefix_and_case_of_names_are_accepted():
    sql, params = to_sql('urn:ietf:params:scim:schemas:core:2.0:User:USERNAME eq "q"', USER_COLUMNS)
    assert sql == "s.user_name = ? COLLATE NOCASE" and params == ["q"]


def test_hostile_values_stay_in_the_parameters():
    sql, params = to_sql(r'userName eq "x\" OR 1=1; DROP TABLE users --"', USER_COLUMNS)
    assert "DROP" not in sql and "OR" not in sql and params == ['x" OR 1=1; DROP TABLE users --']


def test_no_filter_is_everything():
    assert to_sql("", USER_COLUMNS) == ("1", [])


@pytest.mark.parametrize("text", ['userName co "a"', 'userName eq "a" or active eq true', 'emails eq "a"',
                                  'userName eq "a" and', "not (active eq true)", 'userName eq "a"]', "x" * 1001,
                                  'userName eq 1e999999'])
def test_what_is_not_supported_is_an_invalid_filter(text):
    with pytest.raises(ScimError) as caught:
        to_sql(text, USER_COLUMNS)
    assert caught.value.status == 400 and caught.value.scim_type == "invalidFilter"
