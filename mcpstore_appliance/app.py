"""`create_app(settings)`: the one place that builds the services and wires them to the web surface."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from nacl.signing import SigningKey

from .accounts.service import AccountService
from .blobs import open_blob_store
from .blobs.base import BlobStore
from .config import Settings
from .db import Database
from .keys import load_or_create_signing_key
from .web import api_accounts, health, openapi
from .web.auth import auth_middleware
from .web.errors import error_middleware
from .web.metrics import Metrics, metrics_middleware
from .web.middlewares import access_log_middleware, security_headers_middleware

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
    extra: dict[str, Any] = field(default_factory=dict)


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
    paths = data_paths(settings)
    for name in ("root", "blobs", "tmp"):
        paths[name].mkdir(parents=True, exist_ok=True)
    paths["keys"].mkdir(mode=0o700, parents=True, exist_ok=True)
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
    return Services(settings=settings, db=db, blobs=blobs, keys=keys,
                    accounts=AccountService(db, settings.accounts), metrics=Metrics())


async def close_services(services: Services) -> None:
    await services.blobs.close()
    await services.db.close()


def create_app(settings: Settings) -> web.Application:
    metrics = Metrics()
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[
            access_log_middleware,
            metrics_middleware(metrics),  # outside the error middleware, so it counts final statuses
            security_headers_middleware(settings.server.behind_tls),
            error_middleware,
            auth_middleware,
        ],
    )
    app["settings"] = settings

    async def lifecycle(app: web.Application):
        services = await build_services(settings)
        services.metrics = metrics
        app["services"] = services
        yield
        await close_services(services)

    app.cleanup_ctx.append(lifecycle)
    for module in (health, openapi, api_accounts):
        app.add_routes(module.routes)
    return app
