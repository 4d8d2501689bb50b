"""The listening socket, with limits on what a connection may hold: timeouts for a request head that trickles
in and for a request body that stalls, and caps on connections per client address and in total, below the
process's descriptor limit. Idle keep-alive connections are aiohttp's to close (its `keepalive_timeout`).

aiohttp alone keeps a connection whose head arrives a byte at a time until its keep-alive timer (an hour by
default), and one whose body stalls for ever, and accepts connections until descriptors run out: then /healthz
fails with everything else. `start_site(runner, settings)` listens instead of web.TCPSite, with
`loop.create_server` and a protocol factory that wraps each of aiohttp's own protocols (made by `runner.server`,
aiohttp's documented low-level server) in a `Guarded` connection, which forwards every call between the
transport and aiohttp and keeps:

- the head's clock: from the first byte of a request until its blank line (CRLF CRLF after some content;
  aiohttp skips empty lines before a request line and refuses bare LF endings);
- the body's clock: `follow_body` (called by the front door, web/front_door.py) hands it the request when it
  reaches the app; while the request's body is incomplete (`request.content.is_eof()` is false) and the app reads
  (`transport.is_reading()`: aiohttp stops reading when the handler leaves bytes unread), the client must send
  a byte at least every body-stall timeout. A handler that is busy after its body arrived is never cut.

One sweep a second (a tick a quarter of the shortest timeout when that is shorter) closes what is overdue:
no timer per request. A connection past a cap is answered 503 and closed before aiohttp sees it.
Protocol upgrades (WebSocket) are not served: their frames would be taken for a request head.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from dataclasses import dataclass

from aiohttp import web

from ..config import ServerSettings
from .metrics import Metrics

try:
    import resource
except ImportError:  # Windows
    resource = None

log = logging.getLogger("mcpstore.connections")

HEAD_END = b"\r\n\r\n"
CR_LF = b"\r\n"
BACKLOG = 1024  # connections waiting to be accepted (the kernel caps it at net.core.somaxconn)
# Descriptors kept for everything but client connections: the SQLite files (database, WAL and shared memory of
# each connection), blob files being read or written, the sendfile workers' duplicate sockets, logs.
RESERVE_MIN = 256
UNKNOWN_LIMIT_CAP = 10_000  # where the descriptor limit cannot be read
LOG_INTERVAL = 10.0  # at most one line about refusals and timeouts per interval
_REFUSED_BODY = (b'{"error": {"code": "too_many_connections", "message": "too many connections; try again later", '
                 b'"details": null}}\n')
REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nServer: mcpstore\r\nContent-Type: application/json\r\n"
           b"Connection: close\r\nRetry-After: 5\r\nContent-Length: %d\r\n\r\n%s"
           % (len(_REFUSED_BODY), _REFUSED_BODY))


def descriptor_limit() -> int | None:
    """The soft limit on open descriptors (None where it cannot be read)."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_descriptor_limit() -> int | None:
    """Raise the soft limit to the hard one (allowed without privileges); returns the limit now in force."""
    if resource is not None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            except (ValueError, OSError):  # e.g. macOS refuses more than OPEN_MAX
                pass
    return descriptor_limit()


