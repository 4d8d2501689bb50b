"""The HTML pages over real HTTP without a browser: CSRF refusals, escaping, CSP and caching headers, error
pages that leak nothing, sessions, and forms that fail with a clear message and change nothing."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from mcpstore_appliance.web.access import ANYONE, allow
from mcpstore_appliance.app import create_app
from mcpstore_appliance.web.front_door import CSP
from tests.conftest import free_port, make_settings
from tests.data.bundles import NODE_SERVER, bundle_bytes, node_manifest
from tests.seed import counted

PASSWORD = "correct horse battery"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
HTML = {"Accept": "text/html"}


class Browser:
    """Cookies like a browser (also for 127.0.0.1), forms posted with the page's CSRF token."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def get(self, path: str, **kwargs) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.get(self.base_url + path, headers=HTML, **kwargs) as response:
            return response.status, await response.text(), response

    async def csrf(self, path: str = "/login") -> str:
        _, text, _ = await self.get(path)
        return CSRF_FIELD.search(text).group(1)

    async def post(self, path: str, data, *, token_from: str | None = "/login", **kwargs):
        if token_from is not None and isinstance(data, dict) and "csrf_token" not in data:
            data = {"csrf_token": await self.csrf(token_from), **data}
        elif token_from is not None and isinstance(data, list):
            data = [("csrf_token", await self.csrf(token_from)), *data]
        async with self.session.post(self.base_url + path, data=data, headers=HTML, **kwargs) as response:
            return response.status, await response.text(), response

    async def log_in(self, login: str) -> None:
        status, _, response = await self.post("/login", {"login": login, "password": PASSWORD})
        assert status == 200 and response.url.path == "/dashboard", status

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def site(start_app):
    app = await start_app()
    browsers: list[Browser] = []

    def browser() -> Browser:
        browsers.append(Browser(app.base_url))
        return browsers[-1]

    app.browser = browser
    yield app
    for b in browsers:
        await b.close()


async def publish(app, token: str, manifest: dict, extra: dict | None = None, **options) -> dict:
    data = bundle_bytes(manifest, {"server/index.js": NODE_SERVER, **(extra or {})})
    status, body, _ = await app.client.post("/api/packages", params=options, data=data,
                                            headers={"Authorization": f"Bearer {token}",
                                                     "Content-Type": "application/octet-stream"})
    assert status == 201, body
    return body


def assert_no_inline_code(html: str) -> None:
    """Our own pages carry no inline script, style element or style/event attribute (the CSP would block them)."""
    for script in re.findall(r"<script\b[^>]*>", html, re.I):
        assert "src=" in script, script
    assert not re.search(r"<style\b", html, re.I)
    assert not re.search(r"<[a-z][^<>]*\sstyle\s*=", html, re.I)
    assert not re.search(r"<[a-z][^<>]*\son[a-z]+\s*=", html, re.I)


# ---- headers, static files, error pages -------------------------------------------------------------------

async def test_pages_have_the_csp_and_no_inline_code(site):
    browser = site.browser()
    for path in ("/", "/search", "/login", "/signup", "/no-such-page"):
        status, html, response = await browser.get(path)
        assert response.headers["Content-Security-Policy"] == CSP, path
        assert "unsafe-inline" not in CSP and "script-src 'self'" in CSP
        assert response.headers["X-Frame-Options"] == "DENY"
        assert_no_inline_code(html)


async def test_static_files_are_cached_by_content_hash(site):
    browser = site.browser()
    _, html, _ = await browser.get("/")
    css = re.search(r'href="(/static/app\.css\?v=[0-9a-f]{12})"', html).group(1)
    status, body, response = await browser.get(css)
    assert status == 200 and response.content_type == "text/css" and ".pkg-card" in body
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    _, _, stale = await browser.get("/static/app.css?v=000000000000")
    assert stale.headers["Cache-Control"] == "public, max-age=300"
    for path in ("/static/../pyproject.toml", "/static/%2e%2e/pyproject.toml", "/static/nothing.js", "/static/"):
        status, body, _ = await browser.get(path)
        assert status == 404 and "[build-system]" not in body, path


