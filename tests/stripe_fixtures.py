"""Stripe for the market tests: localstripe (PyPI) run in-process for what it covers (PaymentIntents, refunds,
signed webhooks), behind a RECORDING STAND-IN for what it lacks (Checkout Sessions and the invoices of the
subscriptions they make; Connect: Express accounts, onboarding links and transfers): the stand-in answers
/v1/checkout/sessions, /v1/accounts, /v1/account_links and /v1/transfers itself, records each request, and
passes every other request to localstripe unchanged. Its transfers honour Stripe's Idempotency-Key (a repeat
returns the first answer) and list by transfer_group, as Stripe's do.

`StripeWorld.complete(session)` does what Stripe does when a buyer pays on the Checkout page: a PaymentIntent is
created and confirmed in localstripe (which then sends its own signed payment_intent.succeeded), and the stand-in
marks the session paid. `signed_event` builds webhook deliveries signed as Stripe signs them, for the event types
localstripe never sends (checkout.session.completed, charge.refunded).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field

import pytest
import stripe
from aiohttp import ClientSession, web

SECRET_KEY = "sk_test_market"
WEBHOOK_SECRET = "whsec_market_tests"


def _form(items) -> dict:
    """Stripe's form encoding (a[b][0][c]=v) back into nested dicts and lists."""
    out: dict = {}
    for key, value in items:
        parts = key.replace("]", "").split("[")
        node = out
        for part, following in zip(parts, parts[1:]):
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


@dataclass
class StripeWorld:
    api_base: str
    localstripe_base: str
    sessions: dict = field(default_factory=dict)
    invoices: dict = field(default_factory=dict)
    requests: list = field(default_factory=list)  # what the appliance asked the stand-in for Checkout
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    accounts: dict = field(default_factory=dict)  # Connect (stand-in): acct id -> account
    transfers: list = field(default_factory=list)  # every transfer made, in order
    transfer_error: str | None = None  # set: transfers are refused with this message (e.g. insufficient funds)
    idempotent: dict = field(default_factory=dict)  # Idempotency-Key -> the first answer

    http: stripe.AIOHTTPClient | None = None

    def client(self) -> stripe.StripeClient:
        """The test's own SDK client, straight to localstripe (as a buyer's browser would reach Stripe)."""
        self.http = self.http or stripe.AIOHTTPClient()
        return stripe.StripeClient(SECRET_KEY, http_client=self.http, base_addresses={"api": self.localstripe_base})

    async def pay_intent(self, intent_id: str) -> None:
        """The buyer's browser pays an intent with a test card (localstripe takes the card on the intent, then
        a confirm without one)."""
        client = self.client()
        await client.v1.payment_intents.update_async(intent_id, params={"payment_method": "pm_card_visa"})
        intent = await client.v1.payment_intents.confirm_async(intent_id)
        assert intent.status == "succeeded", intent.status

    async def complete(self, session_id: str) -> str:
        """The buyer pays the session: a real PaymentIntent in localstripe, confirmed with a test card."""
        session = self.sessions[session_id]
        metadata = session["metadata_for_intent"]
        client = self.client()
        intent = await client.v1.payment_intents.create_async(params={
            "amount": session["amount_total"], "currency": session["currency"], "metadata": metadata,
            "payment_method_types": ["card"], "payment_method": "pm_card_visa", "confirm": True})
        assert intent.status == "succeeded", intent.status
        session.update(payment_status="paid", status="complete", payment_intent=intent.id)
        if session["mode"] == "subscription":
            session["invoice"] = self.invoice(session)["id"]
        return intent.id

    def invoice(self, session: dict) -> dict:
        """A paid invoice of the session's subscription (the first period, or a renewal), as the stand-in's own:
        localstripe's invoices need its subscriptions, which Checkout would have made."""
        invoice = {"id": f"in_standin_{next(self.counter)}", "object": "invoice", "status": "paid",
                   "amount_paid": session["amount_total"], "currency": session["currency"],
                   "subscription_details": {"metadata": session["metadata_for_intent"]}}
        self.invoices[invoice["id"]] = invoice
        return invoice

    def signed_event(self, event_type: str, obj: dict, *, timestamp: int | None = None,
                     secret: str = WEBHOOK_SECRET, event_id: str | None = None) -> tuple[bytes, dict]:
        payload = json.dumps({"id": event_id or f"evt_test_{next(self.counter)}", "object": "event",
                              "type": event_type, "api_version": "2026-10-28.endive", "created": int(time.time()),
                              "data": {"object": obj}})
        header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
        return payload.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}


