"""The market over HTTP with the manual provider (the default: no payment provider configured): paid bundles are
for buyers, grants and offline payments by the package's managers, requires_payment from the caller's
entitlement, and bad input answered 4xx without a change."""

from __future__ import annotations

from tests.seed import bundle_for, make_org, publish

PAID = {"pricing": "subscription", "amount": "5.00", "currency": "usd"}


async def call(app, method: str, path: str, token: str | None = None, expect: int = 200, **kwargs):
    status, body, response = await app.client.with_token(token).request(method, path, **kwargs)
    assert status == expect, (method, path, status, body)
    return body, response


async def counts(app) -> tuple:
    db = app.services.db
    return tuple([await db.fetch_value(f"SELECT count(*) FROM {table}") for table in
                  ("market_orders", "market_entitlements", "market_transactions", "market_payments")])


async def test_paid_bundles_are_for_buyers_and_grants_open_them(appliance):
    _, alice = await appliance.user("alice")
    _, bob = await appliance.user("bob")
    _, carol = await appliance.user("carol")
    await publish(appliance, alice, "paid", "1.0.0", options=PAID)
    _, sha = bundle_for("paid", "1.0.0")
    download = "/api/packages/alice/paid/versions/1.0.0/download"
    for token in (None, bob):
        body, _ = await call(appliance, "GET", download, token, expect=402)
        assert body["error"]["code"] == "payment_required" and "purchase" in body["error"]["message"]
        await call(appliance, "GET", f"/bundles/{sha}.mcpb", token, expect=402)
        await call(appliance, "GET", "/api/packages/alice/paid", token)  # the page stays public
    _, response = await call(appliance, "GET", download, alice)  # the creator always may
    assert response.headers["Cache-Control"].startswith("private")

    # no payment provider is configured: buying online is refused with a pointer to the administrator
    body, _ = await call(appliance, "POST", "/api/packages/alice/paid/purchase", bob, expect=400, json={})
    assert body["error"]["code"] == "provider_unavailable" and "administrator" in body["error"]["message"]

    before = await counts(appliance)
    body, _ = await call(appliance, "POST", "/api/packages/alice/paid/grants", carol, expect=403,
                         json={"user": "bob", "reference": "nope"})
    assert body["error"]["code"] == "not_manager" and await counts(appliance) == before
    granted, _ = await call(appliance, "POST", "/api/packages/alice/paid/grants", alice, expect=201,
                            json={"user": "bob", "reference": "INV-1", "amount": "5.00"})
    assert granted["major"] == 1
    after = await counts(appliance)
    body, _ = await call(appliance, "POST", "/api/packages/alice/paid/grants", alice, expect=400,
                         json={"user": "bob", "reference": "INV-1", "amount": "5.00"})
    assert body["error"]["code"] == "duplicate_reference" and await counts(appliance) == after

    _, response = await call(appliance, "GET", download, bob)
    assert response.headers["Cache-Control"].startswith("private")
    await call(appliance, "GET", f"/bundles/{sha}.mcpb", bob)
    mine, _ = await call(appliance, "GET", "/api/market/purchases", bob)
    assert [e["package"] for e in mine["entitlements"]] == ["alice/paid"]
    assert mine["orders"][0]["status"] == "paid" and mine["orders"][0]["provider"] == "manual"
    problems = await appliance.services.market.db.fetch_value("SELECT count(*) FROM market_entries")
    assert problems == 3  # clearing, creator, platform of the recorded 5.00

    await call(appliance, "DELETE", f"/api/packages/alice/paid/grants/{granted['entitlement_id']}", alice,
               expect=204)
    await call(appliance, "GET", download, bob, expect=402)


async def test_requires_payment_follows_the_callers_entitlement(appliance):
    _, alice = await appliance.user("alice")
    _, bob = await appliance.user("bob")
    await publish(appliance, alice, "paid", "1.0.0", options=PAID)
    await publish(appliance, alice, "paid", "1.1.0")
    check = "/api/packages/alice/paid/latest?current=1.0.0"
    body, _ = await call(appliance, "GET", check, bob)
    assert body["update_available"] and body["requires_payment"] is True  # bob has bought nothing
    await call(appliance, "POST", "/api/packages/alice/paid/grants", alice, expect=201,
               json={"user": "bob", "reference": "gift"})
    body, _ = await call(appliance, "GET", check, bob)
    assert body["requires_payment"] is False  # 1.x buyers get every 1.y.z
    await publish(appliance, alice, "paid", "2.0.0")
    body, _ = await call(appliance, "GET", check, bob)
    assert body["latest_version"] == "2.0.0" and body["requires_payment"] is True  # 2.0.0 is a new purchase
    body, _ = await call(appliance, "GET", check, alice)
    assert body["requires_payment"] is False  # the creator's own package


