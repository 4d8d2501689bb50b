"""`mcpstore serve --workers 2` as an operator runs it, for tests/gateway/test_workers_sessions.py: a subprocess
on its own data folder, with a user and an API token made by the real CLI, and a plain HTTP client that opens a
new TCP connection for every request, so the kernel (SO_REUSEPORT) spreads the requests over both workers."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

MCPSTORE = [sys.executable, "-m", "mcpstore_appliance.cli.main"]
HOSTED = {"MCPSTORE_HOSTED__BACKEND": "bubblewrap", "MCPSTORE_HOSTED__PUBLISH_CHECK": "false"}
WORKERS = 2
START_SECONDS = 60.0  # a deadline for waits, never asserted on: the machine may be slow and shared
REQUEST_SECONDS = 30.0  # no request may hang: a stuck handover shows as a timeout error, not a stuck test
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict:
        """The body, or the one `message` event of an event stream."""
        if self.headers.get("Content-Type", "").startswith("text/event-stream"):
            (data,) = [line[6:] for line in self.body.decode().splitlines() if line.startswith("data: ")]
            return json.loads(data)
        return json.loads(self.body)

    @property
    def tag(self) -> str:
        """The tag of the process that answered the client: request ids are `<process tag>-<counter>`
        (web/front_door.py), set by the worker that holds the client's connection, also on relayed answers."""
        return self.headers["X-Request-Id"].rsplit("-", 1)[0]


@dataclass(frozen=True)
class Worker:
    number: int
    pid: int
    tag: str


def cli(data: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([*MCPSTORE, *args, "--data", str(data)], input=stdin, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def create_user_and_token(data: Path, username: str) -> str:
    cli(data, "admin", "create-user", "--email", f"{username}@example.com", "--username", username,
        "--password-stdin", stdin="correct horse battery\n")
    return cli(data, "admin", "create-token", username, "--scopes", "read,publish,invoke").split()[0]


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("worker", timeout=REQUEST_SECONDS)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(REQUEST_SECONDS)
        self.sock.connect(self.path)


class Appliance:
    """The supervisor and its workers; stdout and stderr are read all along (a full pipe would block them)."""

    def __init__(self, data: Path, token: str, settings: dict[str, str] | None = None):
        self.port, self.token, self.data = free_port(), token, data
        self.process = subprocess.Popen(
            [*MCPSTORE, "serve", "--data", str(data), "--port", str(self.port), "--workers", str(WORKERS)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **HOSTED, **(settings or {})})
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, *,
                via_worker: int | None = None) -> Answer:
        """One request on a new connection, closed after it; `via_worker` (1-based): straight to that worker's
        Unix socket in the data folder instead of the port the kernel shares out."""
        connection = (http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_SECONDS) if via_worker is None
                      else UnixConnection(str(self.data / "run" / f"worker-{via_worker - 1}.sock")))
        try:
            connection.request(method, path, body=body, headers={"Authorization": f"Bearer {self.token}",
                                                                 **(headers or {})})
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()

    def workers(self) -> dict[str, Worker]:
        """Every worker, by its process tag, from /readyz (which names the worker that answered when there are
        several); waits until all of them answer, e.g. while the supervisor starts one again."""
        seen: dict[str, Worker] = {}
        deadline = time.monotonic() + START_SECONDS
        while len({worker.number for worker in seen.values()}) < WORKERS:
            assert self.process.poll() is None, f"the supervisor exited:\n{self.output}"
            assert time.monotonic() < deadline, f"not every worker answered /readyz:\n{self.output}"
            try:
                answer = self.request("GET", "/readyz")
            except OSError:  # not listening yet
                time.sleep(0.05)
                continue
            if answer.status == 200:
                worker = answer.json()["worker"]
                assert worker["of"] == WORKERS
                seen[answer.tag] = Worker(worker["number"], worker["pid"], answer.tag)
        return seen

    def publish(self, bundle: bytes) -> None:
        answer = self.request("POST", "/api/packages", bundle, {"Content-Type": "application/octet-stream"})
        assert answer.status == 201, (answer.status, answer.body)

    def mcp(self, ref: str, message: dict, session: str | bytes | None = None, stream: bool = False,
            via_worker: int | None = None) -> Answer:
        headers = {"Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream" if stream else "application/json"}
        if session is not None:
            headers["Mcp-Session-Id"] = session
        return self.request("POST", f"/mcp/{ref}", json.dumps(message).encode(), headers, via_worker=via_worker)

    def initialize(self, ref: str, stale: str | None = None) -> tuple[str, Answer]:
        """A new session; `stale`: an old session's id sent along, as an SDK re-initialising on its transport does."""
        answer = self.mcp(ref, INIT, stale)
        assert answer.status == 200 and answer.json()["result"]["serverInfo"]["name"] == "hostile", answer
        return answer.headers["Mcp-Session-Id"], answer

    def end(self, ref: str, session: str) -> Answer:
        return self.request("DELETE", f"/mcp/{ref}", headers={"Mcp-Session-Id": session})

    def stop(self) -> int:
        """SIGTERM to the supervisor, which passes it to the workers; their exit code. Should it not exit, its
        workers and then itself are killed, so that no process outlives the test."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=START_SECONDS)
        except subprocess.TimeoutExpired:
            for pid in children(self.process.pid):
                os.kill(pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the supervisor did not stop on SIGTERM:\n{self.output}") from None


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wait_until_reaped(pid: int) -> None:
    """Until the supervisor has reaped the process. Only then are all its threads gone and its listening socket
    closed: a connection the kernel queues on a listener of a dying process is reset when the socket closes
    (unless net.ipv4.tcp_migrate_req moves it), and a test should not count on that race."""
    deadline = time.monotonic() + START_SECONDS
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"process {pid} was not reaped"
        time.sleep(0.02)


def call(number: int, tool: str = "echo", **arguments) -> dict:
    return {"jsonrpc": "2.0", "id": number, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}


def tool_text(answer: Answer) -> str:
    assert answer.status == 200, (answer.status, answer.body)
    return answer.json()["result"]["content"][0]["text"]


def session_not_found(answer: Answer) -> bool:
    return answer.status == 404 and answer.json()["error"]["code"] == "mcp_session_not_found"
