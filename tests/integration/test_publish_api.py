"""POST /api/packages against the real app: what a publish stores, and every bad input that reaches HTTP
answered with a clear 4xx that stores nothing (no row, no leaf, no blob, no temp file)."""

from __future__ import annotations

import json
import os

import aiohttp
import pytest

from tests.data.bundles import bundle_bytes, make_identity, make_zip, node_manifest, sign_bytes
from tests.integration.publish_support import (
    FAST_LEDGER,
    OCTET,
    assert_nothing_stored,
    bundle,
    check_proof,
    expire_token,
    make_org,
    publish,
    sha256,
    snapshot,
    user,
)


@pytest.fixture
async def app(start_app):
    return await start_app(ledger=FAST_LEDGER)


async def test_publish_stores_version_blob_leaf_and_audit(app):
    alice, token = await user(app, "alice")
    data = bundle("weather", "1.2.0", display_name="Weather", keywords=["forecast"])
    status, body = await publish(app.client, data, token, pricing="per_call", amount="0.10", currency="usd",
                                 category="developer-tools", changelog="first release")
    assert status == 201, body
    assert body["state"] == "published"
    assert (body["namespace"], body["name"], body["version"]) == ("alice", "weather", "1.2.0")
    assert body["sha256"] == sha256(data) and body["digest"] == "sha256:" + sha256(data)
    assert body["size"] == len(data)
    assert body["signature"]["status"] == "unsigned" and body["signature"]["fingerprint"] is None
    assert body["findings"] == []
    assert body["pricing"] == {"model": "per_call", "amount": 10, "amount_display": "0.10", "currency": "usd",
                               "tier": "hobbyist", "endpoint": None}
    assert body["package_created"] is True and body["is_latest"] is True
    check_proof(app, body["ledger"])
    leaf = json.loads(body["ledger"]["leaf"])
    assert leaf == {**leaf, "kind": "publish", "namespace": "alice", "name": "weather", "version": "1.2.0",
                    "sha256": sha256(data), "size": len(data), "publisher": "alice", "signer_fingerprint": None}

    db = app.services.db
    version = await db.fetch_one("SELECT * FROM versions WHERE id = ?", (body["id"],))
    assert version["state"] == "published" and version["ledger_index"] == body["ledger"]["leaf_index"]
    assert version["price_amount"] == 10 and version["changelog"] == "first release"
    assert json.loads(version["metadata_json"])["display_name"] == "Weather"
    package = await db.fetch_one("SELECT * FROM packages WHERE id = ?", (body["package_id"],))
    assert package["owner_user_id"] == alice.id and package["org_id"] is None
    assert package["latest_version_id"] == body["id"] and package["category"] == "developer-tools"
    assert package["visibility"] == "public" and package["pricing_model"] == "per_call"
    assert await app.services.blobs.exists(sha256(data))
    audit_row = await db.fetch_one("SELECT * FROM audit_events WHERE action = 'package.publish'")
    assert audit_row["actor"] == "alice" and audit_row["target"] == "alice/weather@1.2.0"
    assert (await snapshot(app))["temp_files"] == []
    assert 'mcpstore_publishes_total{outcome="published"} 1' in app.services.metrics.render()


async def test_identical_bytes_share_one_blob(app):
    _, alice = await user(app, "alice")
    _, bob = await user(app, "bob")
    data = bundle()
    assert (await publish(app.client, data, alice))[0] == 201
    assert (await publish(app.client, data, bob))[0] == 201  # same bytes, another namespace
    state = await snapshot(app)
    assert state["versions"] == 2 and state["blobs"] == [sha256(data)]


async def test_signed_bundle_records_signer(app):
    _, token = await user(app, "alice")
    unsigned = bundle()
    identity = make_identity("Alice Publisher")
    signed = sign_bytes(unsigned, identity)
    status, body = await publish(app.client, signed, token)
    assert status == 201, body
    assert body["signature"]["status"] == "self-signed"
    assert body["signature"]["fingerprint"] == identity.fingerprint
    assert "Alice Publisher" in body["signature"]["subject"]
    assert body["unsigned_sha256"] == sha256(unsigned) and body["sha256"] == sha256(signed)
    assert json.loads(body["ledger"]["leaf"])["signer_fingerprint"] == identity.fingerprint
    row = await app.services.db.fetch_one("SELECT * FROM versions WHERE id = ?", (body["id"],))
    assert row["signer_fingerprint"] == identity.fingerprint and row["signature_status"] == "self-signed"


