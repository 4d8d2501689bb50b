"""PATCH (RFC 7644 3.5.2) on a resource held as its SCIM JSON: `add`, `replace` and `remove`, with a path of
`attr`, `attr.sub`, `attr[sub eq "v"]` or `attr[sub eq "v"].sub`, or no path (a value of attributes to set).
The result is validated and stored like a PUT's body, so PATCH and PUT keep the same rules."""

from __future__ import annotations

import copy
import re
from typing import Any

from .errors import ScimError

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MAX_OPERATIONS = 100
PATH = re.compile(r'^(?:urn:ietf:params:scim:schemas:core:2\.0:(?:User|Group):)?([A-Za-z][\w$]*)'
                  r'(?:\[\s*([A-Za-z][\w$]*)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*\])?(?:\.([A-Za-z][\w$]*))?$', re.I)


def _key(name: str, known: dict[str, str]) -> str:
    """The attribute's canonical spelling (SCIM attribute names are case-insensitive)."""
    canonical = known.get(name.lower())
    if canonical is None:
        raise ScimError(400, "invalidPath", f"unknown attribute {name!r}")
    return canonical


def apply_patch(resource: dict, body: Any, known: dict[str, str]) -> dict:
    """The resource after the body's operations (the input is not changed). `known`: lower-cased attribute and
    sub-attribute names -> their canonical spelling."""
    if not isinstance(body, dict) or PATCH_SCHEMA not in (body.get("schemas") or []):
        raise ScimError(400, "invalidSyntax", f"a PATCH body is a {PATCH_SCHEMA} message")
    operations = body.get("Operations")
    if not isinstance(operations, list) or not 0 < len(operations) <= MAX_OPERATIONS:
        raise ScimError(400, "invalidSyntax", f"Operations is a list of 1-{MAX_OPERATIONS} operations")
    result = copy.deepcopy(resource)
    for operation in operations:
        if not isinstance(operation, dict):
            raise ScimError(400, "invalidSyntax", "each operation is an object")
        op = str(operation.get("op", "")).lower()
        if op not in ("add", "replace", "remove"):
            raise ScimError(400, "invalidSyntax", "op is add, replace or remove")
        path, value = operation.get("path"), operation.get("value")
        if path is None or path == "":
            if op == "remove":
                raise ScimError(400, "noTarget", "remove needs a path")
            if not isinstance(value, dict):
                raise ScimError(400, "invalidValue", "without a path, the value is an object of attributes")
            for name, item in value.items():
                _apply_path(result, op, str(name), item, known)
        elif isinstance(path, str) and len(path) <= 500:
            _apply_path(result, op, path, value, known)
        else:
            raise ScimError(400, "invalidPath", "path is a string of at most 500 characters")
    return result


def _apply_path(resource: dict, op: str, path: str, value: Any, known: dict[str, str]) -> None:
    match = PATH.match(path.strip())
    if match is None:
        raise ScimError(400, "invalidPath", f"cannot read the path {path!r}")
    attr, filter_attr, filter_value, sub = match.groups()
    attr = _key(attr, known)
    if filter_attr is None and sub is not None and attr not in _MULTI:  # name.givenName
        _set_simple(resource.setdefault(attr, {}) if op != "remove" else resource.get(attr) or {}, op,
                    _key(sub, known), value)
        return
    if filter_attr is None:
        if attr in _MULTI:
            _set_multi(resource, op, attr, value)
        elif op != "remove" and isinstance(value, dict) and isinstance(resource.get(attr), dict):
            resource[attr].update({_key(k, known): v for k, v in value.items()})
        else:
            _set_simple(resource, op, attr, value)
        return
    filter_attr = _key(filter_attr, known)
    chosen = [item for item in resource.get(attr) or []
              if isinstance(item, dict) and str(item.get(filter_attr)) == filter_value]
    if not chosen and op != "add":
        if op == "remove":
            return
        raise ScimError(400, "noTarget", f"nothing in {attr} matches {path!r}")
    if op == "remove" and sub is None:
        resource[attr] = [item for item in resource.get(attr) or [] if item not in chosen]
        return
    if not chosen:  # add with a filter: a new element that matches it
        chosen = [{filter_attr: filter_value}]
        resource.setdefault(attr, []).append(chosen[0])
    for item in chosen:
        if sub is None:
            if not isinstance(value, dict):
                raise ScimError(400, "invalidValue", f"{attr} elements are objects")
            item.update(value)
        else:
            _set_simple(item, op, _key(sub, known), value)


_MULTI = frozenset({"emails", "members"})


def _set_simple(target: dict, op: str, name: str, value: Any) -> None:
    if op == "remove":
        target.pop(name, None)
    else:
        target[name] = value


def _set_multi(resource: dict, op: str, attr: str, value: Any) -> None:
    if op == "remove":
        if value is None:
            resource.pop(attr, None)
            return
        drop = {item.get("value") for item in _as_list(value) if isinstance(item, dict)}
        resource[attr] = [item for item in resource.get(attr) or [] if item.get("value") not in drop]
        return
    items = _as_list(value)
    if op == "replace":
        resource[attr] = items
        return
    current = resource.setdefault(attr, [])
    values = {item.get("value") for item in current if isinstance(item, dict)}
    current.extend(item for item in items if not (isinstance(item, dict) and item.get("value") in values))


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