async def test_error_pages_are_friendly_and_leak_nothing(tmp_path, aiohttp_server):
    settings = make_settings(tmp_path / "data", port=free_port())
    app = create_app(settings)

    async def boom(request):
        raise RuntimeError("secret-db-password in /srv/app/config.py")

    app.router.add_get("/boom", allow(ANYONE)(boom))
    server = await aiohttp_server(app, host="127.0.0.1", port=settings.server.port)
    browser = Browser(str(server.make_url("")).rstrip("/"))
    try:
        status, html, response = await browser.get("/boom")
        assert status == 500 and response.content_type == "text/html"
        assert "Something went wrong" in html
        assert "secret-db-password" not in html and "Traceback" not in html and "config.py" not in html
        status, html, _ = await browser.get("/packages/nobody/nothing")
        assert status == 404 and "Page not found" in html and "<form" in html  # the site search is there
        # API clients still get JSON errors.
        async with browser.session.get(browser.base_url + "/api/packages/nobody/nothing") as response:
            assert response.status == 404 and (await response.json())["error"]["code"] == "no_such_package"
    finally:
        await browser.close()


async def test_forbidden_and_login_redirects(site):
    await site.user("plain")
    browser = site.browser()
    status, _, response = await browser.get("/dashboard", allow_redirects=False)
    assert status == 303 and response.headers["Location"] == "/login?next=/dashboard"
    await browser.log_in("plain")
    status, html, _ = await browser.get("/admin")
    assert status == 403 and "Not allowed" in html and "site administrators only" in html


# ---- CSRF ---------------------------------------------------------------------------------------------------

async def test_forms_without_the_csrf_token_are_refused_and_change_nothing(site):
    await site.user("carol")
    browser = site.browser()
    status, html, _ = await browser.post("/login", {"login": "carol", "password": PASSWORD}, token_from=None)
    assert status == 403 and "CSRF" in html
    assert browser.session.cookie_jar.filter_cookies(URL(site.base_url)).get("mcpstore_session") is None

    await browser.log_in("carol")
    before = len(await site.services.accounts.list_tokens(await principal(site, "carol")))
    status, html, _ = await browser.post("/account/tokens", {"csrf_token": "forged", "name": "x", "scopes": "read"})
    assert status == 403 and "CSRF" in html
    status, _, _ = await browser.post("/account/tokens", {"name": "x", "scopes": "read"}, token_from=None)
    assert status == 403
    assert len(await site.services.accounts.list_tokens(await principal(site, "carol"))) == before

    # The upload form is multipart: the csrf_token part comes first and is checked before the file is read.
    form = aiohttp.FormData()
    form.add_field("csrf_token", "forged")
    form.add_field("file", bundle_bytes(node_manifest(name="sneaky")), filename="sneaky.mcpb")
    status, html, _ = await browser.post("/dashboard/publish", form, token_from=None)
    assert status == 403
    assert (await site.client.get("/api/packages/carol/sneaky"))[0] == 404


async def principal(site, username: str):
    user = await site.services.accounts.find_user(username)
    return await site.services.accounts.principal_for_user(user.id)


# ---- sessions, signup, setup, tokens ---------------------------------------------------------------------------

