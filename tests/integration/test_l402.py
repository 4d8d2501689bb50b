"""L402 on the usage-token endpoint against a real LNbits (FakeWallet, tests/lnbits_fixtures.py): an agent without
an account gets a 402 with a macaroon and an invoice, pays it (the FakeWallet answers with the preimage), and
trades `macaroon:preimage` for a usage token with the calls prepaid; each payment hash once, even concurrently;
forged, altered, expired, unpaid, wrong-preimage and wrong-package credentials are 401 and credit nothing."""

from __future__ import annotations

import asyncio
import re

from pymacaroons import Macaroon

from mcpstore_appliance.accounts.ratelimit import RateLimiter
from mcpstore_appliance.market import journal
from tests.integration.test_validators import python_validator
from tests.lnbits_fixtures import lnbits_settings
from tests.seed import publish
from tests.usage_support import claims_of

ZAP = {"pricing": "per_call", "amount": "10", "currency": "sat"}
CHALLENGE = re.compile(r'^L402 macaroon="([A-Za-z0-9_\-=]+)", invoice="(lnbc[0-9a-z]+)"$')


async def ask(app, package: str, credential: str | None = None, expect: int = 200, scheme: str = "L402", **body):
    headers = {"Authorization": f"{scheme} {credential}"} if credential else {}
    status, answer, response = await app.client.with_token(None).post(
        "/api/usage/tokens", json={"package": package, **body}, headers=headers)
    assert status == expect, (status, answer)
    return answer, response


async def challenge(app, package: str = "alice/zap", calls: int = 3) -> tuple[str, str]:
    answer, response = await ask(app, package, expect=402, calls=calls)
    assert answer["error"]["code"] == "l402_payment_required"
    macaroon, invoice = CHALLENGE.match(response.headers["WWW-Authenticate"]).groups()
    return macaroon, invoice


async def paid(app, lnbits, package: str = "alice/zap", calls: int = 3) -> tuple[str, str]:
    macaroon, invoice = await challenge(app, package, calls)
    return macaroon, (await asyncio.to_thread(lnbits.pay, invoice))["preimage"]


async def money(app) -> tuple[int, int]:
    db = app.services.db
    return (await db.fetch_value("SELECT count(*) FROM market_transactions"),
            await db.fetch_value("SELECT count(*) FROM l402_tokens"))


async def shop(start_app, lnbits):
    app = await start_app(**lnbits_settings(lnbits))
    _, alice = await app.user("alice")
    await publish(app, alice, "zap", options=ZAP)
    await publish(app, alice, "other", options=ZAP)
    await publish(app, alice, "cents", options={"pricing": "per_call", "amount": "0.10", "currency": "usd"})
    return app, alice


async def test_an_agent_pays_an_invoice_and_gets_a_token_with_its_calls_prepaid(start_app, lnbits):
    app, alice = await shop(start_app, lnbits)
    macaroon, preimage = await paid(app, lnbits, calls=3)
    token, _ = await ask(app, "alice/zap", f"{macaroon}:{preimage}")
    claims = claims_of(app, token["token"])
    assert (claims["mcp"], claims["tier"], claims["calls"]) == ("alice/zap", "l402", 3)
    assert claims["sub"].startswith("l402:") and claims["aud"].endswith("/mcp/alice/zap")
    db = app.services.db
    creator = f"user:{await db.fetch_value('SELECT owner_user_id FROM packages WHERE name = ?', ('zap',))}"
    assert await journal.balance(db, "creator", creator, "msat") == 24_000  # 80 % of 30 sat (hobbyist)
    assert await journal.balance(db, "revenue", "platform", "msat") == 6_000
    assert await journal.check(db) == []
    # a publisher's offline validator takes it like any usage token
    validator = python_validator().UsageValidator(app.base_url, "alice/zap")
    assert (await asyncio.to_thread(validator.validate, token["token"]))["calls"] == 3
    # the publisher's server reports its calls: each call id once, never beyond the three paid for
    for n in range(3):
        status, body, _ = await app.client.with_token(alice).post(
            "/api/usage/reports", json={"jti": claims["jti"], "call_id": f"c{n}"})
        assert status == 200 and body["billed"] and body["used"] == n + 1, body
    status, body, _ = await app.client.with_token(alice).post("/api/usage/reports",
                                                               json={"jti": claims["jti"], "call_id": "c0"})
    assert status == 200 and body["billed"] is False
    status, body, _ = await app.client.with_token(alice).post("/api/usage/reports",
                                                               json={"jti": claims["jti"], "call_id": "c9"})
    assert status == 402 and body["error"]["code"] == "reservation_exhausted"
    _, bob = await app.user("bob")  # someone else's server may not report against it
    status, _, _ = await app.client.with_token(bob).post("/api/usage/reports",
                                                         json={"jti": claims["jti"], "call_id": "c5"})
    assert status == 404


