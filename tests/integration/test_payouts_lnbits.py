"""Creator payouts over Lightning against a real LNbits (FakeWallet): bob pays alice's sat subscription into the
shop wallet, and a payout batch pays alice's 80 % from the shop wallet (its admin key) to her LNURL-pay
destination. The destination is a small LNURL-pay service run by the test in front of a second, real LNbits
wallet (alice's): it answers LUD-06 as a wallet's service does, and its invoices are LNbits' own."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid

import pytest
from mcpstore_appliance.market import journal, lnurl
from tests.lnbits_fixtures import LnurlPay, payout_settings
from tests.seed import publish

from .test_market_lnbits import eventually, post

SUBSCRIPTION = {"pricing": "subscription", "amount": "2000", "currency": "sat"}


@pytest.fixture
async def lnurl_service(aiohttp_server, lnbits):
    """alice's LNURL-pay service: (its URL, the service, alice's wallet balance)."""
    service = await asyncio.to_thread(LnurlPay, lnbits, f"alice-{uuid.uuid4().hex[:8]}")
    server = await aiohttp_server(service.app(), host="127.0.0.1")
    return str(server.make_url("/lnurlp/creator")), service, service.balance


async def alice_earns(lnbits, start_app):
    """alice's sat subscription bought and paid by bob: 1 600 000 msat (80 % of 2000 sat) are alice's."""
    app = await start_app(**payout_settings(lnbits))
    alice, alice_token = await app.user("alice")
    _, bob_token = await app.user("bob")
    _, root = await app.user("root", admin=True)
    await publish(app, alice_token, "sub", options=SUBSCRIPTION)
    await buy(app, lnbits, bob_token)
    return app, alice, alice_token, root


async def buy(app, lnbits, token: str) -> None:
    order = await post(app, "/api/packages/alice/sub/purchase", token, 201, json={})
    await asyncio.to_thread(lnbits.pay, order["bolt11"])
    await eventually(lambda: _paid(app, order["id"]))


async def _paid(app, order_id: int) -> bool:
    return await app.services.db.fetch_value("SELECT status FROM market_orders WHERE id = ?", (order_id,)) == "paid"


async def owed(app, alice) -> int:
    return await journal.balance(app.services.db, "creator", f"user:{alice.id}", "msat")


async def test_a_batch_pays_the_creator_over_lightning_once(start_app, lnbits, lnurl_service):
    destination, _, balance = lnurl_service
    app, alice, alice_token, root = await alice_earns(lnbits, start_app)
    client = app.client.with_token(alice_token)
    status, body, _ = await client.put("/api/market/payout-method", json={"kind": "lightning",
                                                                          "destination": destination})
    assert status == 200 and body["ready"], body
    report = await post(app, "/api/admin/market/payouts/run", root)
    assert [(p["amount"], p["currency"]) for p in report["paid"]] == [(1_600_000, "msat")], report
    assert await asyncio.to_thread(balance) == 1_600_000  # in alice's own wallet
    assert await owed(app, alice) == 0
    assert (await post(app, "/api/admin/market/payouts/run", root))["paid"] == []
    assert await asyncio.to_thread(balance) == 1_600_000
    status, body, _ = await client.get("/api/market/payouts")
    assert [(p["status"], p["amount"]) for p in body["payouts"]] == [("paid", 1_600_000)]
    assert body["methods"][0]["destination"] == destination
    assert await journal.check(app.services.db) == []


async def test_a_crash_after_lnbits_paid_is_finished_without_paying_again(start_app, lnbits, lnurl_service):
    """LNbits answers a second payment of an internal invoice 'Internal invoice already paid.' with status
    *failed*: the payout must be found paid in our wallet, not failed and returned (which would pay twice)."""
    destination, _, balance = lnurl_service
    app, alice, alice_token, root = await alice_earns(lnbits, start_app)
    await app.client.with_token(alice_token).put("/api/market/payout-method",
                                                 json={"kind": "lightning", "destination": destination})
    payer = app.services.market.payouts.payers["lightning"]
    real_send, real_status = payer.send, payer.status

    async def send_then_crash(payout):
        await real_send(payout)
        raise ConnectionError("the appliance stopped before it wrote the answer")

    calls = []

    async def first_lookup_misses(payout):
        calls.append(payout["id"])  # the worst case: the lookup before sending misses, so it is paid again
        return None if len(calls) == 1 else await real_status(payout)

    payer.send = send_then_crash
    report = await post(app, "/api/admin/market/payouts/run", root)
    assert report["paid"] == [] and len(report["open"]) == 1
    assert await asyncio.to_thread(balance) == 1_600_000 and await owed(app, alice) == 0
    payer.send, payer.status = real_send, first_lookup_misses
    report = await post(app, "/api/admin/market/payouts/run", root)
    payer.status = real_status
    assert [p["amount"] for p in report["paid"]] == [1_600_000] and report["failed"] == [], report
    assert len(calls) == 2  # LNbits refused the repeat, and our own record showed it paid
    assert await asyncio.to_thread(balance) == 1_600_000 and await owed(app, alice) == 0
    assert await journal.check(app.services.db) == []


async def test_a_refused_payout_returns_the_funds_and_shows_as_failed(start_app, lnbits, lnurl_service):
    destination, state, balance = lnurl_service
    app, alice, alice_token, root = await alice_earns(lnbits, start_app)
    client = app.client.with_token(alice_token)
    await client.put("/api/market/payout-method", json={"kind": "lightning", "destination": destination})
    state.refuse = True
    report = await post(app, "/api/admin/market/payouts/run", root)
    assert report["paid"] == [] and "this wallet is closed" in report["failed"][0]["error"]
    assert await owed(app, alice) == 1_600_000 and await asyncio.to_thread(balance) == 0
    _, body, _ = await client.get("/api/market/payouts")
    assert body["payouts"][0]["status"] == "failed" and "closed" in body["payouts"][0]["error"]
    state.refuse = False  # the next batch pays
    assert [p["amount"] for p in (await post(app, "/api/admin/market/payouts/run", root))["paid"]] == [1_600_000]
    assert await asyncio.to_thread(balance) == 1_600_000
    assert await journal.check(app.services.db) == []


async def test_bad_payout_methods_are_refused_and_change_nothing(start_app, lnbits):
    app = await start_app(**payout_settings(lnbits))
    _, token = await app.user("alice")
    _, bob = await app.user("bob")
    client = app.client.with_token(token)
    for body, code in ((({"kind": "lightning", "destination": "ftp://example.com/x"}), "invalid_payout_destination"),
                       ({"kind": "lightning", "destination": "lnurl1qqqqqqqqqqq"}, "invalid_payout_destination"),
                       ({"kind": "lightning"}, "invalid_payout_destination"),
                       ({"kind": "stripe"}, "payout_method_unavailable"),
                       ({"kind": "paypal", "destination": "me@example.com"}, "invalid_body"),
                       ({"kind": "lightning", "destination": "a@b.c", "extra": 1}, "invalid_body")):
        status, answer, _ = await client.put("/api/market/payout-method", json=body)
        assert status == 400 and answer["error"]["code"] == code, (body, answer)
    status, answer, _ = await app.client.with_token(bob).put(
        "/api/market/payout-method", json={"kind": "lightning", "destination": "a@b.c", "org": "nope"})
    assert status == 404
    assert await app.services.db.fetch_value("SELECT count(*) FROM market_payout_methods") == 0
    assert (await app.client.with_token(None).get("/api/market/payouts"))[0] == 401


async def test_lnurl_endpoints_on_private_addresses_are_refused_unless_allowed():
    with pytest.raises(lnurl.LnurlError, match="private or local"):
        await lnurl.check_address("http://127.0.0.1:9/lnurlp/x", allow_private=False)
    await lnurl.check_address("http://127.0.0.1:9/lnurlp/x", allow_private=True)
    assert lnurl.endpoint("Alice@Example.com") == "https://example.com/.well-known/lnurlp/alice"


async def test_mcpstore_admin_payouts_run_says_what_it_does_and_pays(start_app, lnbits, lnurl_service, tmp_path):
    """The operator's command on the serving appliance's data folder (another process on the same database)."""
    destination, _, balance = lnurl_service
    app, alice, alice_token, _ = await alice_earns(lnbits, start_app)
    await app.client.with_token(alice_token).put("/api/market/payout-method",
                                                 json={"kind": "lightning", "destination": destination})
    config = tmp_path / "config.toml"
    config.write_text(f'[market.lnbits]\nurl = "{lnbits.url}"\ninvoice_key = "{lnbits.shop_inkey}"\n'
                      f'admin_key = "{lnbits.shop_adminkey}"\n[market.payouts]\nminimum = {{ sat = "100" }}\n'
                      'allow_private_lnurl = true\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPSTORE_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcpstore_appliance.cli.main", "admin", "payouts", "run", "--data", str(app.data_dir),
        "--config", str(config), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err
    assert b"paying every creator whose available balance reached the minimum" in err
    assert f"paying user:{alice.id} 1600000 msat by lightning".encode() in err and b"1 paid" in err
    assert [p["amount"] for p in json.loads(out)["paid"]] == [1_600_000]
    assert await asyncio.to_thread(balance) == 1_600_000 and await owed(app, alice) == 0
