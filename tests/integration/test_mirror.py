"""The curated mirror with two real appliances on real ports: an upstream that publishes, a downstream that
imports over HTTP, verifies the upstream's signed checkpoint and inclusion proof, re-scans and publishes with a
provenance record. Refusals change nothing. Where an upstream must misbehave, a small aiohttp stand-in proxy
(named `TamperingProxy`) sits between them and alters what the real upstream answered."""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import aiohttp
import pytest
from aiohttp import web

from mcpstore_appliance.ledger import note as notes
from mcpstore_appliance.ledger.checkpoint import open_checkpoint
from mcpstore_appliance.ledger.merkle import leaf_hash, verify_inclusion
from mcpstore_appliance.app import build_services, close_services
from tests.conftest import free_port, make_settings
from tests.integration.publish_support import bundle, make_org, publish, sha256, snapshot, user

QUARANTINE = {".env": "API_URL=https://example.com\n"}  # a high finding: quarantined for review


class TamperingProxy:
    """A stand-in upstream: forwards GETs to the real upstream and lets a test alter answers by path."""

    def __init__(self, target: str):
        self.target = target
        self.alter: dict[str, Callable[[bytes], bytes]] = {}  # path prefix -> body rewrite
        self.serve: dict[str, bytes] = {}  # path -> a body of its own, not asked upstream
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if request.path in self.serve:
            return web.Response(body=self.serve[request.path], content_type="application/octet-stream")
        async with aiohttp.ClientSession() as session:
            async with session.get(self.target + request.rel_url.raw_path_qs, allow_redirects=False) as answer:
                body, status = await answer.read(), answer.status
                content_type = answer.content_type
        for prefix, rewrite in self.alter.items():
            if request.path.startswith(prefix):
                body = rewrite(body)
        return web.Response(body=body, status=status, content_type=content_type)

    async def start(self) -> "TamperingProxy":
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.base_url = f"http://127.0.0.1:{port}"
        return self


@pytest.fixture
async def pair(start_app):
    upstream = await start_app()
    downstream = await start_app()
    _, alice = await user(upstream, "alice")
    _, up_admin = await user(upstream, "upadmin", admin=True)
    root, admin = await user(downstream, "root", admin=True, scopes=("read",))
    await make_org(downstream, "acme", root)
    proxies: list[TamperingProxy] = []

    async def proxy() -> TamperingProxy:
        proxies.append(await TamperingProxy(upstream.base_url).start())
        return proxies[-1]

    yield {"up": upstream, "down": downstream, "alice": alice, "up_admin": up_admin, "admin": admin,
           "proxy": proxy}
    for p in proxies:
        await p.runner.cleanup()


async def state(app) -> dict[str, Any]:
    """What an import could leave behind: the publish snapshot and the mirror's own tables."""
    db = app.services.db
    mirror = {table: await db.fetch_value(f"SELECT count(*) FROM {table}")
              for table in ("mirror_provenance", "mirror_follows", "mirror_pending")}
    return {**await snapshot(app), **mirror,
            "checkpoints": await db.fetch_all("SELECT url, checkpoint FROM mirror_upstreams ORDER BY id")}


async def add_upstream(pair, url: str, key: str | None) -> tuple[int, Any]:
    status, body, _ = await pair["down"].client.with_token(pair["admin"]).post(
        "/api/admin/mirror/upstreams", json={"url": url, **({"key": key} if key else {})})
    return status, body


async def import_release(pair, url: str, release: str, org: str = "acme") -> tuple[int, Any]:
    status, body, _ = await pair["down"].client.with_token(pair["admin"]).post(
        "/api/admin/mirror/imports", json={"upstream": url, "release": release, "org": org})
    return status, body


def upstream_key(pair) -> str:
    return pair["up"].services.ledger.verifier_key()


