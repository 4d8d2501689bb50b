"""`mcpstore serve --workers N`: N worker processes serving one port from one data folder.

The supervisor prepares the data folder once (migrations, keys), so workers never race to create them, and
reserves the port; each worker is a whole appliance (`mcpstore serve` with its role in MCPSTORE_WORKER) that
listens with SO_REUSEPORT, so the kernel spreads connections over them. SQLite's locking keeps their writes
correct (BEGIN IMMEDIATE: one ledger sequence, one checkpoint per tree size), and each sees another's commits
within a second (db/stamp.py). A worker that dies is started again at once; SIGTERM or SIGINT is passed to
every worker, which finish their requests in flight, and the supervisor exits when they have.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..worker_role import ENVIRONMENT, WorkerRole
from .client import CliError

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.1  # how often exits are looked for: a dead worker is replaced within about this
QUICK_FAILURE_SECONDS = 5.0  # a worker that fails sooner than this after starting probably cannot start
MAX_QUICK_FAILURES = 3


def worker_count(value: str | int) -> int:
    """`auto`: one per core this process may run on."""
    if value == "auto":
        return len(os.sched_getaffinity(0))
    try:
        count = int(value)
    except ValueError:
        raise CliError(f"--workers takes a number or 'auto', not {value!r}") from None
    if not 1 <= count <= 64:
        raise CliError("--workers must be between 1 and 64")
    return count


async def prepare(settings) -> None:
    """Migrate the database and create the keys before any worker starts."""
    from ..app import build_services, close_services
    from ..audit.service import open_audit_log

    services = await build_services(settings, sandboxes=False)
    try:
        services.usage.ring.state()
        open_audit_log(services.db, services.ledger, Path(settings.data_dir) / "keys", settings.audit)
    finally:
        await close_services(services)


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening, SO_REUSEPORT socket: it keeps the port (a chosen one when `port` is 0) for the
    workers, which bind the same address with SO_REUSEPORT, while receiving no connections itself."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    reserved = socket.socket(family, kind, proto)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reserved.bind(address)
    except OSError as exc:
        reserved.close()
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return reserved


def _command(argv: list[str]) -> list[str]:
    if getattr(sys, "frozen", False):  # the PyInstaller binary runs itself
        return [sys.executable, *argv]
    return [sys.executable, "-m", "mcpstore_appliance.cli.main", *argv]


def _stop_with_parent() -> None:
    """In the worker before it runs: the kernel sends it SIGTERM if the supervisor dies (killed, crashed), so no
    worker is left serving the port on its own (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    def __init__(self, count: int, argv: list[str]):
        self.count, self.argv = count, argv
        self.workers: dict[int, tuple[subprocess.Popen, float]] = {}
        self.quick_failures = 0
        self.stopping = False

    def start(self, index: int) -> None:
        role = WorkerRole(index, self.count)
        environment = {**os.environ, ENVIRONMENT: role.environment()}
        process = subprocess.Popen(_command(self.argv), env=environment, preexec_fn=_stop_with_parent)
        self.workers[index] = (process, time.monotonic())
        print(f"mcpstore supervisor: {role.name} started (pid {process.pid})", flush=True)
        if self.stopping:  # SIGTERM came while it was being started: _stop did not see it, and _drain waits for it
            process.send_signal(signal.SIGTERM)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        for index in range(self.count):
            if not self.stopping:
                self.start(index)
        while not self.stopping:
            time.sleep(POLL_SECONDS)
            for index, (process, started) in list(self.workers.items()):
                if self.stopping or process.poll() is None:
                    continue
                if not self._replace(index, process.returncode, time.monotonic() - started):
                    self._stop()
                    self._drain()
                    return 1
        return self._drain()

    def _replace(self, index: int, code: int, lived: float) -> bool:
        print(f"mcpstore supervisor: worker {index + 1} exited (code {code}) after {lived:.1f} s", flush=True)
        self.quick_failures = self.quick_failures + 1 if lived < QUICK_FAILURE_SECONDS and code != 0 else 0
        if self.quick_failures >= MAX_QUICK_FAILURES:
            print("mcpstore supervisor: workers keep failing at start; stopping (see their errors above)",
                  file=sys.stderr, flush=True)
            return False
        self.start(index)
        return True

    def _stop(self, *_) -> None:
        self.stopping = True
        for process, _ in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def _drain(self) -> int:
        """Wait for every worker to finish its requests in flight (their own shutdown timeout bounds it)."""
        codes = [process.wait() for process, _ in self.workers.values()]
        print("mcpstore supervisor: all workers stopped", flush=True)
        return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1


def run_workers(settings, count: int, log_level: str, config: Path | None) -> int:
    print(f"mcpstore supervisor: preparing {Path(settings.data_dir).resolve()}", flush=True)
    asyncio.run(prepare(settings))
    reserved = reserve_port(settings.server.host, settings.server.port)
    port = reserved.getsockname()[1]
    argv = ["serve", "--data", str(settings.data_dir), "--host", settings.server.host, "--port", str(port),
            "--log-level", log_level, *(["--config", str(config)] if config else [])]
    try:
        return Supervisor(count, argv).run()
    finally:
        reserved.close()