async def test_an_org_grant_covers_its_members_and_seats_only_the_named(appliance):
    _, alice = await appliance.user("alice")
    _, olga = await appliance.user("olga")
    _, dave = await appliance.user("dave")
    _, erin = await appliance.user("erin")
    await publish(appliance, alice, "paid", "1.0.0", options=PAID)
    await make_org(appliance, olga, "acme", {"dave": "member", "erin": "member"})
    download = "/api/packages/alice/paid/versions/1.0.0/download"
    await call(appliance, "POST", "/api/packages/alice/paid/grants", alice, expect=201,
               json={"org": "acme", "seats": ["dave"], "reference": "PO-7"})
    await call(appliance, "GET", download, dave)
    await call(appliance, "GET", download, erin, expect=402)
    body, _ = await call(appliance, "POST", "/api/packages/alice/paid/grants", alice, expect=400,
                         json={"org": "acme", "seats": ["alice"], "reference": "PO-8"})
    assert body["error"]["code"] == "invalid_seats"
    await call(appliance, "POST", "/api/packages/alice/paid/grants", alice, expect=201,
               json={"org": "acme", "reference": "PO-9"})
    await call(appliance, "GET", download, erin)


async def test_bad_market_input_is_a_clear_4xx_that_changes_nothing(appliance):
    _, alice = await appliance.user("alice")
    _, bob = await appliance.user("bob")
    await publish(appliance, alice, "free", "1.0.0")
    await publish(appliance, alice, "paid", "1.0.0", options=PAID)
    before = await counts(appliance)
    cases = [
        ("POST", "/api/packages/alice/free/purchase", {}, 400, "free_package"),
        ("POST", "/api/packages/alice/nope/purchase", {}, 404, "package_not_found"),
        ("POST", "/api/packages/alice/paid/purchase", {"provider": "paypal"}, 400, "invalid_body"),
        ("POST", "/api/packages/alice/paid/purchase", {"org": "acme"}, 403, "not_org_admin"),
        ("POST", "/api/packages/alice/paid/purchase", {"seats": ["x"]}, 400, "seats_need_org"),
        ("POST", "/api/market/credits", {"currency": "usd", "amount": "1.005"}, 400, "invalid_pricing"),
        ("POST", "/api/market/credits", {"currency": "usd", "amount": "-1"}, 400, "invalid_pricing"),
        ("POST", "/api/market/credits", {"currency": "usd", "amount": "20.00"}, 400, "provider_unavailable"),
        ("POST", "/api/packages/alice/paid/grants", {"user": "bob"}, 400, "invalid_body"),
        ("POST", "/api/packages/alice/paid/grants", {"user": "ghost", "reference": "r"}, 403, "not_manager"),
        ("GET", "/api/market/orders/999", None, 404, "order_not_found"),
    ]
    for method, path, body, status, code in cases:
        answer, _ = await call(appliance, method, path, bob, expect=status, json=body)
        assert answer["error"]["code"] == code, (path, body, answer)
    answer, _ = await call(appliance, "POST", "/api/packages/alice/paid/grants", alice, expect=404,
                           json={"user": "ghost", "reference": "r"})
    assert answer["error"]["code"] == "user_not_found"
    for provider in ("stripe", "lnbits"):  # not configured here
        answer, _ = await call(appliance, "POST", f"/api/payments/{provider}/webhook", expect=404, data=b"{}")
    assert await counts(appliance) == before


async def test_prices_stay_within_the_operators_bounds_at_publish(start_app):
    app = await start_app(market={"per_call_bounds": ["0.05", "2.00"], "subscription_bounds_sat": ["1000", "5000"]})
    _, alice = await app.user("alice")
    for options, code in (({"pricing": "per_call", "amount": "0.01", "currency": "usd"}, "price_out_of_bounds"),
                          ({"pricing": "per_call", "amount": "2.01", "currency": "eur"}, "price_out_of_bounds"),
                          ({"pricing": "subscription", "amount": "999", "currency": "sat"}, "price_out_of_bounds"),
                          ({"pricing": "subscription", "amount": "4.99", "currency": "usd"}, "price_out_of_bounds")):
        body = await publish(app, alice, "tool", options=options, expect=400)
        assert body["error"]["code"] == code and body["error"]["details"]["field"] == "amount"
    assert await app.services.db.fetch_value("SELECT count(*) FROM versions") == 0
    await publish(app, alice, "tool", options={"pricing": "per_call", "amount": "2.00", "currency": "usd"})
    await publish(app, alice, "zap", options={"pricing": "subscription", "amount": "5000", "currency": "sat"})


async def test_grants_revocations_and_offline_payments_are_audited(appliance):
    _, alice = await appliance.user("alice")
    await appliance.user("bob")
    await publish(appliance, alice, "paid", "1.0.0", options=PAID)
    granted, _ = await call(appliance, "POST", "/api/packages/alice/paid/grants", alice, expect=201,
                            json={"user": "bob", "reference": "INV-9", "amount": "5.00"})
    await call(appliance, "DELETE", f"/api/packages/alice/paid/grants/{granted['entitlement_id']}", alice, expect=204)
    rows = await appliance.services.db.fetch_all("SELECT actor, action, target FROM audit_events"
                                                 " WHERE action LIKE 'market.%' ORDER BY id")
    assert [(r["actor"], r["action"], r["target"]) for r in rows] == [
        ("alice", "market.grant", "alice/paid"), ("alice", "market.revoke", "alice/paid")]
