"""Text the appliance accepts, in one place: valid Unicode, no control characters where nobody wants them, JSON
nested no deeper than reason.

Python's json module turns the escape `\\ud800` into a lone surrogate: a str that cannot be encoded as UTF-8,
so SQLite, the ledger and every response would fail on it later. NUL and other C0/C1 control characters
are valid Unicode but only ever confuse (terminal escapes in logs, names that look equal and are not).
Multi-line text (descriptions, changelogs, reasons) keeps tab, line feed and carriage return; one-line text
(names, titles, identifiers, query values) keeps none of them.

Every surface applies these rules before it stores anything: manifests (bundles/manifest_text.py), JSON
bodies, form fields and query values (web/). Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator

from .errors import InvalidInput

MAX_JSON_DEPTH = 64  # arrays and objects inside each other; real manifests and bodies stay under 10

_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # tab, LF and CR allowed
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class TextProblem:
    code: str  # "invalid_unicode" or "control_character"
    position: int
    character: str  # "U+0000"

    def describe(self) -> str:
        if self.code == "invalid_unicode":
            return f"contains a lone surrogate {self.character} at position {self.position} (not valid Unicode)"
        return f"contains a control character {self.character} at position {self.position}"


class NestingTooDeep(ValueError):
    """JSON nested deeper than the limit (or too deep for the parser at all)."""

    def __init__(self, limit: int):
        super().__init__(f"JSON is nested more than {limit} levels deep")
        self.limit = limit


def text_problem(value: str, *, multiline: bool = False) -> TextProblem | None:
    """What is wrong with `value` as text we store and show, or None when nothing is."""
    found = _SURROGATE.search(value)
    if found:
        return TextProblem("invalid_unicode", found.start(), f"U+{ord(found.group()):04X}")
    found = (_CONTROL_MULTILINE if multiline else _CONTROL_ONE_LINE).search(value)
    if found:
        return TextProblem("control_character", found.start(), f"U+{ord(found.group()):04X}")
    return None


def check_text(value: str, field: str, *, multiline: bool = False) -> str:
    """`value` unchanged, or InvalidInput (400) naming the field, the character and where it is."""
    problem = text_problem(value, multiline=multiline)
    if problem is not None:
        raise InvalidInput(f"{field[:60]} {problem.describe()}", code=problem.code,
                           details={"field": field[:60], "position": problem.position,
                                    "character": problem.character})
    return value


def _one_line(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem.describe())
    return value


# For pydantic models of request bodies: names, titles and identifiers are one line.
OneLine = Annotated[str, AfterValidator(_one_line)]


def strings(data: Any, *, max_depth: int = MAX_JSON_DEPTH) -> Iterator[tuple[tuple, str, bool]]:
    """Every string of parsed JSON as (path, text, is_key), without recursion; NestingTooDeep past `max_depth`."""
    stack: list[tuple[tuple, Any]] = [((), data)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            yield path, node, False
        elif isinstance(node, (dict, list)):
            if len(path) >= max_depth:
                raise NestingTooDeep(max_depth)
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                if isinstance(key, str):
                    yield path + (key,), key, True
                stack.append((path + (key,), value))


def load_json(raw: bytes | str, **kwargs: Any) -> Any:
    """json.loads that reports nesting too deep for the parser as NestingTooDeep (not RecursionError)."""
    try:
        return json.loads(raw, **kwargs)
    except RecursionError:
        raise NestingTooDeep(MAX_JSON_DEPTH) from None


def check_json_text(data: Any, *, what: str = "the request body") -> Any:
    """`data` unchanged when its keys and strings are acceptable text (strings may span lines, keys may not)
    and it nests at most MAX_JSON_DEPTH deep; otherwise InvalidInput naming the first bad spot."""
    try:
        for path, value, is_key in strings(data):
            problem = text_problem(value, multiline=not is_key)
            if problem is not None:
                spot = json_pointer(path)
                raise InvalidInput(f"{what}: {'the key at ' if is_key else ''}{spot} {problem.describe()}",
                                   code=problem.code, details={"path": spot, "position": problem.position,
                                                               "character": problem.character})
    except NestingTooDeep as exc:
        raise too_deep(exc.limit, what) from None
    return data


def parse_json(raw: bytes, *, what: str = "the request body") -> Any:
    """A JSON request body (empty: null) parsed and checked by check_json_text; InvalidInput for anything else."""
    try:
        data = load_json(raw or b"null")
    except NestingTooDeep as exc:
        raise too_deep(exc.limit, what) from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} is not valid UTF-8", code="invalid_unicode") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                           code="malformed_json") from None
    return check_json_text(data, what=what)


def too_deep(limit: int, what: str = "the request body") -> InvalidInput:
    return InvalidInput(f"{what} nests arrays and objects more than {limit} levels deep", code="json_too_deep",
                        details={"max_depth": limit})


def json_pointer(path: tuple) -> str:
    """RFC 6901: "/a/0/b" ("" for the whole document)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)
