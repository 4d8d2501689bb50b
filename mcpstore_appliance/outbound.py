"""Requests the appliance makes to URLs that others chose (pro-tier endpoints in gateway/endpoint_health.py,
OAuth client metadata documents in oauth/client_documents.py), guarded so that the appliance does not become
their way into the operator's network: only public addresses unless the operator allows more (a resolver that
refuses loopback, private, link-local and reserved ones, and the same rule for an address in the URL itself).
Callers follow no redirects and read a bounded number of bytes."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver


AnyAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def not_public(ip: AnyAddress) -> bool:
    return not ip.is_global


class RefusingResolver(AbstractResolver):
    """aiohttp's resolver, refusing a name that resolves to an address `refuses` names (`what` says which)."""

    def __init__(self, refuses: Callable[[AnyAddress], bool] = not_public, what: str = "a non-public address"):
        self._resolver = DefaultResolver()
        self.refuses, self.what = refuses, what

    async def resolve(self, host: str, port: int = 0, family: int = 0):
        answers = await self._resolver.resolve(host, port, family)
        for answer in answers:
            if self.refuses(ipaddress.ip_address(answer["host"])):
                raise OSError(f"{host} resolves to {self.what} ({answer['host']})")
        return answers

    async def close(self) -> None:
        await self._resolver.close()


def public_literal(host: str) -> bool:
    """False for an IP address that is not globally routable (aiohttp resolves only names, not addresses)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_global
    except ValueError:
        return True  # a name: the resolver checks what it resolves to


def refused_address(url: str, public_only: bool) -> bool:
    """Whether the URL names a non-public address literal that the rule refuses before any connection."""
    return public_only and not public_literal(urlsplit(url).hostname or "")


def guarded_session(context: ssl.SSLContext, public_only: bool, timeout: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(ssl=context, resolver=RefusingResolver() if public_only else None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))


def failure(exc: BaseException) -> str:
    """Why a guarded request got no answer, in one short line."""
    cause = getattr(exc, "os_error", None) or exc  # aiohttp wraps the resolver's refusal
    return f"{cause.__class__.__name__}: {str(cause.args[0] if cause.args else cause)[:200]}"
