"""manifest.json against the official JSON Schemas of @anthropic-ai/mcpb 2.1.2 (copied unchanged into
`schemas/`), with the differences from the zod schemas that the CLI really runs put back (mcpb-format.md §2):
- `format: email` uses zod's e-mail regex, `format: uri` means "parses as a WHATWG URL" like zod's `.url()`;
- `localization.resources` matches `${locale}` case-insensitively; patterns use ASCII digits and a real end
  anchor (Python's `\\d` is Unicode-aware and `$` matches before a final newline, JavaScript's are not).
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator, FormatChecker

from .manifest_text import json_path

MAX_ERRORS = 100
# zod 3.25's e-mail regex (what `mcpb validate` runs), with a real end anchor.
ZOD_EMAIL = re.compile(r"^(?!\.)(?!.*\.\.)([A-Z0-9_'+\-\.]*)[A-Z0-9_+-]@([A-Z0-9][A-Z0-9\-]*\.)+[A-Z]{2,}\Z",
                       re.IGNORECASE)
SPECIAL_SCHEMES = {"http", "https", "ws", "wss", "ftp"}
FORBIDDEN_HOST_CHARS = set(" #%/:<>?@[\\]^|\t\n\r\x00")


def is_url(value: str) -> bool:
    """Approximates `new URL(value)` (WHATWG) succeeding, which is all zod's `.url()` checks."""
    match = re.match(r"^[\x00-\x20]*([A-Za-z][A-Za-z0-9+.\-]*):(.*?)[\x00-\x20]*\Z", value, re.DOTALL)
    if not match:
        return False
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme not in SPECIAL_SCHEMES:
        return True  # "mailto:x", "urn:y", "file:..." all parse
    authority = re.split(r"[/\\?#]", rest.lstrip("/\\"), maxsplit=1)[0]
    host_port = authority.rsplit("@", 1)[-1]
    if host_port.startswith("["):
        host, sep, port = host_port.partition("]")
        if not sep or not re.fullmatch(r"\[[0-9A-Fa-f:.]+", host):
            return False
        port = port[1:] if port.startswith(":") else port
    else:
        host, _, port = host_port.partition(":")
        if not host or FORBIDDEN_HOST_CHARS & set(host):
            return False
    return port == "" or (port.isascii() and port.isdigit() and int(port) <= 65535)


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checks("email")(lambda value: not isinstance(value, str) or bool(ZOD_EMAIL.match(value)))
    checker.checks("uri")(lambda value: not isinstance(value, str) or is_url(value))
    return checker


def _js_patterns(node: Any) -> Any:
    """Make schema regexes behave like JavaScript's: ASCII \\d, `$` only at the very end, and zod's
    case-insensitive `${locale}` check."""
    if isinstance(node, dict):
        result = {key: _js_patterns(value) for key, value in node.items()}
        pattern = result.get("pattern")
        if isinstance(pattern, str):
            pattern = pattern.replace("\\d", "[0-9]")
            if pattern.endswith("$"):
                pattern = pattern[:-1] + "\\Z"
            if "locale" in pattern:
                pattern = "(?i)" + pattern
            result["pattern"] = pattern
        return result
    if isinstance(node, list):
        return [_js_patterns(item) for item in node]
    return node


@cache
def schema_for(version: str) -> dict:
    text = resources.files(__package__).joinpath(f"schemas/mcpb-manifest-v{version}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator(version: str) -> Draft7Validator:
    return Draft7Validator(_js_patterns(copy.deepcopy(schema_for(version))), format_checker=_format_checker())


def _describe(error) -> list[tuple[list[Any], str]]:
    path = list(error.absolute_path)
    kind = error.validator
    if kind == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        return [(path + [key], "unknown key") for key in error.instance if key not in known]
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return [(path + [missing], "required")]
    if kind == "type":
        return [(path, f"expected {error.validator_value}, got {_json_type(error.instance)}")]
    if kind == "const":
        return [(path, f"must be {json.dumps(error.validator_value)}")]
    if kind == "enum":
        return [(path, "must be one of " + ", ".join(json.dumps(v) for v in error.validator_value))]
    if kind == "format":
        return [(path, f"not a valid {'URL' if error.validator_value == 'uri' else error.validator_value}")]
    if kind == "pattern":
        return [(path, f"does not match the pattern {error.validator_value}")]
    if kind == "minLength":
        return [(path, "must not be empty")]
    if kind == "anyOf":
        return [(path, "must be a string, a number, a boolean or an array of strings")]
    return [(path, error.message[:200])]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def schema_errors(data: Any, version: str) -> list[dict]:
    problems = []
    uv_without_config = (isinstance(data, dict) and isinstance(data.get("server"), dict)
                         and data["server"].get("type") == "uv")
    for error in _validator(version).iter_errors(data):
        for path, message in _describe(error):
            if uv_without_config and path == ["server", "mcp_config"] and message == "required":
                continue  # registry rule: uv servers need no mcp_config
            problems.append({"path": json_path(path), "message": message})
    problems.sort(key=lambda p: p["path"])
    return problems[:MAX_ERRORS]
