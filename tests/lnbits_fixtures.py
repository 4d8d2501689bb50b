"""A real LNbits (PyPI, 1.6.2) with the FakeWallet for the market tests, started once per test session.

LNbits pins pydantic 1, so it lives in its own virtual environment in the test cache ($MCPSTORE_TEST_CACHE,
default ~/.cache/mcpstore-tests; about 2 minutes to install once; `.ci/run` installs it before the tests with
`python -m tests.lnbits_fixtures`). The start follows /work/shared/reference/payments.md §1.2-1.3: `bitstring<5`,
a run folder with `lnbits/static` and `lnbits/templates` linked into the package, webhooks to 127.0.0.1 allowed,
the single-process `uvicorn lnbits.__main__:app`. Two wallets: the shop's (whose invoice key the appliance gets)
and a buyer's, funded by the super user, which pays the shop's invoices (the FakeWallet pays internal ones only).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

VERSION = "1.6.2"
PASSWORD = "secret1234"


def cache_dir() -> Path:
    return Path(os.environ.get("MCPSTORE_TEST_CACHE") or Path.home() / ".cache" / "mcpstore-tests") / "lnbits"


def ensure_lnbits() -> Path:
    """The venv with LNbits installed (installed now if missing; a `.installed` marker says it completed)."""
    venv = cache_dir() / "venv"
    if not (venv / ".installed").exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"lnbits=={VERSION}", "bitstring<5"],
                       check=True)
        (venv / ".installed").touch()
    return venv


@dataclass
class Lnbits:
    url: str
    shop_inkey: str
    shop_adminkey: str
    buyer_adminkey: str
    token: str = ""  # the super user's Bearer token (new wallets)
    admin_id: str = ""

    def new_wallet(self, name: str) -> dict:
        """Another wallet of the admin user ({id, adminkey, inkey, ...}), without fiat price feeds."""
        wallet = _http(f"{self.url}/users/api/v1/user/{self.admin_id}/wallet", "POST", {"name": name}, self.token)
        if "adminkey" not in wallet:
            wallet = next(w for w in _http(f"{self.url}/users/api/v1/user/{self.admin_id}/wallet", token=self.token)
                          if w["name"] == name)
        self.call("PATCH", "/api/v1/wallet", wallet["adminkey"], {"currency": ""})
        return wallet

    def call(self, method: str, path: str, key: str | None = None, body: dict | None = None) -> tuple[int, object]:
        request = urllib.request.Request(self.url + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json",
                                                  **({"X-Api-Key": key} if key else {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def pay(self, bolt11: str) -> dict:
        status, body = self.call("POST", "/api/v1/payments", self.buyer_adminkey, {"out": True, "bolt11": bolt11})
        assert status in (200, 201), body
        return body


def _http(url: str, method: str = "GET", body: dict | None = None, token: str | None = None) -> object:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _wait_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"LNbits exited: {log.read_text()[-3000:]}")
        try:
            _http(url + "/api/v1/health")
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"LNbits did not start: {log.read_text()[-3000:]}")


def _template(venv: Path, run: Path, env: dict) -> Path:
    """A migrated data folder with the admin user, made once and copied for each session: the two CLI steps
    take 15-30 s on a loaded machine."""
    template = cache_dir() / f"data-{VERSION}"
    if (template / "admin-id").exists():
        return template
    partial = cache_dir() / f"data-{VERSION}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    cli = str(venv / "bin" / "lnbits-cli")
    env = {**env, "LNBITS_DATA_FOLDER": str(partial)}
    subprocess.run([cli, "db", "migrate"], cwd=run, env=env, check=True, capture_output=True)
    made = subprocess.run([cli, "users", "new", "-u", "admin", "-p", PASSWORD], cwd=run, env=env, check=True,
                          capture_output=True, text=True)
    (partial / "admin-id").write_text(re.search(r"Id: '([0-9a-f]+)'", made.stdout + made.stderr).group(1))
    partial.rename(template)
    return template


@pytest.fixture(scope="session")
def lnbits(tmp_path_factory):
    from tests.conftest import free_port

    venv = ensure_lnbits()
    run = tmp_path_factory.mktemp("lnbits")
    package = next((venv / "lib").glob("python3*/site-packages/lnbits"))
    (run / "lnbits").mkdir()
    for name in ("static", "templates"):  # start fix 2: LNbits looks for them relative to the cwd
        (run / "lnbits" / name).symlink_to(package / name)
    env = {**os.environ, "LNBITS_DATA_FOLDER": str(run / "data"), "LNBITS_ADMIN_UI": "false",
           "LNBITS_BACKEND_WALLET_CLASS": "FakeWallet", "LNBITS_CALLBACK_URL_RULES": "[]",
           "LNBITS_CALLBACK_ALLOW_PRIVATE_IPS": "true", "AUTH_HTTPS_ONLY": "false",
           "LNBITS_ALLOW_NEW_ACCOUNTS": "false", "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}"}
    shutil.copytree(_template(venv, run, env), run / "data")
    admin_id = (run / "data" / "admin-id").read_text()
    port = free_port()
    log = run / "lnbits.log"
    with open(log, "wb") as out:  # its DEBUG start-up log holds secrets: kept in the test's folder only
        process = subprocess.Popen([str(venv / "bin" / "uvicorn"), "lnbits.__main__:app", "--host", "127.0.0.1",
                                    "--port", str(port)], cwd=run, env={**env, "SUPER_USER": admin_id},
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, process, log)
        token = _http(url + "/api/v1/auth", "POST", {"username": "admin", "password": PASSWORD})["access_token"]
        wallets = [_http(f"{url}/users/api/v1/user/{admin_id}/wallet", "POST", {"name": name}, token)
                   for name in ("shop", "buyer")]
        shop, buyer = _http(f"{url}/users/api/v1/user/{admin_id}/wallet", token=token)[-2:]
        world = Lnbits(url, shop["inkey"], shop["adminkey"], buyer["adminkey"], token, admin_id)
        for wallet in (shop, buyer):  # no fiat price feeds offline (0.7 s a call otherwise)
            world.call("PATCH", "/api/v1/wallet", wallet["adminkey"], {"currency": ""})
        _http(url + "/users/api/v1/balance", "PUT", {"id": buyer["id"], "amount": 10_000_000}, token)
        assert wallets
        yield world
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


class LnurlPay:
    """A creator's LNURL-pay service (LUD-06) in front of their own LNbits wallet, as a wallet provider runs one:
    its invoices are LNbits' own and commit to the metadata's hash. `refuse` makes the callback answer an error.
    Serve `app()` on a loopback port; `balance()` is the creator wallet's, in msat."""

    METADATA = json.dumps([["text/plain", "a creator's payouts"]])

    def __init__(self, world: Lnbits, name: str):
        self.world = world
        self.wallet = world.new_wallet(name)
        self.refuse = False

    def app(self):
        import asyncio

        from aiohttp import web

        async def pay_request(request: web.Request) -> web.Response:
            return web.json_response({"tag": "payRequest", "callback": str(request.url.with_path("/cb")),
                                      "minSendable": 1000, "maxSendable": 10**11, "metadata": self.METADATA})

        async def callback(request: web.Request) -> web.Response:
            if self.refuse:
                return web.json_response({"status": "ERROR", "reason": "this wallet is closed"})
            status, body = await asyncio.to_thread(self.world.call, "POST", "/api/v1/payments", self.wallet["inkey"], {
                "out": False, "amount": int(request.query["amount"]) // 1000,
                "unhashed_description": self.METADATA.encode().hex()})
            assert status in (200, 201), body
            return web.json_response({"pr": body["bolt11"], "routes": []})

        app = web.Application()
        app.router.add_get("/lnurlp/creator", pay_request)
        app.router.add_get("/cb", callback)
        return app

    def balance(self) -> int:
        return self.world.call("GET", "/api/v1/wallet", self.wallet["inkey"])[1]["balance"]


def payout_settings(world: Lnbits) -> dict:
    """Payments and Lightning payouts through the shop wallet; LNURL-pay services on loopback allowed."""
    return {"market": {"lnbits": {"url": world.url, "invoice_key": world.shop_inkey, "admin_key": world.shop_adminkey},
                       "reconcile_interval_seconds": 0,
                       "payouts": {"minimum": {"sat": "100"}, "interval_seconds": 0, "allow_private_lnurl": True}}}


def lnbits_settings(world: Lnbits, **market) -> dict:
    return {"market": {"lnbits": {"url": world.url, "invoice_key": world.shop_inkey},
                       "reconcile_interval_seconds": 0, **market}}


if __name__ == "__main__":  # .ci/run: install once before the tests
    print(ensure_lnbits())
