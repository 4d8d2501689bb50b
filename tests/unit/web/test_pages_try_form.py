"""The "try it" form: fields from a tool's input schema, and the posted form back into arguments."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from mcpstore_appliance.errors import InvalidInput
from mcpstore_appliance.web.pages.try_form import MAX_FIELDS, arguments_from, fields_of

SCHEMA = {"type": "object", "required": ["text", "count"], "properties": {
    "text": {"type": "string", "description": "what to echo"},
    "count": {"type": "integer"},
    "ratio": {"type": "number"},
    "loud": {"type": "boolean"},
    "mode": {"type": "string", "enum": ["a", "b"]},
    "extra": {"type": "object"},
}}


def test_fields_follow_the_schema():
    fields = fields_of(SCHEMA)
    assert [(f.name, f.kind, f.required) for f in fields] == [
        ("text", "text", True), ("count", "integer", True), ("ratio", "number", False), ("loud", "boolean", False),
        ("mode", "choice", False), ("extra", "json", False)]
    assert fields[0].description == "what to echo" and fields[4].options == ("a", "b")
    assert fields[0].form_name == "arg.text"


@pytest.mark.parametrize("schema", [None, [], {"properties": []}, {"type": "object"}, "x"])
def test_schemas_without_properties_give_no_fields(schema):
    assert fields_of(schema) == []


def test_hostile_schemas_are_cut_and_typed_safely():
    many = {"properties": {f"p{i}": {"type": "string"} for i in range(500)}}
    assert len(fields_of(many)) == MAX_FIELDS
    odd = fields_of({"properties": {"a": 5, "b": {"enum": [1, 2]}, "c": {"description": 7, "type": "string"}}})
    assert [(f.kind, f.description) for f in odd] == [("json", ""), ("json", ""), ("text", "")]


def test_arguments_from_the_form():
    form = MultiDict({"arg.text": "hi\nthere", "arg.count": "3", "arg.ratio": "", "arg.loud": "on", "arg.mode": "b",
                      "arg.extra": '{"k": [1]}', "arg.unknown": "ignored"})
    assert arguments_from(fields_of(SCHEMA), form) == {"text": "hi\nthere", "count": 3, "loud": True, "mode": "b",
                                                      "extra": {"k": [1]}}


@pytest.mark.parametrize("changes, field", [
    ({"arg.text": ""}, "text"), ({"arg.count": "3.5"}, "count"), ({"arg.ratio": "nan"}, "ratio"),
    ({"arg.ratio": "many"}, "ratio"), ({"arg.mode": "c"}, "mode"), ({"arg.extra": "{"}, "extra"),
])
def test_bad_values_are_refused_with_the_field(changes, field):
    form = MultiDict({"arg.text": "x", "arg.count": "1", **changes})
    with pytest.raises(InvalidInput) as refused:
        arguments_from(fields_of(SCHEMA), form)
    assert refused.value.details == {"field": field}
