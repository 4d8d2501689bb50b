"""The OAuth flow of the hosted endpoint driven over plain HTTP (no browser): registration, the consent form
as a signed-in browser session posts it, the token endpoint. The browser and SDK version is
tests/e2e/test_oauth_sdk.py."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from mcpstore_appliance.web.auth import SESSION_COOKIE

REDIRECT = "http://127.0.0.1:9/callback"  # nothing listens: the tests read the code from the Location header


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class Flow:
    """One application (a registered client) acting for one signed-in user of `app`."""

    app: object
    client_id: str
    cookie: dict[str, str]
    csrf: str
    redirect_uri: str = REDIRECT

    def resource(self, ref: str) -> str:
        return f"{self.app.base_url}/mcp/{ref}"

    def params(self, ref: str, challenge: str, **changes: str | None) -> dict[str, str]:
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                  "state": "st-1", "code_challenge": challenge, "code_challenge_method": "S256",
                  "resource": self.resource(ref), "scope": "invoke", **changes}
        return {k: v for k, v in params.items() if v is not None}

    async def consent_page(self, params: dict[str, str]):
        return await self.app.client.get("/oauth/authorize", params=params, headers={**self.cookie,
                                         "Accept": "text/html"}, allow_redirects=False)

    async def decide(self, params: dict[str, str], decision: str = "approve", csrf: str | None = None):
        form = {**params, "decision": decision, "csrf_token": self.csrf if csrf is None else csrf}
        return await self.app.client.post("/oauth/authorize", data=form, headers=self.cookie,
                                          allow_redirects=False)

    async def code(self, ref: str, challenge: str) -> str:
        status, body, response = await self.decide(self.params(ref, challenge))
        assert status == 303, (status, body)
        answer = redirected(response)
        assert answer["state"] == "st-1" and answer["iss"] == self.app.base_url
        return answer["code"]

    async def token(self, **form: str):
        return await self.app.client.post("/oauth/token", data=form)

    async def exchange(self, code: str, verifier: str, ref: str, **changes: str):
        form = {"grant_type": "authorization_code", "code": code, "client_id": self.client_id,
                "redirect_uri": self.redirect_uri, "code_verifier": verifier, "resource": self.resource(ref),
                **changes}
        return await self.token(**form)

    async def tokens(self, ref: str) -> dict:
        verifier, challenge = pkce()
        status, body, _ = await self.exchange(await self.code(ref, challenge), verifier, ref)
        assert status == 200, body
        return body


def redirected(response) -> dict[str, str]:
    location = response.headers["Location"]
    assert location.startswith(REDIRECT), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def register(app, **metadata) -> tuple[int, dict]:
    body = {"client_name": "Test host", "redirect_uris": [REDIRECT], **metadata}
    status, answer, _ = await app.client.post("/oauth/register", json=body)
    return status, answer


async def flow_for(app, user) -> Flow:
    status, client = await register(app)
    assert status == 201, client
    session_id, csrf = await app.services.accounts.start_session(user)
    return Flow(app, client["client_id"], {"Cookie": f"{SESSION_COOKIE}={session_id}"}, csrf)
