"""Fixtures for the browser tests: Debian's headless Chromium driven by Playwright, one appliance and one
browser for the whole module, axe-core from npm for the accessibility check, and page artifacts.

Chromium is the system package (`apt-get install chromium`, done by .ci/run); Playwright's own browser
download (`playwright install`) is never used. axe-core is installed once into the test cache folder with npm.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web

from mcpstore_appliance.app import create_app
from tests.conftest import free_port, make_settings
from mcpstore_appliance.web.keys import SERVICES

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
AXE_VERSION = "4.10.3"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
PASSWORD = "correct horse battery staple"


async def local_site(port: int, path: str, handler) -> web.AppRunner:
    """A small second web server on loopback (another origin than the appliance's): one GET route."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


# ---- the appliance -----------------------------------------------------------------------------------------

@dataclass
class Appliance:
    base_url: str
    app: web.Application
    session: aiohttp.ClientSession
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def services(self):
        return self.app[SERVICES]

    def url(self, path: str) -> str:
        return self.base_url + path

    async def user(self, username: str, *, admin: bool = False) -> str:
        """A user made through the accounts service; returns an API token (read, publish[, admin])."""
        accounts = self.services.accounts
        user = await accounts.create_user(f"{username}@example.com", username, PASSWORD, is_admin=admin)
        principal = await accounts.principal_for_user(user.id)
        token, _ = await accounts.create_token(principal, "browser-tests",
                                               ["read", "publish"] + (["admin"] if admin else []))
        self.tokens[username] = token
        return token

    async def publish(self, token: str, bundle: bytes, **options: str) -> dict[str, Any]:
        """Publish through the JSON API (the path the CLI takes); the browser tests publish through the form."""
        async with self.session.post(self.url("/api/packages"), params=options, data=bundle,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/octet-stream"}) as response:
            body = await response.json()
            assert response.status == 201, body
            return body


@contextlib.asynccontextmanager
async def serve_appliance(data_dir: Path, **overrides: Any):
    """An appliance on a free loopback port with the given setting overrides, for a module's browser tests."""
    port = free_port()
    app = create_app(make_settings(data_dir, port=port, **overrides))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    session = aiohttp.ClientSession()
    try:
        yield Appliance(f"http://127.0.0.1:{port}", app, session)
    finally:
        await session.close()
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ui(tmp_path_factory):
    async with serve_appliance(tmp_path_factory.mktemp("browser-appliance")) as appliance:
        yield appliance


# ---- the browser ---------------------------------------------------------------------------------------------

@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser():
    from playwright.async_api import async_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install chromium); .ci/run does"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class Watched:
    """A page plus what it reported: dialogs (alert/confirm from injected script) and CSP violations."""

    def __init__(self, context, page):
        self.context = context
        self.page = page
        self.dialogs: list[str] = []
        self.csp_violations: list[str] = []
        page.on("dialog", self._on_dialog)
        page.on("console", self._on_console)

    async def _on_dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    def _on_console(self, message) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.csp_violations.append(message.text)


@pytest_asyncio.fixture(loop_scope="session")
async def new_page(browser, ui):
    """Factory: a fresh browser context (its own cookies) and page; `javascript=False` for the no-JS paths."""
    contexts = []

    async def make(javascript: bool = True, width: int = 1280) -> Watched:
        context = await browser.new_context(base_url=ui.base_url, accept_downloads=True,
                                            java_script_enabled=javascript,
                                            viewport={"width": width, "height": 900})
        contexts.append(context)
        return Watched(context, await context.new_page())

    yield make
    for context in contexts:
        await context.close()


# ---- artifacts -------------------------------------------------------------------------------------------------

async def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


@contextlib.asynccontextmanager
async def artifacts_on_failure(watched: Watched, name: str):
    """On any failure inside the block, keep the page's HTML and a screenshot next to the other artifacts."""
    try:
        yield
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            (ARTIFACTS / f"FAILED-{name}.html").write_text(await watched.page.content())
            await watched.page.screenshot(path=str(ARTIFACTS / f"FAILED-{name}.png"), full_page=True)
        raise


# ---- helpers -----------------------------------------------------------------------------------------------

async def log_in(watched: Watched, username: str) -> None:
    page = watched.page
    await page.goto("/login")
    await page.fill("#login", username)
    await page.fill("#password", PASSWORD)
    await page.click("form[action='/login'] button[type=submit]")
    await page.wait_for_url(re.compile(r".*/dashboard$"))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npm_cache_dir() -> Path:
    """Where npm packages for tests are kept between runs (the same folder the mcpb CLI fixture uses)."""
    return Path(os.environ.get("MCPSTORE_TEST_CACHE") or Path.home() / ".cache" / "mcpstore-tests")


def axe_source() -> str:
    """axe-core's browser bundle, installed once from npm into the test cache."""
    cache = npm_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    prefix = cache / f"npm-axe-core-{AXE_VERSION}"
    script = prefix / "node_modules" / "axe-core" / "axe.min.js"
    with open(cache / ".axe-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not script.exists():
            if shutil.which("npm") is None:
                raise RuntimeError("npm is not on PATH; the accessibility check installs axe-core with it")
            subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
                            f"axe-core@{AXE_VERSION}"], check=True, timeout=300, stdin=subprocess.DEVNULL)
    return script.read_text()


async def axe_violations(page, source: str) -> list[dict]:
    """Run axe-core (WCAG 2.1 A and AA rules, colour contrast included) on the current page.

    page.evaluate runs through the DevTools protocol, which the page's Content-Security-Policy does not
    apply to, so the check needs no weakening of the CSP."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(source)
    result = await page.evaluate(
        "async () => (await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: ' + n.failureSummary)}))")
    return result