async def test_login_sets_a_safe_cookie_refuses_open_redirects_and_logout_ends_the_session(site):
    await site.user("dave")
    browser = site.browser()
    token = await browser.csrf()
    async with browser.session.post(site.base_url + "/login", allow_redirects=False,
                                    data={"csrf_token": token, "login": "dave", "password": PASSWORD,
                                          "next": "//evil.example/phish"}) as response:
        assert response.status == 303 and response.headers["Location"] == "/dashboard"
        cookie = response.cookies["mcpstore_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    session_id = cookie.value
    status, html, _ = await browser.get("/account")
    assert status == 200 and "dave@example.com" in html
    await browser.post("/logout", {}, token_from="/account")
    assert await site.services.accounts.principal_for_session(session_id) is None
    status, _, response = await browser.get("/account", allow_redirects=False)
    assert status == 303


async def test_wrong_password_shows_the_form_again(site):
    await site.user("erin")
    browser = site.browser()
    status, html, _ = await browser.post("/login", {"login": "erin", "password": "nope nope nope"})
    assert status == 401 and "wrong email or password" in html and 'value="erin"' in html


async def test_signup_errors_keep_the_input_and_store_nothing(site):
    browser = site.browser()
    status, html, _ = await browser.post("/signup", {"email": "x@example.com", "username": "Bad Name!",
                                                     "password": PASSWORD}, token_from="/signup")
    assert status == 400 and "username must be" in html and 'value="x@example.com"' in html
    assert await site.services.accounts.user_count() == 0


async def test_signup_closed(start_app):
    app = await start_app(accounts={"signup": "closed"})
    browser = Browser(app.base_url)
    try:
        status, html, _ = await browser.get("/signup")
        assert status == 200 and "Sign-up is closed" in html and 'action="/signup"' not in html
    finally:
        await browser.close()


async def test_setup_link_creates_the_first_admin_once(site):
    code = await site.services.accounts.create_setup_link_if_fresh()
    browser = site.browser()
    status, html, response = await browser.get(f"/setup?code={code}")
    assert status == 200 and "no-store" in response.headers["Cache-Control"]
    fields = {"code": code, "email": "root@example.com", "username": "root", "password": PASSWORD}
    status, html, response = await browser.post("/setup", fields, token_from="/login")
    assert status == 200 and response.url.path == "/admin" and "Quarantine queue" in html
    assert (await site.services.accounts.find_user("root")).is_admin
    other = site.browser()
    status, html, _ = await other.post("/setup", {**fields, "username": "root2", "email": "r2@example.com"})
    assert status == 403 and "not valid any more" in html


async def test_token_secret_is_shown_once_and_not_cached(site):
    await site.user("fay")
    browser = site.browser()
    await browser.log_in("fay")
    fields = [("name", "ci"), ("scopes", "read"), ("scopes", "publish"), ("expires_in_days", "7")]
    status, html, response = await browser.post("/account/tokens", fields, token_from="/account")
    assert status == 201 and "no-store" in response.headers["Cache-Control"]
    secret = re.search(r'id="new-token-value"[^>]*value="(mcps_[^"]+)"', html).group(1)
    status, me, _ = await site.client.get("/api/me", headers={"Authorization": f"Bearer {secret}"})
    assert status == 200 and me["scopes"] == ["publish", "read"] and me["username"] == "fay"
    _, html, _ = await browser.get("/account")
    assert secret not in html and secret[:12] in html  # the prefix identifies it
    status, html, _ = await browser.post("/account/tokens", {"name": "", "scopes": "read"}, token_from="/account")
    assert status == 400 and "a token needs a name" in html


# ---- catalog pages --------------------------------------------------------------------------------------------

HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)><a href="javascript:alert(3)">x</a>'


async def test_package_text_is_escaped_everywhere(site):
    _, token = await site.user("mal")
    hostile = node_manifest(
        name="evil", display_name=HOSTILE, description=HOSTILE, long_description=HOSTILE + " [y](javascript:alert(4))",
        author={"name": HOSTILE, "url": "javascript:alert(5)"}, keywords=["<b>kw</b>"],
        tools=[{"name": "t", "description": HOSTILE}])
    status, body, _ = await site.client.post("/api/packages", data=bundle_bytes(hostile, {"server/index.js": NODE_SERVER}),
                                             headers={"Authorization": f"Bearer {token}",
                                                      "Content-Type": "application/octet-stream"})
    assert status == 422 and body["error"]["details"][0]["path"] == "$.author.url"  # link fields: http(s) only
    hostile["author"] = {"name": HOSTILE, "url": "https://example.com/mal"}
    await publish(site, token, hostile)
    browser = site.browser()
    for path in ("/packages/mal/evil", "/search?q=evil", "/"):
        status, html, _ = await browser.get(path)
        assert status == 200, path
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert not re.search(r"<[a-z]+\b[^<>]*\s(?:href|src)\s*=\s*[\"']?\s*javascript:", html, re.I), path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert_no_inline_code(html)


