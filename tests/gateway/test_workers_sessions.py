"""Hosted MCP sessions under `mcpstore serve --workers 2`: the real supervisor on a fresh data folder, a bundle
published through the API and run in bubblewrap, and clients whose every request is a new TCP connection, so
that the kernel hands them to either worker. A session lives in the worker that ran `initialize`; the other one
passes its requests over the owner's Unix socket (web/session_routing.py). Which worker answered a client is
read from the request id's process tag, learned from /readyz (tests/gateway/workers_appliance.py)."""

from __future__ import annotations

import os
import re
import signal
from contextlib import asynccontextmanager

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.gateway.conftest import bubblewrap_missing
from tests.gateway.servers import hostile_bundle
from tests.gateway.workers_appliance import (WORKERS, Appliance, call, create_user_and_token,
                                             session_not_found, tool_text, wait_until_reaped)

REF = "alice/hostile"
CALLS = 10  # at least this many tools/call per session
MAX_CALLS = 200  # each connection reaches either worker by chance: every case is met long before this


@pytest.fixture(scope="module")
def appliance(tmp_path_factory):
    reason = bubblewrap_missing()
    if reason:
        pytest.skip(reason)
    data = tmp_path_factory.mktemp("workers") / "data"
    appliance = Appliance(data, create_user_and_token(data, "alice"))
    try:
        appliance.workers()
        appliance.publish(hostile_bundle())
        yield appliance
    finally:
        assert appliance.stop() == 0, appliance.output
    assert "mcpstore supervisor: all workers stopped" in appliance.output


def owner_number(session: str) -> int:
    """The worker (1-based, as /readyz numbers them) whose sandbox holds the session."""
    match = re.fullmatch(r"w([0-9])\..+", session)
    assert match and int(match[1]) < WORKERS, session
    return int(match[1]) + 1


def not_found_everywhere(appliance: Appliance, session: str | bytes, method: str = "POST") -> None:
    """Requests naming `session` until each worker has answered one: every answer is 404 mcp_session_not_found."""
    workers, answered_by = appliance.workers(), set()
    for _ in range(MAX_CALLS):
        if len(answered_by) == WORKERS:
            return
        answer = (appliance.mcp(REF, call(2), session) if method == "POST"
                  else appliance.request("DELETE", f"/mcp/{REF}", headers={"Mcp-Session-Id": session}))
        assert session_not_found(answer), (session, answer)
        answered_by.add(workers[answer.tag].number)
    pytest.fail(f"only worker {answered_by} answered")


def test_plain_http_calls_reach_the_session_from_both_workers_until_it_is_deleted(appliance):
    workers = appliance.workers()
    session, _ = appliance.initialize(REF)
    owner = owner_number(session)
    # (answered by the owner itself or relayed by the other worker, as JSON or as an event stream)
    cases, calls = set(), 0
    while calls < CALLS or len(cases) < 4:
        assert calls < MAX_CALLS, cases
        stream = calls % 2 == 1
        answer = appliance.mcp(REF, call(calls + 2, text=f"call {calls}"), session, stream=stream)
        assert tool_text(answer) == f"call {calls}"
        assert answer.json()["id"] == calls + 2
        assert answer.headers["Content-Type"].startswith("text/event-stream" if stream else "application/json")
        cases.add((workers[answer.tag].number == owner, stream))
        calls += 1
    assert appliance.end(REF, session).status == 204
    not_found_everywhere(appliance, session)
    not_found_everywhere(appliance, session, method="DELETE")
    assert appliance.workers() == workers  # no worker died or was started again


async def test_the_mcp_sdk_keeps_its_session_over_new_connections_to_both_workers(appliance):
    workers = appliance.workers()
    async with sdk_session(appliance) as (session, answers):
        for calls in range(MAX_CALLS):
            result = await session.call_tool("echo", {"text": f"sdk {calls}"})
            assert result.content[0].text == f"sdk {calls}" and not result.is_error
            if calls + 1 >= CALLS and {workers[answer.tag].number for answer in tool_calls(answers)} == {1, 2}:
                break
        else:
            pytest.fail("one worker answered every call")
        session_id = session_of(answers)
    # Leaving the client's context ends the session with DELETE (the SDK's terminate_on_close).
    assert [answer.status for answer in answers if answer.method == "DELETE"] == [204]
    not_found_everywhere(appliance, session_id)
    assert appliance.workers() == workers


def test_forged_session_ids_are_not_found_on_either_worker(appliance):
    workers = appliance.workers()
    session, _ = appliance.initialize(REF)
    other = f"w{2 - owner_number(session)}.{session.split('.', 1)[1]}"  # the real id under the other worker's name
    forged = ["w7.xxx", "w1.garbage", "w0.garbage", "garbage", session.split(".", 1)[1], other, "w.x", "w01.x",
              "w1.", "w-1.x", "w" + "1" * 5000 + ".x", "w²." + session.split(".", 1)[1]]
    for forgery in forged:
        not_found_everywhere(appliance, forgery.encode())  # bytes: "²" goes as UTF-8
        not_found_everywhere(appliance, forgery.encode(), method="DELETE")
    assert tool_text(appliance.mcp(REF, call(2, text="still here"), session)) == "still here"
    assert appliance.end(REF, session).status == 204
    assert appliance.workers() == workers  # no worker crashed


