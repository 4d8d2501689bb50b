"""The "try it" form of a hosted tool, generated from the tool's JSON Schema `inputSchema` (which the server
reports in tools/list and is as untrusted as the rest of the bundle: only its shape is used, everything shown is
escaped by the template), and the submitted form turned back into the tool's `arguments`.

A property becomes: a text field (string), a number field (number, integer), a checkbox (boolean), a choice
(an `enum` of strings), or a JSON text area (objects, arrays, anything else). Empty optional fields are left
out of the arguments; what the server thinks of the values is its own business (it answers isError).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidInput

MAX_FIELDS = 40
PREFIX = "arg."  # form field names: arg.<property>, so no property can take csrf_token or tool


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # text, number, integer, boolean, choice, json
    required: bool
    description: str
    options: tuple[str, ...] = ()

    @property
    def form_name(self) -> str:
        return PREFIX + self.name


def _kind(schema: Any) -> tuple[str, tuple[str, ...]]:
    if not isinstance(schema, dict):
        return "json", ()
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        return "choice", tuple(v[:200] for v in enum[:100])
    kind = schema.get("type")
    if kind == "string":
        return "text", ()
    if kind in ("number", "integer", "boolean"):
        return kind, ()
    return "json", ()


def fields_of(input_schema: Any) -> list[Field]:
    """The form's fields, in the schema's order (at most MAX_FIELDS)."""
    if not isinstance(input_schema, dict) or not isinstance(input_schema.get("properties"), dict):
        return []
    required = input_schema.get("required")
    required = set(required) if isinstance(required, list) else set()
    fields = []
    for name, schema in list(input_schema["properties"].items())[:MAX_FIELDS]:
        kind, options = _kind(schema)
        description = schema.get("description") if isinstance(schema, dict) else ""
        fields.append(Field(str(name)[:200], kind, name in required,
                            description[:500] if isinstance(description, str) else "", options))
    return fields


def _bad(field: Field, message: str) -> InvalidInput:
    return InvalidInput(f"{field.name}: {message}", code="invalid_argument", details={"field": field.name})


def _value(field: Field, text: str) -> Any:
    if field.kind in ("text", "choice"):
        if field.options and text not in field.options:
            raise _bad(field, "choose one of the listed values")
        return text
    if field.kind in ("number", "integer"):
        try:
            number = int(text) if field.kind == "integer" else float(text)
        except ValueError:
            raise _bad(field, f"not {'an integer' if field.kind == 'integer' else 'a number'}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise _bad(field, "not a finite number")
        return number
    try:
        return json.loads(text)
    except ValueError:
        raise _bad(field, "not valid JSON") from None


def arguments_from(fields: list[Field], form: Any) -> dict[str, Any]:
    """The tool's arguments from the posted form; a required field left empty or a malformed value is a 400."""
    arguments: dict[str, Any] = {}
    for field in fields:
        if field.kind == "boolean":
            arguments[field.name] = form.get(field.form_name) == "on"
            continue
        text = str(form.get(field.form_name, ""))
        if text == "":
            if field.required:
                raise _bad(field, "this field is required")
            continue
        arguments[field.name] = _value(field, text)
    return arguments
