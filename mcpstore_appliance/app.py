"""`create_app(settings)`: the one place that builds the services and wires them to the web surface."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from nacl.signing import SigningKey

from .accounts.saml import SamlSignIn
from .accounts.domains import Domains
from .accounts.service import AccountService
from .blobs import open_blob_store
from .blobs.base import BlobStore
from .catalog.cursors import CursorCodec
from .catalog.discovery import CURSOR_KEY_FILE, Discovery, read_search_generation
from .catalog.downloads import DownloadCounter
from .catalog.mirror import Mirror
from .catalog.orphans import Sweeper
from .catalog.publish import Publisher
from .catalog.package_view import PackageView
from .catalog.registry_view import RegistryView
from .catalog.search import SearchService
from .catalog.service import PackageStatusService
from .config import ConfigError, Settings
from .db import Database
from .gateway.service import GatewayService, build_gateway
from .keys import load_or_create_secret, load_or_create_signing_key
from .ledger.note import NoteError
from .ledger.origin import fixed_origin
from .ledger.service import Ledger
from .ledger.witness import Witness, default_witness_name
from .market import Market, build_market
from .market.entitlements import covers
from .oauth.service import OAuthService
from .oidc.build import build_domains, build_oidc
from .oidc.service import OidcService
from .policy.service import PolicyService, open_policy_service
from .private_files import private_dir
from .tokens import UsageTokens, build_usage, hosted_rules
from .web import (api_accounts, api_audit, api_market, api_mirror, api_packages, api_payouts, api_policy,
                  api_publish, api_sso, api_usage, api_user_config, cors, health, ledger_api, oauth_api, openapi,
                  registry_api, saml_api, scim_api, sendfile)
from .web.errors import log_client_errors_in_one_line
from .web.front_door import MIDDLEWARES, add_headers, check_routes_declared
from .web.keys import METRICS, SERVICES, SETTINGS, WORKER
from .worker_role import WorkerRole
from .web.metrics import Metrics
from .web.mcp_api import install_gateway
from .web.pages import install_pages

log = logging.getLogger("mcpstore")


@dataclass
class Keys:
    ledger: SigningKey
    jwt: SigningKey


@dataclass(frozen=True)
class Services:
    """Everything a running appliance uses, each built once and completely by `build_services`."""

    settings: Settings
    db: Database
    blobs: BlobStore
    keys: Keys
    metrics: Metrics
    accounts: AccountService
    ledger: Ledger
    publisher: Publisher
    package_status: PackageStatusService
    discovery: Discovery  # search, package data, registry API, download counts
    sweeper: Sweeper  # crash leftovers; started only by a serving appliance
    gateway: GatewayService  # hosted execution; unavailable without a working sandbox backend
    market: Market  # buying, crediting, entitlements (market/)
    policy: PolicyService  # organizations' group policy, device tokens, the signed and MDM forms
    usage: UsageTokens  # licence keys, usage tokens and their keys, per-call reservations (tokens/)
    oauth: OAuthService  # the authorisation server of the hosted endpoints (oauth/)
    saml: SamlSignIn  # SAML 2.0 sign-in per org (accounts/saml.py)
    mirror: Mirror  # the curated mirror: imports from upstream registries, updates waiting for approval
    domains: Domains  # e-mail domains orgs have proven, and whether they require SSO (accounts/domains.py)
    oidc: OidcService  # OpenID Connect sign-in through an org's IdP or the site's provider (oidc/)


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


async def build_services(settings: Settings, metrics: Metrics | None = None, *, sandboxes: bool = True) -> Services:
    """Open everything a running appliance needs. Also used in-process by operator CLI commands (which start
    no background work and pass `sandboxes=False`: no sandbox backend is probed for them). `metrics`: the web
    edge's, so the pipeline's counters show on /metrics."""
    paths = prepare_data_dir(settings)
    keys = load_keys(settings)
    async with AsyncExitStack() as opened:  # closes what was opened if a later part refuses to start
        db = await Database(paths["db"]).open()
        opened.push_async_callback(db.close)
        blobs = open_blob_store(settings)
        opened.push_async_callback(blobs.close)
        ledger = await build_ledger(db, settings, keys.ledger, paths["keys"])  # may refuse the origin
        opened.push_async_callback(ledger.close)
        metrics = metrics or Metrics()
        storage = settings.storage
        # Signed-in callers are cached while nothing is committed, by the database's commit stamp.
        accounts = AccountService(db, settings.accounts, change_stamp=db.stamp)
        market = build_market(settings, db, paths["keys"])
        usage = build_usage(settings, db, accounts, market)
        # Hosted calls follow the market: access by entitlement, per-call packages charged per tools/call.
        gateway = await build_gateway(db, blobs, settings, paths["root"] / "hosted", paths["keys"], probe=sandboxes,
                                      rules=hosted_rules(usage, market))
        discovery = build_discovery(db, settings, paths["keys"], gateway.hosted_types)
        publisher = Publisher(db, blobs, ledger, settings, metrics=metrics, hosted_check=gateway.publish_check)
        domains = build_domains(db, accounts, settings)
        services = Services(
            settings=settings, db=db, blobs=blobs, keys=keys, metrics=metrics,
            accounts=accounts,
            ledger=ledger,
            publisher=publisher,
            mirror=Mirror(db, publisher, settings),
            package_status=PackageStatusService(db, ledger),
            discovery=discovery,
            gateway=gateway,
            market=market,
            usage=usage,
            oauth=OAuthService(db, accounts.users, settings.oauth, settings.base_url),
            saml=SamlSignIn(db, settings.base_url, accounts.login_by_ip, bind_browser=settings.server.behind_tls),
            policy=open_policy_service(db, accounts, paths["keys"], settings.base_url, settings.registry_name_prefix,
                                       settings.branding.name, settings.branding.operator),
            domains=domains,
            oidc=build_oidc(db, accounts, domains, settings, paths["keys"]),
            sweeper=Sweeper(db, blobs, paths["tmp"], interval=storage.sweep_interval_seconds,
                            grace=storage.sweep_grace_seconds))
        opened.pop_all()
    return services


async def build_ledger(db: Database, settings: Settings, signing_key: SigningKey, keys_dir: Path) -> Ledger:
    origin = await fixed_origin(db, settings, keys_dir)
    witness_name = settings.ledger.witness_name or default_witness_name(origin)
    # A separate key for cosigning other logs, so a witness signature can never be mistaken for our own
    # checkpoint signature and the two can be rotated apart.
    witness_key = load_or_create_signing_key(keys_dir / "witness.key")
    try:
        witness = Witness(db, witness_key, witness_name, settings.ledger.witnessed_logs)
        return Ledger(db, signing_key, origin, settings.ledger, witness=witness)
    except NoteError as exc:
        raise ConfigError(f"config: ledger.witnesses / ledger.witnessed_logs: {exc}") from None


def build_discovery(db: Database, settings: Settings, keys_dir: Path, hosted_types: frozenset[str]) -> Discovery:
    """Search, package data and the registry API. Paid bundles and `requires_payment` follow the caller's
    entitlements (market/entitlements.py `covers`)."""
    # Cursors are signed with a secret of their own (0600 in the data folder): they stay valid across restarts,
    # and a forged or edited cursor is refused.
    cursors = CursorCodec(load_or_create_secret(keys_dir / CURSOR_KEY_FILE))
    downloads = DownloadCounter(db)
    generation = db.per_stamp(read_search_generation)
    base_url = settings.base_url
    return Discovery(
        cursors=cursors, downloads=downloads,
        search=SearchService(db, cursors, base_url, fold_epoch=lambda: downloads.epoch),
        packages=PackageView(db, cursors, base_url, entitled=covers),
        registry=RegistryView(db, cursors, base_url, settings.registry_name_prefix, generation,
                              fold_epoch=lambda: downloads.epoch, hosted_types=hosted_types))


async def close_services(services: Services) -> None:
    await services.market.close()  # its reconciliation timer and payment provider clients
    await services.oidc.provider.close()  # the HTTP client of the OpenID providers
    await services.discovery.stop()  # folds buffered download counts while the database is open
    await services.ledger.close()
    await services.blobs.close()
    await services.db.close()


async def pending_checks(app: web.Application):
    """Hosted checks that outlived their publish (catalog/pending_checks.py)."""
    pending = app[SERVICES].publisher.pending
    if app[WORKER].leader:
        pending.watch()  # those whose process is gone (a stop, a crash): started again, or failed clearly
    yield
    await pending.stop()  # their rows stay: the next start resumes them


def create_app(settings: Settings, worker: WorkerRole | None = None) -> web.Application:
    """`worker`: which of `mcpstore serve --workers N`'s processes this is (worker_role.py); default the one."""
    log_client_errors_in_one_line()
    # every request, routed or not, goes through the front door's middlewares (web/front_door.py)
    app = web.Application(client_max_size=settings.server.max_body_bytes, middlewares=MIDDLEWARES)
    app[SETTINGS] = settings
    app[WORKER] = worker or WorkerRole()
    app[METRICS] = metrics = Metrics()
    app.on_response_prepare.append(add_headers)

    async def lifecycle(app: web.Application):
        # Before anything is opened: aiohttp runs no cleanup for a start that fails, so a refusal after the
        # services were built would leave their database threads holding the process.
        await check_routes_declared(app)
        services = await build_services(settings, metrics)
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
        sweeper = app[SERVICES].sweeper
        if app[WORKER].leader:
            sweeper.start()  # crash leftovers: now, then every interval
        yield
        await sweeper.stop()

    app.cleanup_ctx.append(sweep_tasks)

    async def stop_sendfile_workers(app: web.Application) -> None:
        sendfile.slots.abort_all(app)  # this app's downloads still running after the shutdown grace period

    app.on_cleanup.append(stop_sendfile_workers)
    # aiohttp tries the resources under /api/packages in the order they were added: api_user_config first (its
    # fixed last segment would otherwise be taken for a version), then api_packages before api_publish (the
    # GETs: package data, versions, update checks, are the hot ones).
    for module in (health, openapi, api_accounts, ledger_api, api_user_config, api_packages, api_publish,
                   registry_api):
        app.router.add_routes(module.routes)
    api_market.install_market(app)  # buying, webhooks, the market service and its timer
    api_payouts.install(app)  # creator payouts and their timer; creator, buyer and admin dashboards
    install_gateway(app)  # hosted execution (gateway/): its service, start-up log line and routes
    app.cleanup_ctx.append(pending_checks)  # after the gateway's: stopped before its sandboxes are
    api_usage.install_usage(app)  # licence keys, usage tokens, JWKS, revocations, per-call billing of the gateway
    oauth_api.install_oauth(app)  # the OAuth authorisation server of the hosted endpoints (oauth/)
    cors.install(app)  # CORS and preflights for browser-based MCP clients (OAuth endpoints, /mcp/)
    api_policy.install(app)  # group policy: its routes
    api_audit.install(app)  # the audit log: its service (seals, retention), routes and pages
    scim_api.install(app)  # SCIM provisioning at /scim/v2/{org}/ and the org's SCIM tokens
    saml_api.install(app)  # SAML sign-in per org, its settings (API and page), group-to-role mappings
    api_mirror.install(app)  # the curated mirror: admin API, admin page, the update-check timer
    app.router.add_routes(api_sso.routes)  # single sign-on: the OIDC sign-in, the org's SSO settings and domains
    install_pages(app)  # HTML pages, /static and friendly HTML error pages
    return app
