"""How app.py builds single sign-on: the domain checks and the OIDC service, with the TLS trust and keys they need."""


from __future__ import annotations

import ssl
from pathlib import Path

from ..accounts.domains import Domains
from ..accounts.service import AccountService
from ..config import Settings
from ..db import Database
from ..keys import load_or_create_secret
from .configs import OidcConfig, SealedSecrets
from .people import People
from .provider import ProviderClient
from .service import OidcService

SSO_KEY_FILE = "sso.key"


def tls_context(ca_file: str) -> ssl.SSLContext | None:
    """The system's trust store plus `ca_file` (None: aiohttp's default, the system's alone)."""
    if not ca_file:
        return None
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=ca_file)
    return context


def site_config(settings: Settings) -> OidcConfig | None:
    site = settings.sso.oidc
    if not site.issuer:
        return None
    return OidcConfig(None, site.issuer, site.client_id, site.client_secret.get_secret_value() or None,
                      tuple(site.algorithms), {}, None)


def build_domains(db: Database, accounts: AccountService, settings: Settings) -> Domains:
    sso = settings.sso
    return Domains(db, accounts.orgs, resolver=sso.dns_resolver, https_port=sso.https_port,
                   ssl_context=tls_context(sso.ca_file), timeout_seconds=sso.timeout_seconds)


def build_oidc(db: Database, accounts: AccountService, domains: Domains, settings: Settings,
               keys_dir: Path) -> OidcService:
    provider = ProviderClient(settings.sso.timeout_seconds, tls_context(settings.sso.ca_file))
    sealed = SealedSecrets(load_or_create_secret(keys_dir / SSO_KEY_FILE))  # 0600, like the other keys
    return OidcService(db, accounts.orgs, domains, People(db, accounts.users, domains), provider, sealed,
                       settings.base_url, site_config(settings), settings.sso.oidc.label)
