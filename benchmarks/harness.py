"""Shared benchmark harness: start servers as subprocesses, drive them with wrk, read their memory.

Every benchmark script in this folder builds on these pieces:

    from benchmarks.harness import start_appliance, start_bare_server, run_load
    from benchmarks.report import print_table

    with start_appliance() as app, start_bare_server() as bare:      # each on its own free port
        token = app.create_token()                                    # admin user + API token via the CLI
        base = run_load(bare.url("/healthz"), seconds=5)
        mine = run_load(app.url("/api/me"), seconds=5, headers={"Authorization": f"Bearer {token}"})
        print_table(["target", "req/s"], [["bare", base.rps], ["/api/me", mine.rps]])

The load always comes from a separate process (Debian's `wrk`, or `benchmarks/python_load.py` when
wrk is missing), so the load generator never shares an event loop with the server it measures. Absolute
numbers drift on shared machines: report the appliance as a ratio to the bare server measured in the same run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

BENCH_DIR = Path(__file__).resolve().parent
ADMIN_PASSWORD = "benchmark password 1234"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------------- processes

def read_memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a live process, in KiB, from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def read_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def descendant_pids(pid: int) -> list[int]:
    """Every live process below `pid` (its children, theirs, ...), from /proc/<pid>/task/*/children: the workers
    of `mcpstore serve --workers N` under their supervisor."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            direct = [int(child) for child in children.read_text().split()]
        except OSError:  # the thread or process ended while we looked
            continue
        for child in direct:
            found += [child, *descendant_pids(child)]
    return found


def read_tree_cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and every live process below it (a process that ended meanwhile counts as 0)."""
    total = 0.0
    for each in (pid, *descendant_pids(pid)):
        try:
            total += read_cpu_seconds(each)
        except OSError:
            pass
    return total


def _http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None  # not listening yet


@dataclass
class ServerProcess:
    """A server we started; use as a context manager so it is always stopped (SIGTERM, then SIGKILL)."""

    name: str
    process: subprocess.Popen
    port: int
    workdir: Path
    ready_seconds: float = 0.0      # wall time from spawn to ready
    ready_cpu_seconds: float = 0.0  # CPU the process used to get ready (steadier than wall time on a busy box)
    log_path: Path | None = None
    _owned_dirs: list[tempfile.TemporaryDirectory] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def memory_mb(self) -> dict[str, float]:
        """{"rss": current resident MB, "peak": high-water mark MB} (MB = 2**20 bytes)."""
        kb = read_memory_kb(self.pid)
        return {"rss": kb["VmRSS"] / 1024, "peak": kb["VmHWM"] / 1024}

    def cpu_seconds(self) -> float:
        return read_cpu_seconds(self.pid)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def event_loop(self) -> str:
        """The loop the server said it runs on ("uvloop", "asyncio"), from its "listening on" line."""
        found = re.search(r"\(.*event loop: (\w+)\)", self.output())
        return found.group(1) if found else "unknown"

    def stop(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM and wait for a clean exit; returns (exit code, seconds it took). SIGKILL after `timeout`."""
        started = time.perf_counter()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode, time.perf_counter() - started

    def close(self) -> None:
        """Stop (if still running) and remove the temporary folders this server was given."""
        self.stop()
        for folder in self._owned_dirs:
            folder.cleanup()
        self._owned_dirs.clear()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _spawn(cls: type, name: str, argv: Sequence[str], port: int, workdir: Path, ready_path: str,
           env: dict[str, str], timeout: float, owned: list[tempfile.TemporaryDirectory], **fields) -> ServerProcess:
    """Start `argv`, then poll `ready_path` until it answers 200; the time from spawn to 200 is ready_seconds."""
    log_path = workdir / f"{name}.log"
    log = log_path.open("wb")  # a file, not a pipe: a chatty server must never block on a full pipe
    started = time.perf_counter()
    process = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    log.close()
    server = cls(name, process, port, workdir, log_path=log_path, _owned_dirs=owned, **fields)
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            output = server.output()
            server.close()
            raise RuntimeError(f"{name} exited with {process.returncode} before it was ready:\n{output}")
        if _http_status(server.url(ready_path), timeout=0.5) == 200:
            server.ready_seconds = time.perf_counter() - started
            server.ready_cpu_seconds = server.cpu_seconds()
            return server
        time.sleep(0.005)
    output = server.output()
    server.close()
    raise RuntimeError(f"{name} was not ready within {timeout:.0f} s:\n{output}")


# Byte-code cache for the servers we start. An installed wheel or binary ships compiled modules; a checkout run
# with PYTHONDONTWRITEBYTECODE=1 (as on the dev machines) recompiles every changed module at each start, which
# added about 0.4 s to start-to-ready. A private prefix keeps the source tree free of __pycache__ folders.
PYCACHE_PREFIX = Path(tempfile.gettempdir()) / "mcpstore-bench-pycache"


def _clean_env(extra: dict[str, str] | None) -> dict[str, str]:
    """The caller's environment without MCPSTORE_* settings (so a benchmark measures the defaults), hosted
    execution off unless asked for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPSTORE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE_PREFIX)
    # Registry benchmarks publish bundles whose servers are not real: with a sandbox on the machine, the
    # publish-time check would start each (and quarantine it). gateway_bench.py asks for its backend.
    env["MCPSTORE_HOSTED__BACKEND"] = "off"
    env.update(extra or {})
    return env


def mcpstore_command() -> list[str]:
    """The installed console script next to this interpreter (what operators run), else `python -m`."""
    script = Path(sys.executable).parent / "mcpstore"
    if script.exists():
        return [str(script)]
    found = shutil.which("mcpstore")
    return [found] if found else [sys.executable, "-m", "mcpstore_appliance.cli.main"]


@dataclass
class Appliance(ServerProcess):
    """A running `mcpstore serve` with helpers for operator commands on the same data folder."""

    data_dir: Path = Path()
    _users: set[str] = field(default_factory=set)

    def admin(self, *args: str, stdin: str | None = None) -> str:
        """Run `mcpstore admin ARGS --data DIR`; returns stdout, raises with stderr on failure."""
        done = subprocess.run([*mcpstore_command(), "admin", *args, "--data", str(self.data_dir)], input=stdin,
                              capture_output=True, text=True, env=_clean_env(None), timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"mcpstore admin {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout

    def create_token(self, username: str = "benchadmin", scopes: str = "read", admin: bool = True) -> str:
        """Create the user (unless the data folder has it) and an API token for it; returns the token."""
        if username not in self._users:
            flags = ["--admin"] if admin else []
            try:
                self.admin("create-user", *flags, "--email", f"{username}@example.com", "--username", username,
                           "--password-stdin", stdin=ADMIN_PASSWORD + "\n")
            except RuntimeError as exc:  # a reused data folder (a seeded catalog) keeps its users
                if "already exists" not in str(exc):
                    raise
            self._users.add(username)
        return self.admin("create-token", username, "--scopes", scopes).splitlines()[0].strip()


_warmed = False


def warm_up() -> None:
    """One untimed start and stop, so the byte-code cache is filled before anything is timed (once a process)."""
    global _warmed
    if not _warmed:
        _warmed = True
        start_appliance(warm=False).close()


def start_appliance(data_dir: Path | None = None, extra_args: Sequence[str] = (), env: dict[str, str] | None = None,
                    timeout: float = 60.0, warm: bool = True, wrapper: Sequence[str] = ()) -> Appliance:
    """`mcpstore serve` on a free port; a fresh temporary data folder unless `data_dir` is given.

    `ready_seconds` is the wall time from spawning the process to the first 200 from /readyz: interpreter
    start, imports, data folder, keys, migrations and the first readiness probe. `warm` runs warm_up() first.
    `wrapper` is put before the command (a profiler such as valgrind; its process is the one measured).
    """
    if warm:
        warm_up()
    owned: list[tempfile.TemporaryDirectory] = []
    workdir = Path(_owned_tempdir(owned, "mcpstore-bench-"))
    data = Path(data_dir) if data_dir else workdir / "data"
    port = free_port()
    argv = [*wrapper, *mcpstore_command(), "serve", "--data", str(data), "--host", "127.0.0.1", "--port", str(port),
            *extra_args]
    return _spawn(Appliance, "appliance", argv, port, workdir, "/readyz", _clean_env(env), timeout, owned,
                  data_dir=data)  # type: ignore[return-value]


def start_bare_server(timeout: float = 30.0, event_loop: str = "auto", wrapper: Sequence[str] = ()) -> ServerProcess:
    """The bare aiohttp "hello world" (benchmarks/bare_server.py) on a free port, same interpreter; by default
    on the event loop `mcpstore serve` picks (`auto`). `wrapper` as for start_appliance."""
    owned: list[tempfile.TemporaryDirectory] = []
    workdir = Path(_owned_tempdir(owned, "bare-bench-"))
    port = free_port()
    argv = [*wrapper, sys.executable, str(BENCH_DIR / "bare_server.py"), "--host", "127.0.0.1", "--port", str(port),
            "--event-loop", event_loop]
    return _spawn(ServerProcess, "bare", argv, port, workdir, "/", _clean_env(None), timeout, owned)


def _owned_tempdir(owned: list[tempfile.TemporaryDirectory], prefix: str) -> str:
    folder = tempfile.TemporaryDirectory(prefix=prefix)
    owned.append(folder)
    return folder.name


# -------------------------------------------------------------------------------------------------------- load

@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int = 0        # socket errors (connect, read, write, timeout)
    non_2xx: int = 0       # responses with a status >= 400 (wrk counts "non-2xx or 3xx")
    tool: str = "wrk"
    raw: str = ""
    # Server CPU time per request (µs): unlike req/s it barely moves when neighbours share the cores.
    cpu_us_per_request: float | None = None

    def ratio_to(self, baseline: "LoadResult") -> float:
        return self.rps / baseline.rps if baseline.rps else 0.0


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _latency_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"not a wrk latency: {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk_output(text: str) -> LoadResult:
    """Req/s, p50, p99 and error counts from `wrk --latency` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ", text, re.M)
    percentiles = {int(p): _latency_ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", text, re.M)}
    if not rps or not total or set(percentiles) != {50, 99}:
        raise ValueError(f"unrecognised wrk output (was --latency given?):\n{text}")
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if socket_errors:
        errors = sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return LoadResult(rps=float(rps.group(1)), p50_ms=percentiles[50], p99_ms=percentiles[99],
                      requests=int(total.group(1)), errors=errors, non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
                      tool="wrk", raw=text)


def find_debian_tool(command: str, package: str, install: bool = True) -> str | None:
    """Path of `command`; as root on Debian, install `package` with apt-get when it is missing (as .ci/run
    does for wrk)."""
    found = shutil.which(command)
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if subprocess.run(["apt-get", "install", "-y", "-qq", package], **quiet).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], **quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], **quiet)
    return shutil.which(command)


def find_wrk(install: bool = True) -> str | None:
    return find_debian_tool("wrk", "wrk", install)


def run_load(url: str, seconds: float = 5.0, threads: int = 2, connections: int = 32,
             headers: dict[str, str] | None = None, server: ServerProcess | None = None,
             tool: str = "auto") -> LoadResult:
    """`wrk -t{threads} -c{connections} -d{seconds}s --latency [-H ...] URL` from a separate process.

    tool: "auto" (wrk, installed with apt-get when missing and we are root; else the Python generator),
    "wrk" or "python". With `server`, also records the server's CPU time per request (`cpu_us_per_request`).
    """
    if tool not in ("auto", "wrk", "python"):
        raise ValueError(f"tool must be auto, wrk or python, not {tool!r}")
    wrk = None if tool == "python" else find_wrk()
    if tool == "wrk" and not wrk:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    cpu_before = server.cpu_seconds() if server else 0.0
    result = _generate_load(wrk, url, seconds, threads, connections, headers or {})
    if server and result.requests:
        result.cpu_us_per_request = (server.cpu_seconds() - cpu_before) / result.requests * 1e6
    return result


def _generate_load(wrk: str | None, url: str, seconds: float, threads: int, connections: int,
                   headers: dict[str, str]) -> LoadResult:
    header_args = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    if wrk:
        argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", *header_args,
                url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        return parse_wrk_output(done.stdout)
    argv = [sys.executable, str(Path(__file__).resolve().parent / "python_load.py"), url, "--seconds", str(seconds),
            "--connections", str(connections), *header_args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"python load generator failed: {done.stderr}")
    return LoadResult(**json.loads(done.stdout), tool="python", raw=done.stdout)
