"""SCIM filters (RFC 7644 3.4.2.2), the part IdPs use: `attr eq "value"` joined by `and` (Entra ID sends
nothing else). A filter becomes a WHERE clause over a fixed map of attributes to columns, with every value a
bound parameter: nothing the client sends is ever put into the SQL text."""

from __future__ import annotations

import json
import re

from .errors import ScimError

MAX_FILTER = 1000
# attr (case-insensitive, as SCIM attribute names are), the operator, a JSON string, true/false/null or a number
TERM = re.compile(r'\s*([A-Za-z][\w.:$-]*)\s+(eq)\s+("(?:[^"\\]|\\.)*"|true|false|null|-?\d+(?:\.\d+)?)\s*', re.I)
AND = re.compile(r"and\b", re.I)
URN_PREFIX = re.compile(r"^urn:ietf:params:scim:schemas:core:2\.0:(?:user|group):", re.I)


def _value(token: str):
    try:
        return json.loads(token)
    except ValueError:
        raise ScimError(400, "invalidFilter", f"cannot read the value {token!r}") from None


def to_sql(text: str, columns: dict[str, tuple[str, bool]]) -> tuple[str, list]:
    """`columns`: lower-cased attribute -> (SQL column expression, compare case-insensitively). Returns a
    condition ('1' for no filter) and its parameters."""
    if not text:
        return "1", []
    if len(text) > MAX_FILTER:
        raise ScimError(400, "invalidFilter", f"filters have at most {MAX_FILTER} characters")
    conditions, params, at = [], [], 0
    while True:
        match = TERM.match(text, at)
        if match is None:
            raise ScimError(400, "invalidFilter", "only `attribute eq \"value\"` terms joined by `and` are supported")
        attribute = URN_PREFIX.sub("", match.group(1)).lower()
        if attribute not in columns:
            raise ScimError(400, "invalidFilter", f"filtering on {match.group(1)!r} is not supported")
        column, fold = columns[attribute]
        value = _value(match.group(3))
        if value is None:
            conditions.append(f"{column} IS NULL")
        else:
            if isinstance(value, bool):
                value = int(value)
            conditions.append(f"{column} = ? COLLATE NOCASE" if fold else f"{column} = ?")
            params.append(value)
        at = match.end()
        if at == len(text):
            return " AND ".join(conditions), params
        joiner = AND.match(text, at)
        if joiner is None:
            raise ScimError(400, "invalidFilter", "only `and` joins filter terms here")
        at = joiner.end()
