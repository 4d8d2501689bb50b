"""More of the README's user flows on the PyInstaller binary, in the clean environment of test_binary.py (no
Python on PATH, an empty HOME, a fresh data folder), each against a real peer: a Lightning purchase with
`mcpstore buy` paid from the LNbits test wallet, hosted calls in the bubblewrap sandbox (the invoke API and the
official MCP SDK), and an OIDC sign-in at NanoIDP."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import example_servers, mcpb_cli  # noqa: F401 (fixtures: the official mcpb CLI)
from tests.gateway.client import mcp_session
from tests.gateway.conftest import bubblewrap_missing
from tests.gateway.servers import hostile_bundle
from tests.lnbits_fixtures import lnbits  # noqa: F401 (fixture: a real LNbits with a funded buyer wallet)
from tests.nanoidp_fixtures import CLIENT_ID, CLIENT_SECRET, nanoidp
from tests.packaging.conftest import clean_environment
from tests.packaging.test_binary import PASSWORD, Binary, Serving
from tests.sso_support import USERS, browser, sign_in

pytestmark = pytest.mark.e2e


def appliance(tmp_path: Path, binary: Path, **settings: str) -> Binary:
    """The binary in the clean environment, with `settings` as MCPSTORE_* variables (as an operator sets them)."""
    work = tmp_path / "work"
    work.mkdir()
    return Binary({**clean_environment(tmp_path, binary), **settings}, work)


def sign_up(mcpstore: Binary, url: str, username: str) -> str:
    """A new account, made with `mcpstore admin create-user`, signed in with `mcpstore login`; its API token."""
    mcpstore.run("admin", "create-user", "--email", f"{username}@example.com", "--username", username,
                 "--password-stdin", input=PASSWORD + "\n")
    mcpstore.run("login", "--registry", url, "--login", username, "--password-stdin", input=PASSWORD + "\n")
    credentials = Path(mcpstore.env["HOME"]) / ".config" / "mcpstore" / "credentials.json"
    return json.loads(credentials.read_text())["registries"][url]["token"]


def api(url: str, token: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def buy(mcpstore: Binary, package: str, amount: str, pay) -> tuple[str, str]:
    """`mcpstore buy`, whose printed Lightning invoice `pay` pays while it waits; (its output, the invoice)."""
    buying = subprocess.Popen(["mcpstore", "buy", package, "--amount", amount, "--wait", "120"], env=mcpstore.env,
                              cwd=mcpstore.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed = []
        for line in buying.stdout:  # the invoice is printed (and flushed) before the wait begins
            printed.append(line)
            if line.startswith("lnbc"):
                break
        invoice = printed[-1].strip() if printed else ""
        assert invoice.startswith("lnbc"), "".join(printed) + buying.stderr.read()
        pay(invoice)
        rest, errors = buying.communicate(timeout=150)
        assert buying.returncode == 0, "".join(printed) + rest + errors
        return "".join(printed) + rest, invoice
    finally:
        if buying.poll() is None:
            buying.kill()


@pytest.mark.timeout(600)
def test_a_lightning_purchase_with_mcpstore_buy(binary, lnbits, example_servers, tmp_path):  # noqa: F811
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mcpstore = appliance(tmp_path, binary, MCPSTORE_MARKET__LNBITS__URL=lnbits.url,
                         MCPSTORE_MARKET__LNBITS__INVOICE_KEY=lnbits.shop_inkey,
                         MCPSTORE_MARKET__RECONCILE_INTERVAL_SECONDS="0",
                         MCPSTORE_SERVER__PUBLIC_URL=url)  # where LNbits sends its webhook
    bundle = example_servers["node"].read_bytes()  # packed by the official mcpb CLI
    (mcpstore.cwd / "hello-node.mcpb").write_bytes(bundle)
    server = Serving(mcpstore, port, ())
    try:
        sign_up(mcpstore, url, "alice")
        mcpstore.run("publish", "hello-node.mcpb", "--pricing", "per_call", "--amount", "10", "--currency", "sat",
                     "--tier", "hobbyist")
        token = sign_up(mcpstore, url, "bob")
        refused = mcpstore.run("download", "alice/hello-node", "-o", "unpaid.mcpb", check=False)
        assert refused.returncode != 0 and not (mcpstore.cwd / "unpaid.mcpb").exists()

        printed, invoice = buy(mcpstore, "alice/hello-node", "2000", lnbits.pay)  # paid from the buyer wallet
        order_id = int(printed.split("order ", 1)[1].split(":", 1)[0])
        assert f"paid: order {order_id}" in printed, printed
        status, order = api(f"{url}/api/market/orders/{order_id}", token)
        assert status == 200 and (order["status"], order["provider"], order["bolt11"]) == ("paid", "lnbits", invoice)
        # the credits bought open the downloads of the per-call package
        mcpstore.run("download", "alice/hello-node", "-o", "paid.mcpb")
        assert (mcpstore.cwd / "paid.mcpb").read_bytes() == bundle
    finally:
        assert server.stop() == 0, "".join(server.output)


async def call_in_the_sandbox(url: str, token: str, port: int) -> None:
    """The hostile server's tools through the official MCP SDK: it runs as nobody, with no network."""
    async with mcp_session(url, "alice/hostile", token) as session:
        assert {tool.name for tool in (await session.list_tools()).tools} >= {"echo", "whoami", "network"}
        assert (await session.call_tool("echo", {"text": "from the binary"})).content[0].text == "from the binary"
        assert (await session.call_tool("whoami", {})).content[0].text == "uid=65534"
        assert (await session.call_tool("network", {"port": port})).content[0].text.startswith("refused")


