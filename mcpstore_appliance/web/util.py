"""Small helpers for handlers: read JSON into a pydantic model, client IP, query parsing."""

from __future__ import annotations

import ipaddress
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..errors import InvalidInput, UnsupportedMediaType
from ..text import check_text, parse_json
from .keys import SETTINGS

Model = TypeVar("Model", bound=BaseModel)


def validation_details(error: ValidationError) -> list[dict[str, str]]:
    return [{"path": "/".join(str(p) for p in e["loc"]) or "/", "message": e["msg"]} for e in error.errors()]


async def read_json(request: web.Request, model: type[Model]) -> Model:
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send a JSON body with Content-Type: application/json")
    data = parse_json(await request.read())  # valid Unicode, no stray control characters, depth bounded
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("request body does not match the expected shape", code="invalid_body",
                           details=validation_details(exc)) from None


# Set by a worker that passes a request for a hosted session to the worker holding it (web/session_routing.py);
# believed only on that worker's Unix socket, which only the service's own user can reach.
HANDED_OVER_FOR = "X-Mcpstore-Handed-Over-For"


def client_ip(request: web.Request) -> str:
    """The peer address; X-Forwarded-For is believed only from configured trusted proxies."""
    if not request.remote and request.headers.get(HANDED_OVER_FOR):  # a Unix socket has no peer address
        return request.headers[HANDED_OVER_FOR]
    remote = request.remote or "unknown"
    trusted = request.app[SETTINGS].server.trusted_proxies
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded and trusted and _in_networks(remote, trusted):
        return forwarded.split(",")[-1].strip() or remote
    return remote


def _in_networks(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in networks)


def check_url_text(request: web.Request) -> None:
    """A percent-escaped NUL or other control character in a query or path parameter is refused (400) before any
    handler sees it. Query values may hold tab and line breaks (a changelog); handlers that want one line say so.
    (Invalid UTF-8 in a query already reads as U+FFFD, and in a path stays escaped.)"""
    for name, value in request.query.items():
        check_text(name, "a query parameter name")
        check_text(value, name, multiline=True)
    for name, value in request.match_info.items():
        check_text(value, name)


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer", code="invalid_parameter", details={"parameter": name}) from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}", code="invalid_parameter",
                           details={"parameter": name})
    return value


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (weakly compared, as RFC 9110 says for GET)."""
    if not header:
        return False
    candidates = [part.strip() for part in header.split(",")]
    return "*" in candidates or etag in candidates or f"W/{etag}" in candidates


def dump(value: Any) -> Any:
    """Dataclasses and pydantic models to JSON-ready values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    if isinstance(value, list):
        return [dump(v) for v in value]
    return value
