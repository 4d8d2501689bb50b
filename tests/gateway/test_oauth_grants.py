"""The applications page (web/pages/grants.py): a user sees the OAuth grants they made (client, endpoint, scopes,
when granted and last used) and revokes one with the page's CSRF-protected form, which ends its access and
refresh tokens at once. A foreign grant id, or a post without the CSRF token, changes nothing. A real appliance
with bubblewrap behind /mcp/."""

from __future__ import annotations

import re

from tests.gateway.oauth_support import flow_for
from tests.gateway.servers import hostile_bundle, publish_bundle
from tests.gateway.test_oauth import initialize


async def page(app, flow) -> str:
    status, body, _ = await app.client.get("/account/applications", headers={**flow.cookie, "Accept": "text/html"})
    assert status == 200
    return body.decode()


def grant_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'action="/account/applications/(\d+)/revoke"', html)]


async def test_the_user_lists_and_revokes_their_grants(hosted_app):
    app = await hosted_app()
    alice, token = await app.user("alice")
    bob, _ = await app.user("bob")
    await publish_bundle(app, token, hostile_bundle())
    flow, bobs = await flow_for(app, alice), await flow_for(app, bob)
    tokens, kept = await flow.tokens("alice/hostile"), await bobs.tokens("alice/hostile")
    assert await initialize(app, tokens["access_token"]) == (200, None)

    html = await page(app, flow)
    [grant] = grant_ids(html)
    assert "Test host" in html and "<code>alice/hostile</code>" in html and "invoke" in html
    assert "never" not in html  # used: its tokens were issued and the endpoint called
    [bobs_grant] = grant_ids(await page(app, bobs))

    # not without the CSRF token, and not another user's grant
    revoke = f"/account/applications/{grant}/revoke"
    status, _, _ = await app.client.post(revoke, data={"csrf_token": "wrong"}, headers=flow.cookie,
                                         allow_redirects=False)
    assert status == 403
    status, _, _ = await app.client.post(f"/account/applications/{bobs_grant}/revoke", data={"csrf_token": flow.csrf},
                                         headers={**flow.cookie, "Accept": "text/html"}, allow_redirects=False)
    assert status == 404
    assert await initialize(app, tokens["access_token"]) == (200, None)
    assert await initialize(app, kept["access_token"]) == (200, None)

    status, _, response = await app.client.post(revoke, data={"csrf_token": flow.csrf}, headers=flow.cookie,
                                                allow_redirects=False)
    assert status == 303 and response.headers["Location"] == "/account/applications?done=revoked"
    assert await initialize(app, tokens["access_token"]) == (401, "token_revoked")
    status, body, _ = await flow.token(grant_type="refresh_token", client_id=flow.client_id,
                                       refresh_token=tokens["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")
    assert grant_ids(await page(app, flow)) == []
    assert await initialize(app, kept["access_token"]) == (200, None)  # bob's grant is his own
    status, _, _ = await app.client.post(revoke, data={"csrf_token": flow.csrf},
                                         headers={**flow.cookie, "Accept": "text/html"}, allow_redirects=False)
    assert status == 404  # revoked once; a second time is nothing to revoke
