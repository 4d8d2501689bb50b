"""Shared fixtures: a real appliance on a real port with a real SQLite file in a temp folder."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mcpstore_appliance.app import create_app
from mcpstore_appliance.config import load_settings
from mcpstore_appliance.web.keys import SERVICES, SETTINGS
from mcpstore_appliance.web.connections import GuardedSite, start_site

pytest_plugins = ["tests.s3_fixtures"] if (Path(__file__).parent / "s3_fixtures.py").exists() else []
pytest_plugins += ["tests.stripe_fixtures", "tests.lnbits_fixtures"]  # market: localstripe, a real LNbits
pytest_plugins += ["tests.exit_guard"]  # the run ends at its summary, whatever a test left behind


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def tls_server(aiohttp_server, tmp_path: Path, app: web.Application) -> tuple[str, str]:
    """Serve `app` over https on 127.0.0.1 with a certificate from a fresh test CA (trustme), for the appliance's
    outbound requests: (its base URL, the CA file to trust)."""
    import ssl

    import trustme

    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = await aiohttp_server(app, host="127.0.0.1", ssl=context)
    return f"https://127.0.0.1:{server.port}", str(ca_file)


def make_settings(data_dir: Path, **overrides: Any):
    port = overrides.pop("port", None) or free_port()
    server = {"host": "127.0.0.1", "port": port, "access_log": False, **overrides.pop("server", {})}
    # Publishes one after another would each wait out the checkpoint interval (1 s by default);
    # tests of the interval itself set it explicitly.
    overrides["ledger"] = {"checkpoint_interval_seconds": 0, **overrides.get("ledger", {})}
    # Hosted execution only where a test asks for it (tests/gateway/): no sandbox probe at every start, and
    # the same answers (no hosted remotes in /v0.1) on machines with and without bubblewrap.
    overrides.setdefault("hosted", {"backend": "off"})
    return load_settings(environ={}, data_dir=str(data_dir), server=server, **overrides)


@dataclass
class Client:
    """A thin JSON client against the running app; `token` adds a Bearer header."""

    base_url: str
    session: aiohttp.ClientSession
    token: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def with_token(self, token: str | None) -> "Client":
        return Client(self.base_url, self.session, token, dict(self.headers))

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        async with self.session.request(method, self.base_url + path, headers=headers, **kwargs) as response:
            body = await response.read()
            try:
                data = await response.json(content_type=None) if body else None
            except ValueError:
                data = body
            return response.status, data, response

    async def get(self, path: str, **kwargs: Any):
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any):
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any):
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any):
        return await self.request("DELETE", path, **kwargs)


@dataclass
class RunningApp:
    base_url: str
    app: Any
    client: Client
    data_dir: Path
    site: GuardedSite | None = None

    @property
    def services(self):
        return self.app[SERVICES]

    async def user(self, username: str, *, admin: bool = False, scopes: tuple[str, ...] = ("read", "publish", "account", "invoke"),
                   password: str = "correct horse battery") -> tuple[Any, str]:
        """Create a user directly through the service and return (user, API token)."""
        accounts = self.services.accounts
        user = await accounts.create_user(f"{username}@example.com", username, password, is_admin=admin)
        principal = await accounts.principal_for_user(user.id)
        all_scopes = tuple(scopes) + (("admin",) if admin and "admin" not in scopes else ())
        token, _ = await accounts.create_token(principal, "test", list(all_scopes))
        return user, token


@pytest.fixture
def exact_stamp(monkeypatch):
    """Other processes' commits looked for on every Database.stamp(), not once a second: otherwise this
    process's own commits are seen a second time when that check next runs, and a test that crosses it sees
    one more reread than it counts (for tests that count what cached pages and callers read)."""
    from mcpstore_appliance.db import stamp

    monkeypatch.setattr(stamp, "EXTERNAL_CHECK_SECONDS", 0.0)


@pytest.fixture
def settings_factory(tmp_path):
    def factory(**overrides: Any):
        return make_settings(tmp_path / "data", **overrides)

    return factory


async def serve_app(app: web.Application) -> tuple[web.AppRunner, GuardedSite]:
    """Serve `app` as `mcpstore serve` does: an AppRunner with the settings' keep-alive, behind the guarded
    listener (web/connections.py) on the settings' host and port."""
    server = app[SETTINGS].server
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=server.keepalive_timeout_seconds)
    await runner.setup()
    try:
        return runner, await start_site(runner, server, app[SERVICES].metrics)
    except BaseException:
        await runner.cleanup()
        raise


async def stop_app(runner: web.AppRunner, site: GuardedSite) -> None:
    await site.close()
    await runner.cleanup()


@pytest.fixture
async def start_app(tmp_path):
    """Start an appliance with given setting overrides (and `prepare(app)`, called before it starts, e.g. to add
    routes); returns a RunningApp. Several may run at once."""
    sessions: list[aiohttp.ClientSession] = []
    served: list[tuple[web.AppRunner, GuardedSite]] = []
    counter = {"n": 0}

    async def start(prepare=None, **overrides: Any) -> RunningApp:
        counter["n"] += 1
        data_dir = overrides.pop("data_dir", None) or tmp_path / f"data{counter['n']}"
        port = free_port()
        settings = make_settings(Path(data_dir), port=port, **overrides)
        app = create_app(settings)
        if prepare is not None:
            prepare(app)
        runner, site = await serve_app(app)
        served.append((runner, site))
        base_url = f"http://127.0.0.1:{site.port}"
        session = aiohttp.ClientSession()
        sessions.append(session)
        return RunningApp(base_url, app, Client(base_url, session), Path(data_dir), site)

    yield start
    for session in sessions:
        await session.close()
    for runner, site in reversed(served):
        await stop_app(runner, site)


@pytest.fixture
async def appliance(start_app) -> RunningApp:
    return await start_app()
