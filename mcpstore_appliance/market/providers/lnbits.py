"""LNbits (Lightning): invoices from the operator's wallet, re-checked with LNbits before anything is credited.

LNbits' webhooks are unsigned, delivered twice, and their body is JSON inside a JSON string (reference
payments.md §1.5). So a webhook URL carries our own HMAC of the order id, a delivery without a valid one is
refused, and even a valid one only makes the market ask LNbits (`check`) about the payment hash. There is no
LNbits client on PyPI worth using; this is the thin one the reference suggests (client side of aiohttp, as the
S3 blob store uses it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime
from collections.abc import Mapping
from urllib.parse import urlencode

import aiohttp

from ...errors import InvalidInput
from .base import Charge, Hint, Payment, Started

TIMEOUT = aiohttp.ClientTimeout(total=15)


class LnbitsError(Exception):
    """LNbits answered something other than what was asked for (the buy request gets a 502-like error)."""


class LnbitsProvider:
    name = "lnbits"
    currencies = frozenset({"sat"})

    def __init__(self, url: str, invoice_key: str, webhook_secret: bytes, expiry_seconds: int = 900):
        self.url = url.rstrip("/")
        self._key = invoice_key
        self._secret = webhook_secret
        self.expiry_seconds = expiry_seconds
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT, headers={"X-Api-Key": self._key})
        return self._session

    def signature(self, order_id: int) -> str:
        return hmac.new(self._secret, f"lnbits-order:{order_id}".encode(), hashlib.sha256).hexdigest()

    async def start(self, charge: Charge, webhook_url: str) -> Started:
        hook = webhook_url + "?" + urlencode({"order": charge.order_id, "sig": self.signature(charge.order_id)})
        return await self._invoice({"out": False, "amount": charge.amount, "memo": charge.description[:200],
                                    "webhook": hook, "expiry": charge.expiry_seconds or self.expiry_seconds,
                                    "extra": {"order_id": charge.order_id}})

    async def invoice(self, sats: int, memo: str) -> Started:
        """An invoice that belongs to no order (L402, tokens/l402.py): no webhook, the payer redeems it."""
        return await self._invoice({"out": False, "amount": sats, "memo": memo[:200],
                                    "expiry": self.expiry_seconds, "extra": {"l402": True}})

    async def _invoice(self, body: dict) -> Started:
        async with self._http().post(f"{self.url}/api/v1/payments", json=body) as response:
            data = await response.json(content_type=None)
            if response.status not in (200, 201) or not isinstance(data, dict) or "payment_hash" not in data:
                raise LnbitsError(f"LNbits refused the invoice ({response.status})")
        return Started(reference=data["payment_hash"], bolt11=data["bolt11"], expires_at=time.time() + body["expiry"])

    async def check(self, reference: str) -> Payment | None:
        async with self._http().get(f"{self.url}/api/v1/payments/{reference}") as response:
            if response.status == 404:
                return None
            data = await response.json(content_type=None)
            if response.status != 200 or not isinstance(data, dict):
                raise LnbitsError(f"LNbits status check failed ({response.status})")
        details = data.get("details") or {}
        if not details:
            return None
        return _payment(details, paid=bool(data.get("paid")))

    async def recent(self, since: float) -> list[Payment]:
        async with self._http().get(f"{self.url}/api/v1/payments", params={"limit": "200"}) as response:
            data = await response.json(content_type=None)
            if response.status != 200 or not isinstance(data, list):
                raise LnbitsError(f"LNbits payment list failed ({response.status})")
        found = []
        for item in data:
            if item.get("amount", 0) > 0 and item.get("status") == "success" and _time(item) >= since:
                found.append(_payment(item, paid=True))
        return found

    async def refunded(self, payment_id: str) -> bool:
        return False  # a Lightning payment is final

    def webhook(self, raw: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> list[Hint]:
        order = query.get("order", "")
        if not order.isdigit() or len(order) > 18 or not hmac.compare_digest(
                self.signature(int(order)), query.get("sig", "")):
            raise InvalidInput("this webhook URL is not one the appliance issued", code="bad_signature")
        try:
            body = json.loads(raw)
            body = json.loads(body) if isinstance(body, str) else body  # LNbits double-encodes (§1.5)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("the webhook body is not JSON", code="invalid_json") from None
        payment_hash = body.get("payment_hash") if isinstance(body, dict) else None
        if not isinstance(payment_hash, str) or len(payment_hash) != 64:
            raise InvalidInput("the webhook names no payment hash", code="invalid_webhook")
        return [Hint(event_id=payment_hash, kind="payment", reference=payment_hash, order_id=int(order))]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _payment(item: dict, *, paid: bool) -> Payment:
    extra = item.get("extra") or {}
    order = extra.get("order_id") if isinstance(extra, dict) else None
    msat = int(item.get("amount") or 0)
    return Payment(reference=item.get("payment_hash") or item.get("checking_id"), paid=paid and msat > 0,
                   amount=msat // 1000, currency="sat", fee=abs(int(item.get("fee") or 0)) // 1000,
                   order_id=order if isinstance(order, int) else None)


def _time(item: dict) -> float:
    value = item.get("time")
    if isinstance(value, (int, float)):
        return value
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0