async def test_multipart_form_publish(app):
    _, token = await user(app, "alice")
    form = aiohttp.FormData()
    form.add_field("visibility", "private")
    form.add_field("pricing", "subscription")
    form.add_field("amount", "2500")
    form.add_field("currency", "sat")
    form.add_field("file", bundle(), filename="hello.mcpb", content_type="application/octet-stream")
    status, body, _ = await app.client.with_token(token).post("/api/packages", data=form)
    assert status == 201, body
    assert body["visibility"] == "private" and body["pricing"]["amount"] == 2500
    assert body["pricing"]["currency"] == "sat"
    # A private personal package: the public log holds only a sealed commitment, not its name.
    leaf = await app.services.db.fetch_one("SELECT * FROM ledger_leaves WHERE idx = ?",
                                           (body["ledger"]["leaf_index"],))
    assert leaf["opening"] is not None and b"hello-node" not in leaf["data"]
    assert json.loads(body["ledger"]["sealed"]["event"])["name"] == "hello-node"  # the owner can open it


async def test_later_publish_keeps_or_replaces_package_settings(app):
    _, token = await user(app, "alice")
    await publish(app.client, bundle(version="1.0.0"), token, pricing="per_call", amount="1", currency="eur")
    status, body = await publish(app.client, bundle(version="1.1.0"), token)
    assert status == 201 and body["pricing"]["amount"] == 100 and body["package_created"] is False
    status, body = await publish(app.client, bundle(version="1.2.0"), token, pricing="free")
    assert body["pricing"]["model"] == "free"
    package = await app.services.db.fetch_one("SELECT * FROM packages")
    assert package["pricing_model"] == "free" and package["price_amount"] == 0


async def test_org_publisher_publishes_into_org(app):
    owner, _ = await user(app, "olga")
    _, dave_token = await user(app, "dave")
    org = await make_org(app, "acme", owner, dave="publisher")
    status, body = await publish(app.client, bundle(), dave_token, namespace="acme")
    assert status == 201, body
    assert body["visibility"] == "org"  # org packages default to members-only
    package = await app.services.db.fetch_one("SELECT * FROM packages")
    assert package["org_id"] == org.id and package["owner_user_id"] is None
    leaf = await app.services.db.fetch_one("SELECT * FROM ledger_leaves")
    assert leaf["org_id"] == org.id and b"acme" not in leaf["data"]  # sealed: the public leaf names nothing


# --- bad input: each a clear 4xx that stores nothing ----------------------------------------------------

async def _refused(app, data, token, expected_status, expected_code, headers=None, **query):
    before = await snapshot(app)
    status, body = await publish(app.client, data, token, headers=headers, **query)
    assert status == expected_status, body
    assert body["error"]["code"] == expected_code, body
    assert body["error"]["message"]
    await assert_nothing_stored(app, before)
    return body["error"]


async def test_empty_body(app):
    _, token = await user(app, "alice")
    error = await _refused(app, b"", token, 400, "empty_body")
    assert "empty" in error["message"]


async def test_empty_chunked_body(app):
    _, token = await user(app, "alice")

    async def nothing():
        return
        yield b""

    await _refused(app, nothing(), token, 400, "empty_body")


async def test_not_a_zip(app):
    _, token = await user(app, "alice")
    error = await _refused(app, b"this is not a zip file\n" * 100, token, 422, "bundle_not_zip")
    assert error["details"]


