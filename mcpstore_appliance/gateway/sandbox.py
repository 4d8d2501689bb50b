"""The sandbox backend interface, and choosing a backend at start.

A Backend starts one Sandbox per session: the unpacked bundle read-only at /app, a non-root user, no network,
a read-only root with a small /tmp, and memory, CPU and process limits. A Sandbox is a byte pipe to the
server's stdin/stdout (stderr is drained and kept short, never logged: servers print secrets there) and a kill.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .runtime import Launch

log = logging.getLogger("mcpstore.gateway")
STDERR_TAIL = 4096


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 512 * 1024 * 1024
    cpus: float = 0.5
    pids: int = 64
    tmpfs_bytes: int = 16 * 1024 * 1024
    nofile: int = 1024

    @classmethod
    def from_settings(cls, hosted) -> "SandboxLimits":
        return cls(memory_bytes=hosted.memory_mb * 1024 * 1024, cpus=hosted.cpus, pids=hosted.pids,
                   tmpfs_bytes=hosted.tmpfs_mb * 1024 * 1024)


class Sandbox(Protocol):
    name: str

    async def read(self, n: int) -> bytes:
        """Up to n bytes of the server's stdout; b"" once it is closed."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    async def kill(self) -> None:
        """Stop everything in the sandbox and free it (idempotent)."""

    async def exit_reason(self) -> str | None:
        """Why the server stopped, when known ("out of memory (512 MB)", "exit status 1")."""


class Backend(Protocol):
    name: str

    def describe(self) -> str:
        """One line for the start-up log: the backend and the limits it enforces."""

    async def start(self, bundle_dir: Path, launch: Launch, limits: SandboxLimits) -> Sandbox: ...

    async def close(self) -> None: ...


class StderrTail:
    """Reads a stream to its end, keeping only the last STDERR_TAIL bytes (a server may print without end)."""

    def __init__(self) -> None:
        self.data = b""

    def feed(self, chunk: bytes) -> None:
        self.data = (self.data + chunk)[-STDERR_TAIL:]

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.feed(chunk)


async def choose_backend(hosted, work_dir: Path) -> tuple[Backend | None, str]:
    """The configured backend if it works here, or for "auto" the first that does: (backend, why)."""
    from .bwrap import BubblewrapBackend
    from .docker_backend import DockerBackend

    if hosted.backend == "off":
        return None, "hosted execution is off (hosted.backend = \"off\")"
    candidates = {"bubblewrap": [BubblewrapBackend], "docker": [DockerBackend],
                  "auto": [BubblewrapBackend, DockerBackend]}[hosted.backend]
    reasons = []
    for kind in candidates:
        try:
            backend = await kind.detect(hosted, work_dir)
        except Exception as exc:  # a probe that breaks means "not here", whatever broke
            backend, reason = None, f"{kind.name}: {exc}"
        else:
            reason = "" if backend is not None else f"{kind.name}: not usable"
        if backend is not None:
            return backend, backend.describe()
        reasons.append(reason)
    return None, "no sandbox backend works here (" + "; ".join(reasons) + ")"
