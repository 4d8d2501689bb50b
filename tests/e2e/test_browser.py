"""The web UI in a real browser (Debian's headless Chromium through Playwright).

One appliance and one browser serve the whole module; each test uses fresh browser contexts (own cookies).
Screenshots of the main pages go to test-artifacts/browser/; a failing block also leaves the page's HTML there.
"""

from __future__ import annotations

import re

import pytest

from tests.data.bundles import NODE_SERVER, bundle_bytes, make_png, node_manifest
from tests.e2e.browser_support import (  # noqa: F401  (fixtures)
    PASSWORD,
    artifacts_on_failure,
    axe_source,
    axe_violations,
    browser,
    log_in,
    new_page,
    screenshot,
    sha256_hex,
    ui,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def bundle(name: str, version: str = "1.0.0", extra: dict | None = None, **manifest) -> bytes:
    fields = {"name": name, "version": version, "display_name": name.replace("-", " ").title(),
              "description": f"{name} test server", "keywords": ["browser", "test"],
              "tools": [{"name": "get_issue", "description": "Fetch one issue"}], **manifest}
    return bundle_bytes(node_manifest(**fields), {"server/index.js": NODE_SERVER, **(extra or {})})


async def test_sign_up_token_publish_search_download(ui, new_page):
    watched = await new_page()
    page = watched.page
    async with artifacts_on_failure(watched, "signup-publish-download"):
        # Sign up through the form.
        await page.goto("/signup")
        await page.fill("#email", "pat@example.com")
        await page.fill("#username", "pat")
        await page.fill("#display_name", "Pat Publisher")
        await page.fill("#password", PASSWORD)
        await page.click("form[action='/signup'] button[type=submit]")
        await page.wait_for_url(re.compile(r".*/account\?done=welcome$"))

        # An API token with scopes, shown once, and it works.
        await page.fill("#token-name", "ci")
        await page.check("input[name=scopes][value=publish]")
        await page.click("#token-form button[type=submit]")
        secret = await page.input_value("#new-token-value")
        assert secret.startswith("mcps_")
        await screenshot(page, "account-token-created")
        async with ui.session.get(ui.url("/api/me"), headers={"Authorization": f"Bearer {secret}"}) as response:
            me = await response.json()
        assert me["username"] == "pat" and set(me["scopes"]) == {"read", "publish"}
        await page.goto("/account")
        assert await page.locator("#new-token-value").count() == 0  # never shown again
        assert await page.locator("td", has_text="ci").count() >= 1

        # Publish through the upload form (JavaScript on: the progress bar path).
        data = bundle("issue-tracker", icon="icon.png", extra={"icon.png": make_png(16, 16)})
        await page.goto("/dashboard/publish")
        await screenshot(page, "upload-form")
        await page.fill("#category", "developer-tools")
        await page.fill("#changelog", "First release")
        await page.set_input_files("#file", files=[{"name": "issue-tracker-1.0.0.mcpb",
                                                    "mimeType": "application/octet-stream", "buffer": data}])
        await page.click("#upload-form button[type=submit]")
        result = page.locator("#publish-result")
        await result.wait_for()
        assert await result.get_attribute("data-state") == "published"
        assert await page.text_content("#result-sha256") == sha256_hex(data)
        await screenshot(page, "upload-result")

        # Search, then filter with the facet links.
        await page.goto("/")
        await screenshot(page, "home")
        await page.fill("#hero-q", "issue")
        await page.click(".hero-search button")
        await page.wait_for_url(re.compile(r".*/search\?q=issue"))
        assert await page.locator(".result-list a", has_text="Issue Tracker").count() == 1
        await page.click(".facets a:has-text('developer-tools')")
        await page.wait_for_url(re.compile(r".*category=developer-tools"))
        assert await page.locator(".result-list a", has_text="Issue Tracker").count() == 1
        await screenshot(page, "search")
        await page.goto("/search?q=issue&pricing=paid")
        assert await page.locator("#empty-result").is_visible()
        assert await page.locator("#empty-result a", has_text="without filters").count() == 1

        # The package page; the downloaded bytes match the sha256 it shows.
        await page.goto("/search?q=issue")
        await page.click(".result-list a:has-text('Issue Tracker')")
        await page.wait_for_url(re.compile(r".*/packages/pat/issue-tracker$"))
        shown = (await page.text_content("#bundle-sha256")).strip()
        assert "mcpstore verify issue-tracker-1.0.0.mcpb" in await page.text_content("#verify-command")
        assert (await page.text_content("#ledger-index")).startswith("#")
        icon = page.locator(".pkg-header img.pkg-icon")
        assert "/packages/pat/issue-tracker/icon?v=" in await icon.get_attribute("src")
        assert await icon.evaluate("img => img.complete && img.naturalWidth") == 16
        await screenshot(page, "package")
        async with page.expect_download() as info:
            await page.click("#download-button")
        download = await info.value
        downloaded = open(await download.path(), "rb").read()
        assert sha256_hex(downloaded) == shown == sha256_hex(data)
        assert download.suggested_filename == "issue-tracker-1.0.0.mcpb"
        assert watched.csp_violations == []


async def test_yank_a_version_and_see_it_marked(ui, new_page):
    token = await ui.user("yan")
    await ui.publish(token, bundle("weather-kit", "1.0.0"))
    await ui.publish(token, bundle("weather-kit", "1.1.0"))
    watched = await new_page()
    page = watched.page
    async with artifacts_on_failure(watched, "yank"):
        await log_in(watched, "yan")
        assert await page.locator("a", has_text="Weather Kit").count() == 1  # the dashboard lists it
        await screenshot(page, "dashboard")
        await page.click("a[aria-label='Manage weather-kit']")
        await page.wait_for_url(re.compile(r".*/dashboard/packages/yan/weather-kit$"))
        assert await page.locator("#downloads-chart rect.bar").count() == 30
        row = page.locator("tr[data-version='1.0.0']")
        await row.locator("summary", has_text="Yank").click()
        await row.locator("input[name=reason]").first.fill("crashes on start")
        await row.locator("button", has_text="Yank").click()
        await page.wait_for_url(re.compile(r".*done=yank$"))
        assert await page.locator("tr[data-version='1.0.0'] [data-status=yanked]").count() == 1
        assert await page.locator("tr[data-version='1.1.0'] [data-status=yanked]").count() == 0
        await screenshot(page, "dashboard-package")

        await page.goto("/packages/yan/weather-kit")
        marked = page.locator("#versions tr[data-version='1.0.0']")
        assert await marked.locator("[data-status=yanked]").count() == 1
        assert "crashes on start" in await marked.text_content()
        assert await page.locator("#versions tr[data-version='1.1.0'] .badge", has_text="latest").count() == 1
        assert watched.csp_violations == []


async def test_admin_releases_a_quarantined_version(ui, new_page):
    await ui.user("root", admin=True)
    await ui.user("quinn")
    # The publisher uploads with JavaScript off: the upload form works as a plain form.
    publisher = await new_page(javascript=False)
    async with artifacts_on_failure(publisher, "quarantine-upload"):
        await log_in(publisher, "quinn")
        await publisher.page.goto("/dashboard/publish")
        data = bundle("env-leaker", extra={".env": "API_URL=https://example.com\n"})
        await publisher.page.set_input_files("#file", files=[{"name": "env-leaker.mcpb",
                                                              "mimeType": "application/octet-stream",
                                                              "buffer": data}])
        await publisher.page.click("#upload-form button[type=submit]")
        result = publisher.page.locator("#publish-result")
        assert await result.get_attribute("data-state") == "quarantined"
        assert await publisher.page.locator("table.findings code", has_text="secrets.env_file").count() == 1
        await screenshot(publisher.page, "upload-result-quarantined")
        response = await publisher.page.goto("/packages/quinn/env-leaker")
        assert response.status == 200 and await publisher.page.locator("#download-button").count() == 0

    admin = await new_page()
    page = admin.page
    async with artifacts_on_failure(admin, "admin-release"):
        await page.goto("/login")
        await page.fill("#login", "root")
        await page.fill("#password", PASSWORD)
        await page.click("form[action='/login'] button[type=submit]")
        await page.goto("/admin")
        item = page.locator("section[data-version='quinn/env-leaker@1.0.0']")
        assert await item.locator("code", has_text="secrets.env_file").count() == 1
        await screenshot(page, "admin-quarantine")
        await item.locator("input[name=reason]").first.fill("the .env holds no secret")
        await item.locator("button", has_text="Release").click()
        await page.wait_for_url(re.compile(r".*/admin\?done=release$"))
        assert await page.locator("section[data-version='quinn/env-leaker@1.0.0']").count() == 0
        await page.goto("/admin/users")
        assert await page.locator("td", has_text="quinn@example.com").count() == 1
        await screenshot(page, "admin-users")

        await page.goto("/packages/quinn/env-leaker")
        assert await page.locator("#download-button").count() == 1
        assert await page.locator("#versions tr[data-version='1.0.0'] .badge", has_text="latest").count() == 1
        assert admin.csp_violations == []


async def test_org_package_visible_to_members_only(ui, new_page):
    owner_token = await ui.user("olga")
    await ui.user("mia")
    await ui.user("otto")
    owner = await new_page()
    async with artifacts_on_failure(owner, "org-owner"):
        await log_in(owner, "olga")
        await owner.page.goto("/account")
        await owner.page.fill("#org-slug", "acme")
        await owner.page.fill("#org-name", "Acme Corp")
        await owner.page.click("form[action='/account/orgs'] button[type=submit]")
        await owner.page.wait_for_url(re.compile(r".*/orgs/acme\?done=org_created$"))
        await owner.page.fill("#member-username", "mia")
        await owner.page.select_option("#member-role", "member")
        await owner.page.click("#add-member button[type=submit]")
        await owner.page.wait_for_url(re.compile(r".*done=member_saved$"))
        assert await owner.page.locator("td", has_text="@mia").count() == 1
    await ui.publish(owner_token, bundle("acme-internal", description="Acme's internal tools"),
                     namespace="acme", visibility="org")

    member = await new_page()
    async with artifacts_on_failure(member, "org-member"):
        await log_in(member, "mia")
        await member.page.goto("/orgs/acme")
        assert await member.page.locator(".pkg-card a", has_text="Acme Internal").count() == 1
        await screenshot(member.page, "org-member")
        await member.page.goto("/search?q=acme")
        assert await member.page.locator(".result-list a", has_text="Acme Internal").count() == 1
        response = await member.page.goto("/packages/acme/acme-internal")
        assert response.status == 200

    outsider = await new_page()
    async with artifacts_on_failure(outsider, "org-outsider"):
        await log_in(outsider, "otto")
        await outsider.page.goto("/orgs/acme")
        assert await outsider.page.locator(".pkg-card").count() == 0
        assert await outsider.page.locator("#org-members").count() == 0
        await outsider.page.goto("/search?q=acme")
        assert await outsider.page.locator(".result-list a", has_text="Acme Internal").count() == 0
        response = await outsider.page.goto("/packages/acme/acme-internal")
        assert response.status == 404
        assert await outsider.page.locator("h1", has_text="Page not found").count() == 1
        await screenshot(outsider.page, "not-found")


HOSTILE = ('<script>alert("script")</script> <img src=x onerror=alert("img")> '
           '<a href="javascript:alert(\'link\')">click</a> [md link](javascript:alert("md")) '
           '<svg onload=alert("svg")></svg> <iframe src="javascript:alert(1)"></iframe>')


async def test_hostile_package_text_renders_inert(ui, new_page):
    token = await ui.user("mallory")
    await ui.publish(token, bundle(
        "evil-pkg", display_name='<img src=x onerror=alert("title")>', description=HOSTILE,
        long_description="# Hello\n\n" + HOSTILE + "\n\n[ok](https://example.com/docs)",
        # javascript: in link fields (author.url, homepage…) is refused at publish (a unit test covers it)
        author={"name": '<script>alert("author")</script>', "url": "https://example.com/mallory"},
        tools=[{"name": "x", "description": HOSTILE}],
        keywords=["<script>alert(1)</script>"]))
    watched = await new_page()
    page = watched.page
    async with artifacts_on_failure(watched, "hostile"):
        for path in ("/packages/mallory/evil-pkg", "/search?q=evil", "/"):
            await page.goto(path)
            await page.wait_for_load_state("load")
            main = page.locator("main")
            assert await main.locator("script, iframe, svg[onload]").count() == 0, path
            handlers = await page.evaluate(
                "() => Array.from(document.querySelectorAll('*')).flatMap(el => Array.from(el.attributes)"
                ".filter(a => a.name.startsWith('on')).map(a => el.tagName + ' ' + a.name))")
            assert handlers == [], (path, handlers)
            hrefs = await page.evaluate(
                "() => Array.from(document.querySelectorAll('[href],[src]')).map(el => el.getAttribute('href')"
                " || el.getAttribute('src')).filter(v => /^\\s*(javascript|data|vbscript):/i.test(v))")
            assert hrefs == [], (path, hrefs)
        await page.goto("/packages/mallory/evil-pkg")
        # The text is shown as text, and the safe markdown link survives.
        assert 'onerror=alert("title")' in await page.text_content("h1")
        assert await page.locator("#long-description a[href='https://example.com/docs']").count() == 1
        await screenshot(page, "hostile-package")
        assert watched.dialogs == []
        assert watched.csp_violations == []


async def test_pages_pass_the_accessibility_check(ui, new_page):
    source = axe_source()
    token = await ui.user("ally", admin=True)
    await ui.publish(token, bundle("a11y-demo", long_description="Some **bold** text.",
                                   user_config={"api_key": {"type": "string", "title": "API key",
                                                            "description": "Your key", "sensitive": True,
                                                            "required": True}}), category="productivity")
    for width in (1280, 390):  # desktop and a phone
        watched = await new_page(width=width)
        page = watched.page
        async with artifacts_on_failure(watched, f"a11y-{width}"):
            anonymous = ["/", "/search?q=a11y", "/packages/ally/a11y-demo", "/login", "/signup", "/no-such-page"]
            for path in anonymous:
                await page.goto(path)
                assert await axe_violations(page, source) == [], path
            await log_in(watched, "ally")
            for path in ("/dashboard", "/dashboard/publish", "/dashboard/packages/ally/a11y-demo", "/account",
                         "/account/applications", "/admin", "/admin/users"):
                await page.goto(path)
                assert await axe_violations(page, source) == [], path
            if width == 390:
                await page.goto("/packages/ally/a11y-demo")
                await screenshot(page, "package-phone")
                overflow = await page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
                assert not overflow, "the package page scrolls sideways on a phone"
            assert watched.csp_violations == []
