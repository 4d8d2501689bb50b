"""Private and org packages appear only to those who may see them, on every discovery endpoint: search
results, totals, facets and typo corrections; package data, versions, version detail, update checks, stats,
both download URLs; and the MCP Registry API. Two organizations, a personal private package and anonymous
callers; a hidden package answers exactly like a missing one."""

from __future__ import annotations

import urllib.parse

import pytest

from tests.seed import FAST_LEDGER, bundle_for, make_org, publish

PREFIX = "com.example.mcp"
PACKAGES = {
    # id: (owner, visibility, category, description)
    "alice/public-tool": ("alice", None, "public-cat", "sharedword public thing"),
    "alice/alice-private": ("alice", "private", "alice-cat", "sharedword aliceonly notes"),
    "acme/acme-internal": ("amy", None, "acme-cat", "sharedword acmeonly internal"),  # org default
    "acme/acme-secret": ("amy", "private", "secret-cat", "sharedword acmesecret vault"),
    "globex/globex-internal": ("gina", "org", "globex-cat", "sharedword globexonly reactor"),
}
# Who sees what. acme-secret (private in an org) is for the org's owners, admins and publishers only.
SEES = {
    None: {"alice/public-tool"},
    "olga": {"alice/public-tool"},
    "alice": {"alice/public-tool", "alice/alice-private"},
    "amy": {"alice/public-tool", "acme/acme-internal", "acme/acme-secret"},
    "andy": {"alice/public-tool", "acme/acme-internal"},
    "gina": {"alice/public-tool", "globex/globex-internal"},
    "gus": {"alice/public-tool", "globex/globex-internal"},
}


@pytest.fixture
async def world(start_app):
    app = await start_app(**FAST_LEDGER, registry={"name_prefix": PREFIX})
    tokens = {}
    for name in ("alice", "amy", "andy", "gina", "gus", "olga"):
        _, tokens[name] = await app.user(name)
    await make_org(app, tokens["amy"], "acme", {"andy": "member"})
    await make_org(app, tokens["gina"], "globex", {"gus": "member"})
    shas = {}
    for package_id, (owner, visibility, category, description) in PACKAGES.items():
        namespace, name = package_id.split("/")
        options = {"category": category, **({"visibility": visibility} if visibility else {})}
        body = await publish(app, tokens[owner], name, namespace=namespace, description=description,
                             options=options)
        assert body["visibility"] == (visibility or ("public" if namespace == "alice" else "org"))
        shas[package_id] = bundle_for(name, description=description)[1]
    return app, tokens, shas


def client(app, tokens, who):
    return app.client.with_token(tokens[who] if who else None)


async def answer(app, tokens, who, path):
    status, body, _ = await client(app, tokens, who).get(path)
    return status, body


@pytest.mark.parametrize("who", list(SEES))
async def test_search_results_totals_and_facets(world, who):
    app, tokens, _ = world
    visible = SEES[who]
    status, body = await answer(app, tokens, who, "/api/packages?q=sharedword&limit=100")
    assert status == 200 and {p["id"] for p in body["packages"]} == visible
    assert body["total"] == len(visible)
    categories = {PACKAGES[p][2] for p in visible}
    assert set(body["facets"]["category"]) == categories
    assert sum(body["facets"]["pricing"].values()) == len(visible)
    status, body = await answer(app, tokens, who, "/api/packages?limit=100")  # browsing without text
    assert {p["id"] for p in body["packages"]} == visible and body["total"] == len(visible)
    for org in ("acme", "globex"):
        status, body = await answer(app, tokens, who, f"/api/packages?org={org}")
        assert {p["id"] for p in body["packages"]} == {p for p in visible if p.startswith(org + "/")}
    # A word only hidden packages contain finds nothing and suggests nothing, typo or not.
    for word in ("acmesecret", "acmesecrte", "globexonly", "globexonyl", "aliceonly"):
        status, body = await answer(app, tokens, who, f"/api/packages?q={word}")
        expected = {p for p in visible if word[:6] in PACKAGES[p][3]}
        assert {p["id"] for p in body["packages"]} == expected, word
        if not expected:
            assert body["query"]["corrected_query"] is None and body["facets"]["category"] == {}