async def test_a_session_whose_worker_is_killed_is_not_found_and_new_sessions_start(appliance):
    workers = {worker.number: worker for worker in appliance.workers().values()}
    async with sdk_session(appliance) as (session, answers):
        assert (await session.call_tool("echo", {"text": "before"})).content[0].text == "before"
        session_id = session_of(answers)
        killed = workers[owner_number(session_id)]
        os.kill(killed.pid, signal.SIGKILL)
        wait_until_reaped(killed.pid)
        # The supervisor is starting it again: these reach the survivor (whose handover finds no one) or,
        # on a slow machine, the new worker, which has never heard of the session.
        for number in range(2 * WORKERS):
            assert session_not_found(appliance.mcp(REF, call(number), session_id))
            fresh, _ = appliance.initialize(REF, stale=session_id)  # a new session, never handed to the dead
            assert appliance.end(REF, fresh).status == 204
        with pytest.raises(MCPError) as raised:
            await session.call_tool("echo", {"text": "lost"})
        assert raised.value.error.message == "Session terminated"
    # An MCP host starts a new client (this SDK's ClientSession initialises once).
    async with sdk_session(appliance) as (session, _):
        assert (await session.call_tool("echo", {"text": "after"})).content[0].text == "after"
    restarted = {worker.number: worker for worker in appliance.workers().values()}  # waits for the new worker
    assert restarted[killed.number].pid != killed.pid
    assert f"mcpstore supervisor: worker {killed.number} exited (code -9)" in appliance.output
    sessions_on_each_worker(appliance)


def test_a_stuck_owner_gives_503_after_the_call_timeout_and_the_session_goes_on_when_it_resumes(appliance):
    """A worker that is alive but not answering (SIGSTOP here; a long pause in real life) holds no client of the
    other worker forever: the handover gives up after hosted.call_timeout_seconds plus a margin."""
    workers = {worker.number: worker for worker in appliance.workers().values()}
    session, _ = appliance.initialize(REF)
    owner = owner_number(session)
    os.kill(workers[owner].pid, signal.SIGSTOP)
    try:
        # straight to the other worker's socket: the kernel could hand a new connection to the stopped one
        stuck = appliance.mcp(REF, call(2), session, via_worker=3 - owner)
    finally:
        os.kill(workers[owner].pid, signal.SIGCONT)
    assert stuck.status == 503 and stuck.json()["error"]["code"] == "mcp_session_stuck", stuck
    assert stuck.headers["Retry-After"] == "5"
    assert tool_text(appliance.mcp(REF, call(3, text="resumed"), session, via_worker=3 - owner)) == "resumed"
    assert appliance.end(REF, session).status == 204
    assert {w.number: w.pid for w in appliance.workers().values()} == {n: w.pid for n, w in workers.items()}


def sessions_on_each_worker(appliance: Appliance) -> None:
    """New sessions until each worker holds one (the one started again included), each called from both."""
    held: dict[int, str] = {}
    for _ in range(MAX_CALLS):
        session, _ = appliance.initialize(REF)
        if owner_number(session) in held:  # sessions per user are capped: keep one per worker
            assert appliance.end(REF, session).status == 204
        held.setdefault(owner_number(session), session)
        if len(held) == WORKERS:
            break
    assert len(held) == WORKERS, held
    for number, session in held.items():
        for calls in range(CALLS):
            assert tool_text(appliance.mcp(REF, call(calls, text=f"{number}/{calls}"), session)) == f"{number}/{calls}"
    for session in held.values():
        assert appliance.end(REF, session).status == 204


class Seen:
    """One response the SDK received, as the event hook saw it."""

    def __init__(self, response: httpx2.Response, body: bytes):
        self.method, self.status = response.request.method, response.status_code
        self.session = response.headers.get("Mcp-Session-Id")
        self.tag = response.headers["X-Request-Id"].rsplit("-", 1)[0]
        self.tools_call = b'"tools/call"' in body


@asynccontextmanager
async def sdk_session(appliance: Appliance):
    """The official SDK's client with no keep-alive, so each of its requests is a new connection; yields the
    session and the list of responses it got."""
    answers: list[Seen] = []

    async def note(response: httpx2.Response) -> None:
        answers.append(Seen(response, response.request.content))

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {appliance.token}"}, timeout=httpx2.Timeout(30),
                              limits=httpx2.Limits(max_keepalive_connections=0), event_hooks={"response": [note]})
    url = f"http://127.0.0.1:{appliance.port}/mcp/{REF}"
    async with http, streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session, answers


def session_of(answers: list[Seen]) -> str:
    """The id of the SDK's latest session (from its latest initialize answer)."""
    return [answer.session for answer in answers if answer.session][-1]


def tool_calls(answers: list[Seen]) -> list[Seen]:
    return [answer for answer in answers if answer.tools_call and answer.status == 200]

