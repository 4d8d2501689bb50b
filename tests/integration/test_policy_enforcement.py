"""The appliance enforces an org's group policy on callers acting for the org (an org-bound token, a device
token, or a member naming it in X-Mcpstore-Org): downloads, update checks and /v0.1 single reads refuse with
403 policy_refused naming the rule; /v0.1 listings leave refused entries out. Callers acting for no org, and
other orgs, are unaffected."""

from __future__ import annotations

import pytest

from mcpstore_appliance.catalog.registry_view import OFFICIAL
from tests.seed import make_org, publish

ORG = {"X-Mcpstore-Org": "acme"}
PUBLIC = {"visibility": "public"}


@pytest.fixture
async def world(start_app):
    app = await start_app()
    _, alice = await app.user("alice")
    _, bob = await app.user("bob")
    _, mallory = await app.user("mallory")
    _, eve = await app.user("eve")
    await make_org(app, alice, "acme", {"bob": "member"})
    await make_org(app, mallory, "shady")
    await make_org(app, eve, "evil")
    for version in ("1.0.0", "1.2.0", "2.0.0"):
        await publish(app, alice, "tool", version, namespace="acme", options=PUBLIC)
    await publish(app, mallory, "grab", namespace="shady", options=PUBLIC)
    await publish(app, alice, "plain", namespace="acme", options=PUBLIC)
    status, bound, _ = await app.client.with_token(bob).post(
        "/api/tokens", json={"name": "ci", "scopes": ["read"], "org": "acme"})
    assert status == 201, bound
    status, device, _ = await app.client.with_token(alice).post("/api/orgs/acme/device-tokens", json={"name": "mdm"})
    assert status == 201, device
    return {"app": app, "alice": app.client.with_token(alice), "bob": app.client.with_token(bob),
            "bound": app.client.with_token(bound["token"]), "device": app.client.with_token(device["token"]),
            "eve": app.client.with_token(eve), "anon": app.client}


async def _set_policy(world, **policy) -> None:
    status, body, _ = await world["alice"].put("/api/orgs/acme/policy", json={"policy": policy})
    assert status == 200, body


def _refused(status, body, rule: str) -> None:
    assert status == 403, body
    error = body["error"]
    assert error["code"] == "policy_refused" and error["details"]["rule"] == rule, error
    assert error["details"]["org"] == "acme" and error["details"]["reason"] in error["message"]


# Every way of acting for acme: the member naming it, the org-bound token, a device token.
CALLERS = [("bob", ORG), ("bound", {}), ("device", {})]


@pytest.mark.parametrize("who, headers", CALLERS)
async def test_a_blocked_publisher_cannot_be_downloaded_by_the_orgs_members(world, who, headers):
    await _set_policy(world, blocked_publishers=["shady"])
    client = world[who]
    status, body, _ = await client.get("/api/packages/shady/grab/versions/1.0.0/download", headers=headers)
    _refused(status, body, "blocked_publisher")
    status, info, _ = await world["anon"].get("/api/packages/shady/grab/versions/1.0.0")
    status, body, _ = await client.get(f"/bundles/{info['sha256']}.mcpb", headers=headers)
    _refused(status, body, "blocked_publisher")
    status, body, _ = await client.get("/api/packages/shady/grab/latest", headers=headers)
    _refused(status, body, "blocked_publisher")
    # the same caller acting for no org, and everyone else, still downloads it
    assert (await world["anon"].get("/api/packages/shady/grab/versions/1.0.0/download"))[0] == 200
    assert (await world["eve"].get("/api/packages/shady/grab/versions/1.0.0/download",
                                   headers={"X-Mcpstore-Org": "evil"}))[0] == 200
    # an allowed package is served to the same caller
    assert (await client.get("/api/packages/acme/plain/versions/1.0.0/download", headers=headers))[0] == 200


@pytest.mark.parametrize("who, headers", CALLERS)
async def test_a_version_below_the_minimum_is_refused(world, who, headers):
    await _set_policy(world, minimum_versions={"acme/tool": "1.2.0"})
    client = world[who]
    status, body, _ = await client.get("/api/packages/acme/tool/versions/1.0.0/download", headers=headers)
    _refused(status, body, "below_minimum_version")
    assert body["error"]["details"]["version"] == "1.0.0"
    assert (await client.get("/api/packages/acme/tool/versions/1.2.0/download", headers=headers))[0] == 200


async def test_update_checks_offer_the_newest_allowed_version(world):
    await _set_policy(world, allowed={"acme/tool": "^1.0.0"})
    status, body, response = await world["bob"].get("/api/packages/acme/tool/latest", params={"current": "1.0.0"},
                                                    headers=ORG)
    assert status == 200 and body["latest_version"] == "1.2.0" and body["update_available"] is True, body
    assert "private" in response.headers["Cache-Control"]
    # without the org's context the newest release is offered
    status, body, _ = await world["bob"].get("/api/packages/acme/tool/latest", params={"current": "1.0.0"})
    assert body["latest_version"] == "2.0.0"
    status, body, _ = await world["anon"].get("/api/packages/acme/tool/latest", params={"current": "1.0.0"})
    assert body["latest_version"] == "2.0.0"


