"""Every form a device or an MDM takes the policy in, by name, with its media type and file name.

Each is rendered from one PolicyVersion and kept while that version is current (the signed JSON also while its
day lasts: its `iat` moves daily), so a fleet of devices revalidating with If-None-Match costs a dictionary
lookup, not a render.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from nacl.signing import SigningKey

from .render_apple import mobileconfig
from .render_keys import RenderContext
from .render_vscode import vscode_policy
from .render_windows import admx, adml, reg_file
from .signed import DAY, sign, signed_document

KEPT = 512


@dataclass(frozen=True)
class Artifact:
    body: bytes
    etag: str
    content_type: str
    filename: str
    version: int


def _json(value) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"


# name -> (media type, file name pattern, render(current, context) -> bytes)
RENDERERS: dict[str, tuple[str, str, Callable]] = {
    "mobileconfig": ("application/x-apple-aspen-config", "{org}-claude-desktop.mobileconfig",
                     lambda cur, ctx: mobileconfig(cur.policy, ctx, cur.sha256)),
    "reg": ("text/plain; charset=utf-16", "{org}-claude-desktop.reg", lambda cur, ctx: reg_file(cur.policy, ctx)),
    "admx": ("application/xml", "mcpstore-{org}.admx", lambda cur, ctx: admx(cur.policy, ctx)),
    "adml": ("application/xml", "mcpstore-{org}.adml", lambda cur, ctx: adml(cur.policy, ctx)),
    "vscode.json": ("application/json", "{org}-vscode-policy.json", lambda cur, ctx: _json(vscode_policy(cur.policy, ctx))),
}
FORMATS = ("json", *RENDERERS)


class Artifacts:
    def __init__(self, key: SigningKey, registry: str, name_prefix: str, brand: str = "mcpstore", operator: str = ""):
        self.key = key
        self.registry = registry.rstrip("/")
        self.name_prefix = name_prefix
        self.brand = brand
        self.operator = operator
        self._kept: dict[tuple, Artifact] = {}

    def render(self, current, fmt: str, now: float) -> Artifact:
        """`current`: a PolicyVersion; `fmt`: one of FORMATS."""
        day = int(now) // DAY if fmt == "json" else None
        cache_key = (current.org.id, current.version, current.sha256, fmt, day)
        found = self._kept.get(cache_key)
        if found is None:
            if len(self._kept) >= KEPT:
                self._kept.clear()
            found = self._kept[cache_key] = self._render(current, fmt, now)
        return found

    def _render(self, current, fmt: str, now: float) -> Artifact:
        org = current.org.slug
        if fmt == "json":
            document = signed_document(org, current.version, current.sha256, current.policy.document(),
                                       self.registry, created_at=current.created_at, now=now)
            signed = sign(self.key, document)
            return Artifact(signed.body, signed.etag, "application/json", f"{org}-policy.json", current.version)
        content_type, filename, render = RENDERERS[fmt]
        body = render(current, RenderContext(org, current.version, self.registry, self.name_prefix, self.brand,
                                                    self.operator))
        return Artifact(body, '"' + hashlib.sha256(body).hexdigest() + '"', content_type,
                        filename.format(org=org), current.version)