def total_cap(configured: int, descriptors: int | None) -> int:
    """At most `configured` (0: no own choice), and always a quarter of the descriptors below the limit (at least
    RESERVE_MIN of them, at most half)."""
    if descriptors is None:
        return configured or UNKNOWN_LIMIT_CAP
    allowed = max(descriptors - max(RESERVE_MIN, descriptors // 4), descriptors // 2)
    if configured > allowed:
        log.warning("server.max_connections %d is more than %d descriptors allow: using %d",
                    configured, descriptors, allowed)
    return min(configured, allowed) if configured else allowed


def address_key(host: str) -> str:
    """What the per-address cap counts: an IPv4 address, or an IPv6 address's /64 (one subscriber's usual
    allocation, where a client could take a new address for every connection)."""
    if ":" not in host:
        return host
    try:
        ip = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if ip.ipv4_mapped is not None:  # a dual-stack socket's IPv4 client
        return str(ip.ipv4_mapped)
    return f"{ipaddress.IPv6Network((ip, 64), strict=False).network_address}/64"


@dataclass(frozen=True)
class Limits:
    header_seconds: float
    body_stall_seconds: float
    per_address: int
    total: int
    uncapped: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # trusted proxies

    @classmethod
    def of(cls, settings: ServerSettings) -> Limits:
        return cls(settings.header_timeout_seconds, settings.body_stall_timeout_seconds,
                   settings.max_connections_per_address, total_cap(settings.max_connections, descriptor_limit()),
                   tuple(ipaddress.ip_network(net, strict=False) for net in settings.trusted_proxies))

    def capped(self, host: str) -> bool:
        """Whether the per-address cap applies to `host`: not to a trusted proxy, whose connections carry
        every client behind it."""
        if not self.uncapped:
            return True
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return True
        mapped = getattr(ip, "ipv4_mapped", None)
        return not any((mapped or ip) in net for net in self.uncapped)


class Guarded(asyncio.Protocol):
    """One client connection: aiohttp's protocol inside, the clocks of its head and body beside it."""

    __slots__ = ("gate", "inner", "transport", "address", "head_since", "head_content", "tail", "request",
                 "body_at")

    def __init__(self, gate: Gate):
        self.gate = gate
        self.inner = self.transport = self.address = self.head_since = self.request = None
        self.head_content = False
        self.tail = b""
        self.body_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.address = self.gate.admit(self, transport)
        if self.address is not None:
            self.inner = self.gate.server()
            self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        inner = self.inner
        if inner is None:
            return
        request = self.request
        if request is not None and not request.content.is_eof():
            self.body_at = self.gate.loop.time()
        elif self.head_since is None and data[-4:] == HEAD_END and data[0] not in CR_LF:
            self.request = None  # a whole head at once, as nearly every client sends it: nothing to time
        else:
            self.request = None
            self._follow_head(data)
        inner.data_received(data)

    def _follow_head(self, data: bytes) -> None:
        if self.head_since is None:
            self.head_since = self.gate.loop.time()
            self.head_content = False
            self.tail = b""
        if not self.head_content:
            data = data.lstrip(b"\r\n")
            if not data:
                return
            self.head_content = True
        window = self.tail + data
        if HEAD_END in window:
            self.head_since = None  # bytes after it are the body or the next head: the next read tells
        else:
            self.tail = window[-3:]

    def request_arrived(self, request: web.BaseRequest) -> None:
        self.head_since = None
        if not request.content.is_eof():
            self.request = request
            self.body_at = self.gate.loop.time()

    def overdue(self, now: float, limits: Limits) -> str | None:
        """"head" or "body" when that clock ran out, else None."""
        if self.head_since is not None and now - self.head_since >= limits.header_seconds:
            return "head"
        request = self.request
        if request is not None:
            if request.content.is_eof():
                self.request = None
            elif not self.transport.is_reading():
                self.body_at = now  # the app has not taken what came: the client is not the one stalling
            elif now - self.body_at >= limits.body_stall_seconds:
                return "body"
        return None

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        inner, self.inner, self.request = self.inner, None, None
        if inner is not None:
            self.gate.release(self)
            inner.connection_lost(exc)


class Gate:
    """The protocol factory: admits connections under the caps, counts them, and sweeps for overdue ones."""

    def __init__(self, server: web.Server, limits: Limits, metrics: Metrics | None = None):
        self.server, self.limits, self.metrics = server, limits, metrics
        self.loop = asyncio.get_running_loop()
        self.connections: set[Guarded] = set()
        self.by_address: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # since the last log line, by reason
        self.refused_from: Counter[str] = Counter()
        self.timed_out: Counter[str] = Counter()
        self._next_log = 0.0
        if metrics is not None:
            metrics.gauge("mcpstore_connections_open", "Client connections open", lambda: len(self.connections))
            metrics.gauge("mcpstore_connections_max", "Cap on client connections", lambda: limits.total)

    def __call__(self) -> Guarded:
        return Guarded(self)

    def admit(self, guard: Guarded, transport: asyncio.BaseTransport) -> str | None:
        """The key the connection counts under, or None when a cap refuses it (answered and closed)."""
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else ""
        key = address_key(host)
        if len(self.connections) >= self.limits.total:
            return self._refuse(transport, "total", key)
        if self.by_address[key] >= self.limits.per_address and self.limits.capped(host):
            return self._refuse(transport, "per_address", key)
        self.connections.add(guard)
        self.by_address[key] += 1
        return key

    def _refuse(self, transport: asyncio.BaseTransport, reason: str, key: str) -> None:
        """A short 503 rather than a bare reset: a client that reads it knows to come back later."""
        transport.write(REFUSED)
        transport.close()
        self.refused[reason] += 1
        self.refused_from[key] += 1
        if self.metrics is not None:
            self.metrics.inc("mcpstore_connections_refused_total", help="Connections refused by a cap",
                             reason=reason)
        return None

    def release(self, guard: Guarded) -> None:
        self.connections.discard(guard)
        left = self.by_address[guard.address] - 1
        if left > 0:
            self.by_address[guard.address] = left
        else:
            del self.by_address[guard.address]

    async def sweep(self) -> None:
        limits = self.limits
        tick = min(1.0, limits.header_seconds / 4, limits.body_stall_seconds / 4)
        while True:
            await asyncio.sleep(tick)
            now = self.loop.time()
            overdue = [(guard, phase) for guard in self.connections if (phase := guard.overdue(now, limits))]
            for guard, phase in overdue:  # closing changes self.connections (now or soon)
                self._time_out(guard, phase)
            self._log(now)

    def _time_out(self, guard: Guarded, phase: str) -> None:
        guard.transport.abort()  # nothing to flush, and the descriptor is free at once
        self.timed_out[phase] += 1
        if self.metrics is not None:
            self.metrics.inc("mcpstore_connections_timed_out_total",
                             help="Connections closed because a request head or body took too long", phase=phase)

    def _log(self, now: float) -> None:
        if not (self.refused or self.timed_out) or now < self._next_log:
            return
        refused, timed_out = sum(self.refused.values()), sum(self.timed_out.values())
        top = self.refused_from.most_common(1)
        log.log(logging.WARNING if refused else logging.INFO,
                "connections: refused %d (total cap %d, per-address cap %d%s), timed out %d (head %d, body %d) "
                "since the last report; open %d of %d",
                refused, self.refused["total"], self.refused["per_address"],
                f"; most from {top[0][0]}: {top[0][1]}" if top else "", timed_out, self.timed_out["head"],
                self.timed_out["body"], len(self.connections), self.limits.total)
        self.refused.clear()
        self.refused_from.clear()
        self.timed_out.clear()
        self._next_log = now + LOG_INTERVAL


def follow_body(request: web.BaseRequest) -> None:
    """Hands a request that reached the app to its connection's guard, which times its body from then on (a
    no-op where the app is served without `start_site`, e.g. by aiohttp's test server). The front door calls it
    for every request whose method carries a body: a GET's body, which no handler reads, is aiohttp's to drain
    (for at most its lingering time) and is timed as a head here."""
    transport = request.transport
    guard = transport.get_protocol() if transport is not None else None
    if type(guard) is Guarded:
        guard.request_arrived(request)


class GuardedSite:
    """Listens on `host:port` for `runner`'s app through a Gate: web.TCPSite with the limits above. Not one of
    the runner's sites: `close()` it before `runner.cleanup()`, which then finishes the connections."""

    def __init__(self, runner: web.AppRunner, limits: Limits, metrics: Metrics | None = None):
        if runner.server is None:
            raise RuntimeError("call runner.setup() before start_site()")
        self.gate = Gate(runner.server, limits, metrics)
        self._listener: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self.gate, host, port, backlog=BACKLOG, reuse_port=reuse_port)
        self._sweeper = loop.create_task(self.gate.sweep())

    @property
    def port(self) -> int:
        return self._listener.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop accepting and sweeping; the connections open are the runner's to finish."""
        if self._listener is not None:
            self._listener.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)


async def start_site(runner: web.AppRunner, settings: ServerSettings, metrics: Metrics | None = None, *,
                     reuse_port: bool = False) -> GuardedSite:
    """Serve `runner`'s app (after `runner.setup()`) on settings.host and port with the connection limits of
    `settings`; the AppRunner takes `keepalive_timeout=settings.keepalive_timeout_seconds` itself. `reuse_port`:
    one of several worker processes on the port (cli/supervisor.py)."""
    limits = Limits.of(settings)
    site = GuardedSite(runner, limits, metrics)
    await site.start(settings.host, settings.port, reuse_port=reuse_port)
    log.info("connections: at most %d, %d per client address; a head must arrive within %g s, a body must not "
             "stall for %g s, idle connections close after %g s", limits.total, limits.per_address,
             limits.header_seconds, limits.body_stall_seconds, settings.keepalive_timeout_seconds)
    return site
