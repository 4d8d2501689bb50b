"""Hosted MCP sessions when several worker processes serve the port (`serve --workers N`, cli/supervisor.py).

A session's sandbox lives in the worker that started it, but the kernel may hand a client's next connection to
another worker. So a session id names its worker (`w1.` + the gateway's id), every worker also listens on a
private Unix socket in the data folder (run/worker-N.sock, 0600 in a 0700 folder), and a request for another
worker's session is passed to that worker unchanged: it authenticates the caller itself, exactly as if the
client had reached it directly. With one process, ids carry no prefix and nothing is passed on.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from ..errors import NotFound, Unavailable
from ..private_files import PRIVATE_FILE_MODE, close_to_others, private_dir
from ..worker_role import WorkerRole
from .keys import SETTINGS, WORKER
from .util import HANDED_OVER_FOR, client_ip

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                        "proxy-authorization", "proxy-authenticate", "content-length", "host", HANDED_OVER_FOR.lower()})
SESSION_GONE = "no such session (it ended or expired): initialize again"
# `w<index>.<id>` exactly as public_id writes it: ASCII digits, no leading zero, so that a header of other
# characters str.isdigit() accepts ("²") or of thousands of digits is simply no session, not an error.
# A request passed on is a call inside a session, bounded by hosted.call_timeout_seconds in the owner; past that
# and this margin the owner is stuck (not dead: a dead one refuses the connection at once).
HANDOVER_MARGIN_SECONDS = 10.0
PUBLIC_ID = re.compile(r"w(0|[1-9][0-9]{0,2})\.(.+)")


async def session_handover_site(runner: web.AppRunner, role: WorkerRole, data_dir: Path) -> web.UnixSite | None:
    """Listen on this worker's socket for requests other workers pass on; None when there is one process."""
    if role.count == 1:
        return None
    path = role.socket_path(data_dir)
    private_dir(path.parent)
    path.unlink(missing_ok=True)  # left by this worker's previous life
    site = web.UnixSite(runner, str(path))
    await site.start()
    close_to_others(path, PRIVATE_FILE_MODE)
    return site


def public_id(request: web.Request, session_id: str) -> str:
    role = request.app[WORKER]
    return session_id if role.count == 1 else f"w{role.index}.{session_id}"


def _owner(role: WorkerRole, public: str) -> tuple[int, str] | None:
    """(worker index, the gateway's id) of a session id; None when it cannot be one of ours."""
    if role.count == 1:
        return role.index, public
    match = PUBLIC_ID.fullmatch(public)
    if match is None or int(match[1]) >= role.count:
        return None
    return int(match[1]), match[2]


def gateway_id(request: web.Request, public: str) -> str | None:
    """The gateway's id of a session held by this worker; None when the id is not one of this worker's."""
    owner = _owner(request.app[WORKER], public)
    return owner[1] if owner is not None and owner[0] == request.app[WORKER].index else None


async def hand_over(request: web.Request, public: str) -> web.StreamResponse | None:
    """The owning worker's answer when `public` names another worker's session; None when it is this worker's
    (or no worker's: the caller's lookup then answers 404)."""
    role = request.app[WORKER]
    owner = _owner(role, public)
    if owner is None or owner[0] == role.index:
        return None
    body = await request.read()
    headers = {name: value for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP}
    headers["Host"] = request.host
    headers[HANDED_OVER_FOR] = client_ip(request)  # the owner logs and throttles the client, not the socket
    settings = request.app[SETTINGS]
    connector = aiohttp.UnixConnector(path=str(role.socket_path(settings.data_dir, owner[0])))
    timeout = aiohttp.ClientTimeout(total=settings.hosted.call_timeout_seconds + HANDOVER_MARGIN_SECONDS)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
            async with client.request(request.method, f"http://worker{request.rel_url}", headers=headers,
                                      data=body, allow_redirects=False) as answer:
                return await _relay(request, answer)
    except (aiohttp.ClientConnectionError, FileNotFoundError):
        # The worker died (the supervisor is starting it again): its sandboxes went with it.
        raise NotFound(SESSION_GONE, code="mcp_session_not_found") from None
    except TimeoutError:
        raise Unavailable("the worker holding this session did not answer in time", code="mcp_session_stuck",
                          retry_after=5) from None


async def _relay(request: web.Request, answer: aiohttp.ClientResponse) -> web.StreamResponse:
    response = web.StreamResponse(status=answer.status, headers=CIMultiDict(
        (name, value) for name, value in answer.headers.items() if name.lower() not in HOP_BY_HOP))
    await response.prepare(request)
    async for chunk in answer.content.iter_any():
        await response.write(chunk)
    await response.write_eof()
    return response
