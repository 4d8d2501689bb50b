"""Helpers of the SSO tests: an appliance with NanoIDP beside it (tests/nanoidp_fixtures.py), and one sign-in
driven over HTTP as a browser would (a cookie jar per "browser"; the IdP's own login form filled in)."""

from __future__ import annotations

import contextlib
import html
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp

from tests.conftest import free_port
from tests.nanoidp_fixtures import CLIENT_ID, CLIENT_SECRET, nanoidp

USERS = {
    "alice": {"password": "alice-pass", "email": "alice@acme.test", "groups": ["platform"]},
    "bob": {"password": "bob-pass", "email": "bob@acme.test", "groups": []},
    "carol": {"password": "carol-pass", "email": "carol@elsewhere.test", "groups": ["platform"]},
}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CONTINUE = re.compile(r'id="sso-continue" href="([^"]+)"')
TRANSACTION = re.compile(r'name="transaction_id" value="([^"]+)"')


@dataclass
class SsoWorld:
    app: object  # tests.conftest.RunningApp
    issuer: str
    owner_token: str


def browser() -> aiohttp.ClientSession:
    """A fresh "browser": its own cookies (also for 127.0.0.1, which aiohttp's default jar ignores)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


@contextlib.asynccontextmanager
async def sso_world(start_app, folder: Path, **overrides):
    """An appliance whose site-wide provider and org `acme` (owner: `owner`) both use one NanoIDP."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    app = await start_app(sso={"oidc": {"issuer": issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                        "label": "NanoIDP"}}, **overrides)
    with nanoidp(folder, port, app.base_url + "/sso/callback", USERS):
        _, token = await app.user("owner")
        owner = app.client.with_token(token)
        assert (await owner.post("/api/orgs", json={"slug": "acme", "name": "Acme"}))[0] == 201
        status, body, _ = await owner.put("/api/orgs/acme/sso", json={
            "issuer": issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "group_roles": {"platform": "admin"}, "default_role": "member"})
        assert status == 200, body
        yield SsoWorld(app, issuer, token)


async def start_sign_in(session: aiohttp.ClientSession, base_url: str, **form: str) -> str:
    """The login page's SSO form posted; returns the IdP's authorization URL it sends the browser to."""
    async with session.get(base_url + "/login") as response:
        csrf = CSRF.search(await response.text()).group(1)
    async with session.post(base_url + "/login/sso", data={"csrf_token": csrf, **form},
                            allow_redirects=False) as response:
        page = await response.text()
        assert response.status == 200, page
    # the page moves on by itself (a meta refresh) to the IdP; its link says where
    return html.unescape(CONTINUE.search(page).group(1))


async def idp_login(session: aiohttp.ClientSession, authorize_url: str, username: str) -> str:
    """NanoIDP's login form filled in; returns the callback URL it redirects the browser to."""
    async with session.get(authorize_url) as response:
        page = await response.text()
        assert response.status == 200, page[:500]
    transaction = TRANSACTION.search(page).group(1)
    async with session.post(authorize_url, allow_redirects=False, data={
            "transaction_id": transaction, "username": username, "password": USERS[username]["password"]}) as response:
        assert response.status in (302, 303), (response.status, (await response.text())[:500])
        return response.headers["Location"]


async def callback(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    """(status, Location, body) of the appliance's callback."""
    async with session.get(url, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", ""), await response.text()


async def sign_in(session, base_url: str, username: str, **form: str) -> tuple[int, str, str]:
    url = await idp_login(session, await start_sign_in(session, base_url, **form), username)
    return await callback(session, url)


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
