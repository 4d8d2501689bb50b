"""What an answer tells caches (browsers, a shared reverse-proxy cache) about keeping it: one place decides.

- Public and asked anonymously, mutable (catalog reads): `public, max-age=2, stale-while-revalidate=3`. A shared
  cache may answer it for up to 5 s in all after the appliance did, so a yank or a new version shows through
  it within 5 s (README, "Operate it").
- Public and asked anonymously, immutable (a bundle by its content hash): `public, max-age=31536000, immutable`.
- Anything asked with a credential (Authorization, a cookie) or about something not public: `private`, never
  `public`: a shared cache must not keep what a token or an org membership unlocked.

Every such answer carries `Vary: Authorization, Cookie` (a credential may change it) and an ETag, and a matching
`If-None-Match` gets 304 without the body. An answer that an org's policy may change (org_context.py) also varies
on `X-Mcpstore-Org` (`vary_on_org`, applied by the front door to every answer, refusals too).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from .keys import PRINCIPAL
from .util import etag_matches

MUTABLE_MAX_AGE = 2  # seconds a cache may answer without asking
MUTABLE_STALE = 3  # seconds more it may answer while it asks again in the background (2 + 3 <= 5)
YEAR = 31536000
VARY = "Authorization, Cookie"
ORG_HEADER = "X-Mcpstore-Org"  # the org context (web/org_context.py): an org's policy may change the answer
JSON = "application/json"


def cache_control(*, public: bool, credentialed: bool, mutable: bool) -> str:
    """The Cache-Control of an answer: public only for public data asked for without a credential."""
    if public and not credentialed:
        return f"public, max-age={MUTABLE_MAX_AGE}, stale-while-revalidate={MUTABLE_STALE}" if mutable else \
            f"public, max-age={YEAR}, immutable"
    return "private, no-cache" if mutable else f"private, max-age={YEAR}, immutable"


def credentialed(request: web.Request) -> bool:
    """The request carried something that may widen (or change) what it is answered."""
    return request.get(PRINCIPAL) is not None or "Authorization" in request.headers or "Cookie" in request.headers


def cache_headers(request: web.Request, etag: str, *, public: bool = True, mutable: bool = True) -> dict[str, str]:
    """ETag, Cache-Control and Vary for a cacheable read. `public`: the data is public (an anonymous caller
    only ever sees public data, so routes without a flag pass the default)."""
    return {"ETag": etag, "Vary": VARY,
            "Cache-Control": cache_control(public=public, credentialed=credentialed(request), mutable=mutable)}


def vary_on_org(headers) -> None:
    """Add the org context header (and the credential ones) to an answer's Vary, keeping what it names."""
    present = [name.strip() for name in headers.get("Vary", "").split(",") if name.strip()]
    known = {name.lower() for name in present}
    headers["Vary"] = ", ".join(present + [name for name in (*VARY.split(", "), ORG_HEADER)
                                           if name.lower() not in known])


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def cacheable(request: web.Request, body: bytes, *, etag: str | None = None, public: bool = True,
              content_type: str = JSON) -> web.Response:
    """A 200 with `body` and its cache headers, or 304 when the client already holds this ETag."""
    headers = cache_headers(request, etag or etag_of(body), public=public)
    if etag_matches(request.headers.get("If-None-Match"), headers["ETag"]):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": content_type})


def cacheable_json(request: web.Request, text: str, *, public: bool = True) -> web.Response:
    return cacheable(request, text.encode("utf-8"), public=public, content_type="application/json; charset=utf-8")


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
