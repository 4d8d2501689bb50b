"""Text the appliance accepts (mcpstore_appliance/text.py) and the manifest's text rules (bundles/manifest_text.py)."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ValidationError

from mcpstore_appliance.bundles import check_manifest, decode_manifest
from mcpstore_appliance.errors import InvalidInput, Unprocessable
from mcpstore_appliance.text import (MAX_JSON_DEPTH, OneLine, check_json_text, check_text, load_json, parse_json, strings,
                                     text_problem)
from tests.data.bundles import node_manifest
from tests.unit.bundles.test_manifest import CORPUS


@pytest.mark.parametrize("value, multiline, code, position", [
    ("x\ud800y", True, "invalid_unicode", 1),
    ("\udfff", False, "invalid_unicode", 0),
    ("a\x00b", True, "control_character", 1),
    ("a\x1bb", True, "control_character", 1),  # ESC: terminal escapes
    ("a\x7f", True, "control_character", 1),
    ("a\x85", True, "control_character", 1),  # C1 (NEL)
    ("a\tb", False, "control_character", 1),
    ("a\nb", False, "control_character", 1),
    ("a\u2028b", False, "control_character", 1),
])
def test_refused_text(value, multiline, code, position):
    problem = text_problem(value, multiline=multiline)
    assert (problem.code, problem.position) == (code, position)
    with pytest.raises(InvalidInput) as caught:
        check_text(value, "display_name", multiline=multiline)
    assert caught.value.code == code
    assert caught.value.details == {"field": "display_name", "position": position,
                                    "character": f"U+{ord(value[position]):04X}"}
    caught.value.message.encode("utf-8")  # the message itself never carries the bad character


@pytest.mark.parametrize("value, multiline", [
    ("Grüße, 世界 🎉", False), ("line one\nline two\r\n\tindented", True), ("", False),
    ("\U0001F600", False),  # a real pair, not a lone surrogate
])
def test_accepted_text(value, multiline):
    assert text_problem(value, multiline=multiline) is None
    assert check_text(value, "f", multiline=multiline) == value


def test_one_line_type_for_request_models():
    class Body(BaseModel):
        name: OneLine

    assert Body(name="ok name").name == "ok name"
    with pytest.raises(ValidationError, match="control character U\\+000A"):
        Body(name="two\nlines")


def test_strings_walks_keys_and_values_without_recursion():
    data = {"a": ["x", {"k\x00": 1}], "b": "y"}
    assert sorted((p, v, k) for p, v, k in strings(data)) == [
        (("a",), "a", True), (("a", 0), "x", False), (("a", 1, "k\x00"), "k\x00", True), (("b",), "b", True),
        (("b",), "y", False)]


def test_json_depth_is_bounded_before_and_after_parsing():
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert check_json_text(load_json(at_limit)) is not None
    with pytest.raises(InvalidInput) as caught:
        check_json_text(load_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)))
    assert caught.value.code == "json_too_deep"
    with pytest.raises(InvalidInput) as caught:  # too deep for the parser itself: no RecursionError escapes
        parse_json(b"[" * 200_000 + b"]" * 200_000)
    assert caught.value.code == "json_too_deep"


@pytest.mark.parametrize("raw, code", [(b'{"a": 1', "malformed_json"), (b'{"a": "\xff"}', "invalid_unicode"),
                                       (b'{"a": "x\\ud800"}', "invalid_unicode"), (b'{"a": "\\u0000"}', "control_character")])
def test_parse_json_codes(raw, code):
    with pytest.raises(InvalidInput) as caught:
        parse_json(raw)
    assert caught.value.code == code, caught.value.message


def test_json_text_keys_are_one_line_values_may_span_lines():
    assert check_json_text({"reason": "first\nsecond"}) == {"reason": "first\nsecond"}
    with pytest.raises(InvalidInput) as caught:
        check_json_text({"a\nb": "x"})
    assert caught.value.code == "control_character" and caught.value.details["path"] == "/a\nb"
    with pytest.raises(InvalidInput) as caught:
        check_json_text(json.loads('{"slug": ["ok", "x\\ud800"]}'))
    assert caught.value.code == "invalid_unicode" and caught.value.details["path"] == "/slug/1"


# --- the manifest --------------------------------------------------------------------------------------------

def _raw(manifest: dict, **replace: str) -> bytes:
    text = json.dumps(manifest)
    for old, new in replace.items():
        text = text.replace(old, new)
    return text.encode()


def test_manifest_with_a_lone_surrogate_is_not_valid_unicode():
    raw = _raw(node_manifest(description="MARK"), MARK="x\\ud800y")
    with pytest.raises(Unprocessable) as caught:
        decode_manifest(raw, 1 << 20)
    assert caught.value.code == "manifest_encoding"
    assert caught.value.details[0]["path"] == "$.description"
    assert "$.description contains a lone surrogate U+D800 at position 1" in caught.value.message


def test_manifest_nested_beyond_reason_is_refused_with_its_own_code():
    for depth in (MAX_JSON_DEPTH + 1, 200_000):
        raw = _raw(node_manifest(_meta="MARK"), **{'"MARK"': "[" * depth + "]" * depth})
        with pytest.raises(Unprocessable) as caught:
            decode_manifest(raw, 10 << 20)
        assert caught.value.code == "manifest_too_deep", depth


@pytest.mark.parametrize("field, value, path", [
    ("display_name", "a\x00b", "$.display_name"),
    ("display_name", "two\nlines", "$.display_name"),
    ("description", "bell\x07", "$.description"),
    ("keywords", ["ok", "tab\there"], "$.keywords[1]"),
])
def test_manifest_control_characters_are_listed_with_their_path(field, value, path):
    manifest = {**node_manifest(name="corpus-server"), field: value}
    result = check_manifest(manifest, CORPUS)
    assert not result.ok
    assert [e["path"] for e in result.errors] == [path]
    assert "control character" in result.errors[0]["message"]


def test_manifest_multi_line_fields_keep_their_line_breaks():
    manifest = {**node_manifest(name="corpus-server"), "description": "one\ntwo",
                "long_description": "# Title\r\n\n\tcode"}
    assert check_manifest(manifest, CORPUS).ok
