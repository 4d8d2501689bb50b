""""Try it" on a hosted package's page, on a real appliance with bubblewrap: the form is generated from the
tool's input schema, the run's result is shown escaped, bad values are refused with the field, and the page is
for signed-in browser sessions with access only (CSRF-checked)."""

from __future__ import annotations

import re

from mcpstore_appliance.web.auth import SESSION_COOKIE
from tests.data.bundles import bundle_bytes, python_manifest
from tests.gateway.servers import publish_bundle

SERVER = r'''
import json, sys
SCHEMA = {"type": "object", "required": ["text"], "properties": {
    "text": {"type": "string", "description": "what to say"}, "times": {"type": "integer"},
    "shout": {"type": "boolean"}, "tone": {"type": "string", "enum": ["calm", "angry"]}}}
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    if msg["method"] == "initialize":
        result = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                  "serverInfo": {"name": "say", "version": "1"}}
    elif msg["method"] == "tools/list":
        result = {"tools": [{"name": "say", "description": "<b>says</b> it", "inputSchema": SCHEMA}]}
    else:
        args = msg["params"]["arguments"]
        text = args["text"].upper() if args.get("shout") else args["text"]
        result = {"content": [{"type": "text", "text": " ".join([text] * args.get("times", 1)) + " " + args.get("tone", "")}]}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
    sys.stdout.flush()
'''


async def test_try_it_runs_a_tool_from_a_generated_form(hosted_app):
    app = await hosted_app()
    user, token = await app.user("alice")
    manifest = python_manifest(tools=[{"name": "say", "description": "says it"}])
    manifest["name"] = "say"
    await publish_bundle(app, token, bundle_bytes(manifest, {"server/main.py": SERVER}))
    session_id, csrf = await app.services.accounts.start_session(user)
    browser = {"Cookie": f"{SESSION_COOKIE}={session_id}", "Accept": "text/html"}
    status, page, _ = await app.client.get("/packages/alice/say", headers=browser)
    assert status == 200 and b'href="/packages/alice/say/try"' in page
    status, page, _ = await app.client.get("/packages/alice/say/try", headers=browser)
    html = page.decode()
    assert status == 200 and "&lt;b&gt;says&lt;/b&gt; it" in html
    assert re.search(r'name="arg.text"[^>]*required', html) and 'type="checkbox"' in html
    assert "<option>calm</option>" in html and 'name="arg.times"' in html
    form = {"csrf_token": csrf, "tool": "say", "arg.text": "<script>x</script>", "arg.times": "2",
            "arg.shout": "on", "arg.tone": "calm"}
    status, page, _ = await app.client.post("/packages/alice/say/try", data=form, headers=browser)
    html = page.decode()
    assert status == 200 and "&lt;SCRIPT&gt;X&lt;/SCRIPT&gt; &lt;SCRIPT&gt;X&lt;/SCRIPT&gt; calm" in html
    assert "<script>x" not in html.lower().replace("&lt;", "")
    status, page, _ = await app.client.post("/packages/alice/say/try", data={**form, "arg.times": "two"},
                                            headers=browser)
    assert status == 400 and b"times: not an integer" in page
    status, page, _ = await app.client.post("/packages/alice/say/try", data={**form, "arg.text": ""}, headers=browser)
    assert status == 400 and b"text: this field is required" in page
    status, page, _ = await app.client.post("/packages/alice/say/try", data={**form, "tool": "nope"}, headers=browser)
    assert status == 400 and b"no such tool" in page
    status, body, _ = await app.client.post("/packages/alice/say/try", data={**form, "csrf_token": "forged"},
                                            headers={**browser, "Accept": "application/json"})
    assert status == 403 and body["error"]["code"] == "csrf_failed"
    status, _, response = await app.client.get("/packages/alice/say/try", allow_redirects=False)
    assert status == 303 and response.headers["Location"].startswith("/login?next=")
    status, body, _ = await app.client.with_token(token).get("/packages/alice/say/try")
    assert status == 403 and body["error"]["code"] == "session_required"
