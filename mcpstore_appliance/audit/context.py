"""Where an event happens: the request (or command) being served, so that every `audit.record` call gets the
source address, the surface, the request id and the user agent without each caller passing them.

The web front door binds one per request (a context variable: each asyncio task sees its own); the CLI binds
"cli"; background work leaves the default, "appliance".
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Where:
    location: str  # e.g. "POST /api/tokens", "cli audit export", "appliance"
    source: str | None = None  # the client's address
    request_id: str | None = None
    user_agent: str | None = None


APPLIANCE = Where("appliance")
_current: ContextVar[Where] = ContextVar("audit_where", default=APPLIANCE)


def bind(where: Where) -> None:
    _current.set(where)


def current() -> Where:
    return _current.get()