@pytest.mark.parametrize("case", ["traversal", "duplicate", "truncated", "no_manifest", "bad_version"])
async def test_broken_bundles_rejected(app, case):
    _, token = await user(app, "alice")
    good = bundle()
    data = {
        "traversal": make_zip({"manifest.json": json.dumps(node_manifest()), "server/index.js": "x",
                               "../evil.js": "x"}),
        "duplicate": make_zip([("manifest.json", json.dumps(node_manifest())), ("server/index.js", "x"),
                               ("server/index.js", "y")]),
        "truncated": good[: len(good) // 2],
        "no_manifest": make_zip({"server/index.js": "x"}),
        "bad_version": bundle_bytes(node_manifest(version="2024.03.31.01")),
    }[case]
    before = await snapshot(app)
    status, body = await publish(app.client, data, token)
    assert status == 422, body
    assert body["error"]["details"], body  # the problems are listed
    await assert_nothing_stored(app, before)


async def test_critical_finding_rejects_with_findings(app):
    _, token = await user(app, "alice")
    key_pem = make_identity("leak").key_pem.decode()
    error = await _refused(app, bundle(extra={"server/key.pem": key_pem}), token, 422, "bundle_rejected")
    assert any(p["check_id"] == "secrets.private_key" and p["path"] == "server/key.pem" for p in error["details"])
    assert 'mcpstore_publishes_total{outcome="rejected"} 1' in app.services.metrics.render()


async def test_invalid_signature_rejected(app):
    _, token = await user(app, "alice")
    signed = bytearray(sign_bytes(bundle(), make_identity("Alice")))
    signed[40] ^= 0x01  # a byte inside the signed zip
    await _refused(app, bytes(signed), token, 422, "signature_invalid")


async def test_oversized_body_is_refused_while_streaming(start_app):
    app = await start_app(ledger=FAST_LEDGER, publish={"max_bundle_bytes": 4096})
    _, token = await user(app, "alice")
    big = os.urandom(256 * 1024)
    error = await _refused(app, big, token, 413, "upload_too_large")
    assert error["details"] == {"max_bytes": 4096}

    async def chunked():  # no Content-Length: the cap must bite while reading
        for start in range(0, len(big), 16 * 1024):
            yield big[start:start + 16 * 1024]

    await _refused(app, chunked(), token, 413, "upload_too_large")


async def test_oversized_with_expect_continue_is_refused_before_the_body(start_app):
    app = await start_app(ledger=FAST_LEDGER, publish={"max_bundle_bytes": 4096})
    _, token = await user(app, "alice")
    before = await snapshot(app)
    async with aiohttp.ClientSession() as session:
        async with session.post(app.base_url + "/api/packages", data=os.urandom(64 * 1024), expect100=True,
                                headers={**OCTET, "Authorization": f"Bearer {token}"}) as response:
            assert response.status == 413
            assert (await response.json())["error"]["code"] == "upload_too_large"
    await assert_nothing_stored(app, before)


async def test_existing_version_is_409_also_after_yank(app):
    _, token = await user(app, "alice")
    assert (await publish(app.client, bundle(), token))[0] == 201
    error = await _refused(app, bundle(description="other bytes"), token, 409, "version_exists")
    assert "hello-node@1.0.0 already exists" in error["message"]
    await _refused(app, bundle(), token, 409, "version_exists")  # the very same bytes too
    await _refused(app, bundle(version="1.0.0+build.7"), token, 409, "version_exists")  # same precedence
    status, _, _ = await app.client.with_token(token).post(
        "/api/packages/alice/hello-node/versions/1.0.0/yank", json={"reason": "broken"})
    assert status == 200
    error = await _refused(app, bundle(description="fixed"), token, 409, "version_exists")
    assert "yanked" in error["message"]


async def test_namespace_of_another_user(app):
    await user(app, "alice")
    _, bob = await user(app, "bob")
    mine = await _refused(app, bundle(), bob, 403, "namespace_forbidden", namespace="alice")
    missing = await _refused(app, bundle(), bob, 403, "namespace_forbidden", namespace="nobody")
    # The same answer whether the namespace exists or not: no name is confirmed.
    assert mine["message"].replace("alice", "X") == missing["message"].replace("nobody", "X")


async def test_foreign_org_and_member_without_publishing_role(app):
    owner, _ = await user(app, "olga")
    _, carol = await user(app, "carol")
    _, mallory = await user(app, "mallory")
    await make_org(app, "acme", owner, carol="member")
    foreign = await _refused(app, bundle(), mallory, 403, "namespace_forbidden", namespace="acme")
    missing = await _refused(app, bundle(), mallory, 403, "namespace_forbidden", namespace="acne")
    assert foreign["message"].replace("acme", "X") == missing["message"].replace("acne", "X")
    member = await _refused(app, bundle(), carol, 403, "namespace_forbidden", namespace="acme")
    assert "member" in member["message"]


async def test_org_bound_token_cannot_publish_to_personal_namespace(app):
    owner, _ = await user(app, "olga")
    await make_org(app, "acme", owner)
    accounts = app.services.accounts
    olga = await accounts.principal_for_user(owner.id)
    token, _ = await accounts.create_token(olga, "ci", ["read", "publish"], org_slug="acme")
    await _refused(app, bundle(), token, 403, "namespace_forbidden")
    assert (await publish(app.client, bundle(), token, namespace="acme"))[0] == 201


async def test_token_without_publish_scope(app):
    _, token = await user(app, "reader", scopes=("read",))
    await _refused(app, bundle(), token, 403, "insufficient_scope")


async def test_no_token(app):
    await _refused(app, bundle(), None, 401, "unauthenticated")


async def test_expired_token(app):
    _, token = await user(app, "alice")
    await expire_token(app, token)
    await _refused(app, bundle(), token, 401, "token_expired")


async def test_revoked_token(app):
    alice, token = await user(app, "alice")
    accounts = app.services.accounts
    principal = await accounts.principal_for_user(alice.id)
    for info in await accounts.list_tokens(principal):
        await accounts.revoke_token(principal, info.id)
    await _refused(app, bundle(), token, 401, "token_revoked")


@pytest.mark.parametrize("query,code", [
    ({"pricing": "per_call"}, "invalid_pricing"),
    ({"pricing": "free", "amount": "3"}, "invalid_pricing"),
    ({"pricing": "per_call", "amount": "0.105", "currency": "usd"}, "invalid_pricing"),
    ({"tier": "pro"}, "invalid_pricing"),
    ({"tier": "pro", "endpoint": "http://insecure.example.com"}, "invalid_pricing"),
    ({"visibility": "secret"}, "invalid_visibility"),
    ({"visibility": "org"}, "invalid_visibility"),  # a personal namespace has no org
    ({"category": "Not A Slug"}, "invalid_category"),
    ({"price": "1"}, "unknown_option"),
])
async def test_bad_options(app, query, code):
    _, token = await user(app, "alice")
    error = await _refused(app, bundle(), token, 400, code, **query)
    assert error["message"]


async def test_json_body_is_unsupported_media_type(app):
    _, token = await user(app, "alice")
    await _refused(app, b'{"name": "x"}', token, 415, "unsupported_media_type",
                   headers={"Content-Type": "application/json"})


async def test_multipart_file_must_be_last(app):
    _, token = await user(app, "alice")
    before = await snapshot(app)
    form = aiohttp.FormData()
    form.add_field("file", bundle(), filename="hello.mcpb", content_type="application/octet-stream")
    form.add_field("category", "tools")
    status, body, _ = await app.client.with_token(token).post("/api/packages", data=form)
    assert status == 400 and body["error"]["code"] == "file_not_last"
    await assert_nothing_stored(app, before)


async def test_publish_routes_are_in_openapi(app):
    status, doc, _ = await app.client.get("/api/openapi.json")
    assert status == 200
    assert "post" in doc["paths"]["/api/packages"]
    assert doc["paths"]["/api/packages"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    for action in ("yank", "unyank", "deprecate"):
        assert "post" in doc["paths"][f"/api/packages/{{namespace}}/{{name}}/versions/{{version}}/{action}"]
    assert "get" in doc["paths"]["/api/admin/quarantine"]


async def test_web_session_upload_needs_its_csrf_token_before_the_file(app):
    alice, _ = await user(app, "alice")
    session_id, csrf = await app.services.accounts.start_session(alice)
    cookies = {"Cookie": f"mcpstore_session={session_id}"}

    def form(token: str | None):
        data = aiohttp.FormData()
        if token is not None:
            data.add_field("csrf_token", token)
        data.add_field("file", bundle(), filename="hello.mcpb", content_type="application/octet-stream")
        return data

    before = await snapshot(app)
    for token in (None, "wrong"):
        status, body, _ = await app.client.post("/api/packages", data=form(token), headers=cookies)
        assert status == 403 and body["error"]["code"] == "csrf_failed"
    await assert_nothing_stored(app, before)
    status, body, _ = await app.client.post("/api/packages", data=form(csrf), headers=cookies)
    assert status == 201, body
    # A raw-body upload from a browser session carries the token in a header instead.
    status, body = await publish(app.client, bundle(version="1.0.1"), headers=cookies)
    assert status == 403 and body["error"]["code"] == "csrf_failed"
    status, body = await publish(app.client, bundle(version="1.0.1"), headers={**cookies, "X-CSRF-Token": csrf})
    assert status == 201, body
