"""Test helpers of the discovery tests: real publishes over HTTP, organizations, and the few package columns
that only other parts of the appliance change (download counts, ratings, verification).

Publishing goes through `POST /api/packages` with bundles built by tests/data/bundles.py, so the search index
is filled by the same triggers as in production. `set_package` writes columns the publish API cannot set
(ratings come from reviews, verification from admins) straight into `packages`, which also exercises the
triggers that copy them into the search rows.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from tests.data.bundles import bundle_bytes, node_manifest

# Settings for apps that publish a lot: a checkpoint for every publish instead of at most one a second
# (the default interval makes each publish answer wait up to a second).
FAST_LEDGER = {"ledger": {"checkpoint_interval_seconds": 0}}


def manifest(name: str, version: str = "1.0.0", *, description: str | None = None, display_name: str | None = None,
             keywords: list[str] | None = None, tools: list[dict] | None = None, prompts: list[dict] | None = None,
             platforms: list[str] | None = None, long_description: str | None = None,
             user_config: dict | None = None, author: str = "Test Author", server_type: str = "node",
             **extra: Any) -> dict:
    """An mcpb 0.2 manifest for `name@version` (a node server unless server_type says otherwise)."""
    overrides: dict[str, Any] = {"name": name, "version": version,
                                 "description": description or f"The {name} server",
                                 "author": {"name": author, "email": "author@example.com"}}
    if display_name:
        overrides["display_name"] = display_name
    if keywords:
        overrides["keywords"] = keywords
    if tools:
        overrides["tools"] = tools
    if prompts:
        overrides["prompts"] = prompts
    if platforms is not None:
        overrides["compatibility"] = {"platforms": platforms}
    if long_description:
        overrides["long_description"] = long_description
    if user_config:
        overrides["user_config"] = user_config
    if server_type == "python":
        overrides["server"] = {"type": "python", "entry_point": "server/main.py",
                               "mcp_config": {"command": "python3", "args": ["${__dirname}/server/main.py"]}}
    overrides.update(extra)
    return node_manifest(**overrides)


def bundle(name: str, version: str = "1.0.0", **manifest_fields: Any) -> bytes:
    files = {"server/main.py": "print('hello')\n"} if manifest_fields.get("server_type") == "python" else None
    return bundle_bytes(manifest(name, version, **manifest_fields), files)


async def publish(app, token: str, name: str, version: str = "1.0.0", *, namespace: str | None = None,
                  expect: int = 201, options: dict[str, str] | None = None, **manifest_fields: Any) -> Any:
    """Publish a bundle through the HTTP API; returns the JSON answer (asserting its status)."""
    query = {**({"namespace": namespace} if namespace else {}), **(options or {})}
    data = bundle(name, version, **manifest_fields)
    status, body, _ = await app.client.with_token(token).post(
        "/api/packages", params=query, data=data, headers={"Content-Type": "application/octet-stream"})
    assert status == expect, (status, body)
    return body


def bundle_for(name: str, version: str = "1.0.0", **manifest_fields: Any) -> tuple[bytes, str]:
    data = bundle(name, version, **manifest_fields)
    return data, hashlib.sha256(data).hexdigest()


async def make_org(app, owner_token: str, slug: str, members: dict[str, str] | None = None) -> None:
    """An organization owned by the token's user, with `members` (username -> role)."""
    client = app.client.with_token(owner_token)
    status, body, _ = await client.post("/api/orgs", json={"slug": slug, "name": slug.title()})
    assert status == 201, body
    for username, role in (members or {}).items():
        status, body, _ = await client.put(f"/api/orgs/{slug}/members/{username}", json={"role": role})
        assert status == 200, body


async def set_package(app, namespace: str, name: str, **columns: Any) -> None:
    """Set columns of `packages` that other parts own (downloads, rating_avg, rating_count, verified...)."""
    assignments = ", ".join(f"{column} = ?" for column in columns)
    async with app.services.db.write() as tx:
        changed = await tx.changes(f"UPDATE packages SET {assignments} WHERE namespace = ? AND name = ?",
                                   (*columns.values(), namespace, name))
    assert changed == 1, f"no package {namespace}/{name}"


async def yank(app, token: str, namespace: str, name: str, version: str, reason: str = "broken") -> None:
    status, body, _ = await app.client.with_token(token).post(
        f"/api/packages/{namespace}/{name}/versions/{version}/yank", json={"reason": reason})
    assert status == 200, body


async def deprecate(app, token: str, namespace: str, name: str, version: str, reason: str = "use 2.x") -> None:
    status, body, _ = await app.client.with_token(token).post(
        f"/api/packages/{namespace}/{name}/versions/{version}/deprecate", json={"reason": reason})
    assert status == 200, body


def ids(body: dict) -> list[str]:
    return [item["id"] for item in body["packages"]]


async def eventually(condition, seconds: float = 2.0) -> None:
    """Wait until `condition()` holds, for at most `seconds`: for the server's bookkeeping that finishes after
    the client has read the last byte of an answer. The caller asserts afterwards."""
    for _ in range(max(1, round(seconds / 0.01))):
        if condition():
            return
        await asyncio.sleep(0.01)


async def counted(counter, expected: int) -> None:
    """A download is counted once its last byte went out, which the client may read before the handler resumes
    to count it: wait a moment for the count, then check it is exactly `expected`."""
    await eventually(lambda: counter.pending >= expected)
    assert counter.pending == expected