async def test_mirror_import_verifies_and_keeps_provenance(pair):
    up, down = pair["up"], pair["down"]
    data = bundle("weather", "1.0.0")
    status, published = await publish(up.client, data, pair["alice"])
    assert status == 201 and published["state"] == "published"

    status, added = await add_upstream(pair, up.base_url + "/", upstream_key(pair))
    assert status == 201 and added["pinned"] == "given" and added["url"] == up.base_url
    status, again = await add_upstream(pair, up.base_url, upstream_key(pair))
    assert status == 200 and again["created"] is False

    status, answer = await import_release(pair, up.base_url, "alice/weather@1.0.0")
    assert status == 201, answer
    assert (answer["namespace"], answer["name"], answer["version"], answer["state"]) == \
        ("acme", "weather", "1.0.0", "published")
    assert answer["sha256"] == sha256(data) and answer["ledger"]["leaf_index"] is not None
    source = answer["mirrored_from"]
    assert source["upstream"] == up.base_url and source["release"] == "alice/weather@1.0.0"
    assert source["leaf_index"] == published["ledger"]["leaf_index"] and source["mirrored_by"] == "root"

    # The kept checkpoint and proof verify on their own, under the upstream's key, for these bytes.
    checkpoint = open_checkpoint(source["checkpoint"], [notes.parse_vkey(upstream_key(pair))])
    leaf = json.loads(source["leaf"])
    assert leaf["sha256"] == sha256(data) and leaf["publisher"] == "alice"
    verify_inclusion(source["leaf_index"], checkpoint.size, leaf_hash(source["leaf"].encode()),
                     [notes.unb64(h) for h in source["inclusion_proof"]], checkpoint.root)

    # The same bytes are served here (to those who may see the org's package), with where they came from.
    status, body, _ = await down.client.with_token(pair["admin"]).get("/bundles/" + sha256(data) + ".mcpb")
    assert status == 200 and body == data
    status, page, _ = await down.client.get("/api/packages/acme/weather")
    assert status == 404  # an org package: members and admins only
    status, page, _ = await down.client.with_token(pair["admin"]).get("/api/packages/acme/weather/versions/1.0.0")
    assert status == 200 and page["mirrored_from"]["upstream"] == up.base_url
    assert page["mirrored_from"]["checkpoint"] == source["checkpoint"]
    # ... and this appliance logged the release in its own ledger, as any publish.
    entry = await down.services.ledger.entry(answer["ledger"]["leaf_index"])
    assert entry is not None

    # Importing it again changes nothing and answers what the first import made.
    before = await state(down)
    status, twice = await import_release(pair, up.base_url, "alice/weather@1.0.0")
    assert status == 200 and twice["created"] is False and twice["mirrored_from"]["leaf_index"] == source["leaf_index"]
    assert await state(down) == before
    await make_org(down, "beta", await down.services.accounts.find_user("root"))
    before = await state(down)
    status, body = await import_release(pair, up.base_url, "alice/weather@1.0.0", org="beta")
    assert status == 409 and body["error"]["code"] == "already_mirrored"
    assert await state(down) == before
    actions = [r["action"] for r in await down.services.db.fetch_all("SELECT action FROM audit_events ORDER BY id")]
    assert "mirror.upstream_add" in actions and "mirror.import" in actions


