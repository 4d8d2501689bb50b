"""Bundles for the hosted-execution tests: one stdlib-only Python MCP server whose tools misbehave on purpose
(each hostile behaviour of issue 20 is a tool, so one published package serves them all), published through
the real publish API."""

from __future__ import annotations

from tests.data.bundles import bundle_bytes, python_manifest

SERVER = r'''
import json, os, socket, sys, time

MODE = os.environ.get("HOSTILE_MODE", "")


def out(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def reply(message_id, result):
    out(json.dumps({"jsonrpc": "2.0", "id": message_id, "result": result}))


def forks(args):
    count = 0
    try:
        for _ in range(500):
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            count += 1
    except OSError as exc:
        return f"forked {count}, then {exc.__class__.__name__}"
    return f"forked {count}"


def network(args):
    try:
        socket.create_connection(("127.0.0.1", int(args["port"])), timeout=2).close()
        return "connected"
    except OSError as exc:
        return f"refused: {exc}"


def writes(args):
    done = []
    for path in ("/app/x", "/etc/x", "/usr/x", "/x", "/tmp/x"):
        try:
            with open(path, "w") as fh:
                fh.write("x")
            done.append(path)
        except OSError:
            pass
    return ",".join(done)


def put(args):
    with open("/tmp/" + args["name"], "w") as fh:
        fh.write(args["text"])
    return "ok"


def get(args):
    try:
        with open("/tmp/" + args["name"]) as fh:
            return fh.read()
    except OSError:
        return "missing"


def garbage(args):
    out("this is not JSON")
    out("{broken")
    return "after garbage"


TOOLS = {
    "echo": lambda a: str(a.get("text", "")),
    "env": lambda a: os.environ.get(a["name"], "(unset)"),
    "whoami": lambda a: f"uid={os.getuid()}",
    "loop": lambda a: any(False for _ in iter(int, 1)),  # runs for ever in constant memory (a list would
    # grow until the memory limit stops it first on a fast machine)
    "alloc": lambda a: str(len(b"x" * (1 << 30))),
    "forks": forks,
    "network": network,
    "writes": writes,
    "put": put,
    "get": get,
    "garbage": garbage,
    "flood": lambda a: sys.stdout.write("x" * (100 << 20)) and "",
    "crash": lambda a: os._exit(3),
    "sleep": lambda a: time.sleep(float(a["seconds"])) or "slept",
}

for line in sys.stdin:
    message = json.loads(line)
    method, message_id = message.get("method"), message.get("id")
    if method == "initialize":
        if MODE == "silent":
            continue
        if MODE.startswith("slow:"):  # a slow start (the publish-time check outlives the publish)
            time.sleep(float(MODE[5:]))
        version = (message.get("params") or {}).get("protocolVersion", "2025-11-25")
        reply(message_id, {"protocolVersion": version, "capabilities": {"tools": {}},
                           "serverInfo": {"name": "hostile", "version": "1.0.0"}})
    elif method == "tools/list":
        reply(message_id, {"tools": [{"name": n, "description": n, "inputSchema": {"type": "object"}} for n in TOOLS]})
    elif method == "tools/call":
        params = message["params"]
        text = TOOLS[params["name"]](params.get("arguments") or {})
        reply(message_id, {"content": [{"type": "text", "text": text}], "isError": False})
    elif message_id is not None:
        out(json.dumps({"jsonrpc": "2.0", "id": message_id, "error": {"code": -32601, "message": "no such method"}}))
'''

TOOL_NAMES = ("echo", "env", "whoami", "loop", "alloc", "forks", "network", "writes", "put", "get", "garbage",
              "flood", "crash", "sleep")


def hostile_bundle(name: str = "hostile", *, env: dict[str, str] | None = None, user_config: dict | None = None) -> bytes:
    manifest = python_manifest(tools=[{"name": t, "description": t} for t in TOOL_NAMES])
    manifest["name"] = name
    manifest["server"]["mcp_config"]["env"] = env or {}
    if user_config:
        manifest["user_config"] = user_config
    return bundle_bytes(manifest, {"server/main.py": SERVER})


async def publish_bundle(app, token: str, data: bytes, **options: str) -> dict:
    status, body, _ = await app.client.with_token(token).post(
        "/api/packages", params=options, data=data, headers={"Content-Type": "application/octet-stream"})
    assert status == 201, (status, body)
    return body
