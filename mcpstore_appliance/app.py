"""`create_app(settings)`: the one place that builds the services and wires them to the web surface."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from nacl.signing import SigningKey

from .accounts.service import AccountService
from .blobs import open_blob_store
from .blobs.base import BlobStore
from .catalog.discovery import Discovery
from .catalog.orphans import Sweeper
from .catalog.publish import Publisher
from .catalog.service import PackageStatusService
from .config import Settings
from .db import Database
from .keys import load_or_create_signing_key
from .ledger.service import Ledger
from .ledger.setup import build_ledger
from .private_files import private_dir
from .web import api_accounts, api_packages, api_publish, health, ledger_api, openapi, registry_api, sendfile
from .web.errors import log_client_errors_in_one_line
from .web.front_door import MIDDLEWARES, add_headers, check_routes_declared
from .web.keys import METRICS, SERVICES, SETTINGS
from .web.metrics import Metrics
from .web.pages import install_pages

log = logging.getLogger("mcpstore")


@dataclass
class Keys:
    ledger: SigningKey
    jwt: SigningKey


@dataclass
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    keys: Keys
    accounts: AccountService
    metrics: Metrics
    ledger: Ledger | None = None
    publisher: Publisher | None = None
    package_status: PackageStatusService | None = None
    discovery: Discovery | None = None  # search, package data, registry API, download counts
    sweeper: Sweeper | None = None  # crash leftovers (serve only)


def data_paths(settings: Settings) -> dict[str, Path]:
    root = Path(settings.data_dir)
    return {
        "root": root,
        "db": root / "mcpstore.sqlite3",
        "blobs": root / "blobs",
        "keys": root / "keys",
        "tmp": root / "tmp",
    }


def prepare_data_dir(settings: Settings) -> dict[str, Path]:
    """The data folder and its folders, private to the service user (see private_files.py)."""
    paths = data_paths(settings)
    for name in ("root", "blobs", "tmp", "keys"):
        private_dir(paths[name])
    return paths


def load_keys(settings: Settings) -> Keys:
    keys_dir = data_paths(settings)["keys"]
    return Keys(ledger=load_or_create_signing_key(keys_dir / "ledger.key"),
                jwt=load_or_create_signing_key(keys_dir / "jwt.key"))


async def build_services(settings: Settings) -> Services:
    """Open everything a running appliance needs. Also used in-process by operator CLI commands."""
    paths = prepare_data_dir(settings)
    keys = load_keys(settings)
    db = await Database(paths["db"]).open()
    try:
        blobs = open_blob_store(settings)
    except Exception:
        await db.close()
        raise
    services = Services(settings=settings, db=db, blobs=blobs, keys=keys,
                        accounts=AccountService(db, settings.accounts), metrics=Metrics())
    try:
        services.ledger = await build_ledger(db, settings, keys.ledger, paths["keys"])  # may refuse the origin
        # metrics is read through the Services object: create_app swaps in the middleware's Metrics later.
        services.publisher = Publisher(db, blobs, services.ledger, settings, metrics=lambda: services.metrics)
    except Exception:
        await close_services(services)
        raise
    services.package_status = PackageStatusService(db, services.ledger)
    services.discovery = Discovery.open(db, paths["keys"], settings.base_url, settings.registry_name_prefix)
    # Signed-in callers are kept while nothing is committed, by the same stamp as the catalog's kept pages.
    services.accounts.change_stamp = services.discovery.reader.stamp
    return services


async def close_services(services: Services) -> None:
    if services.discovery is not None:
        await services.discovery.close()  # folds buffered download counts while the database is open
    if services.ledger is not None:
        await services.ledger.close()
    await services.blobs.close()
    await services.db.close()


def create_app(settings: Settings) -> web.Application:
    log_client_errors_in_one_line()
    # every request, routed or not, goes through the front door's middlewares (web/front_door.py)
    app = web.Application(client_max_size=settings.server.max_body_bytes, middlewares=MIDDLEWARES)
    app[SETTINGS] = settings
    app[METRICS] = metrics = Metrics()
    app.on_response_prepare.append(add_headers)
    app.on_startup.append(check_routes_declared)

    async def lifecycle(app: web.Application):
        services = await build_services(settings)
        services.metrics = metrics
        app[SERVICES] = services
        yield
        await close_services(services)

    app.cleanup_ctx.append(lifecycle)

    async def discovery_tasks(app: web.Application):
        discovery = app[SERVICES].discovery
        discovery.start()  # folds buffered download counts into the database periodically
        yield
        await discovery.stop()  # and once more on shutdown

    app.cleanup_ctx.append(discovery_tasks)

    async def sweep_tasks(app: web.Application):
        services = app[SERVICES]
        storage = settings.storage
        services.sweeper = Sweeper(services.db, services.blobs, data_paths(settings)["tmp"],
                                   interval=storage.sweep_interval_seconds, grace=storage.sweep_grace_seconds)
        services.sweeper.start()  # crash leftovers: now, then every interval
        yield
        await services.sweeper.stop()

    app.cleanup_ctx.append(sweep_tasks)

    async def stop_sendfile_workers(app: web.Application) -> None:
        sendfile.slots.abort_all(app)  # this app's downloads still running after the shutdown grace period

    app.on_cleanup.append(stop_sendfile_workers)
    # api_packages before api_publish: aiohttp tries the resources under /api/packages in the order they were
    # added, and the GETs (package data, versions, update checks) are the hot ones.
    for module in (health, openapi, api_accounts, ledger_api, api_packages, api_publish, registry_api):
        app.router.add_routes(module.routes)
    install_pages(app)  # HTML pages, /static and friendly HTML error pages
    return app