async def test_updates_wait_for_approval(pair):
    up, down = pair["up"], pair["down"]
    admin = down.client.with_token(pair["admin"])
    await publish(up.client, bundle("weather", "1.0.0"), pair["alice"])
    await add_upstream(pair, up.base_url, None)  # trust on first use: the key served now is pinned
    [row] = await down.services.db.fetch_all("SELECT ledger_key, pinned FROM mirror_upstreams")
    assert row == {"ledger_key": upstream_key(pair), "pinned": "first-use"}
    status, body, _ = await admin.post("/api/admin/mirror/imports", json={
        "upstream": up.base_url, "release": "alice/weather@1.0.0", "org": "acme", "visibility": "public"})
    assert status == 201 and body["visibility"] == "public"
    status, page, _ = await down.client.get("/api/packages/acme/weather")  # public: anyone sees its provenance
    assert status == 200 and page["mirrored_from"]["release"] == "alice/weather@1.0.0"

    status, found, _ = await admin.post("/api/admin/mirror/check")
    assert status == 200 and found == {"found": [], "errors": []}
    for version in ("1.1.0", "1.2.0"):
        await publish(up.client, bundle("weather", version), pair["alice"])
    versions_before = await down.services.db.fetch_value("SELECT count(*) FROM versions")
    status, found, _ = await admin.post("/api/admin/mirror/check")
    assert status == 200 and [u["version"] for u in found["found"]] == ["1.1.0", "1.2.0"]
    assert all(u["status"] == "pending" and u["package"] == "acme/weather" for u in found["found"])
    # Found is not imported: nothing changes in the catalog until an admin approves.
    assert await down.services.db.fetch_value("SELECT count(*) FROM versions") == versions_before
    status, again, _ = await admin.post("/api/admin/mirror/check")
    assert again["found"] == []  # a version is offered once

    first, second = found["found"]
    status, imported, _ = await admin.post(f"/api/admin/mirror/pending/{first['id']}/approve")
    assert status == 201 and imported["version"] == "1.1.0" and imported["state"] == "published"
    status, rejected, _ = await admin.post(f"/api/admin/mirror/pending/{second['id']}/reject",
                                           json={"reason": "not yet"})
    assert status == 200 and rejected["status"] == "rejected" and rejected["decided_by"] == "root"
    status, refused, _ = await admin.post(f"/api/admin/mirror/pending/{second['id']}/approve")
    assert status == 409 and refused["error"]["code"] == "already_decided"
    status, listing, _ = await admin.get("/api/admin/mirror/pending", params={"status": "all"})
    assert [(u["version"], u["status"]) for u in listing["updates"]] == [("1.1.0", "approved"), ("1.2.0", "rejected")]
    assert await down.services.db.fetch_value(
        "SELECT count(*) FROM versions v JOIN packages p ON p.id = v.package_id WHERE p.namespace = 'acme'") == 2
    # Only site administrators reach the mirror.
    _, member = await user(down, "bob", scopes=("read", "publish"))
    status, body, _ = await down.client.with_token(member).post("/api/admin/mirror/check")
    assert status == 403


async def test_wrong_pinned_key_refused(pair):
    up, down = pair["up"], pair["down"]
    await publish(up.client, bundle("weather", "1.0.0"), pair["alice"])
    # The same upstream under another name, pinned to a key that is not its own (the downstream's).
    other = up.base_url.replace("127.0.0.1", "localhost")
    status, _ = await add_upstream(pair, other, down.services.ledger.verifier_key())
    assert status == 201
    before = await state(down)
    status, body = await import_release(pair, other, "alice/weather@1.0.0")
    assert status == 422 and body["error"]["code"] == "upstream_different_key", body
    assert await state(down) == before
    # Re-adding an upstream with another key is refused; the pin stays.
    status, body = await add_upstream(pair, other, upstream_key(pair))
    assert status == 409 and body["error"]["code"] == "upstream_key_differs"


async def test_forked_upstream_refused(pair, start_app, tmp_path):
    """The upstream's operator restores an old backup (same key) and the copies diverge: the mirror kept the
    newer checkpoint, and the fork cannot prove it extends it."""
    import shutil

    up, down = pair["up"], pair["down"]
    await publish(up.client, bundle("weather", "1.0.0"), pair["alice"])
    restored = tmp_path / "restored"
    restored.mkdir()
    await up.services.db.backup_to(restored / "mcpstore.sqlite3")
    shutil.copytree(up.data_dir / "keys", restored / "keys")
    await publish(up.client, bundle("other", "1.0.0"), pair["alice"])
    proxy = await pair["proxy"]()  # the upstream's one address, in front of whichever copy serves it
    await add_upstream(pair, proxy.base_url, upstream_key(pair))
    status, body = await import_release(pair, proxy.base_url, "alice/other@1.0.0")
    assert status == 201, body

    fork = await start_app(data_dir=restored, ledger={"origin": up.services.ledger.origin,
                                                       "checkpoint_interval_seconds": 0})
    assert fork.services.ledger.verifier_key() == upstream_key(pair)
    for name in ("evil", "more"):
        await publish(fork.client, bundle(name, "1.0.0"), pair["alice"])
    proxy.target = fork.base_url
    before = await state(down)
    status, body = await import_release(pair, proxy.base_url, "alice/evil@1.0.0")
    assert status == 422 and body["error"]["code"] == "upstream_inconsistent_log", body
    assert await state(down) == before