async def test_search_page_filters_sorts_and_helps_when_empty(site):
    _, token = await site.user("gus")
    await publish(site, token, node_manifest(name="postgres-tools", description="Query Postgres"),
                  category="data")
    await publish(site, token, node_manifest(name="slack-bridge", description="Talk to Slack"),
                  category="communication", pricing="per_call", amount="0.10", currency="usd")
    browser = site.browser()
    status, html, _ = await browser.get("/search?q=postgres")
    assert status == 200 and "/packages/gus/postgres-tools" in html and "/packages/gus/slack-bridge" not in html
    _, html, _ = await browser.get("/search?pricing=paid")
    assert "/packages/gus/slack-bridge" in html and "/packages/gus/postgres-tools" not in html
    assert "$0.10 per call" in html
    _, html, _ = await browser.get("/search")
    assert re.search(r"communication</span><span class=\"n\">1</span>", html)  # a facet count
    _, html, _ = await browser.get("/search?q=postgras")  # a typo
    assert "/packages/gus/postgres-tools" in html and "showing results for" in html
    _, html, _ = await browser.get("/search?q=nothing-like-this&category=data")
    assert 'id="empty-result"' in html and "without filters" in html
    status, html, _ = await browser.get("/search?sort=sideways")
    assert status == 400 and "sort must be one of" in html
    status, html, _ = await browser.get("/search?q=" + "x" * 5000)
    assert status == 400 and "limited to" in html


async def test_yank_without_a_reason_is_refused_on_the_page(site):
    _, token = await site.user("hal")
    await publish(site, token, node_manifest(name="tool", version="1.0.0"))
    browser = site.browser()
    await browser.log_in("hal")
    page = "/dashboard/packages/hal/tool"
    status, html, _ = await browser.post(page + "/versions/1.0.0/yank", {"reason": ""}, token_from=page)
    assert status == 400 and "needs a reason" in html
    _, data, _ = await site.client.get("/api/packages/hal/tool/versions")
    assert data["versions"][0]["yanked"] is False
    status, html, _ = await browser.post(page + "/versions/1.0.0/yank", {"reason": "broken"}, token_from=page)
    assert status == 200 and 'data-status="yanked"' in html


async def test_someone_else_cannot_yank_through_the_page(site):
    _, token = await site.user("ivy")
    await site.user("jon")
    await publish(site, token, node_manifest(name="mine", version="1.0.0"))
    browser = site.browser()
    await browser.log_in("jon")
    status, html, _ = await browser.post("/dashboard/packages/ivy/mine/versions/1.0.0/yank", {"reason": "x"},
                                         token_from="/account")
    assert status == 403 and "you may not change versions" in html
    _, data, _ = await site.client.get("/api/packages/ivy/mine/versions")
    assert data["versions"][0]["yanked"] is False


async def test_upload_form_rejection_lists_findings_and_stores_nothing(site):
    await site.user("kim")
    browser = site.browser()
    await browser.log_in("kim")
    form = aiohttp.FormData()
    form.add_field("csrf_token", await browser.csrf("/dashboard/publish"))
    form.add_field("pricing", "per_call")
    form.add_field("amount", "0.105")
    form.add_field("currency", "usd")
    form.add_field("file", bundle_bytes(node_manifest(name="priced")), filename="priced.mcpb")
    status, html, _ = await browser.post("/dashboard/publish", form, token_from=None)
    assert status == 400 and "no rounding is done" in html and 'value="0.105"' in html
    key = 'const token = "ghp_' + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5" + '";\n'  # a GitHub token: critical
    form = aiohttp.FormData()
    form.add_field("csrf_token", await browser.csrf("/dashboard/publish"))
    form.add_field("file", bundle_bytes(node_manifest(name="leaky"), {"server/index.js": NODE_SERVER,
                                                                       "server/config.js": key}),
                   filename="leaky.mcpb")
    status, html, _ = await browser.post("/dashboard/publish", form, token_from=None)
    assert status == 422 and "bundle rejected" in html and "server/config.js" in html
    assert (await site.client.get("/api/packages/kim/leaky"))[0] == 404


async def test_org_page_shows_members_only_to_members(site):
    _, owner_token = await site.user("olive")
    await site.user("pete")
    accounts = site.services.accounts
    await accounts.create_org(await principal(site, "olive"), "team", "The Team")
    await publish(site, owner_token, node_manifest(name="inside"), namespace="team", visibility="org")
    await publish(site, owner_token, node_manifest(name="outside"), namespace="team", visibility="public")
    outsider = site.browser()
    await outsider.log_in("pete")
    status, html, _ = await outsider.get("/orgs/team")
    assert status == 200 and "/packages/team/outside" in html and "/packages/team/inside" not in html
    assert "@olive" not in html
    # An outsider cannot add themselves.
    status, html, _ = await outsider.post("/orgs/team/members", {"username": "pete", "role": "owner"},
                                          token_from="/account")
    assert status == 404
    assert [m.username for m in await accounts.members(await principal(site, "olive"), "team")] == ["olive"]

    owner = site.browser()
    await owner.log_in("olive")
    status, html, _ = await owner.post("/orgs/team/members", {"username": "pete", "role": "member"},
                                       token_from="/orgs/team")
    assert status == 200 and "@pete" in html
    _, html, _ = await outsider.get("/orgs/team")
    assert "/packages/team/inside" in html
    status, html, _ = await owner.post("/orgs/team/members/olive/remove", {}, token_from="/orgs/team")
    assert status == 409 and "at least one owner" in html


