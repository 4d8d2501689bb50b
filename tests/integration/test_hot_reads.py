"""web/hot_reads.py against a real appliance over raw sockets: anonymous package data and update checks
answered before routing must be the bytes the route sends (but Date and the request id), must never answer
what an anonymous caller may not see or what changed since, and must leave every other request to the route."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import pytest

from mcpstore_appliance.app import HOT_READS
from tests.integration.test_encoded_response import exchange
from tests.seed import make_org, publish, set_package, yank

PATH = "/api/packages/alice/tool"


def get(path: str = PATH, *headers: str, version: str = "1.1") -> bytes:
    return "\r\n".join([f"GET {path} HTTP/{version}", "Host: test", *headers, "", ""]).encode()


pytestmark = pytest.mark.usefixtures("exact_stamp")


@pytest.fixture
async def appliance(start_app):
    return await start_app()


async def ask(appliance, raw: bytes, responses: int = 1, *, bodiless: bool = False):
    """(status line, headers, body) of each answer; `bodiless`: answers without a body (HEAD, 304)."""
    host, port = appliance.base_url.removeprefix("http://").split(":")
    answers = await exchange(host, int(port), raw, responses, head=bodiless)
    return answers if responses > 1 else answers[0]


async def answered(appliance) -> int:
    return appliance.app[HOT_READS].answered


async def raw_head(appliance, raw: bytes) -> list[str]:
    """The answer's header lines in order, as sent."""
    host, port = appliance.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        return (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")[:-2]
    finally:
        writer.close()


@pytest.fixture
async def alice(appliance) -> str:
    _, token = await appliance.user("alice")
    await publish(appliance, token, "tool", "1.0.0")
    return token


def without_date_and_id(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith(("Date:", "X-Request-Id:"))]


@pytest.mark.parametrize("behind_tls", [False, True])
async def test_a_hot_answer_is_the_routes_answer(start_app, behind_tls):
    appliance = await start_app(server={"behind_tls": behind_tls})
    _, token = await appliance.user("alice")
    await publish(appliance, token, "tool", "1.0.0", long_description="# Tool\n\nÉcole, 東京 and 🙂")
    routed = await raw_head(appliance, get())  # the route keeps the page
    assert await answered(appliance) == 0
    hot = await raw_head(appliance, get())
    assert await answered(appliance) == 1
    assert without_date_and_id(hot) == without_date_and_id(routed)
    assert ("Strict-Transport-Security: max-age=31536000" in hot) is behind_tls
    assert re.fullmatch(r"X-Request-Id: [0-9a-f]{8}-[0-9a-f]+", next(l for l in hot if l.startswith("X-Request-Id")))
    _, _, hot_body = await ask(appliance, get())
    _, routed_headers, routed_body = await ask(appliance, get(PATH, 'If-None-Match: "other"'))  # the route's 200
    assert await answered(appliance) == 2
    assert hot_body == routed_body and json.loads(hot_body)["description"]
    assert "École" in json.loads(hot_body)["long_description_html"]


async def test_request_ids_are_unique_and_pipelined_requests_answered_in_order(appliance, alice):
    await publish(appliance, alice, "other", "2.0.0")
    for path in (PATH, "/api/packages/alice/other"):
        await ask(appliance, get(path))
    answers = await ask(appliance, get() + get("/api/packages/alice/other") + get(), responses=3)
    assert await answered(appliance) == 3
    assert [json.loads(body)["name"] for _, _, body in answers] == ["tool", "other", "tool"]
    assert len({headers["x-request-id"] for _, headers, _ in answers}) == 3


@pytest.mark.parametrize("raw, status, check", [
    (get(PATH, "If-None-Match: *"), "304", None),
    (get(PATH + "?fields=name"), "200", None),
    (get("/api/packages/alice/%74ool"), "200", None),  # percent-escaped: the route decodes it
    (get(PATH, "X-Request-Id: trace-me"), "200", ("x-request-id", "trace-me")),
    (get(PATH, "Cookie: theme=dark"), "200", None),
    (get(PATH, "Connection: close"), "200", ("connection", "close")),
    (get(PATH, version="1.0"), "200", None),
    (get(PATH + "/"), "404", None),
    (get("/api/packages/alice/nope"), "404", None),
    (get("/api/packages//tool"), "404", None),
    (get(PATH).replace(b"GET", b"HEAD", 1), "200", None),
    (get(PATH).replace(b"GET", b"DELETE", 1), "405", None),
])
async def test_other_requests_take_the_route(appliance, alice, raw, status, check):
    await ask(appliance, get())  # kept: a plain GET would now be hot
    before = await answered(appliance)
    status_line, headers, _ = await ask(appliance, raw, bodiless=raw.startswith(b"HEAD") or status == "304")
    assert status_line.split(" ")[1] == status, status_line
    if check:
        assert headers[check[0]] == check[1]
    assert await answered(appliance) == before


async def test_a_token_takes_the_route(appliance, alice):
    await ask(appliance, get())
    _, headers, body = await ask(appliance, get(PATH, f"Authorization: Bearer {alice}"))
    assert json.loads(body)["name"] == "tool" and await answered(appliance) == 0
    _, _, _ = await ask(appliance, get(PATH, "Authorization: Bearer forged"))
    assert await answered(appliance) == 0


async def test_never_answers_what_an_anonymous_caller_may_not_see(appliance, alice):
    await publish(appliance, alice, "secret", options={"visibility": "private"})
    secret = "/api/packages/alice/secret"
    assert (await ask(appliance, get(secret, f"Authorization: Bearer {alice}")))[0].endswith("200 OK")  # kept
    for _ in range(2):
        assert " 404 " in (await ask(appliance, get(secret)))[0]
    await ask(appliance, get())
    await ask(appliance, get())
    assert await answered(appliance) == 1
    await set_package(appliance, "alice", "tool", visibility="private")  # a public page made private
    assert " 404 " in (await ask(appliance, get()))[0]
    assert " 404 " in (await ask(appliance, get()))[0]
    assert await answered(appliance) == 1


async def test_every_commit_is_seen_by_the_next_answer(appliance, alice):
    await ask(appliance, get())
    await publish(appliance, alice, "tool", "1.1.0")
    assert json.loads((await ask(appliance, get()))[2])["version"] == "1.1.0"  # the route, after a commit
    assert json.loads((await ask(appliance, get()))[2])["version"] == "1.1.0"  # hot again
    assert await answered(appliance) == 1
    await yank(appliance, alice, "alice", "tool", "1.1.0")
    assert json.loads((await ask(appliance, get()))[2])["version"] == "1.0.0"
    await set_package(appliance, "alice", "tool", downloads=42)
    assert json.loads((await ask(appliance, get()))[2])["stats"]["downloads"] == 42
    assert await answered(appliance) == 1


async def test_hot_answers_are_counted_and_logged_as_the_routes(start_app, caplog):
    caplog.set_level(logging.INFO, logger="mcpstore.access")
    appliance = await start_app(server={"access_log": True})
    _, token = await appliance.user("alice")
    await publish(appliance, token, "tool", "1.0.0")
    caplog.clear()
    answers = [await ask(appliance, get()) for _ in range(3)]
    assert await answered(appliance) == 2
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mcpstore.access"]
    assert [(line["path"], line["status"], line["user"]) for line in lines] == [(PATH, 200, None)] * 3
    assert [line["request_id"] for line in lines] == [headers["x-request-id"] for _, headers, _ in answers]
    _, text, _ = await appliance.client.get("/metrics")
    text = text.decode() if isinstance(text, bytes) else str(text)
    route = 'method="GET",route="/api/packages/{namespace}/{name}"'
    assert f'mcpstore_http_requests_total{{{route},status="200"}} 3' in text
    assert f'mcpstore_http_request_duration_seconds_count{{{route}}} 3' in text


async def test_a_page_kept_yesterday_is_not_answered_today(appliance, alice, monkeypatch):
    """The page carries the 30-day download count, which moves with the UTC day."""
    from mcpstore_appliance.catalog import package_view

    await ask(appliance, get())
    view = appliance.services.discovery.packages
    assert view.public_page("alice", "tool") is not None
    today = package_view.time.time()
    monkeypatch.setattr(package_view.time, "time", lambda: today + 86_400)
    assert view.public_page("alice", "tool") is None


# --- update checks and version lists ---------------------------------------------------------------------

QUERIES = ["/latest", "/latest?current=1.0.0", "/latest?current=1.0.0&platform=darwin",
           "/latest?prerelease=true&current=0.9.0", "/latest?current=",
           "/versions", "/versions?limit=2", "/versions?limit=&cursor="]


@pytest.mark.parametrize("query", QUERIES)
async def test_hot_update_checks_and_version_lists_are_the_routes_answers(appliance, alice, query):
    await publish(appliance, alice, "tool", "1.1.0", options={"changelog": "faster, and Ünïcode"})
    routed = await raw_head(appliance, get(PATH + query))  # the route keeps the answer
    hot = await raw_head(appliance, get(PATH + query))
    assert await answered(appliance) == 1
    assert without_date_and_id(hot) == without_date_and_id(routed)
    _, _, hot_body = await ask(appliance, get(PATH + query))
    _, _, routed_body = await ask(appliance, get(PATH + query, "X-Request-Id: trace-me"))  # the route's answer
    assert hot_body == routed_body and await answered(appliance) == 2
    assert '"1.1.0"' in hot_body.decode()


@pytest.mark.parametrize("query, status", [
    ("/latest?platform=beos", "400"),
    ("/latest?current=1.0.0&current=1.0.0", "400"),
    ("/latest?current=1.0.0&colour=blue", "400"),
    ("/latest?prerelease=maybe", "400"),
    ("/latest?current=not-semver", "400"),
    ("/latest?current=1.0.0+build", "400"),  # "+" is a space in a query: not a version
    ("/latest/", "404"),
    ("/versions?limit=0", "400"),
    ("/versions?limit=many", "400"),
    ("/versions?limit=2&limit=3", "400"),
    ("/versions?cursor=forged", "400"),
    ("/versions/", "404"),
])
async def test_queries_the_route_refuses_stay_with_the_route(appliance, alice, query, status):
    kind = query.split("?")[0].rstrip("/")
    for path in (PATH + kind, PATH + query):
        await ask(appliance, get(path))
    for _ in range(2):
        assert (await ask(appliance, get(PATH + query)))[0].split(" ")[1] == status
    assert await answered(appliance) == 0


async def test_update_checks_and_version_lists_of_private_packages_and_after_commits(appliance, alice):
    await publish(appliance, alice, "secret", options={"visibility": "private"})
    secret = "/api/packages/alice/secret/latest?current=1.0.0"
    assert " 200 " in (await ask(appliance, get(secret, f"Authorization: Bearer {alice}")))[0]
    for _ in range(2):
        assert " 404 " in (await ask(appliance, get(secret)))[0]
    check = PATH + "/latest?current=1.0.0"
    await ask(appliance, get(check))
    assert json.loads((await ask(appliance, get(check)))[2])["update_available"] is False
    assert await answered(appliance) == 1
    await publish(appliance, alice, "tool", "2.0.0")
    answer = json.loads((await ask(appliance, get(check)))[2])
    assert answer["latest_version"] == "2.0.0" and answer["breaking_changes"] is True
    versions = PATH + "/versions"
    await ask(appliance, get(versions))
    await ask(appliance, get(versions))
    assert await answered(appliance) == 2
    await yank(appliance, alice, "alice", "tool", "2.0.0")
    listed = json.loads((await ask(appliance, get(versions)))[2])["versions"]
    assert [(v["version"], v["yanked"]) for v in listed] == [("2.0.0", True), ("1.0.0", False)]
    await set_package(appliance, "alice", "tool", visibility="private")
    for path in (check, versions, "/api/packages/alice/secret/versions"):
        assert " 404 " in (await ask(appliance, get(path)))[0]
    assert await answered(appliance) == 2


async def test_a_members_kept_version_list_is_not_answered_to_anyone_else(appliance, alice):
    """A member who does not manage an org package sees its published versions only: the list they asked for
    is kept, and must still never reach an anonymous caller."""
    _, member = await appliance.user("max")
    await make_org(appliance, alice, "acme", {"max": "member"})
    await publish(appliance, alice, "internal", namespace="acme", options={"visibility": "org"})
    internal = "/api/packages/acme/internal/versions"
    for _ in range(2):
        assert " 200 " in (await ask(appliance, get(internal, f"Authorization: Bearer {member}")))[0]
        assert " 404 " in (await ask(appliance, get(internal)))[0]
    assert await answered(appliance) == 0


async def test_hot_update_checks_are_counted_under_their_route(appliance, alice):
    for _ in range(3):
        await ask(appliance, get(PATH + "/latest?current=1.0.0"))
    assert await answered(appliance) == 2
    _, text, _ = await appliance.client.get("/metrics")
    text = text.decode() if isinstance(text, bytes) else str(text)
    route = 'method="GET",route="/api/packages/{namespace}/{name}/latest"'
    assert f'mcpstore_http_requests_total{{{route},status="200"}} 3' in text