@pytest.mark.parametrize("tamper", ["bytes", "bytes_and_metadata", "proof"])
async def test_tampering_upstream_refused(pair, tamper):
    up, down = pair["up"], pair["down"]
    data = bundle("weather", "1.0.0")
    await publish(up.client, data, pair["alice"])
    proxy = await pair["proxy"]()
    altered = data[:-1] + bytes([data[-1] ^ 1])  # the zip's last byte (its comment length's high byte) flipped
    if tamper in ("bytes", "bytes_and_metadata"):
        proxy.alter["/bundles/"] = lambda body: altered
    if tamper == "bytes_and_metadata":
        proxy.alter["/api/packages/"] = lambda body: body.replace(sha256(data).encode(), sha256(altered).encode())
        proxy.serve["/bundles/" + sha256(altered) + ".mcpb"] = altered
    if tamper == "proof":
        def bad_proof(body: bytes) -> bytes:
            answer = json.loads(body)
            first = notes.unb64(answer["inclusion_proof"][0]) if answer["inclusion_proof"] else b"\0" * 32
            answer["inclusion_proof"] = [notes.b64(bytes([first[0] ^ 1]) + first[1:])] + answer["inclusion_proof"][1:]
            return json.dumps(answer).encode()
        proxy.alter["/ledger/proof/inclusion"] = bad_proof
        await publish(up.client, bundle("other", "1.0.0"), pair["alice"])  # a tree of 2: the proof has a hash
    status, _ = await add_upstream(pair, proxy.base_url, upstream_key(pair))
    assert status == 201
    before = await state(down)
    status, body = await import_release(pair, proxy.base_url, "alice/weather@1.0.0")
    expected = {"bytes": (422, "upstream_bytes_mismatch"), "bytes_and_metadata": (422, "upstream_bytes_mismatch"),
                "proof": (422, "upstream_bad_proof")}[tamper]
    assert (status, body["error"]["code"]) == expected, body
    assert await state(down) == before


async def test_oversized_upstream_answers_refused(pair, start_app):
    up = pair["up"]
    big = bundle("weather", "1.0.0", extra={"server/data.bin": os.urandom(20_000)})
    await publish(up.client, big, pair["alice"])
    # A downstream whose bundle limit is below the bundle: the download stops at the limit.
    small = await start_app(publish={"max_bundle_bytes": 10_000})
    root, admin = await user(small, "root", admin=True, scopes=("read",))
    await make_org(small, "acme", root)
    client = small.client.with_token(admin)
    await client.post("/api/admin/mirror/upstreams", json={"url": up.base_url, "key": upstream_key(pair)})
    before = await state(small)
    status, body, _ = await client.post("/api/admin/mirror/imports", json={
        "upstream": up.base_url, "release": "alice/weather@1.0.0", "org": "acme"})
    assert status == 413 and body["error"]["code"] == "bundle_too_large", body
    assert await state(small) == before
    # An upstream that answers a metadata read with megabytes is cut off.
    proxy = await pair["proxy"]()
    proxy.alter["/api/packages/"] = lambda body: b'{"x": "' + b"a" * 2_000_000 + b'"}'
    await add_upstream(pair, proxy.base_url, upstream_key(pair))
    before = await state(pair["down"])
    status, body = await import_release(pair, proxy.base_url, "alice/weather@1.0.0")
    assert status == 502 and body["error"]["code"] == "upstream_answer_too_large", body
    assert await state(pair["down"]) == before


