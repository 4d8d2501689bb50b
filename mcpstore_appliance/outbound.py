"""Requests the appliance makes to URLs that others chose (pro-tier endpoints in gateway/endpoint_health.py,
OAuth client metadata documents in oauth/client_documents.py), guarded so that the appliance does not become
their way into the operator's network: only public addresses unless the operator allows more (a resolver that
refuses loopback, private, link-local and reserved ones, and the same rule for an address in the URL itself).
Callers follow no redirects and read a bounded number of bytes."""

from __future__ import annotations

import ipaddress
import ssl
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's resolver, refusing any address that is not globally routable."""

    def __init__(self):
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = 0):
        answers = await self._resolver.resolve(host, port, family)
        for answer in answers:
            if not ipaddress.ip_address(answer["host"]).is_global:
                raise OSError(f"{host} resolves to a non-public address ({answer['host']})")
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
    connector = aiohttp.TCPConnector(ssl=context, resolver=PublicOnlyResolver() if public_only else None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))


def failure(exc: BaseException) -> str:
    """Why a guarded request got no answer, in one short line."""
    cause = getattr(exc, "os_error", None) or exc  # aiohttp wraps the resolver's refusal
    return f"{cause.__class__.__name__}: {str(cause.args[0] if cause.args else cause)[:200]}"
