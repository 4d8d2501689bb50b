"""Answers of the hosted endpoint as an event stream: a client that accepts text/event-stream (as the MCP SDK
does) gets each answer as one SSE `message` event, without event ids (nothing to resume: GET is 405); a
client that accepts JSON only gets JSON."""

from __future__ import annotations

import json

from tests.gateway.servers import hostile_bundle, publish_bundle

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
BOTH = "application/json, text/event-stream"


def events(body: bytes) -> list[dict]:
    """The stream's events, parsed strictly: `event: message` and one `data:` line each."""
    found = []
    for block in body.decode().split("\n\n"):
        if block:
            lines = block.split("\n")
            assert lines[0] == "event: message" and lines[1].startswith("data: ") and len(lines) == 2, block
            found.append(json.loads(lines[1][6:]))
    return found


async def test_answers_as_events_when_the_client_accepts_them(hosted_app):
    app = await hosted_app()
    _, token = await app.user("alice")
    await publish_bundle(app, token, hostile_bundle())
    client = app.client.with_token(token)
    status, body, response = await client.post("/mcp/alice/hostile", json=INIT, headers={"Accept": BOTH})
    assert status == 200 and response.headers["Content-Type"] == "text/event-stream"
    [answer] = events(body)
    assert answer["id"] == 1 and answer["result"]["serverInfo"]
    session = {"Mcp-Session-Id": response.headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-11-25"}
    status, _, _ = await client.post("/mcp/alice/hostile", json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                                     headers={**session, "Accept": BOTH})
    assert status == 202
    call = {"jsonrpc": "2.0", "id": "c1", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "a\nb"}}}
    status, body, _ = await client.post("/mcp/alice/hostile", json=call, headers={**session, "Accept": BOTH})
    [answer] = events(body)
    assert status == 200 and answer["id"] == "c1" and answer["result"]["content"][0]["text"] == "a\nb"
    status, body, response = await client.post("/mcp/alice/hostile", json={**call, "id": 2},
                                               headers={**session, "Accept": "application/json"})
    assert response.headers["Content-Type"].startswith("application/json") and body["id"] == 2
