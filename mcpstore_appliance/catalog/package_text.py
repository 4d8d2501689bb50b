"""Text helpers of the package views: markdown rendered to allowlisted HTML, timestamps, JSON pieces spliced
without re-parsing, and the not-found answer every hidden or missing package gets."""

from __future__ import annotations

import datetime as dt
import functools
import json
import sqlite3
from typing import Any
from urllib.parse import quote

import nh3
from markdown_it import MarkdownIt

from ..errors import NotFound
from .names import is_package_ref

# --- markdown ----------------------------------------------------------------------------------------------

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])
SAFE_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "code", "pre",
             "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td", "del", "s"}
SAFE_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"}}
MAX_MARKDOWN_CHARS = 100_000


def render_markdown(text: str | None) -> str:
    """Markdown (CommonMark + tables) to HTML that is safe to embed: raw HTML in the source is escaped by the
    renderer, and the output is sanitized again with an allowlist (no scripts, styles, event handlers or
    javascript: URLs; links get rel="noopener noreferrer nofollow")."""
    if not text:
        return ""
    html = _MARKDOWN.render(text[:MAX_MARKDOWN_CHARS])
    return nh3.clean(html, tags=SAFE_TAGS, attributes=SAFE_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
                     link_rel="noopener noreferrer nofollow")


# --- small helpers -----------------------------------------------------------------------------------------

def iso(timestamp: float | None) -> str | None:
    """RFC 3339 UTC with milliseconds, as the MCP Registry writes timestamps."""
    if timestamp is None:
        return None
    return _iso(timestamp)


@functools.lru_cache(maxsize=65536)  # listings format the same publish times again and again
def _iso(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def not_found(namespace: str, name: str) -> NotFound:
    # The same words whether the package is missing or hidden from this caller.
    return NotFound(f"no package {namespace[:64]}/{name[:64]}", code="no_such_package")


def version_path(base_url: str, namespace: str, name: str, version: str) -> str:
    return f"{base_url}/api/packages/{namespace}/{name}/versions/{quote(version, safe='')}"


def access_of(row: sqlite3.Row) -> dict[str, Any]:
    """The columns that decide who may see a package (for can_see and can_manage), kept with cached answers."""
    return {"visibility": row["visibility"], "org_id": row["org_id"], "owner_user_id": row["owner_user_id"]}


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def splice(*objects: str) -> str:
    """Join JSON object texts with distinct keys into one object without re-encoding them."""
    inner = [text[1:-1] for text in objects if len(text) > 2]
    return "{" + ",".join(inner) + "}"


def config_field(field: dict[str, Any]) -> dict[str, Any]:
    """A user_config field for display; a sensitive field's default is never shown."""
    sensitive = bool(field.get("sensitive"))
    return {"key": field.get("key"), "type": field.get("type"), "title": field.get("title"),
            "description": field.get("description"), "required": bool(field.get("required")),
            "sensitive": sensitive, "multiple": bool(field.get("multiple")),
            "default": None if sensitive else field.get("default"), "min": field.get("min"), "max": field.get("max")}


def count_by(items: list[dict], key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        value = str(item.get(key))
        counts[value] = counts.get(value, 0) + 1
    return counts


def check_names(namespace: str, name: str) -> None:
    # A name that cannot exist is simply not found (the same answer as a hidden package).
    if not is_package_ref(namespace, name):
        raise not_found(namespace, name)

