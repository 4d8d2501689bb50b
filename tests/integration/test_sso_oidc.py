"""OIDC sign-in against a real OpenID provider (NanoIDP, started offline: tests/nanoidp_fixtures.py), driven over
HTTP as a browser would: org SSO with just-in-time accounts and roles from groups, the site-wide provider, and the
flow's refusals (a replayed state, another browser, no role, a taken e-mail), each audited."""

from __future__ import annotations

from tests.sso_support import browser, callback, idp_login, query_of, sign_in, start_sign_in, sso_world


async def role_of(app, username: str, slug: str = "acme") -> str | None:
    return await app.services.db.fetch_value(
        "SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id JOIN orgs o ON o.id = m.org_id"
        " WHERE u.username = ? AND o.slug = ?", (username, slug))


async def sso_events(app) -> list[tuple[str, str | None]]:
    rows = await app.services.db.fetch_all("SELECT outcome, reason FROM audit_events WHERE action = 'sso.login'"
                                           " ORDER BY id")
    return [(r["outcome"], r["reason"]) for r in rows]


async def test_org_sign_in_makes_the_account_and_follows_the_groups(start_app, tmp_path):
    async with sso_world(start_app, tmp_path / "idp") as world:
        app = world.app
        async with browser() as session:
            authorize = await start_sign_in(session, app.base_url, org="acme", next="/account")
            assert authorize.startswith(world.issuer + "/authorize?")
            sent = query_of(authorize)
            assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) == 43
            assert sent["redirect_uri"] == app.base_url + "/sso/callback" and sent["nonce"] and sent["state"]
            assert sent["client_id"] == "mcpstore" and sent["scope"] == "openid email profile"
        async with browser() as session:
            async with session.get(app.base_url + "/login?org=acme") as page:  # a link the org hands out
                assert "Sign in with Acme SSO" in await page.text()
            async with session.get(app.base_url + "/login?org=nosuch") as page:  # nothing said about others
                assert "Sign in with your organization&#39;s SSO" in await page.text()
            status, location, _ = await sign_in(session, app.base_url, "alice", org="acme", next="/account")
            assert (status, location) == (303, "/account"), _
            async with session.get(app.base_url + "/account") as page:  # signed in: the account page is shown
                assert page.status == 200 and "alice" in await page.text()
        user = await app.services.accounts.find_user("alice")
        assert user.email == "alice@acme.test" and await role_of(app, "alice") == "admin"  # platform -> admin
        assert await app.services.db.fetch_value("SELECT password_hash FROM users WHERE id = ?", (user.id,)) is None

        # The mapping changes at the IdP side of things: the role follows at the next sign-in.
        owner = app.client.with_token(world.owner_token)
        status, body, _ = await owner.put("/api/orgs/acme/sso", json={
            "issuer": world.issuer, "client_id": "mcpstore", "group_roles": {}, "default_role": "publisher"})
        assert status == 200 and body["oidc"]["has_client_secret"] is True  # omitted: the stored secret is kept
        async with browser() as session:
            assert (await sign_in(session, app.base_url, "alice", org="acme"))[0] == 303
        assert await role_of(app, "alice") == "publisher"
        assert await app.services.db.fetch_value("SELECT count(*) FROM users WHERE email = 'alice@acme.test'") == 1

        # No mapped group and no default role: refused, and nothing is made.
        await owner.put("/api/orgs/acme/sso", json={"issuer": world.issuer, "client_id": "mcpstore",
                                                    "group_roles": {"platform": "admin"}, "default_role": None})
        async with browser() as session:
            status, _, page = await sign_in(session, app.base_url, "bob", org="acme")
            assert status == 401 and "no role" in page
        assert await app.services.db.fetch_value("SELECT count(*) FROM users WHERE username = 'bob'") == 0
        assert ("failure", "no_role") in await sso_events(app)

        # A disabled account (deprovisioned by SCIM, say) does not come back through SSO.
        async with app.services.db.write() as tx:
            await tx.execute("UPDATE users SET is_disabled = 1 WHERE username = 'alice'")
        async with browser() as session:
            status, _, page = await sign_in(session, app.base_url, "alice", org="acme")
            assert status == 401 and "disabled" in page


async def test_the_callback_is_single_use_and_bound_to_its_browser(start_app, tmp_path):
    async with sso_world(start_app, tmp_path / "idp") as world:
        base = world.app.base_url
        async with browser() as first, browser() as other:
            url = await idp_login(first, await start_sign_in(first, base, org="acme"), "alice")
            status, _, page = await callback(other, url)  # the code and state, carried to another browser
            assert status == 401 and "another browser" in page
            # The state was spent by that attempt: its own browser cannot use it afterwards either.
            status, _, page = await callback(first, url)
            assert status == 401 and "unknown, used or expired" in page
            url = await idp_login(first, await start_sign_in(first, base, org="acme"), "alice")
            assert (await callback(first, url))[0] == 303
            status, _, page = await callback(first, url)  # replayed
            assert status == 401 and "unknown, used or expired" in page
            forged = url.split("state=")[0] + "state=forged&code=x"
            assert (await callback(first, forged))[0] == 401
        assert [reason for outcome, reason in await sso_events(world.app) if outcome == "failure"] == ["bad_state"] * 4


async def test_site_wide_provider_makes_accounts_without_an_org(start_app, tmp_path):
    async with sso_world(start_app, tmp_path / "idp") as world:
        app = world.app
        async with browser() as session:
            async with session.get(app.base_url + "/login") as page:
                assert "Sign in with NanoIDP" in await page.text()
            status, location, _ = await sign_in(session, app.base_url, "carol", provider="site")
            assert (status, location) == (303, "/dashboard")
        carol = await app.services.accounts.find_user("carol")
        principal = await app.services.accounts.principal_for_user(carol.id)
        assert principal.memberships == {}  # no org
        # An existing password account is not taken over through an IdP that says it has the same address.
        await app.services.accounts.create_user("alice@acme.test", "alice-pw", "correct horse battery")
        async with browser() as session:
            status, _, page = await sign_in(session, app.base_url, "alice", provider="site")
            assert status == 401 and "exists already" in page
        assert ("failure", "email_taken") in await sso_events(app)
        # Once acme has proven acme.test, its addresses come from acme's IdP only, not the site's.
        async with app.services.db.write() as tx:
            await tx.execute("INSERT INTO org_domains (org_id, domain, token, verified_at, method, created_at)"
                             " SELECT id, 'elsewhere.test', 't', 1, 'dns', 1 FROM orgs WHERE slug = 'acme'")
        async with browser() as session:
            status, _, page = await sign_in(session, app.base_url, "carol", provider="site")
            assert status == 401 and "Acme&#39;s single sign-on" in page
        assert ("failure", "domain_owned") in await sso_events(app)
        assert ("success", None) in await sso_events(app)
