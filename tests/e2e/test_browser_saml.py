"""The org's SAML settings page in headless Chromium: its forms pass the accessibility check (axe) without CSP
violations, and saving the group mapping there works as a person would do it."""

from __future__ import annotations

import pytest
import pytest_asyncio

from mcpstore_appliance import audit
from tests.e2e.browser_support import (  # noqa: F401  (fixtures)
    Watched, artifacts_on_failure, axe_source, axe_violations, browser, log_in, serve_appliance)
from tests.saml_idp import TestIdP

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def saml_site(tmp_path_factory):
    """An appliance whose org `acme` (owner: owner) signs in with the test IdP."""
    folder = tmp_path_factory.mktemp("browser-saml")
    async with serve_appliance(folder / "data") as appliance:
        await appliance.user("owner")
        accounts = appliance.services.accounts
        owner = await accounts.principal_for_user((await accounts.find_user("owner")).id)
        org = await accounts.create_org(owner, "acme", "Acme")
        await appliance.services.saml.configure(audit.SYSTEM, org, {"metadata_xml": TestIdP(folder).metadata_xml()})
        yield appliance


async def test_the_saml_page_passes_the_accessibility_check_and_saves_the_mapping(saml_site, browser):  # noqa: F811
    source, context = axe_source(), await browser.new_context(base_url=saml_site.base_url)
    watched = Watched(context, await context.new_page())
    try:
        async with artifacts_on_failure(watched, "saml-a11y"):
            await log_in(watched, "owner")
            await watched.page.goto("/orgs/acme")
            await watched.page.click("a[href='/orgs/acme/saml']")
            assert f"{saml_site.base_url}/saml/acme/acs" in await watched.page.content()
            assert await axe_violations(watched.page, source) == []
            await watched.page.fill("#mappings", "Engineering Team = publisher")
            await watched.page.click("form[action='/orgs/acme/saml/group-roles'] button[type=submit]")
            await watched.page.wait_for_url("**/orgs/acme/saml?done=roles_saved")
            assert await axe_violations(watched.page, source) == []
            assert watched.csp_violations == []
        org = await saml_site.services.accounts.get_org("acme")
        assert await saml_site.services.accounts.group_roles.get(org) == {"Engineering Team": "publisher"}
    finally:
        await context.close()
