"""manifest.json as text: decoding (UTF-8 without BOM, strict JSON, no duplicate keys, valid Unicode, nesting
within reason) and the registry's rule on control characters (see mcpstore_appliance/text.py).

`mcpb validate` accepts a lone surrogate escape (`"x\\ud800y"`) and control characters in every field; we
refuse both (listed in tests/e2e/test_mcpb_cli_differential.py): such a string cannot be stored or shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from ..errors import Unprocessable
from ..text import MAX_JSON_DEPTH, NestingTooDeep, load_json, strings, text_problem

# Fields shown or used as one line: a tab or line break in them is a mistake or a trick. Other strings (descriptions,
# prompt texts, arguments) may span lines. "*" is any key or index; object keys are always one line.
ONE_LINE = (("manifest_version",), ("dxt_version",), ("name",), ("display_name",), ("version",),
            ("author", "name"), ("author", "email"), ("author", "url"), ("license",), ("homepage",),
            ("documentation",), ("support",), ("repository", "type"), ("repository", "url"), ("keywords", "*"),
            ("icon",), ("icons", "*", "src"), ("screenshots", "*"), ("privacy_policies", "*"),
            ("server", "type"), ("server", "entry_point"), ("tools", "*", "name"), ("prompts", "*", "name"),
            ("prompts", "*", "arguments", "*"), ("user_config", "*", "type"), ("user_config", "*", "title"),
            ("compatibility", "platforms", "*"))
MAX_TEXT_ERRORS = 20


def reject(code: str, message: str, path: str = "manifest.json") -> Unprocessable:
    return Unprocessable(message, code=code, details=[{"path": path, "message": message}])


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def decode_manifest(raw: bytes, max_bytes: int) -> Any:
    """Bytes of manifest.json -> parsed JSON, or Unprocessable with a precise code."""
    if len(raw) > max_bytes:
        raise reject("manifest_too_large", f"manifest.json is larger than {max_bytes} bytes")
    if raw.startswith(b"\xef\xbb\xbf"):
        raise reject("manifest_bom", "manifest.json starts with a byte order mark; save it as UTF-8 without BOM")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise reject("manifest_encoding", f"manifest.json is not valid UTF-8 (byte {exc.start})") from None
    try:
        data = load_json(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
        _check_unicode(data)
    except NestingTooDeep as exc:
        raise reject("manifest_too_deep", f"manifest.json nests arrays and objects more than {exc.limit} levels "
                     "deep") from None
    except json.JSONDecodeError as exc:
        raise reject("manifest_json", f"manifest.json is not valid JSON: {exc.msg} at line {exc.lineno} "
                     f"column {exc.colno}") from None
    except ValueError as exc:
        raise reject("manifest_json", f"manifest.json is not valid JSON: {exc}") from None
    return data


def _check_unicode(data: Any) -> None:
    """A `\\udXXX` escape without its pair decodes to a lone surrogate: refused like invalid UTF-8, since no
    database, log or response can encode it."""
    for path, value, _ in strings(data, max_depth=MAX_JSON_DEPTH):
        problem = text_problem(value, multiline=True)
        if problem is not None and problem.code == "invalid_unicode":
            spot = json_path(path)
            raise Unprocessable(f"manifest.json is not valid Unicode: {spot} {problem.describe()}",
                                code="manifest_encoding", details=[{"path": spot, "message": problem.describe()}])


def text_errors(data: Any) -> list[dict]:
    """The registry rule on control characters: none in one-line fields and keys, only tab and line breaks
    elsewhere. Problems in the validation format ({"path", "message"})."""
    problems = []
    for path, value, is_key in strings(data, max_depth=MAX_JSON_DEPTH):
        problem = text_problem(value, multiline=not is_key and not _one_line(path))
        if problem is not None:
            problems.append({"path": json_path(path), "message": ("the key " if is_key else "")
                             + problem.describe()})
            if len(problems) == MAX_TEXT_ERRORS:
                break
    return sorted(problems, key=lambda p: p["path"])


def _one_line(path: tuple) -> bool:
    return any(len(rule) == len(path) and all(r in ("*", p) for r, p in zip(rule, path)) for rule in ONE_LINE)


def json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", str(part)):
            out += f".{part}"
        else:
            out += "[" + json.dumps(str(part)) + "]"
    return out