def _standin(world: StripeWorld) -> web.Application:
    app = web.Application()
    proxy = ClientSession()

    async def create_session(request: web.Request) -> web.Response:
        params = _form((await request.post()).items())
        world.requests.append(params)
        n = next(world.counter)
        price = params["line_items"]["0"]["price_data"]
        data = params.get("payment_intent_data") or params.get("subscription_data") or {}
        session = {"id": f"cs_test_{n}", "object": "checkout.session", "mode": params["mode"],
                   "url": f"https://checkout.stripe.test/c/pay/cs_test_{n}", "payment_status": "unpaid",
                   "status": "open", "amount_total": int(price["unit_amount"]), "currency": price["currency"],
                   "client_reference_id": params.get("client_reference_id"), "metadata": params.get("metadata", {}),
                   "payment_intent": None, "invoice": None, "expires_at": int(time.time()) + 86400,
                   "metadata_for_intent": data.get("metadata", {})}
        world.sessions[session["id"]] = session
        return web.json_response(_public(session))

    async def get_session(request: web.Request) -> web.Response:
        session = world.sessions.get(request.match_info["id"])
        if session is None:
            return web.json_response({"error": {"type": "invalid_request_error", "message": "No such session"}},
                                     status=404)
        return web.json_response(_public(session))

    async def get_invoice(request: web.Request) -> web.StreamResponse:
        invoice = world.invoices.get(request.match_info["id"])
        return web.json_response(invoice) if invoice else await forward(request)

    async def forward(request: web.Request) -> web.Response:
        async with proxy.request(request.method, world.localstripe_base + request.path_qs, data=await request.read(),
                                 headers={k: v for k, v in request.headers.items() if k.lower() != "host"}) as answer:
            return web.Response(status=answer.status, body=await answer.read(), content_type="application/json")

    async def close(_app):
        await proxy.close()

    async def create_account(request: web.Request) -> web.Response:
        params = _form((await request.post()).items())
        world.requests.append(params)
        key = request.headers.get("Idempotency-Key")
        if key in world.idempotent:
            return web.json_response(world.idempotent[key])
        account = {"id": f"acct_standin_{next(world.counter)}", "object": "account", "type": params.get("type"),
                   "email": params.get("email"), "payouts_enabled": False, "charges_enabled": False,
                   "metadata": params.get("metadata", {})}
        world.accounts[account["id"]] = world.idempotent[key] = account
        return web.json_response(account)

    async def get_account(request: web.Request) -> web.Response:
        account = world.accounts.get(request.match_info["id"])
        if account is None:
            return web.json_response({"error": {"type": "invalid_request_error", "message": "No such account"}},
                                     status=404)
        return web.json_response(account)

    async def account_link(request: web.Request) -> web.Response:
        params = _form((await request.post()).items())
        world.requests.append(params)
        return web.json_response({"object": "account_link", "expires_at": int(time.time()) + 300,
                                  "url": f"https://connect.stripe.test/setup/e/{params['account']}"})

    async def create_transfer(request: web.Request) -> web.Response:
        params = _form((await request.post()).items())
        key = request.headers.get("Idempotency-Key")
        if key in world.idempotent:
            return web.json_response(world.idempotent[key])
        world.requests.append(params)
        if world.transfer_error or params["destination"] not in world.accounts:
            message = world.transfer_error or f"No such destination: '{params['destination']}'"
            return web.json_response({"error": {"type": "invalid_request_error", "message": message}}, status=400)
        transfer = {"id": f"tr_standin_{next(world.counter)}", "object": "transfer", "amount": int(params["amount"]),
                    "currency": params["currency"], "destination": params["destination"], "reversed": False,
                    "transfer_group": params.get("transfer_group"), "metadata": params.get("metadata", {})}
        world.transfers.append(transfer)
        world.idempotent[key] = transfer
        return web.json_response(transfer)

    async def list_transfers(request: web.Request) -> web.Response:
        group = request.query.get("transfer_group")
        found = [t for t in world.transfers if group is None or t["transfer_group"] == group]
        return web.json_response({"object": "list", "data": found[:int(request.query.get("limit", "10"))],
                                  "has_more": False, "url": "/v1/transfers"})

    app.router.add_post("/v1/checkout/sessions", create_session)
    app.router.add_get("/v1/checkout/sessions/{id}", get_session)
    app.router.add_get("/v1/invoices/{id}", get_invoice)
    app.router.add_post("/v1/accounts", create_account)
    app.router.add_get("/v1/accounts/{id}", get_account)
    app.router.add_post("/v1/account_links", account_link)
    app.router.add_post("/v1/transfers", create_transfer)
    app.router.add_get("/v1/transfers", list_transfers)
    app.router.add_route("*", "/{tail:.*}", forward)
    app.on_cleanup.append(close)
    return app


def _public(session: dict) -> dict:
    return {k: v for k, v in session.items() if k != "metadata_for_intent"}


@pytest.fixture(scope="session")
def localstripe_url():
    """localstripe on a loopback port, in a thread with its own event loop: its application is a module global
    that can only ever run on one loop. Its store is never pickled to /tmp (the CLI would)."""
    with warnings.catch_warnings():  # localstripe's own plain-function handlers, warned about by aiohttp
        warnings.filterwarnings("ignore", "Bare functions are deprecated", DeprecationWarning)
        from localstripe import resources, server

    resources.store.dump_to_disk = lambda: None
    loop = asyncio.new_event_loop()
    started: queue.Queue = queue.Queue()

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(server.app, access_log=None)
        loop.run_until_complete(runner.setup())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        loop.run_until_complete(web.SockSite(runner, sock).start())
        started.put(sock.getsockname()[1])
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, name="localstripe", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{started.get(timeout=30)}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


@pytest.fixture
async def stripe_world(aiohttp_server, localstripe_url):
    """An empty localstripe and a fresh stand-in in front of it."""
    from localstripe import resources

    resources.store.clear()
    world = StripeWorld(api_base="", localstripe_base=localstripe_url)
    front = await aiohttp_server(_standin(world), host="127.0.0.1")
    world.api_base = str(front.make_url("")).rstrip("/")
    yield world
    if world.http is not None:
        await world.http.close_async()


def stripe_settings(world: StripeWorld) -> dict:
    return {"market": {"stripe": {"secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET,
                                  "api_base": world.api_base}, "reconcile_interval_seconds": 0}}


async def register_webhook(world: StripeWorld, url: str) -> None:
    """localstripe sends its signed events (payment_intent.succeeded, ...) to the appliance."""
    async with ClientSession() as session:
        async with session.post(f"{world.localstripe_base}/_config/webhooks/appliance",
                                data={"url": url, "secret": WEBHOOK_SECRET}) as response:
            assert response.status == 200, await response.text()
