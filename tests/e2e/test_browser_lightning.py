"""A buyer pays a sat subscription with Lightning in a real browser (Debian's headless Chromium), end to end:
the package page's buy form, the invoice page with its QR code, the FakeWallet of a real LNbits paying the
invoice (tests/lnbits_fixtures.py), the page updating itself to "paid", and the receipt. Then the creator sees
the sale on the earnings page, and a payout batch pays them over Lightning to their LNURL-pay destination."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest
import pytest_asyncio
from aiohttp import web

from tests.conftest import free_port
from tests.e2e.browser_support import (  # noqa: F401  (fixtures)
    artifacts_on_failure,
    browser,
    log_in,
    new_page,
    screenshot,
    serve_appliance,
)
from tests.e2e.test_browser import bundle
from tests.lnbits_fixtures import LnurlPay, payout_settings

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ui(tmp_path_factory, lnbits):
    """An appliance on the real LNbits, paying creators from the shop wallet (what `new_page` opens pages on)."""
    async with serve_appliance(tmp_path_factory.mktemp("browser-lightning"), **payout_settings(lnbits)) as appliance:
        yield appliance


async def test_a_buyer_pays_a_lightning_invoice_and_the_creator_is_paid_out(ui, new_page, lnbits):
    zed = await ui.user("zed")
    await ui.user("yara")
    admin = await ui.user("root", admin=True)
    await ui.publish(zed, bundle("zap-weather"), pricing="subscription", amount="2000", currency="sat")
    buyer = await new_page()
    page = buyer.page
    async with artifacts_on_failure(buyer, "lightning-buy"):
        await log_in(buyer, "yara")
        await page.goto("/packages/zed/zap-weather")
        await page.click("#buy-form button[type=submit]")
        await page.wait_for_url(re.compile(r".*/account/purchases\?order=\d+$"))
        assert await page.locator("#invoice-qr").is_visible()
        bolt11 = await page.input_value("#bolt11")
        assert bolt11.startswith("lnbc")
        await screenshot(page, "lightning-invoice")
        await asyncio.to_thread(lnbits.pay, bolt11)  # the buyer's wallet (LNbits FakeWallet) pays
        await page.wait_for_selector("#order[data-status='paid']", timeout=60_000)  # the page reloads itself
        assert "Paid" in await page.text_content("#order")
        assert await page.locator("#subscriptions tr[data-active='true']").count() == 1
        await screenshot(page, "lightning-paid")
        await page.click("#orders a:has-text('Receipt')")
        await page.wait_for_url(re.compile(r".*/account/receipts/\d+$"))
        assert (await page.text_content("#receipt-amount")).strip() == "2000 sat"
        assert buyer.csp_violations == []

    service = await asyncio.to_thread(LnurlPay, lnbits, f"zed-{uuid.uuid4().hex[:8]}")
    runner = web.AppRunner(service.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    destination, balance = f"http://127.0.0.1:{port}/lnurlp/creator", service.balance
    creator = await new_page()
    try:
        async with artifacts_on_failure(creator, "lightning-payout"):
            await log_in(creator, "zed")
            await creator.page.goto("/account/earnings")
            assert "1600 sat" in await creator.page.text_content("#earnings")
            await creator.page.fill("#destination", destination)
            await creator.page.click("form[action^='/account/earnings/payout-method'] button[type=submit]")
            await creator.page.wait_for_url(re.compile(r".*saved=method$"))
            async with ui.session.post(ui.url("/api/admin/market/payouts/run"),
                                       headers={"Authorization": f"Bearer {admin}"}) as response:
                report = await response.json()
            assert [p["amount"] for p in report["paid"]] == [1_600_000], report
            assert await asyncio.to_thread(balance) == 1_600_000
            await creator.page.goto("/account/earnings")
            assert await creator.page.locator("#payouts tr[data-status='paid']").count() == 1
            await screenshot(creator.page, "earnings-paid-out")
    finally:
        await runner.cleanup()
