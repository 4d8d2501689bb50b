"""Send a byte range of a local file to the client with os.sendfile: the kernel copies from the page cache to the
socket, instead of Python reading each block and the event loop writing it, which spends CPU on every byte.

asyncio's loop.sendfile would do this on the event loop, but uvloop (which `mcpstore serve` runs on) does not
implement it, so a small pool of worker threads does: each waits for the socket to take more bytes with its own
poll(), never the event loop's. The event loop does not write to this connection meanwhile (the handler is
waiting for us, and the headers were flushed first), and the thread works on a duplicate of the socket's
descriptor, so a connection closed under it can never make it write into another connection that got the same
descriptor number. Where it cannot be used (no plain socket, bytes still buffered in the transport, every
worker busy) the caller streams the range as before.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

WORKERS = 32  # downloads sent at once this way (a waiting worker costs no CPU); more are streamed
STALL_SECONDS = 60.0  # a client that takes nothing for this long is dropped
BLOCK = 1 << 20

_executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="sendfile")


class _Slots:
    """How many sends are running (at most WORKERS), how many were made, and the connections being written."""

    def __init__(self, limit: int):
        self.limit = limit
        self.in_use = 0
        self.sends = 0
        self.connections: dict[int, object] = {}  # descriptor being written -> the app whose request it serves
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.in_use >= self.limit:
                return False
            self.in_use += 1
            self.sends += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.in_use -= 1

    def watch(self, connection: int, owner: object | None) -> None:
        """`owner` set: a worker starts writing to `connection` for that app; None: it has stopped."""
        with self._lock:
            if owner is not None:
                self.connections[connection] = owner
            else:
                self.connections.pop(connection, None)

    def abort_all(self, owner: object | None = None) -> int:
        """Shut down every connection a worker is writing to (for `owner`'s requests only, if given), so each
        stops at once: at shutdown, a client that stopped reading would otherwise hold its worker, and the
        exit, for STALL_SECONDS."""
        with self._lock:  # held throughout: a worker closes its descriptor only after watch(..., None)
            connections = [fd for fd, app in self.connections.items() if owner is None or app is owner]
            for connection in connections:
                sock = socket.socket(fileno=connection)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already gone
                finally:
                    sock.detach()  # the worker owns the descriptor and closes it
        return len(connections)


slots = _Slots(WORKERS)


class ClientStalled(ConnectionError):
    """The client accepted no bytes for STALL_SECONDS."""


def socket_of(request: web.Request) -> int | None:
    """The connection's socket descriptor when the kernel may write to it directly, else None."""
    transport = request.transport
    if transport is None or transport.is_closing() or transport.get_extra_info("sslcontext") is not None:
        return None
    if transport.get_write_buffer_size():
        return None  # earlier bytes (the headers) are still waiting in the transport: they must go first
    sock = transport.get_extra_info("socket")
    return sock.fileno() if sock is not None else None


async def send_range(request: web.Request, path: Path, start: int, end: int) -> bool:
    """After the response headers were sent, send bytes [start, end) of `path`. False when this way is not
    available now (nothing was sent: stream instead). FileNotFoundError before anything was sent; a short file,
    a client that went away or stalled raise ConnectionError/OSError with some bytes possibly sent."""
    fd = socket_of(request)
    if fd is None or not slots.take():
        return False
    try:
        connection = os.dup(fd)
    except OSError:
        slots.release()
        return False
    try:
        sending = asyncio.get_running_loop().run_in_executor(_executor, _send, connection, path, start, end,
                                                             request.app)
    except BaseException:
        os.close(connection)
        slots.release()
        raise
    # If the handler is cancelled meanwhile, the thread still runs (or fails on the closed connection) and then
    # frees its descriptor and its slot itself. The shield is what guarantees that: cancelling the future
    # itself would take a job that no worker has started yet off the queue, and with it the only code that
    # releases the slot and closes the duplicate descriptor.
    sending.add_done_callback(_retrieve)  # a send nobody awaits any more must not log "never retrieved"
    await asyncio.shield(sending)
    return True


def _retrieve(done: asyncio.Future) -> None:
    if not done.cancelled():
        done.exception()


def _send(connection: int, path: Path, start: int, end: int, owner: object) -> None:
    slots.watch(connection, owner)
    try:
        with open(path, "rb") as fh:
            _pump(connection, fh.fileno(), start, end)
    finally:
        slots.watch(connection, None)
        os.close(connection)
        slots.release()


def _pump(connection: int, file: int, offset: int, end: int) -> None:
    writable = select.poll()
    writable.register(connection, select.POLLOUT)
    while offset < end:
        try:
            sent = os.sendfile(connection, file, offset, min(end - offset, BLOCK))
        except BlockingIOError:
            if not writable.poll(STALL_SECONDS * 1000):
                raise ClientStalled(f"the client took nothing for {STALL_SECONDS:.0f} s") from None
            continue
        if sent == 0:
            raise OSError("the file is shorter than its recorded size")
        offset += sent
