"""Licence keys on the buyer's purchases page: listed (prefix, package, created, last used), made from a form
(the secret shown once, in the answer only), revoked; forms without their CSRF token refused, and someone
else's key or a package not bought refused on the page without changing anything."""

from __future__ import annotations

import re

from mcpstore_appliance.web.auth import SESSION_COOKIE
from tests.seed import publish
from tests.usage_support import SUBSCRIPTION, exchange, grant


async def browser_of(app, username: str):
    user = await app.services.db.fetch_one("SELECT id FROM users WHERE username = ?", (username,))
    principal = await app.services.accounts.principal_for_user(user["id"])
    session_id, csrf = await app.services.accounts.start_session(principal.user)
    return app.client.with_token(None), {"Cookie": f"{SESSION_COOKIE}={session_id}"}, csrf


async def page(browser, cookie) -> str:
    status, html, _ = await browser.get("/account/purchases", headers=cookie)
    assert status == 200
    return html.decode()


async def test_a_buyer_creates_lists_and_revokes_licence_keys_on_the_page(start_app):
    app = await start_app()
    _, alice = await app.user("alice")
    await app.user("bob")
    await app.user("carol")
    await publish(app, alice, "paid", options=SUBSCRIPTION)
    await grant(app, alice, "alice/paid", "bob")
    browser, cookie, csrf = await browser_of(app, "bob")
    assert "No licence keys yet." in await page(browser, cookie)
    status, html, _ = await browser.post("/account/licence-keys", headers=cookie,
                                         data={"csrf_token": csrf, "package": "alice/paid"})
    created = html.decode()
    assert status == 200 and 'id="new-licence-key"' in created
    secret = re.search(r'id="new-licence-key-value" type="text" readonly value="(mcpl_[^"]+)"', created).group(1)
    assert (await exchange(app, secret))["mcp"] == "alice/paid"  # the key shown works
    shown = await page(browser, cookie)  # listed by prefix; the secret never again
    assert secret not in shown and f"{secret[:12]}…" in shown and "alice/paid" in shown
    assert "never" not in shown.split('id="licence-key-list"', 1)[1].split("</table>", 1)[0]  # last used: now
    # a second key for the same package, a package not bought, one that does not exist: said on the page
    for package, words in (("alice/paid", "revoke it first"), ("alice/nothing", "No package")):
        status, html, _ = await browser.post("/account/licence-keys", headers=cookie,
                                             data={"csrf_token": csrf, "package": package})
        assert status == 200 and words.lower() in html.decode().lower() and 'id="new-licence-key"' not in \
            html.decode()
    carol, carol_cookie, carol_csrf = await browser_of(app, "carol")
    status, html, _ = await carol.post("/account/licence-keys", headers=carol_cookie,
                                       data={"csrf_token": carol_csrf, "package": "alice/paid"})
    assert status == 200 and "buy access first" in html.decode()
    key_id = await app.services.db.fetch_value("SELECT id FROM licence_keys")
    # forms without the CSRF token, and carol revoking bob's key: refused, the key stays active
    assert (await browser.post("/account/licence-keys", headers=cookie, data={"package": "alice/paid"}))[0] == 403
    assert (await browser.post(f"/account/licence-keys/{key_id}/revoke", headers=cookie, data={}))[0] == 403
    status, html, _ = await carol.post(f"/account/licence-keys/{key_id}/revoke", headers=carol_cookie,
                                       data={"csrf_token": carol_csrf})
    assert status == 200 and "no such active licence key" in html.decode()
    assert await app.services.db.fetch_value("SELECT count(*) FROM licence_keys WHERE revoked_at IS NULL") == 1
    status, _, response = await browser.post(f"/account/licence-keys/{key_id}/revoke", headers=cookie,
                                             data={"csrf_token": csrf}, allow_redirects=False)
    assert status == 303 and response.headers["Location"] == "/account/purchases"
    row = (await page(browser, cookie)).split(f'data-licence="{key_id}"', 1)[1].split("</tr>", 1)[0]
    assert "revoked" in row and "Revoke</button>" not in row
    assert (await exchange(app, secret, expect=401))["error"]["code"] == "licence_revoked"