async def test_scans_here_quarantine_an_upstream_release(pair):
    """The upstream's admin released a bundle its scans flagged; ours flag it again: quarantined, not published."""
    up, down = pair["up"], pair["down"]
    status, body = await publish(up.client, bundle("weather", "1.0.0", extra=QUARANTINE), pair["alice"])
    assert body["state"] == "quarantined"
    status, body, _ = await up.client.with_token(pair["up_admin"]).post(
        "/api/admin/quarantine/alice/weather/1.0.0/release", json={})
    assert status == 200 and body["state"] == "published"
    await add_upstream(pair, up.base_url, upstream_key(pair))
    leaves = await down.services.db.fetch_value("SELECT count(*) FROM ledger_leaves")
    status, answer = await import_release(pair, up.base_url, "alice/weather@1.0.0")
    assert status == 201 and answer["state"] == "quarantined" and answer["ledger"] is None
    assert answer["mirrored_from"]["leaf_index"] is not None  # provenance kept for the admin's review
    assert await down.services.db.fetch_value("SELECT count(*) FROM ledger_leaves") == leaves
    status, _, _ = await down.client.get(f"/bundles/{answer['sha256']}.mcpb")
    assert status == 404


REFUSED_URLS = [
    ("ftp://example.com", "invalid_upstream"),
    ("file:///etc/passwd", "invalid_upstream"),
    ("http://169.254.169.254/latest", "upstream_address_refused"),  # the cloud metadata service
    ("http://[fe80::1]:8080", "upstream_address_refused"),
    ("http://[::ffff:169.254.169.254]", "upstream_address_refused"),
    ("http://metadata.google.internal", "upstream_address_refused"),
    ("http://user:pw@example.com", "invalid_upstream"),
]


async def test_upstream_urls_refused(pair):
    before = await state(pair["down"])
    for url, code in REFUSED_URLS:
        status, body = await add_upstream(pair, url, upstream_key(pair))
        assert (status, body["error"]["code"]) == (400, code), (url, body)
        status, body = await import_release(pair, url, "alice/weather@1.0.0")
        assert (status, body["error"]["code"]) == (400, code), (url, body)
    assert await state(pair["down"]) == before


async def test_bad_requests_change_nothing(pair):
    up = pair["up"]
    await add_upstream(pair, up.base_url, upstream_key(pair))
    before = await state(pair["down"])
    for release, org, status_code, code in [
        ("alice/weather", "acme", 400, "invalid_release"),
        ("alice/weather@not-semver", "acme", 400, "invalid_release"),
        ("alice/weather@1.0.0", "nope", 404, "no_such_org"),
        ("alice/missing@1.0.0", "acme", 502, "upstream_refused"),
    ]:
        status, body = await import_release(pair, up.base_url, release, org)
        assert (status, body["error"]["code"]) == (status_code, code), (release, body)
    status, body = await import_release(pair, "http://127.0.0.1:9", "alice/weather@1.0.0")
    assert status == 404 and body["error"]["code"] == "unknown_upstream"
    status, body, _ = await pair["down"].client.with_token(pair["admin"]).post(
        "/api/admin/mirror/imports", json={"upstream": up.base_url, "release": "a/b@1.0.0", "org": "acme", "x": 1})
    assert status == 400
    assert await state(pair["down"]) == before


# --- the operator's commands --------------------------------------------------------------------------------

async def mcpstore(data_dir, *args: str, input: str | None = None):
    """`mcpstore …` in its own process; in a thread, so that the in-process upstream keeps answering."""
    import asyncio
    import os
    import subprocess
    import sys

    env = {**os.environ, "MCPSTORE_HOSTED__BACKEND": "off", "MCPSTORE_LEDGER__CHECKPOINT_INTERVAL_SECONDS": "0"}
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "mcpstore_appliance.cli.main", *args,
                                                    "--data", str(data_dir)],
                                   input=input, capture_output=True, text=True, timeout=120, env=env)