async def test_unsigned_bundles_are_refused_when_signatures_are_required(world):
    await _set_policy(world, require_signature=True)
    status, body, _ = await world["device"].get("/api/packages/acme/plain/versions/1.0.0/download")
    _refused(status, body, "signature_required")
    assert "unsigned" in body["error"]["details"]["reason"]
    status, body, _ = await world["device"].get("/api/packages/acme/plain/latest")
    _refused(status, body, "signature_required")
    # a signed release of the same package passes
    async with world["app"].services.db.write() as tx:
        await tx.execute("UPDATE versions SET signature_status = 'signed' WHERE package_id ="
                         " (SELECT id FROM packages WHERE namespace = 'acme' AND name = 'plain')")
    assert (await world["device"].get("/api/packages/acme/plain/versions/1.0.0/download"))[0] == 200
    status, body, _ = await world["device"].get("/api/packages/acme/plain/latest")
    assert status == 200 and body["latest_version"] == "1.0.0"


def _names(body) -> set[str]:
    return {f"{e['server']['name'].rpartition('.')[2]}@{e['server']['version']}" for e in body["servers"]}


@pytest.mark.parametrize("who, headers", CALLERS)
async def test_registry_listings_leave_out_what_the_policy_refuses(world, who, headers):
    await _set_policy(world, blocked_publishers=["shady"], minimum_versions={"acme/tool": "1.2.0"})
    client = world[who]
    status, body, _ = await client.get("/v0.1/servers", headers=headers)
    assert status == 200, body
    names = _names(body)
    assert "shady/grab@1.0.0" not in names and "acme/tool@1.0.0" not in names
    assert {"acme/tool@1.2.0", "acme/tool@2.0.0", "acme/plain@1.0.0"} <= names
    assert body["metadata"]["count"] == len(body["servers"])
    status, body, _ = await world["anon"].get("/v0.1/servers")
    assert {"shady/grab@1.0.0", "acme/tool@1.0.0"} <= _names(body)  # others see everything public
    prefix = body["servers"][0]["server"]["name"].rpartition(".")[0]
    status, body, _ = await client.get(f"/v0.1/servers/{prefix}.shady%2Fgrab/versions", headers=headers)
    assert status == 200 and body["servers"] == []
    status, body, _ = await client.get(f"/v0.1/servers/{prefix}.acme%2Ftool/versions/1.0.0", headers=headers)
    assert status == 403 and "minimum version" in body["error"]
    status, body, _ = await client.get(f"/v0.1/servers/{prefix}.acme%2Ftool/versions/1.2.0", headers=headers)
    assert status == 200 and body["_meta"][OFFICIAL]["status"] == "active"


@pytest.mark.parametrize("who, headers, status, code", [
    ("anon", ORG, 401, "unauthenticated"),  # naming an org needs a signed-in member
    ("eve", ORG, 404, "not_found"),  # a foreign org looks missing
    ("bob", {"X-Mcpstore-Org": "nosuch"}, 404, "not_found"),
    ("bound", {"X-Mcpstore-Org": "evil"}, 403, "org_bound_token"),  # a bound token acts for its org only
    ("device", {"X-Mcpstore-Org": "evil"}, 403, "org_bound_token"),
])
async def test_bad_org_contexts_are_refused(world, who, headers, status, code):
    await _set_policy(world, blocked_publishers=["shady"])
    got, body, _ = await world[who].get("/api/packages/acme/plain/versions/1.0.0/download", headers=headers)
    assert (got, body["error"]["code"]) == (status, code), body


async def test_device_tokens_are_checked_like_other_credentials(world):
    status, body, _ = await world["anon"].with_token("mcpd_forged").get("/api/packages/acme/plain/latest")
    assert (status, body["error"]["code"]) == (401, "invalid_device_token")
    # a device token is not a user: routes that need one refuse it
    status, body, _ = await world["device"].get("/api/me")
    assert status == 401


def shared_cache_key(path: str, request_headers: dict[str, str], response) -> tuple:
    """What a shared cache keys a stored answer by (RFC 9111 4.1): the URL and the request's values of the
    headers the answer's Vary names."""
    sent = {name.lower(): value for name, value in request_headers.items()}
    named = sorted(n.strip().lower() for n in response.headers.get("Vary", "").split(",") if n.strip())
    return path, tuple((name, sent.get(name)) for name in named)


async def test_answers_the_org_header_chose_vary_on_it(world):
    """The same URL and credential with and without X-Mcpstore-Org are answered differently (policy), so every
    such answer, refusals included, names the header in Vary: a cache keys them apart."""
    await _set_policy(world, allowed={"acme/tool": "^1.0.0"}, blocked_publishers=["shady"])
    token = {"Authorization": f"Bearer {world['bob'].token}"}
    _, info, _ = await world["anon"].get("/api/packages/shady/grab/versions/1.0.0")
    for path in ("/api/packages/acme/tool/latest?current=1.0.0", "/api/packages/shady/grab/versions/1.0.0/download",
                 f"/bundles/{info['sha256']}.mcpb", "/v0.1/servers", "/api/packages/shady/grab/latest"):
        answers = []
        for headers in (token, {**token, **ORG}):
            status, body, response = await world["anon"].get(path, headers=headers)
            vary = [name.strip() for name in response.headers.get("Vary", "").split(",")]
            assert {"Authorization", "Cookie", "X-Mcpstore-Org"} <= set(vary) and len(vary) == len(set(vary)), (
                path, response.headers.get("Vary"))
            answers.append(((status, body), shared_cache_key(path, headers, response)))
        (plain, plain_key), (org, org_key) = answers
        assert plain != org and plain_key != org_key, path
    # an answer no org's policy touches does not vary on the header
    _, _, response = await world["bob"].get("/api/packages/acme/plain", headers=ORG)
    assert "X-Mcpstore-Org" not in response.headers.get("Vary", "")