async def test_dashboard_stats_chart_is_server_rendered_svg(site):
    _, token = await site.user("sam")
    result = await publish(site, token, node_manifest(name="counted"))
    for _ in range(3):
        status, _, _ = await site.client.get(f"/bundles/{result['sha256']}.mcpb")
        assert status == 200
    await counted(site.services.discovery.downloads, 3)
    await site.services.discovery.downloads.flush()
    browser = site.browser()
    await browser.log_in("sam")
    status, html, _ = await browser.get("/dashboard/packages/sam/counted")
    assert status == 200 and '<svg class="chart"' in html
    assert html.count('<rect class="bar"') == 30
    assert re.search(r"<title>\d{4}-\d{2}-\d{2}: 3</title>", html)
    assert "3 in total" in html


async def test_package_page_install_help_snippets_and_price_panel(site):
    _, token = await site.user("pia")
    await publish(site, token, node_manifest(name="local-free"))
    await publish(site, token, node_manifest(name="remote-paid"), pricing="subscription", amount="5.99",
                  currency="eur", tier="pro", endpoint="https://mcp.example.com/remote?x=1&y=2")
    browser = site.browser()
    _, html, _ = await browser.get("/packages/pia/local-free")
    assert 'id="download-button"' in html and "/api/packages/pia/local-free/versions/1.0.0/download" in html
    assert "open the downloaded file" in html and "claude://" not in html
    assert 'id="price-panel"' not in html and "snippet-claude-code" not in html  # a local bundle: no snippet
    _, html, _ = await browser.get("/packages/pia/remote-paid")
    assert 'id="price-panel"' in html and "€5.99 per month" in html
    # The endpoint is quoted for the shell and escaped for HTML.
    assert "claude mcp add --transport http remote-paid &#39;https://mcp.example.com/remote?x=1&amp;y=2&#39;" in html
    assert "&#34;url&#34;: &#34;https://mcp.example.com/remote?x=1&amp;y=2&#34;" in html


async def test_deprecate_and_unyank_through_the_dashboard(site):
    _, token = await site.user("ray")
    await publish(site, token, node_manifest(name="old", version="1.0.0"))
    browser = site.browser()
    await browser.log_in("ray")
    page = "/dashboard/packages/ray/old"
    status, html, _ = await browser.post(page + "/versions/1.0.0/deprecate", {"reason": "use new instead"},
                                         token_from=page)
    assert status == 200 and 'data-status="deprecated"' in html and "use new instead" in html
    await browser.post(page + "/versions/1.0.0/yank", {"reason": "oops"}, token_from=page)
    status, html, _ = await browser.post(page + "/versions/1.0.0/unyank", {}, token_from=page)
    assert status == 200 and 'data-status="yanked"' not in html
    _, html, _ = await browser.get("/packages/ray/old")
    assert "Deprecated:" in html and "use new instead" in html


async def test_dashboard_lists_packages_whose_only_version_waits_in_quarantine(site):
    _, token = await site.user("kim")
    await site.user("lou")
    body = await publish(site, token, node_manifest(name="held", version="1.0.0"),
                         extra={".env": "API_URL=https://example.com\n"})
    assert body["state"] == "quarantined"
    await publish(site, token, node_manifest(name="live", version="2.0.0"))
    browser = site.browser()
    await browser.log_in("kim")
    _, html, _ = await browser.get("/dashboard")
    assert "/dashboard/packages/kim/held" in html and "1 in quarantine" in html
    assert "/dashboard/packages/kim/live" in html and "2.0.0" in html
    other = site.browser()
    await other.log_in("lou")
    _, html, _ = await other.get("/dashboard")
    assert "kim/held" not in html and "kim/live" not in html  # someone else's packages are not theirs to manage
