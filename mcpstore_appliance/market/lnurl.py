"""LNURL-pay (LUD-06) and Lightning addresses (LUD-16): where a creator's Lightning payouts go.

A destination is a Lightning address (`name@domain`, served at https://domain/.well-known/lnurlp/name), a bech32
`lnurl1…` string, or the LNURL-pay URL itself. The appliance fetches a URL the creator chose, so every address it
connects to is checked first: private, loopback and link-local addresses are refused unless the operator allows
them (`market.payouts.allow_private_lnurl`, for a wallet on the same network; the tests use it for loopback),
and plain http only to such allowed addresses.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import aiohttp

from ..errors import InvalidInput
from ..streams import read_capped

MAX_ANSWER = 64 * 1024
ADDRESS = re.compile(r"^([a-z0-9._+-]{1,64})@([a-z0-9.-]{1,253}(?::[0-9]{1,5})?)$")
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


class LnurlError(Exception):
    """The destination did not answer as LNURL-pay says (the payout fails and its amount goes back)."""


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            chk ^= gen if (top >> i) & 1 else 0
    return chk


def decode_lnurl(text: str) -> str:
    """The URL inside a bech32 `lnurl1…` string (checksum verified; LNURLs are longer than BIP-173's 90)."""
    text = text.lower()
    hrp, _, data = text.rpartition("1")
    if hrp != "lnurl" or len(data) < 7 or any(c not in BECH32 for c in data):
        raise InvalidInput("not a valid lnurl1… string", code="invalid_payout_destination")
    values = [BECH32.index(c) for c in data]
    if _polymod([ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + values) != 1:
        raise InvalidInput("the lnurl's checksum is wrong", code="invalid_payout_destination")
    acc, bits, out = 0, 0, bytearray()
    for value in values[:-6]:
        acc, bits = (acc << 5) | value, bits + 5
        while bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise InvalidInput("the lnurl holds no URL", code="invalid_payout_destination") from None


def endpoint(destination: str) -> str:
    """The LNURL-pay URL of a destination (no network)."""
    destination = destination.strip()
    match = ADDRESS.match(destination.lower())
    if match:
        return f"https://{match.group(2)}/.well-known/lnurlp/{match.group(1)}"
    if destination.lower().startswith("lnurl1"):
        destination = decode_lnurl(destination)
    parts = urlsplit(destination)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput("a Lightning payout goes to a Lightning address (name@domain), an lnurl1… string or an "
                           "LNURL-pay URL", code="invalid_payout_destination")
    return destination


async def check_address(url: str, allow_private: bool) -> None:
    """Refuse a URL whose host resolves to an address the operator did not allow (and http to a public one)."""
    parts = urlsplit(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443,
                                                             type=socket.SOCK_STREAM)
    except OSError:
        raise LnurlError(f"{parts.hostname} does not resolve") from None
    addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    private = any(not a.is_global for a in addresses)
    if private and not allow_private:
        raise LnurlError(f"{parts.hostname} is a private or local address")
    if parts.scheme != "https" and not private:
        raise LnurlError("an LNURL-pay endpoint on a public address must use https")


@dataclass(frozen=True)
class PayRequest:
    callback: str
    min_msat: int
    max_msat: int
    metadata: str


async def _get_json(session: aiohttp.ClientSession, url: str, allow_private: bool) -> dict:
    await check_address(url, allow_private)
    async with session.get(url, allow_redirects=False) as response:
        raw = await read_capped(response.content, MAX_ANSWER)  # a hostile endpoint may answer without end
        if len(raw) > MAX_ANSWER:
            raise LnurlError("the LNURL endpoint's answer is too large")
        try:
            data = json.loads(raw)
        except ValueError:
            raise LnurlError(f"the LNURL endpoint answered {response.status} without JSON") from None
    if not isinstance(data, dict):
        raise LnurlError("the LNURL endpoint answered no JSON object")
    if str(data.get("status", "")).upper() == "ERROR":
        raise LnurlError(f"the LNURL endpoint refused: {str(data.get('reason', ''))[:200]}")
    return data


async def pay_request(session: aiohttp.ClientSession, destination: str, allow_private: bool) -> PayRequest:
    data = await _get_json(session, endpoint(destination), allow_private)
    try:
        if data["tag"] != "payRequest":
            raise LnurlError(f"the destination is an LNURL {str(data['tag'])[:30]}, not a payRequest")
        return PayRequest(str(data["callback"]), int(data["minSendable"]), int(data["maxSendable"]),
                          str(data["metadata"]))
    except (KeyError, TypeError, ValueError):
        raise LnurlError("the LNURL-pay answer lacks callback, minSendable, maxSendable or metadata") from None


async def invoice(session: aiohttp.ClientSession, request: PayRequest, amount_msat: int, allow_private: bool) -> str:
    """A BOLT11 invoice for `amount_msat` from the destination's callback (checked by the caller)."""
    if not request.min_msat <= amount_msat <= request.max_msat:
        raise LnurlError(f"the destination takes {request.min_msat}-{request.max_msat} msat, not {amount_msat}")
    separator = "&" if "?" in request.callback else "?"
    data = await _get_json(session, request.callback + separator + urlencode({"amount": amount_msat}), allow_private)
    if not isinstance(data.get("pr"), str):
        raise LnurlError("the LNURL-pay callback returned no invoice")
    return data["pr"]


def metadata_hash(request: PayRequest) -> str:
    """What the invoice's description hash must be (LUD-06): the sha256 of the metadata string."""
    return hashlib.sha256(request.metadata.encode()).hexdigest()
