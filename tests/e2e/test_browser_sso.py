"""Single sign-on end to end in headless Chromium against a real OpenID provider running offline (NanoIDP from
PyPI, tests/nanoidp_fixtures.py): the login page's SSO form, the IdP's own login form, the callback, and the
person signed in to the appliance with the role the IdP's groups map to; then the site-wide provider's button."""

from __future__ import annotations

import re

import pytest
import pytest_asyncio

from tests.conftest import free_port
from tests.e2e.browser_support import (  # noqa: F401  (fixtures)
    Watched, artifacts_on_failure, axe_source, axe_violations, browser, log_in, serve_appliance)
from tests.nanoidp_fixtures import CLIENT_ID, CLIENT_SECRET, nanoidp
from tests.sso_support import USERS

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sso(tmp_path_factory):
    """An appliance and NanoIDP beside it; org `acme` signs in with it (group `platform` -> admin)."""
    folder = tmp_path_factory.mktemp("browser-sso")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    site = {"oidc": {"issuer": issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "label": "NanoIDP"}}
    async with serve_appliance(folder / "data", sso=site) as appliance:
        with nanoidp(folder / "idp", port, appliance.url("/sso/callback"), USERS):
            token = await appliance.user("owner")
            accounts = appliance.services.accounts
            owner = await accounts.principal_for_user((await accounts.find_user("owner")).id)
            await accounts.create_org(owner, "acme", "Acme")
            await appliance.services.oidc.set_config(
                await accounts.principal_for_user(owner.id), "acme",
                {"issuer": issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                 "group_roles": {"platform": "admin"}})
            appliance.tokens["owner"] = token
            yield appliance


async def idp_form(page, username: str) -> None:
    await page.wait_for_url(re.compile(r".*/authorize\?.*"))
    await page.fill("#username", username)
    await page.fill("#password", USERS[username]["password"])
    await page.click("button[type=submit]")


async def test_sign_in_with_the_org_sso_and_the_site_provider(sso, browser):  # noqa: F811
    context = await browser.new_context(base_url=sso.base_url)
    page = await context.new_page()
    try:
        async with artifacts_on_failure(Watched(context, page), "sso-org"):
            await page.goto("/login?next=/account")
            await page.fill("#sso-org", "acme")
            await page.click("#sso-org-submit")
            await idp_form(page, "alice")
            await page.wait_for_url(re.compile(r".*/account$"))
            assert "alice" in await page.content()
            cookies = {c["name"]: c for c in await context.cookies()}
            assert cookies["mcpstore_session"]["httpOnly"] and "mcpstore_sso" not in cookies
        alice = await sso.services.accounts.find_user("alice")
        principal = await sso.services.accounts.principal_for_user(alice.id)
        assert list(principal.memberships.values()) == ["admin"]
    finally:
        await context.close()

    context = await browser.new_context(base_url=sso.base_url)
    page = await context.new_page()
    try:
        async with artifacts_on_failure(Watched(context, page), "sso-site"):
            await page.goto("/login")
            await page.click("#sso-site")
            await idp_form(page, "carol")
            await page.wait_for_url(re.compile(r".*/dashboard$"))
        carol = await sso.services.accounts.find_user("carol")
        assert (await sso.services.accounts.principal_for_user(carol.id)).memberships == {}
    finally:
        await context.close()


async def test_sso_pages_pass_the_accessibility_check(sso, browser):  # noqa: F811
    owner = await sso.services.accounts.principal_for_user((await sso.services.accounts.find_user("owner")).id)
    await sso.services.domains.claim(owner, "acme", "acme.test")
    source, context = axe_source(), await browser.new_context(base_url=sso.base_url)
    watched = Watched(context, await context.new_page())
    try:
        async with artifacts_on_failure(watched, "sso-a11y"):
            await watched.page.goto("/login")  # with the site-wide provider's button
            assert await axe_violations(watched.page, source) == []
            await log_in(watched, "owner")
            await watched.page.goto("/orgs/acme/sso")
            assert "_mcpstore-challenge.acme.test" in await watched.page.content()
            assert await axe_violations(watched.page, source) == []
            assert watched.csp_violations == []
    finally:
        await context.close()
