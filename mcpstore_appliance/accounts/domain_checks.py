"""The two proofs of owning a domain, as lookups: the TXT records of `_mcpstore-challenge.<domain>` (dnspython)
and the lines of `https://<domain>/.well-known/mcpstore-domain-verification.txt` (aiohttp's client). When a DNS
server is configured (`[sso] dns_resolver`), it answers both: the TXT records and the https host's address."""

from __future__ import annotations

import socket
import ssl

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

DNS_PREFIX = "_mcpstore-challenge."
WELL_KNOWN = "/.well-known/mcpstore-domain-verification.txt"


def _resolver(server: str, timeout: float):
    import dns.asyncresolver  # dnspython: needed only when a domain is checked

    resolver = dns.asyncresolver.Resolver(configure=not server)
    if server:
        host, _, port = server.rpartition(":")
        resolver.nameservers, resolver.port = [host.strip("[]")], int(port)
    resolver.lifetime = timeout
    return resolver


async def txt_values(domain: str, server: str, timeout: float) -> list[str]:
    import dns.exception

    try:
        answer = await _resolver(server, timeout).resolve(DNS_PREFIX + domain, "TXT")
    except dns.exception.DNSException:
        return []
    return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


class ConfiguredDns(AbstractResolver):
    """aiohttp's host lookups through the configured DNS server (A records)."""

    def __init__(self, server: str, timeout: float):
        self.server, self.timeout = server, timeout

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        import dns.exception

        try:
            answer = await _resolver(self.server, self.timeout).resolve(host, "A")
        except dns.exception.DNSException as exc:
            raise OSError(f"cannot resolve {host}: {type(exc).__name__}") from None
        return [ResolveResult(hostname=host, host=record.address, port=port, family=socket.AF_INET, proto=0,
                              flags=socket.AI_NUMERICHOST) for record in answer]

    async def close(self) -> None:
        return None


async def https_lines(domain: str, port: int, ssl_context: ssl.SSLContext | None, server: str,
                      timeout: float) -> list[str]:
    """The well-known file's lines (nothing when it cannot be fetched: the proof is simply missing)."""
    connector = aiohttp.TCPConnector(resolver=ConfiguredDns(server, timeout) if server else None)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            url = f"https://{domain}{'' if port == 443 else f':{port}'}{WELL_KNOWN}"
            async with session.get(url, ssl=ssl_context or True, allow_redirects=False) as response:
                body = await response.content.read(4096)
                if response.status != 200:
                    return []
    except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError):
        return []
    return [line.strip() for line in body.decode("utf-8", "replace").splitlines()]
