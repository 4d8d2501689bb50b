"""Collect cosignatures for our checkpoints from the configured witnesses (the log side of tlog-witness).

After each new checkpoint, every witness with a `url` gets `POST <url>/add-checkpoint` with `old` = the size it
last cosigned for us and the consistency proof from there. A 409 answer tells the size the witness really has;
we retry once from that size. Good cosignatures are verified against the witness key and stored; the checkpoint
endpoint serves them beside our own signature. Uses the standard library's HTTP client in a worker thread so the
domain package stays free of aiohttp.

A witness that could not be reached (or answered 5xx/429) is asked again for the latest checkpoint after
`retry_seconds`, doubling up to MAX_RETRY_SECONDS, until it cosigns or a newer round asks it anyway: on a quiet
registry the next checkpoint may be days away, and until then the last one would stay without its cosignature.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import urllib.error
import urllib.request
from typing import Protocol

from ..config import WitnessPeer
from . import note as notes
from .checkpoint import Checkpoint
from .witness import SIZE_CONTENT_TYPE, format_request

log = logging.getLogger("mcpstore.ledger.witness")
TIMEOUT_SECONDS = 10.0
MAX_RETRY_SECONDS = 600.0


class Transient(str):
    """An outcome worth asking again later: the witness was down, overloaded or failing."""


def post(url: str, body: bytes, timeout: float = TIMEOUT_SECONDS) -> tuple[int, str, bytes]:
    """POST and return (status, content type, body) for any HTTP status."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read(65536)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read(65536)


class CosignedLog(Protocol):
    """What the collector needs of our log (the `Ledger`), so this module does not import the service."""

    async def latest_checkpoint(self) -> Checkpoint | None: ...

    async def consistency_proof(self, old: int, new: int) -> list[bytes]: ...

    async def witness_progress(self, witness: str) -> int: ...

    async def store_cosignature(self, size: int, witness: str, line: str, timestamp: int) -> None: ...


class WitnessCollector:
    def __init__(self, ledger: CosignedLog, peers: list[WitnessPeer], retry_seconds: float = 10.0):
        self.ledger = ledger
        self.retry_seconds = retry_seconds
        self._retries: dict[str, tuple[asyncio.Task, float]] = {}  # witness name -> its pending retry and delay
        self.peers = []
        for peer in peers:
            verifier = notes.parse_vkey(peer.key)
            if peer.url:
                self.peers.append((peer.name or verifier.name, verifier, peer.url.rstrip("/")))
        self._tasks: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()  # one round at a time, so each round sees the previous one's progress

    def schedule(self, checkpoint: Checkpoint) -> None:
        if not self.peers:
            return
        task = asyncio.get_running_loop().create_task(self.collect(checkpoint))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def retrying(self) -> frozenset[str]:
        """The witnesses that will be asked again (shown to tests and, later, to operators)."""
        return frozenset(self._retries)

    async def wait(self) -> None:
        """Wait for the rounds already started, not for pending retries (tests and shutdown use this)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        tasks = [*self._tasks, *(task for task, _ in self._retries.values())]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def collect(self, checkpoint: Checkpoint, only: set[str] | None = None) -> dict[str, str]:
        """Ask every witness (or those named in `only`) to cosign `checkpoint`, or the latest checkpoint if it is
        newer; returns witness name -> outcome, and schedules a retry for each transient failure."""
        peers = [peer for peer in self.peers if only is None or peer[0] in only]
        async with self._lock:
            latest = await self.ledger.latest_checkpoint()
            if latest is not None and latest.size > checkpoint.size:
                checkpoint = latest  # a newer checkpoint exists: ask for that one instead
            outcomes = await asyncio.gather(*(self._ask(name, verifier, url, checkpoint)
                                              for name, verifier, url in peers), return_exceptions=True)
        result = {}
        for (name, _, _), outcome in zip(peers, outcomes):
            result[name] = outcome if isinstance(outcome, str) else Transient(f"error: {outcome}")
            if result[name] != "cosigned":
                log.warning("witness %s did not cosign size %d: %s", name, checkpoint.size, result[name])
            if isinstance(result[name], Transient):
                self._retry_later(name, checkpoint)
        return result

    def _retry_later(self, name: str, checkpoint: Checkpoint) -> None:
        pending, last_delay = self._retries.get(name, (None, 0.0))
        delay = self.retry_seconds
        if pending is asyncio.current_task():
            delay = min(last_delay * 2, MAX_RETRY_SECONDS)  # this retry failed too: back off
        elif pending is not None:
            pending.cancel()  # a newer round asked it and failed: start over from the first delay
        task = asyncio.get_running_loop().create_task(self._retry(name, checkpoint, delay))
        self._retries[name] = (task, delay)
        task.add_done_callback(functools.partial(self._forget_retry, name))

    def _forget_retry(self, name: str, done: asyncio.Task) -> None:
        if self._retries.get(name, (None,))[0] is done:
            del self._retries[name]

    async def _retry(self, name: str, checkpoint: Checkpoint, delay: float) -> None:
        await asyncio.sleep(delay)
        if await self.ledger.witness_progress(name) >= checkpoint.size:
            return  # a later round got its cosignature meanwhile
        log.info("asking witness %s again for size %d (after %.0f s)", name, checkpoint.size, delay)
        await self.collect(checkpoint, only={name})

    async def _ask(self, name: str, verifier: notes.Verifier, url: str, checkpoint: Checkpoint) -> str:
        old = await self.ledger.witness_progress(name)
        for _ in range(2):
            if old > checkpoint.size:
                return f"witness already has size {old}"
            proof = [] if old in (0, checkpoint.size) else await self.ledger.consistency_proof(old, checkpoint.size)
            body = format_request(old, proof, checkpoint.note)
            status, content_type, answer = await asyncio.to_thread(post, f"{url}/add-checkpoint", body)
            if status == 409 and content_type.startswith(SIZE_CONTENT_TYPE):
                try:
                    old = int(answer.decode("ascii").strip())
                except ValueError:
                    return "witness sent a malformed size"
                continue
            if status != 200:
                text = f"HTTP {status}: {answer[:200].decode('utf-8', 'replace')}"
                return Transient(text) if status >= 500 or status == 429 else text
            return await self._store(name, verifier, checkpoint, answer)
        return Transient("witness size kept changing")

    async def _store(self, name: str, verifier: notes.Verifier, checkpoint: Checkpoint, answer: bytes) -> str:
        for line in answer.decode("utf-8", "replace").splitlines(keepends=True):
            try:
                signature = notes.parse(checkpoint.body + "\n" + line).signatures[0]
                timestamp = notes.verify_cosignature(checkpoint.body, signature, verifier)
            except notes.NoteError:
                continue
            await self.ledger.store_cosignature(checkpoint.size, name, signature.line(), timestamp)
            return "cosigned"
        return "no valid cosignature in the answer"