@pytest.mark.parametrize("who", list(SEES))
async def test_package_endpoints(world, who):
    app, tokens, shas = world
    visible = SEES[who]
    for package_id in PACKAGES:
        paths = [f"/api/packages/{package_id}", f"/api/packages/{package_id}/versions",
                 f"/api/packages/{package_id}/versions/1.0.0", f"/api/packages/{package_id}/versions/latest",
                 f"/api/packages/{package_id}/latest?current=0.1.0", f"/api/packages/{package_id}/stats",
                 f"/api/packages/{package_id}/versions/1.0.0/download", f"/bundles/{shas[package_id]}.mcpb"]
        for path in paths:
            status, body = await answer(app, tokens, who, path)
            if package_id in visible:
                assert status == 200, (who, path, body)
            else:
                assert status == 404, (who, path, status)
                # Exactly the answer of a package that does not exist.
                missing_path = path.replace(package_id.split("/")[1], "no-such-thing")
                if "/bundles/" in path:
                    missing_path = "/bundles/" + "0" * 64 + ".mcpb"
                _, missing = await answer(app, tokens, who, missing_path)
                assert body["error"]["code"] == missing["error"]["code"], path
                assert body["error"]["message"] == missing["error"]["message"].replace("no-such-thing",
                                                                                       package_id.split("/")[1])


@pytest.mark.parametrize("who", list(SEES))
async def test_registry_api(world, who):
    app, tokens, _ = world
    visible = SEES[who]
    names = {f"{PREFIX}.{p.split('/')[0]}/{p.split('/')[1]}": p for p in PACKAGES}
    status, body = await answer(app, tokens, who, "/v0.1/servers?limit=100")
    assert status == 200 and {names[e["server"]["name"]] for e in body["servers"]} == visible
    status, body = await answer(app, tokens, who, "/v0.1/servers?search=sharedword&version=latest")
    assert {names[e["server"]["name"]] for e in body["servers"]} == visible
    for server_name, package_id in names.items():
        quoted = urllib.parse.quote(server_name, safe="")
        for path in (f"/v0.1/servers/{quoted}/versions", f"/v0.1/servers/{quoted}/versions/latest",
                     f"/v0/servers/{quoted}/versions/1.0.0"):
            status, body = await answer(app, tokens, who, path)
            if package_id in visible:
                assert status == 200, (who, path)
            else:
                assert (status, body) == (404, {"error": "Server not found"}), (who, path)


async def test_a_token_bound_to_one_org_sees_only_that_org(world):
    app, tokens, _ = world
    await make_org(app, tokens["amy"], "initech", {"gina": "member"})
    status, body, _ = await app.client.with_token(tokens["gina"]).post(
        "/api/tokens", json={"name": "ci", "scopes": ["read"], "org": "initech"})
    assert status == 201, body
    bound = body["token"]
    status, body, _ = await app.client.with_token(bound).get("/api/packages?q=sharedword")
    assert {p["id"] for p in body["packages"]} == {"alice/public-tool"}  # not globex's packages
    status, _, _ = await app.client.with_token(bound).get("/api/packages/globex/globex-internal")
    assert status == 404


async def test_visibility_change_takes_effect_at_once(world):
    app, tokens, _ = world
    await publish(app, tokens["alice"], "public-tool", "1.1.0", description="sharedword public thing",
                  options={"visibility": "private"})
    status, body = await answer(app, tokens, None, "/api/packages?q=sharedword")
    assert body["packages"] == [] and body["total"] == 0 and body["facets"]["category"] == {}
    status, _ = await answer(app, tokens, None, "/api/packages/alice/public-tool")
    assert status == 404
    status, body = await answer(app, tokens, "alice", "/api/packages?q=sharedword")
    assert {p["id"] for p in body["packages"]} == {"alice/public-tool", "alice/alice-private"}


@pytest.mark.parametrize("batch", [(2, 20, 500, 500), (1, 1, 2, 2)])
async def test_ranking_never_shows_hidden_candidates(world, batch):
    """Relevance pages rank in the full-text index first and then drop what the caller may not see; when the
    best candidates are all hidden, the page still fills from visible ones (the (1, 1, 2) batch forces the
    joined fallback)."""
    app, tokens, _ = world
    search = app.services.discovery.search
    rankings = search.rankings
    rankings.factor, rankings.low, rankings.high, rankings.keep = batch
    for i in range(4):  # hidden packages that outrank every public one (the word is in their name)
        await publish(app, tokens["amy"], f"rankword-{i}", namespace="acme", description="rankword rankword",
                      options={"visibility": "private"})
    for i in range(3):
        await publish(app, tokens["alice"], f"plain-{i}", description=f"mentions rankword once ({i})")
    walked, cursor = [], None
    while True:
        query = {"q": "rankword", "limit": 2, **({"cursor": cursor} if cursor else {})}
        status, body = await answer(app, tokens, None, "/api/packages?" + urllib.parse.urlencode(query))
        assert status == 200 and body["total"] == 3
        walked += [p["id"] for p in body["packages"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(walked) == ["alice/plain-0", "alice/plain-1", "alice/plain-2"] and len(set(walked)) == 3
    status, body = await answer(app, tokens, "amy", "/api/packages?q=rankword&limit=10")
    assert [p["id"] for p in body["packages"]][:4] == [f"acme/rankword-{i}" for i in range(4)] or \
        {p["id"] for p in body["packages"][:4]} == {f"acme/rankword-{i}" for i in range(4)}