@pytest.mark.timeout(600)
def test_hosted_calls_run_in_the_bubblewrap_sandbox(binary, example_servers, tmp_path):  # noqa: F811
    if bubblewrap_missing():
        pytest.skip(bubblewrap_missing())
    mcpstore = appliance(tmp_path, binary, MCPSTORE_HOSTED__BACKEND="bubblewrap")
    # bwrap is looked up on PATH, as `apt install bubblewrap` puts it there; the clean PATH gets it alone
    (Path(mcpstore.env["PATH"]) / "bwrap").symlink_to(shutil.which("bwrap"))
    (mcpstore.cwd / "hello-node.mcpb").write_bytes(example_servers["node"].read_bytes())
    (mcpstore.cwd / "hostile.mcpb").write_bytes(hostile_bundle())
    port = free_port()
    server = Serving(mcpstore, port, ())
    try:
        token = sign_up(mcpstore, server.url, "alice")
        for bundle in ("hello-node.mcpb", "hostile.mcpb"):  # each started once in the sandbox at publish
            assert "published alice/" in mcpstore.run("publish", bundle, "--tier", "hobbyist").stdout
        status, answer = api(f"{server.url}/api/invoke/alice/hello-node", token, "POST",
                             {"tool": "echo", "arguments": {"text": "hi"}})
        assert status == 200 and '"arguments":{"text":"hi"}' in answer["result"]["content"][0]["text"], answer
        asyncio.run(call_in_the_sandbox(server.url, token, port))
        started = "".join(server.output)  # the start-up line: the backend found, with its seccomp filter
        assert "hosted execution: bubblewrap (" in started and "seccomp deny list" in started, started
    finally:
        assert server.stop() == 0, "".join(server.output)


async def sign_in_at_the_idp(url: str) -> None:
    async with browser() as session:
        async with session.get(url + "/login") as page:
            assert "Sign in with NanoIDP" in await page.text()
        status, location, page = await sign_in(session, url, "carol", provider="site")
        assert (status, location) == (303, "/dashboard"), page[:2000]
        async with session.get(url + "/account") as page:  # signed in: the account made from the ID token
            text = await page.text()
            assert page.status == 200 and "carol@elsewhere.test" in text, text[:2000]


@pytest.mark.timeout(600)
def test_an_oidc_sign_in_at_nanoidp(binary, tmp_path):
    port, idp_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    mcpstore = appliance(tmp_path, binary, MCPSTORE_SSO__OIDC__ISSUER=issuer, MCPSTORE_SSO__OIDC__CLIENT_ID=CLIENT_ID,
                         MCPSTORE_SSO__OIDC__CLIENT_SECRET=CLIENT_SECRET, MCPSTORE_SSO__OIDC__LABEL="NanoIDP")
    with nanoidp(tmp_path / "idp", idp_port, f"http://127.0.0.1:{port}/sso/callback", USERS):
        server = Serving(mcpstore, port, ())
        try:
            asyncio.run(sign_in_at_the_idp(server.url))
        finally:
            assert server.stop() == 0, "".join(server.output)
