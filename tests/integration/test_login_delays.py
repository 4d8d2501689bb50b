"""Wrong passwords slow down whoever guesses, per account and address, and never lock the owner out.

The "other address" is a real one: the client binds 127.0.0.2 (any 127.x address is the loopback on Linux),
so the server sees a different peer, as it would for the owner on another network.
"""

import re

import aiohttp

from tests.conftest import Client

PASSWORD = "correct horse battery"


async def client_from(app, address: str) -> Client:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)),
                                    cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for an IP host
    return Client(app.base_url, session)


async def token_login(client: Client, password: str):
    return await client.post("/api/auth/token", json={"login": "owner", "password": password})


def pin_clock(app) -> list[float]:
    """The delays' clock, moved by the test instead of waited for (the server and the HTTP path stay real)."""
    now = [1000.0]
    app.services.accounts.login_failures.clock = lambda: now[0]
    return now


async def test_200_wrong_passwords_do_not_lock_the_owner_out(start_app):
    app = await start_app(accounts={"login_attempts_per_ip_per_minute": 1000})
    await app.services.accounts.create_user("owner@example.com", "owner", PASSWORD)
    attacker, owner = await client_from(app, "127.0.0.1"), await client_from(app, "127.0.0.2")
    try:
        answers = [await token_login(attacker, f"guess number {i}") for i in range(200)]
        statuses = [status for status, _, _ in answers]
        # five guesses are tried; after them every attempt from this address is refused untried, with a wait
        assert statuses == [401] * 5 + [429] * 195
        assert all(int(response.headers["Retry-After"]) >= 1 for _, _, response in answers[5:])
        assert {body["error"]["code"] for _, body, _ in answers[5:]} == {"rate_limited"}
        # even the right password waits at the guessing address...
        status, _, response = await token_login(attacker, PASSWORD)
        assert status == 429 and response.headers["Retry-After"]
        # ...while its owner, elsewhere, signs in at the first try
        status, body, _ = await token_login(owner, PASSWORD)
        assert status == 201 and body["token"].startswith("mcps_")
    finally:
        await attacker.session.close()
        await owner.session.close()


async def test_the_guessers_waits_grow(start_app):
    app = await start_app(accounts={"login_attempts_per_ip_per_minute": 1000, "login_max_delay_seconds": 30})
    await app.services.accounts.create_user("owner@example.com", "owner", PASSWORD)
    now = pin_clock(app)
    waits = []
    for i in range(5):
        assert (await token_login(app.client, f"guess number {i}"))[0] == 401
    for i in range(7):
        status, _, response = await token_login(app.client, "guess again")
        assert status == 429
        waits.append(int(response.headers["Retry-After"]))
        now[0] += waits[-1] - 0.5
        assert (await token_login(app.client, "guess again"))[0] == 429  # not yet
        now[0] += 0.5
        assert (await token_login(app.client, f"patient guess {i}"))[0] == 401  # tried, and wrong again
    assert waits == [1, 2, 4, 8, 16, 30, 30]
    status, _, _ = await token_login(app.client, PASSWORD)
    assert status == 429  # still waiting after the last wrong guess
    now[0] += 30
    assert (await token_login(app.client, PASSWORD))[0] == 201
    assert (await token_login(app.client, "one more wrong guess"))[0] == 401  # the success forgot the failures


async def page_login(client: Client, password: str):
    """The login form as a browser posts it: the form's CSRF token from the page, then the post."""
    async with client.session.get(client.base_url + "/login") as page:
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', await page.text()).group(1)
    return await client.post("/login", data={"csrf_token": csrf, "login": "owner", "password": password},
                             allow_redirects=False)


async def test_login_page_waits_too_and_the_owner_signs_in_elsewhere(start_app):
    app = await start_app()
    await app.services.accounts.create_user("owner@example.com", "owner", PASSWORD)
    attacker, owner = await client_from(app, "127.0.0.1"), await client_from(app, "127.0.0.2")
    try:
        statuses = [(await page_login(attacker, f"guess number {i}"))[0] for i in range(6)]
        assert statuses == [401] * 5 + [429]
        status, body, response = await page_login(attacker, PASSWORD)
        assert status == 429 and int(response.headers["Retry-After"]) >= 1
        assert re.search(rb"try again in \d+ s", body)
        status, _, response = await page_login(owner, PASSWORD)
        assert status == 303 and response.headers["Location"] == "/dashboard"
    finally:
        await attacker.session.close()
        await owner.session.close()
