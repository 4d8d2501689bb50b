"""Lightning payouts: from the operator's LNbits wallet (its admin key) to a creator's LNURL-pay destination.

How LNbits pays (lnbits/core/services/payments.py, 1.x): `POST /api/v1/payments {"out": true, "bolt11"}` with
the admin key answers 201 with the payment (`status` success, or pending while an external payment is in
flight); a refusal is HTTP 520 `{"detail", "status"}`. Paying an invoice twice is refused by LNbits itself (an
internal one: "Internal invoice already paid.", status *failed*, although it WAS paid; an external one:
"Payment already paid."). So the refusal's status cannot be trusted for a repeat: before paying, the payout's
invoice hash is looked up in our own wallet (`GET /api/v1/payments/{hash}` with our key only finds our own
outgoing payment), and only a hash LNbits has never seen is paid.
"""

from __future__ import annotations

import aiohttp

from .. import lnurl
from .payers import Outcome, Prepared

TIMEOUT = aiohttp.ClientTimeout(total=60)


class LnbitsPayer:
    method = "lightning"
    provider = "lnbits"
    currencies = frozenset({"msat"})

    def __init__(self, url: str, admin_key: str, allow_private: bool):
        self.url = url.rstrip("/")
        self._key = admin_key
        self.allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._session

    async def check_destination(self, destination: str) -> str:
        lnurl.endpoint(destination)  # InvalidInput when it is no Lightning destination at all
        return destination.strip()

    def payable(self, currency: str, amount: int) -> int:
        return amount - amount % 1000  # whole sats: wallets and LNURL services round msat anyway

    async def prepare(self, payout: dict) -> Prepared:
        session = self._http()
        try:
            request = await lnurl.pay_request(session, payout["destination"], self.allow_private)
            bolt11 = await lnurl.invoice(session, request, payout["amount"], self.allow_private)
        except lnurl.LnurlError as exc:
            return Prepared(error=str(exc))
        decoded = await self._lnbits("POST", "/api/v1/payments/decode", {"data": bolt11})
        if not isinstance(decoded, dict) or decoded.get("amount_msat") != payout["amount"]:
            return Prepared(error="the destination's invoice is not for the payout's amount")
        if decoded.get("description_hash") not in (None, lnurl.metadata_hash(request)):
            return Prepared(error="the destination's invoice does not commit to its LNURL metadata")
        return Prepared(bolt11=bolt11, provider_ref=str(decoded["payment_hash"]))

    async def status(self, payout: dict) -> Outcome | None:
        async with self._http().get(f"{self.url}/api/v1/payments/{payout['provider_ref']}",
                                    headers={"X-Api-Key": self._key}) as response:
            if response.status == 404:
                return None
            data = await response.json(content_type=None)
        details = data.get("details") if isinstance(data, dict) else None
        if not isinstance(details, dict) or int(details.get("amount") or 0) >= 0:
            return None  # not an outgoing payment of our wallet (the key only shows our own)
        if data.get("paid"):
            return Outcome("paid", payout["provider_ref"])
        if data.get("status") == "failed" or details.get("status") == "failed":
            return Outcome("failed", payout["provider_ref"], "the Lightning payment failed")
        return Outcome("pending", payout["provider_ref"])

    async def send(self, payout: dict) -> Outcome:
        async with self._http().post(f"{self.url}/api/v1/payments", headers={"X-Api-Key": self._key},
                                     json={"out": True, "bolt11": payout["bolt11"]}) as response:
            data = await response.json(content_type=None)
            code = response.status
        state = str(data.get("status", "")) if isinstance(data, dict) else ""
        if code in (200, 201) and state == "success":
            return Outcome("paid", payout["provider_ref"])
        if code in (200, 201) and state == "pending":
            return Outcome("pending", payout["provider_ref"])
        if code in (400, 520) and isinstance(data, dict):
            # A refusal; what it says about a repeat is not trusted (see above): ask for our own record.
            known = await self.status(payout)
            if known is not None and known.state != "failed":
                return known
            return Outcome("failed", payout["provider_ref"], str(data.get("detail", "refused"))[:300])
        raise RuntimeError(f"LNbits answered {code} to a payment")  # asked again by the next batch

    async def _lnbits(self, method: str, path: str, body: dict) -> object:
        async with self._http().request(method, self.url + path, json=body,
                                        headers={"X-Api-Key": self._key}) as response:
            return await response.json(content_type=None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
