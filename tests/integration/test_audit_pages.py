"""The audit log's pages in a signed-in browser session: the filtered, paginated view for an org's owners and
auditors and for site administrators; the printable compliance report whose revenue totals are the market
journal's; foreign orgs 404."""

from __future__ import annotations

import re

from tests.integration.test_pages import Browser, site  # noqa: F401  (the fixture)
from tests.seed import make_org, publish

PAID = {"pricing": "subscription", "amount": "5.00", "currency": "usd"}


async def people(site):  # noqa: F811
    tokens = {}
    for name in ("alice", "bob", "eve"):
        _, tokens[name] = await site.user(name)
    _, tokens["root"] = await site.user("root", admin=True)
    await make_org(site, tokens["alice"], "acme", {"bob": "member"})
    await make_org(site, tokens["eve"], "evil")
    return tokens


async def signed_in(site, name: str) -> Browser:  # noqa: F811
    browser = site.browser()
    await browser.log_in(name)
    return browser


async def test_the_view_filters_pages_and_is_scoped(site):  # noqa: F811
    tokens = await people(site)
    for role in ("publisher", "member", "publisher"):
        await site.client.with_token(tokens["alice"]).put("/api/orgs/acme/members/bob", json={"role": role})
    alice = await signed_in(site, "alice")
    status, html, _ = await alice.get("/orgs/acme/audit")
    assert status == 200 and "org.create" in html and "org.member.set" in html and "evil" not in html
    status, html, _ = await alice.get("/orgs/acme/audit?action=org.member.set&limit=2")
    assert status == 200 and html.count('data-event="') == 2 and "Older events" in html
    older = re.search(r'href="(\?[^"]*before=\d+[^"]*)"', html).group(1).replace("&amp;", "&")
    status, html, _ = await alice.get("/orgs/acme/audit" + older)
    assert status == 200 and html.count('data-event="') == 2
    status, html, _ = await alice.get("/orgs/acme/audit?outcome=failure")
    assert status == 200 and "No events match." in html
    status, _, _ = await alice.get("/orgs/acme/audit?since=not-a-day")
    assert status == 400
    for path in ("/orgs/evil/audit", "/orgs/evil/audit/report", "/orgs/nosuch/audit"):
        status, html, _ = await alice.get(path)
        assert status == 404 and "org.create" not in html, path
    status, _, _ = await alice.get("/admin/audit")
    assert status == 403
    bob = await signed_in(site, "bob")
    status, _, _ = await bob.get("/orgs/acme/audit")
    assert status == 403  # members do not read the audit log
    root = await signed_in(site, "root")
    status, html, _ = await root.get("/admin/audit")
    assert status == 200 and ">acme<" in html and ">evil<" in html
    status, html, _ = await root.get("/admin/audit?org=evil")
    assert status == 200 and ">acme<" not in html and ">evil<" in html


async def test_the_compliance_report(site):  # noqa: F811
    tokens = await people(site)
    await publish(site, tokens["alice"], "paid", "1.0.0", namespace="acme", options=PAID)
    for i, user in enumerate(("bob", "eve")):
        status, body, _ = await site.client.with_token(tokens["alice"]).post(
            "/api/packages/acme/paid/grants", json={"user": user, "reference": f"INV-{i}", "amount": "5.00"})
        assert status == 201, body
    await site.client.post("/api/auth/token", json={"login": "bob", "password": "wrong"})
    alice = await signed_in(site, "alice")
    status, html, _ = await alice.get("/orgs/acme/audit/report")
    assert status == 200
    for section in ("user-access", "revenue", "security-scans", "checkpoint", "chain-check"):
        assert f'id="{section}"' in html, section
    journal = await site.services.db.fetch_all(
        "SELECT t.kind, t.currency, SUM(e.amount) AS gross FROM market_transactions t"
        " JOIN market_entries e ON e.transaction_id = t.id WHERE e.amount > 0 GROUP BY t.kind, t.currency")
    assert journal
    for row in journal:
        shown = re.search(rf'data-kind="{row["kind"]}" data-currency="{row["currency"]}">.*?class="gross">(\d+)<', html)
        assert shown and int(shown.group(1)) == row["gross"], row
    assert "passed" in re.search(r'id="chain-check">(.*?)</section>', html, re.S).group(1)
    checkpoint = await site.services.ledger.latest_checkpoint()
    assert checkpoint is not None and f"<dd>{checkpoint.size}</dd>" in html
    # sign-ins are site events; acme's report shows those of its members (bob's failed one) and no one else's
    await site.client.post("/api/auth/token", json={"login": "eve", "password": "wrong"})
    status, html, _ = await alice.get("/orgs/acme/audit/report")
    access = re.search(r'id="user-access">(.*?)</section>', html, re.S).group(1)
    assert "user.login" in access and "<td>bob</td>" in access and "<td>eve</td>" not in access
    root = await signed_in(site, "root")
    status, html, _ = await root.get("/admin/audit/report?since=2000-01-01")
    assert status == 200 and "user.login" in html and "failure" in html
    status, html, _ = await root.get("/admin/audit/report?since=2999-01-01")
    assert status == 200 and "None." in html
