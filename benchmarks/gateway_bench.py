"""Hosted execution (issue 20): a warm tools/call through the gateway against the same call straight over
stdio, the cost of starting a sandboxed session, and how many idle sessions fit in 1 GB.

    .venv/bin/python benchmarks/gateway_bench.py                    # bubblewrap, 300 calls, 16 idle sessions
    .venv/bin/python benchmarks/gateway_bench.py --backend docker   # needs a running dockerd and runtime image

One stdlib-only Python MCP server (the one tests/gateway/ uses) is published to a fresh appliance on its own
process. Direct: the server started as a plain child process, JSON-RPC lines over its stdin/stdout. Gateway:
the same server in the sandbox behind POST /mcp/{ns}/{name} with a session id (JSON answers, one keep-alive
connection). Session start is the time from the request to the initialize answer, set against starting the
plain process and initialising it. Idle memory is the proportional set size (PSS: shared pages split among
their users) of every process under the appliance while the sessions are open, over their count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import start_appliance  # noqa: E402
from benchmarks.report import machine_summary, print_table  # noqa: E402
from mcpstore_appliance.gateway.runtime import BASE_ENV, RUNTIMES  # noqa: E402
from tests.gateway.servers import SERVER, hostile_bundle  # noqa: E402

INIT = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
ECHO = {"name": "echo", "arguments": {"text": "hi"}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Direct:
    """The server as a plain child process: the floor any gateway call is measured against."""

    async def start(self, script: Path) -> float:
        began = time.perf_counter()
        self.process = await asyncio.create_subprocess_exec(  # the interpreter and environment the sandbox runs
            RUNTIMES["python3"], str(script), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=BASE_ENV)
        self.ids = iter(range(1, 1 << 30))
        await self.request("initialize", INIT)
        return time.perf_counter() - began

    async def request(self, method: str, params: dict) -> dict:
        message = {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        await self.process.stdin.drain()
        return json.loads(await self.process.stdout.readline())

    async def close(self) -> None:
        self.process.kill()
        await self.process.wait()


class Hosted:
    """One session at the appliance's hosted endpoint."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str):
        self.http, self.url = http, url
        # JSON answers: the endpoint answers with a one-event stream to clients that also accept
        # text/event-stream (as the SDKs do), which this client does not parse.
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                        "MCP-Protocol-Version": "2025-11-25"}
        self.ids = iter(range(1, 1 << 30))

    async def start(self) -> float:
        began = time.perf_counter()
        answer, session_id = await self._post("initialize", INIT)
        if "result" not in answer:
            raise RuntimeError(f"initialize failed: {answer}")
        self.headers["Mcp-Session-Id"] = session_id
        return time.perf_counter() - began

    async def request(self, method: str, params: dict) -> dict:
        return (await self._post(method, params))[0]

    async def _post(self, method: str, params: dict) -> tuple[dict, str]:
        message = {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}
        async with self.http.post(self.url, json=message, headers=self.headers) as response:
            if response.status != 200:
                raise RuntimeError(f"{method}: {response.status} {await response.text()}")
            return await response.json(), response.headers.get("Mcp-Session-Id", "")

    async def close(self) -> None:
        async with self.http.delete(self.url, headers=self.headers):
            pass


async def timed_calls(client, calls: int) -> list[float]:
    for _ in range(20):  # warm: the first calls load the tool's code paths on both sides
        await client.request("tools/call", ECHO)
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        answer = await client.request("tools/call", ECHO)
        times.append((time.perf_counter() - began) * 1000)
        if answer.get("result", {}).get("content", [{}])[0].get("text") != "hi":
            raise RuntimeError(f"unexpected answer: {answer}")
    return times


def pss_kb(root_pid: int) -> int:
    """PSS of every process below `root_pid` (not the appliance itself)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, list(children.get(root_pid, []))
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


async def run(args: argparse.Namespace) -> None:
    env = {"MCPSTORE_HOSTED__BACKEND": args.backend, "MCPSTORE_HOSTED__MAX_SESSIONS_PER_USER": str(args.sessions + 2),
           "MCPSTORE_HOSTED__MAX_SESSIONS": str(args.sessions + 4)}
    with start_appliance(env=env) as app, tempfile.TemporaryDirectory() as work:
        token = app.create_token("bench", scopes="read,publish,invoke")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.sessions + 4)) as http:
            async with http.post(app.url("/api/packages"), data=hostile_bundle("echo"), headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}) as response:
                if response.status != 201:
                    raise SystemExit(f"publish failed: {response.status} {await response.text()}")
            script = Path(work) / "server.py"
            script.write_text(SERVER)
            url = app.url("/mcp/bench/echo")

            direct_starts, hosted_starts = [], []
            for _ in range(args.starts):
                direct = Direct()
                direct_starts.append(await direct.start(script) * 1000)
                await direct.close()
                hosted = Hosted(http, url, token)
                hosted_starts.append(await hosted.start() * 1000)
                await hosted.close()

            direct = Direct()
            await direct.start(script)
            direct_calls = await timed_calls(direct, args.calls)
            await direct.close()
            hosted = Hosted(http, url, token)
            await hosted.start()
            hosted_calls = await timed_calls(hosted, args.calls)
            await hosted.close()

            idle = [Hosted(http, url, token) for _ in range(args.sessions)]
            baseline = pss_kb(app.pid)
            for session in idle:
                await session.start()
            per_session_kb = (pss_kb(app.pid) - baseline) / args.sessions
            for session in idle:
                await session.close()

    print(f"# gateway benchmark, backend {args.backend}; {machine_summary()}")
    print_table(["path", "p50 ms", "p99 ms", "calls"],
                [["tools/call direct over stdio", round(statistics.median(direct_calls), 2),
                  round(percentile(direct_calls, 0.99), 2), args.calls],
                 ["tools/call through the gateway", round(statistics.median(hosted_calls), 2),
                  round(percentile(hosted_calls, 0.99), 2), args.calls]])
    print(f"gateway adds {statistics.median(hosted_calls) - statistics.median(direct_calls):.2f} ms at p50 "
          "(target: at most 5 ms)")
    print_table(["session start", "p50 ms", "max ms", "starts"],
                [["plain process + initialize", round(statistics.median(direct_starts), 1),
                  round(max(direct_starts), 1), args.starts],
                 [f"{args.backend} sandbox + initialize", round(statistics.median(hosted_starts), 1),
                  round(max(hosted_starts), 1), args.starts]])
    print(f"sandbox start adds {statistics.median(hosted_starts) - statistics.median(direct_starts):.1f} ms at p50 "
          "(target for bubblewrap: at most 50 ms)")
    print(f"idle session: {per_session_kb / 1024:.1f} MB PSS each; {int(1024 * 1024 / per_session_kb)} fit in 1 GB "
          f"({args.sessions} measured)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("bubblewrap", "docker"), default="bubblewrap")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=16)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
