"""Stripe: card payments through Checkout Sessions (a hosted page) or PaymentIntents (a client secret for
Stripe Elements or an agent), with the official `stripe` SDK.

Webhooks are verified with the SDK's signature check (`construct_event`: HMAC-SHA256 over the timestamp and the raw
body, 300 s tolerance); a forged or stale delivery raises InvalidInput and changes nothing. A verified event is
still only a hint: the market retrieves the session, intent or invoice before crediting. Our order id travels in
`payment_intent_data.metadata` / `subscription_data.metadata`, since a session's own metadata is not copied
(reference payments.md §2.2). The module is not named stripe.py so that `import stripe` finds the SDK.
"""

from __future__ import annotations

from collections.abc import Mapping

import stripe

from ...errors import InvalidInput
from .base import Charge, Hint, Payment, Started

PAYMENT_EVENTS = {"checkout.session.completed", "checkout.session.async_payment_succeeded",
                  "payment_intent.succeeded"}
RENEWAL_EVENTS = {"invoice.paid", "invoice.payment_succeeded"}  # localstripe sends the older name
REFUND_EVENTS = {"charge.refunded", "charge.dispute.created"}


class StripeProvider:
    name = "stripe"
    currencies = frozenset({"usd", "eur"})

    def __init__(self, secret_key: str, webhook_secret: str, api_base: str = ""):
        self._http = stripe.AIOHTTPClient()
        addresses = {"api": api_base.rstrip("/")} if api_base else {}
        self.client = stripe.StripeClient(secret_key, http_client=self._http, max_network_retries=2,
                                          base_addresses=addresses)
        self._webhook_secret = webhook_secret

    async def start(self, charge: Charge, webhook_url: str) -> Started:
        metadata = {"order_id": str(charge.order_id)}
        options = {"idempotency_key": f"mcpstore-order-{charge.order_id}"}
        if charge.flow == "intent" and not charge.subscription:
            intent = await self.client.v1.payment_intents.create_async(params={
                "amount": charge.amount, "currency": charge.currency, "metadata": metadata,
                "payment_method_types": ["card"]}, options=options)
            return Started(reference=intent.id, client_secret=intent.client_secret)
        price = {"currency": charge.currency, "unit_amount": charge.amount,
                 "product_data": {"name": charge.description[:200]}}
        params = {"line_items": [{"quantity": 1, "price_data": price}], "success_url": charge.success_url,
                  "cancel_url": charge.cancel_url, "client_reference_id": str(charge.order_id), "metadata": metadata}
        if charge.subscription:
            price["recurring"] = {"interval": "month"}
            params.update(mode="subscription", subscription_data={"metadata": metadata})
        else:
            params.update(mode="payment", payment_intent_data={"metadata": metadata})
        session = await self.client.v1.checkout.sessions.create_async(params=params, options=options)
        return Started(reference=session.id, pay_url=session.url, expires_at=_number(session, "expires_at"))

    async def check(self, reference: str) -> Payment | None:
        try:
            if reference.startswith("cs_"):
                return _from_session(await self.client.v1.checkout.sessions.retrieve_async(reference))
            if reference.startswith("in_"):
                return _from_invoice(await self.client.v1.invoices.retrieve_async(reference))
            return _from_intent(await self.client.v1.payment_intents.retrieve_async(reference))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise

    async def recent(self, since: float) -> list[Payment]:
        found = []
        # The newest 100, filtered here: localstripe takes no `created` filter (paging further comes later).
        intents = await self.client.v1.payment_intents.list_async(params={"limit": 100})
        for intent in intents.data:
            payment = _from_intent(intent)
            if payment.paid and payment.order_id is not None and (_number(intent, "created") or 0) >= since:
                found.append(payment)
        return found

    async def refunded(self, payment_id: str) -> bool:
        """A succeeded refund of the intent, or a dispute not won by the platform."""
        refunds = await self.client.v1.refunds.list_async(params={"payment_intent": payment_id, "limit": 10})
        if any(_field(r, "status") == "succeeded" for r in refunds.data):
            return True
        try:
            disputes = await self.client.v1.disputes.list_async(params={"payment_intent": payment_id, "limit": 10})
        except stripe.StripeError as exc:
            if exc.http_status == 404:  # an API without disputes (localstripe): none to see
                return False
            raise
        return any(_field(d, "status") != "won" for d in disputes.data)

    def webhook(self, raw: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> list[Hint]:
        try:
            event = self.client.construct_event(raw, headers.get("Stripe-Signature", ""), self._webhook_secret)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise InvalidInput(f"the Stripe signature does not verify: {str(exc)[:120]}",
                               code="bad_signature") from None
        obj = event.data.object
        if event.type in PAYMENT_EVENTS:
            return [Hint(event.id, "payment", reference=obj.id, order_id=_order_id(obj))]
        if event.type in RENEWAL_EVENTS:
            return [Hint(event.id, "renewal", reference=obj.id, order_id=_order_id(obj))]
        if event.type in REFUND_EVENTS:
            return [Hint(event.id, "refund", payment_id=_field(obj, "payment_intent"))]
        return [Hint(event.id, "ignored")]

    async def close(self) -> None:
        await self._http.close_async()


def _field(obj, key: str):
    return obj[key] if key in obj else None


def _number(obj, key: str) -> float | None:
    value = _field(obj, key)
    return float(value) if isinstance(value, (int, float)) else None


def _order_id(obj) -> int | None:
    """Our order id from the object's metadata (or, for an invoice, its subscription's)."""
    for holder in (obj, _field(obj, "subscription_details"), _field(_field(obj, "parent") or {}, "subscription_details")
                   if _field(obj, "parent") else None):
        metadata = _field(holder, "metadata") if holder else None
        value = metadata["order_id"] if metadata and "order_id" in metadata else None
        if isinstance(value, str) and value.isdigit() and len(value) <= 18:
            return int(value)
    client_reference = _field(obj, "client_reference_id")
    return int(client_reference) if isinstance(client_reference, str) and client_reference.isdigit() else None


def _from_session(session) -> Payment:
    intent = _field(session, "payment_intent")
    return Payment(reference=session.id, paid=_field(session, "payment_status") == "paid",
                   amount=int(_field(session, "amount_total") or 0), currency=str(_field(session, "currency")),
                   order_id=_order_id(session), payment_id=intent if isinstance(intent, str) else None,
                   period=_field(session, "invoice") if isinstance(_field(session, "invoice"), str) else None)


def _from_intent(intent) -> Payment:
    received = int(_field(intent, "amount_received") or 0) or int(_field(intent, "amount") or 0)
    return Payment(reference=intent.id, paid=_field(intent, "status") == "succeeded", amount=received,
                   currency=str(_field(intent, "currency")), order_id=_order_id(intent), payment_id=intent.id)


def _from_invoice(invoice) -> Payment:
    return Payment(reference=invoice.id, paid=_field(invoice, "status") == "paid",
                   amount=int(_field(invoice, "amount_paid") or 0), currency=str(_field(invoice, "currency")),
                   order_id=_order_id(invoice), period=invoice.id)