async def test_mirror_cli(start_app, tmp_path):
    up = await start_app()
    _, alice = await user(up, "alice")
    await publish(up.client, bundle("weather", "1.0.0"), alice)
    data = tmp_path / "downstream"
    # The data folder with its administrator and org, made in-process (each command's start costs seconds).
    services = await build_services(make_settings(data), sandboxes=False)
    try:
        root = await services.accounts.create_user("r@example.com", "root", None, is_admin=True)
        await services.accounts.create_org(None, "acme", "Acme", owner=root)
    finally:
        await close_services(services)

    done = await mcpstore(data, "admin", "mirror", "upstream", "add", up.base_url, "--key",
                          up.services.ledger.verifier_key())
    assert done.returncode == 0 and "pinned ledger key" in done.stderr, done.stderr
    done = await mcpstore(data, "admin", "mirror", "add", up.base_url, "alice/weather@1.0.0", "--org", "acme")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["state"] == "published" and answer["mirrored_from"]["upstream"] == up.base_url

    await publish(up.client, bundle("weather", "1.1.0"), alice)
    done = await mcpstore(data, "admin", "mirror", "check")
    assert done.returncode == 0 and "acme/weather@1.1.0" in done.stdout, done.stderr
    pending_id = done.stdout.split("\t")[0]
    done = await mcpstore(data, "admin", "mirror", "approve", pending_id)
    assert done.returncode == 0 and json.loads(done.stdout)["version"] == "1.1.0", done.stderr


# --- the admin page --------------------------------------------------------------------------------------

async def test_mirror_admin_page(start_app):
    from tests.integration.test_pages import Browser

    up, down = await start_app(), await start_app()
    _, alice = await user(up, "alice")
    await publish(up.client, bundle("weather", "1.0.0"), alice)
    root, _ = await down.user("root", admin=True)
    await make_org(down, "acme", root)
    await down.user("bob")
    browser, other = Browser(down.base_url), Browser(down.base_url)
    try:
        await other.log_in("bob")
        status, _, _ = await other.get("/admin/mirror")
        assert status == 403
        await browser.log_in("root")
        status, html, _ = await browser.post("/admin/mirror/upstreams", {"url": "http://169.254.169.254"},
                                             token_from="/admin/mirror")
        assert status == 400 and "link-local" in html
        status, html, response = await browser.post("/admin/mirror/upstreams", {"url": up.base_url, "key": ""},
                                                    token_from="/admin/mirror")
        assert status == 200 and response.url.path == "/admin/mirror" and "on first use" in html
        assert up.services.ledger.verifier_key() in html
        status, html, _ = await browser.post("/admin/mirror/imports", {
            "upstream": up.base_url, "release": "alice/weather@1.0.0", "org": "acme"}, token_from="/admin/mirror")
        assert status == 200 and "The release was imported." in html
        await publish(up.client, bundle("weather", "1.1.0"), alice)
        status, html, _ = await browser.post("/admin/mirror/check", {}, token_from="/admin/mirror")
        assert status == 200 and 'data-update="acme/weather@1.1.0"' in html
        [pending] = await down.services.mirror.pending()
        status, html, _ = await browser.post(f"/admin/mirror/pending/{pending['id']}/approve", {},
                                             token_from="/admin/mirror")
        assert status == 200 and "The update was imported." in html and "No update waits." in html
        status, html, _ = await browser.get("/packages/acme/weather")
        assert status == 200 and 'id="mirrored-from"' in html and up.base_url in html
    finally:
        await browser.close()
        await other.close()


async def test_timer_checks_when_configured(start_app):
    """`[mirror] check_interval_seconds` finds updates by itself (and still imports nothing)."""
    import asyncio

    up = await start_app()
    down = await start_app(mirror={"check_interval_seconds": 0.2})
    _, alice = await user(up, "alice")
    root, _ = await user(down, "root", admin=True)
    await make_org(down, "acme", root)
    admin = await down.services.accounts.principal_for_user(root.id)
    await publish(up.client, bundle("weather", "1.0.0"), alice)
    await down.services.mirror.add_upstream(admin, up.base_url, up.services.ledger.verifier_key())
    await down.services.mirror.import_release(admin, up.base_url, "alice/weather@1.0.0", "acme")
    await publish(up.client, bundle("weather", "2.0.0"), alice)
    for _ in range(100):
        if pending := await down.services.mirror.pending():
            break
        await asyncio.sleep(0.05)
    assert [(p["version"], p["status"]) for p in pending] == [("2.0.0", "pending")]
    assert await down.services.db.fetch_value("SELECT count(*) FROM versions") == 1