async def test_a_payment_hash_is_accepted_once_even_concurrently(start_app, lnbits):
    app, _ = await shop(start_app, lnbits)
    macaroon, preimage = await paid(app, lnbits, calls=2)
    answers = await asyncio.gather(*(app.client.with_token(None).post(
        "/api/usage/tokens", json={"package": "alice/zap"}, headers={"Authorization": f"L402 {macaroon}:{preimage}"})
        for _ in range(6)))
    assert sorted(status for status, _, _ in answers) == [200] + [401] * 5
    assert {body["error"]["code"] for status, body, _ in answers if status == 401} == {"l402_used"}
    again, _ = await ask(app, "alice/zap", f"{macaroon}:{preimage}", expect=401, scheme="LSAT")  # later too
    assert again["error"]["code"] == "l402_used"
    assert await money(app) == (1, 1)
    assert await journal.check(app.services.db) == []


async def test_bad_credentials_are_refused_and_credit_nothing(start_app, lnbits):
    app, _ = await shop(start_app, lnbits)
    macaroon, preimage = await paid(app, lnbits, calls=3)
    genuine = Macaroon.deserialize(macaroon)
    stranger = Macaroon(location=genuine.location, identifier=genuine.identifier, key=b"not the appliance's key")
    for caveat in genuine.first_party_caveats():
        stranger.add_first_party_caveat(caveat.caveat_id)
    widened = Macaroon.deserialize(macaroon)
    widened.add_first_party_caveat("package=alice/other")  # a holder may add caveats; this one satisfies nothing
    unknown = Macaroon.deserialize(macaroon)
    unknown.add_first_party_caveat("admin=true")
    payment_hash = next(c.caveat_id for c in genuine.first_party_caveats()).split("=", 1)[1]
    l402 = app.services.usage.l402
    expired = l402.mint(payment_hash, "alice/zap", 3, 1_000_000)
    cases = {
        "forged": (stranger.serialize(), preimage, "alice/zap", "invalid_l402"),
        "unknown_caveat": (unknown.serialize(), preimage, "alice/zap", "invalid_l402"),
        "wrong_preimage": (macaroon, "00" * 32, "alice/zap", "l402_wrong_preimage"),
        "preimage_not_hex": (macaroon, "zz", "alice/zap", "invalid_l402"),
        "wrong_package": (macaroon, preimage, "alice/other", "l402_wrong_package"),
        "narrowed_to_other": (widened.serialize(), preimage, "alice/other", "l402_wrong_package"),
        "expired": (expired, preimage, "alice/zap", "l402_expired"),
        "garbage": ("AAAA", preimage, "alice/zap", "invalid_l402"),
    }
    for name, (mac, pre, package, code) in cases.items():
        answer, _ = await ask(app, package, f"{mac}:{pre}", expect=401)
        assert answer["error"]["code"] == code, name
    unpaid_macaroon, _ = await challenge(app)  # genuine, but nobody paid its invoice
    unpaid_hash = Macaroon.deserialize(unpaid_macaroon).first_party_caveats()[0].caveat_id.split("=", 1)[1]
    _, lnbits_view = await asyncio.to_thread(lnbits.call, "GET", f"/api/v1/payments/{unpaid_hash}",
                                                  lnbits.shop_inkey)
    # the FakeWallet shows the shop an unpaid invoice's preimage: the right one, but LNbits says unpaid
    answer, _ = await ask(app, "alice/zap", f"{unpaid_macaroon}:{lnbits_view['details']['preimage']}", expect=401)
    assert answer["error"]["code"] == "l402_unpaid"
    assert await money(app) == (0, 0)
    # the genuine credential still works afterwards: nothing above used it up
    await ask(app, "alice/zap", f"{macaroon}:{preimage}")


async def test_l402_is_offered_only_for_public_per_call_packages_priced_in_sat(start_app, lnbits):
    app, _ = await shop(start_app, lnbits)
    answer, _ = await ask(app, "alice/cents", expect=401)
    assert answer["error"]["code"] == "credentials_required"
    answer, _ = await ask(app, "no-slash", expect=401)
    assert answer["error"]["code"] == "credentials_required"
    answer, _ = await ask(app, "alice/missing", expect=404)
    answer, _ = await ask(app, "alice/zap", expect=400, calls=0)
    assert await app.services.db.fetch_value("SELECT count(*) FROM market_orders") == 0


async def test_invoices_asked_for_from_one_address_are_limited(start_app, lnbits):
    app, _ = await shop(start_app, lnbits)
    app.services.usage.l402.challenges_by_ip = RateLimiter(2)  # 60 a minute in service: 2 here
    await challenge(app)
    await challenge(app)
    answer, response = await ask(app, "alice/zap", expect=429)
    assert answer["error"]["code"] == "rate_limited" and int(response.headers["Retry-After"]) >= 1
