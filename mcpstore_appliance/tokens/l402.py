"""L402 (bLIP-26): an AI agent without an account pays a per-call package's calls with Lightning.

Asked for a usage token without credentials, the appliance answers 402 with
`WWW-Authenticate: L402 macaroon="…", invoice="…"`: an LNbits invoice for N calls at the package's sat price, and
a macaroon (pymacaroons, keyed by `keys/l402.key`) whose caveats bind it to that invoice's payment hash, the
package, N and an expiry. The agent pays and retries with `Authorization: L402 <macaroon>:<hex preimage>`:
the macaroon's HMAC chain, sha256(preimage) = payment_hash, the caveats and LNbits' own word that the invoice is
paid are checked, then one write transaction takes the payment hash (its PRIMARY KEY: accepted once, however
often or concurrently it is sent), posts the sale (creator split, like any sale) and records the token's calls.
Caveats added by the holder can only narrow (the smallest `calls` and `expires` count; two hashes or two
packages satisfy nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from pymacaroons import Macaroon, Verifier

from .. import audit
from ..accounts.ratelimit import RateLimiter, address_key
from ..errors import InvalidInput, NotFound, PaymentRequired, Unauthenticated
from ..market import journal
from ..market.journal import PLATFORM, Line
from ..market.money import split, to_journal
from ..market.orders import Product, creator_share_bp

SCHEMES = ("l402", "lsat")  # LSAT: the scheme's former name, still sent by older clients
REDEEM_SECONDS = 3600  # how long after the challenge a paid macaroon may be redeemed (past the invoice's expiry)
MAX_CREDENTIAL = 4096
CHALLENGES_PER_MINUTE = 60  # per address (IPv6: per /64): each challenge is an invoice in the shop's LNbits
CAVEATS = ("payment_hash", "package", "calls", "expires")


class L402Required(PaymentRequired):
    """A 402 whose answer carries the L402 challenge (web/errors.py sends `www_authenticate` as the header)."""

    code = "l402_payment_required"

    def __init__(self, message: str, challenge: str, details: dict):
        super().__init__(message, details=details)
        self.www_authenticate = challenge


@dataclass(frozen=True)
class Redeemed:
    payment_hash: str
    calls: int
    amount: int  # msat paid


def refuse(message: str, code: str = "invalid_l402") -> Unauthenticated:
    return Unauthenticated(message, code=code)


class L402:
    def __init__(self, db, root_key: bytes, provider, base_url: str, market_settings):
        self.db = db
        self._root_key = root_key
        self.provider = provider  # market.providers.lnbits.LnbitsProvider, or None: no L402 here
        self.location = base_url.rstrip("/")
        self.market_settings = market_settings
        self.challenges_by_ip = RateLimiter(CHALLENGES_PER_MINUTE)

    def offered_for(self, package: dict) -> bool:
        return self.provider is not None and package["pricing_model"] == "per_call" and package["currency"] == "sat"

    # -- the challenge --------------------------------------------------------------------------------------

    async def challenge(self, package: dict, calls: int, ip: str | None = None) -> L402Required:
        """A fresh invoice for `calls` calls and the macaroon bound to it, as the error the endpoint raises
        (anyone may ask: at most CHALLENGES_PER_MINUTE from one address, a 429 past it)."""
        if ip:
            self.challenges_by_ip.check(address_key(ip), "Lightning invoices asked for")
        ref = f"{package['namespace']}/{package['name']}"
        sats = package["price_amount"] * calls
        started = await self.provider.invoice(sats, f"mcpstore: {calls} calls of {ref} (L402)")
        macaroon = self.mint(started.reference, ref, calls, int(time.time()) + self.provider.expiry_seconds
                             + REDEEM_SECONDS)
        header = f'L402 macaroon="{macaroon}", invoice="{started.bolt11}"'
        return L402Required(f"pay the Lightning invoice ({sats} sat for {calls} calls of {ref}), then send "
                            "'Authorization: L402 <macaroon>:<preimage>'", header,
                            {"macaroon": macaroon, "invoice": started.bolt11, "payment_hash": started.reference,
                             "amount_sat": sats, "calls": calls, "package": ref})

    def mint(self, payment_hash: str, ref: str, calls: int, expires: int) -> str:
        macaroon = Macaroon(location=self.location, identifier=f"l402:v0:{payment_hash}:{secrets.token_hex(8)}",
                            key=self._root_key)
        for caveat in (f"payment_hash={payment_hash}", f"package={ref}", f"calls={calls}", f"expires={expires}"):
            macaroon.add_first_party_caveat(caveat)
        return macaroon.serialize()

    # -- the credential -------------------------------------------------------------------------------------

    def verified(self, credential: str, ref: str) -> tuple[str, int]:
        """(payment hash, calls) of a valid `<macaroon>:<preimage>` for package `ref`; 401 otherwise."""
        if len(credential) > MAX_CREDENTIAL or credential.count(":") != 1:
            raise refuse("send 'Authorization: L402 <macaroon>:<hex preimage>'")
        serialized, preimage = credential.strip().split(":")
        try:
            macaroon = Macaroon.deserialize(serialized.split(",")[0])
        except Exception:  # pymacaroons raises several kinds on malformed input
            raise refuse("the macaroon is malformed") from None
        caveats: dict[str, list[str]] = {}

        def satisfied(predicate: str) -> bool:
            key, sep, value = predicate.partition("=")
            if not sep or key not in CAVEATS:
                return False  # a caveat we do not know is never satisfied
            caveats.setdefault(key, []).append(value)
            return True

        verifier = Verifier()
        verifier.satisfy_general(satisfied)
        try:
            verifier.verify(macaroon, self._root_key)
        except Exception:  # a forged signature or a caveat we do not know
            raise refuse("the macaroon was not issued here (or was altered)") from None
        return self._caveats(caveats, ref), self._calls(caveats, preimage, ref)

    @staticmethod
    def _caveats(caveats: dict[str, list[str]], ref: str) -> str:
        hashes, packages = set(caveats.get("payment_hash", [])), set(caveats.get("package", []))
        if len(hashes) != 1 or not caveats.get("calls") or not caveats.get("expires"):
            raise refuse("the macaroon lacks its payment hash, calls or expiry")
        if packages != {ref}:
            raise refuse(f"this macaroon is not for {ref}", code="l402_wrong_package")
        try:
            expires = min(int(value) for value in caveats["expires"])
        except ValueError:
            raise refuse("the macaroon's expiry is malformed") from None
        if expires < time.time():
            raise refuse("this macaroon has expired; ask for a new invoice", code="l402_expired")
        return hashes.pop()

    @staticmethod
    def _calls(caveats: dict[str, list[str]], preimage: str, ref: str) -> int:
        try:
            calls = min(int(value) for value in caveats["calls"])
            digest = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        except ValueError:
            raise refuse("the preimage is the invoice's hex preimage") from None
        if calls < 1 or not hmac.compare_digest(digest, caveats["payment_hash"][0]):
            raise refuse("the preimage does not match the invoice's payment hash", code="l402_wrong_preimage")
        return calls

    async def redeem(self, package: dict, credential: str, jti: str, expires_at: int) -> Redeemed:
        """Check a credential for `package`, ask LNbits whether its invoice is paid, and, once per payment hash,
        credit the sale and record the token `jti`'s prepaid calls."""
        ref = f"{package['namespace']}/{package['name']}"
        payment_hash, calls = self.verified(credential, ref)
        if await self._taken(payment_hash):  # answered without asking LNbits; the write below decides for good
            raise refuse("this payment was already redeemed", code="l402_used")
        payment = await self.provider.check(payment_hash)
        if payment is None or not payment.paid:
            raise refuse("LNbits does not know this invoice as paid", code="l402_unpaid")
        amount, currency = to_journal(payment.amount, "sat")
        item = Product(package["id"], ref, "per_call", package["price_amount"], "sat", package["tier"],
                       package["visibility"], package["org_id"], package["owner_user_id"], None)
        creator, platform = split(amount, creator_share_bp(self.market_settings, item))
        async with self.db.write() as tx:
            if await tx.fetch_value("SELECT 1 FROM l402_tokens WHERE payment_hash = ?", (payment_hash,)):
                raise refuse("this payment was already redeemed", code="l402_used")
            txn = await journal.post(tx, "payment", f"l402:{payment_hash}", currency, [
                Line("clearing", self.provider.name, -amount), Line("creator", item.creator, creator),
                Line("revenue", PLATFORM, platform)], memo=f"L402: {calls} calls of {ref}")
            await tx.insert("l402_tokens", {"payment_hash": payment_hash, "jti": jti, "package_id": package["id"],
                                            "calls": calls, "amount": amount, "transaction_id": txn,
                                            "redeemed_at": time.time(), "expires_at": expires_at})
            await audit.record(tx, audit.SYSTEM, "market.l402", target=ref, org_id=package["org_id"],
                               details={"payment_hash": payment_hash, "calls": calls, "amount_msat": amount})
        return Redeemed(payment_hash, calls, amount)

    async def _taken(self, payment_hash: str) -> bool:
        return await self.db.fetch_value("SELECT 1 FROM l402_tokens WHERE payment_hash = ?", (payment_hash,)) \
            is not None

    # -- calls reported against an L402 token ---------------------------------------------------------------

    async def report(self, jti: str, call_id: object) -> dict | None:
        """One call against an L402 token's prepaid calls (None: `jti` is not an L402 token). A call id counts
        once; none beyond the calls paid for (402)."""
        if not isinstance(call_id, str) or not 1 <= len(call_id) <= 200:
            raise InvalidInput("call_id identifies the call (1-200 characters)", code="invalid_call_id")
        async with self.db.write() as tx:
            token = await tx.fetch_one("SELECT jti, calls, used FROM l402_tokens WHERE jti = ?", (jti,))
            if token is None:
                return None
            if await tx.fetch_value("SELECT 1 FROM l402_calls WHERE jti = ? AND call_id = ?", (jti, call_id)):
                return {"billed": False, "calls": token["calls"], "used": token["used"]}
            if not await tx.changes("UPDATE l402_tokens SET used = used + 1 WHERE jti = ? AND used < calls", (jti,)):
                raise PaymentRequired(f"this token was paid for {token['calls']} calls, all reported",
                                      code="reservation_exhausted", details={"calls": token["calls"]})
            await tx.execute("INSERT INTO l402_calls (jti, call_id) VALUES (?, ?)", (jti, call_id))
        return {"billed": True, "calls": token["calls"], "used": token["used"] + 1}

    async def package_of(self, jti: str) -> dict:
        row = await self.db.fetch_one("SELECT p.id, p.org_id, p.owner_user_id, p.visibility FROM l402_tokens t"
                                      " JOIN packages p ON p.id = t.package_id WHERE t.jti = ?", (jti,))
        if row is None:
            raise NotFound("no usage token with this jti for a package you publish", code="usage_token_not_found")
        return row
