"""The reverse-proxy recipe (packaging/nginx.conf) with the real nginx from Debian in front of a real appliance:
repeats are answered by nginx's cache, a yank shows through it within 6 s, and nothing private or asked with a
credential is ever stored in it.

nginx comes from Debian (`nginx-light`): installed here with apt-get when missing and running as root (as
.ci/run does); otherwise the test fails rather than skip."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_port
from tests.seed import FAST_LEDGER, publish, yank

RECIPE = Path(__file__).resolve().parents[2] / "packaging" / "nginx.conf"
PACKAGE_ROUTE = 'route="/api/packages/{namespace}/{name}"'


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if found is None and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        found = shutil.which("nginx") or "/usr/sbin/nginx"
    assert found and os.path.exists(found), "nginx is missing: apt-get install nginx-light (as .ci/run does)"
    return found


def nginx_config(folder: Path, upstream_port: int, port: int) -> Path:
    """The recipe as it is, with this test's ports and folders, inside a minimal main configuration."""
    recipe = RECIPE.read_text()
    recipe = recipe.replace("/var/cache/nginx/mcpstore", str(folder / "cache"))
    recipe = recipe.replace("127.0.0.1:8080", f"127.0.0.1:{upstream_port}").replace("listen 80;", f"listen 127.0.0.1:{port};")
    temp = "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = folder / "nginx.conf"
    config.write_text(f"""{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}
{recipe}
}}
""")
    return config


@pytest.fixture
async def proxied(start_app, tmp_path):
    """(appliance, nginx base URL, nginx cache folder)."""
    app = await start_app(**FAST_LEDGER)
    folder = tmp_path / "nginx"
    folder.mkdir()
    port = free_port()
    upstream = int(app.base_url.rsplit(":", 1)[1])
    process = subprocess.Popen([nginx_binary(), "-c", str(nginx_config(folder, upstream, port)), "-p", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as session:
            yield app, session, f"http://127.0.0.1:{port}", folder / "cache"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def served_count(app) -> int:
    """How many package-data requests the appliance itself answered (its /metrics)."""
    _, text, _ = await app.client.get("/metrics")
    text = text.decode() if isinstance(text, bytes) else str(text)
    return sum(int(m.group(1)) for m in re.finditer(
        r'mcpstore_http_requests_total\{method="GET",' + re.escape(PACKAGE_ROUTE) + r',status="\d+"\} (\d+)', text))


async def fetch(session: aiohttp.ClientSession, url: str, **kwargs) -> tuple[int, bytes, dict]:
    async with session.get(url, **kwargs) as response:
        return response.status, await response.read(), response.headers


async def test_repeats_are_answered_by_the_cache(proxied):
    app, session, base, _ = proxied
    _, alice = await app.user("alice")
    await publish(app, alice, "tool", "1.0.0")
    url = f"{base}/api/packages/alice/tool"
    status, first, headers = await fetch(session, url)
    assert status == 200 and headers["X-Cache-Status"] == "MISS"
    assert headers["Cache-Control"].startswith("public") and headers["ETag"]
    before = await served_count(app)
    for _ in range(5):
        status, body, headers = await fetch(session, url)
        if headers["X-Cache-Status"] != "HIT":  # more than max-age (2 s) went by on a loaded machine: again
            before = await served_count(app)
            continue
        assert status == 200 and body == first
    assert headers["X-Cache-Status"] == "HIT"
    assert await served_count(app) == before  # the appliance did not see the repeats


async def test_a_yank_shows_through_the_cache_within_6_seconds(proxied):
    app, session, base, _ = proxied
    _, alice = await app.user("alice")
    await publish(app, alice, "tool", "1.0.0")
    await publish(app, alice, "tool", "1.1.0")
    url = f"{base}/api/packages/alice/tool/latest?current=1.0.0"
    for _ in range(2):  # stored, then answered from the cache
        status, body, headers = await fetch(session, url)
        assert status == 200 and b'"latest_version":"1.1.0"' in body
    assert headers["X-Cache-Status"] == "HIT"
    await yank(app, alice, "alice", "tool", "1.1.0")
    yanked_at = time.monotonic()
    while b'"latest_version":"1.1.0"' in body:
        assert time.monotonic() - yanked_at < 6, "the yank did not show through the cache within 6 s"
        await asyncio.sleep(0.2)
        status, body, headers = await fetch(session, url)
    assert status == 200 and b'"update_available":false' in body


async def test_nothing_private_or_credentialed_is_stored(proxied):
    app, session, base, cache = proxied
    _, alice = await app.user("alice")
    await publish(app, alice, "secret-tool", "1.0.0", options={"visibility": "private"},
                  description="a private marker zq-private-words")
    await publish(app, alice, "open-tool", "1.0.0")
    token = {"Authorization": f"Bearer {alice}"}
    for path in ("/api/packages/alice/secret-tool", "/api/packages/alice/secret-tool/versions",
                 "/api/packages/alice/open-tool"):
        for _ in range(2):
            status, body, headers = await fetch(session, base + path, headers=token)
            assert status == 200 and headers["X-Cache-Status"] == "BYPASS"
            assert "public" not in headers["Cache-Control"]
    status, _, headers = await fetch(session, f"{base}/api/packages/alice/secret-tool")
    assert status == 404 and headers["X-Cache-Status"] in ("MISS", "EXPIRED")  # not from a stored private answer
    stored = [path.read_bytes() for path in cache.rglob("*") if path.is_file()]
    assert not any(b"zq-private-words" in data or b"secret-tool" in data for data in stored)
    # what a token asked for was not stored either: the public package's first anonymous read is a miss
    status, _, headers = await fetch(session, f"{base}/api/packages/alice/open-tool")
    assert status == 200 and headers["X-Cache-Status"] == "MISS"
