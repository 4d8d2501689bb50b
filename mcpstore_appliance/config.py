"""Settings: built-in defaults < config.toml < MCPSTORE_* environment.

Every key is documented in config.example.toml. Unknown keys, wrong types and unreadable files raise
`ConfigError` with one line naming the key, before anything is started.

Environment names: `MCPSTORE_<KEY>` for top-level keys and `MCPSTORE_<SECTION>__<KEY>` for keys in a
section (for example `MCPSTORE_SERVER__PORT=9000`, `MCPSTORE_STORAGE__S3__BUCKET=bundles`). List values are
given as JSON (`MCPSTORE_PUBLISH__PINNED_CERT_FINGERPRINTS='["ab12…"]'`). The client's own variables
(`config_environment.NOT_SETTINGS`: MCPSTORE_TOKEN, MCPSTORE_REGISTRY, MCPSTORE_CONFIG_DIR, …) are not settings and are ignored.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from .config_environment import describe_error, env_overrides, merge

_LOGO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,80}(\.[A-Za-z0-9_-]{1,20})*\.(svg|png|jpg|jpeg|webp)")
_HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
DEFAULT_NAME_PREFIX = "local.mcpstore"  # registry names where the public URL gives no DNS name to reverse
_DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class ConfigError(Exception):
    """A configuration problem, reported as one line."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: Literal["auto"] | Annotated[int, Field(ge=1, le=64)] = 1  # cli/supervisor.py
    public_url: str = ""
    behind_tls: bool = False
    trusted_proxies: list[str] = []
    max_body_bytes: int = Field(1_048_576, gt=0)
    access_log: bool = True
    metrics_token: SecretStr = SecretStr("")
    shutdown_timeout_seconds: float = Field(30.0, gt=0)
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    # Connections (web/connections.py; the defaults are explained in config.example.toml)
    header_timeout_seconds: float = Field(10.0, gt=0)
    body_stall_timeout_seconds: float = Field(30.0, gt=0)
    keepalive_timeout_seconds: float = Field(75.0, gt=0)
    max_connections: int = Field(0, ge=0)  # 0: derived from the process's descriptor limit
    max_connections_per_address: int = Field(256, gt=0)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the entry
        return value


class AccountSettings(Section):
    signup: Literal["open", "invite", "closed"] = "open"
    session_ttl_hours: int = Field(24 * 14, gt=0)
    token_max_days: int = Field(365, gt=0)
    login_attempts_per_ip_per_minute: int = Field(20, gt=0)
    # per account and address: failures before the growing delays start, and the longest delay
    login_failures_before_delay: int = Field(5, gt=0)
    login_max_delay_seconds: int = Field(900, gt=0)
    token_requests_per_ip_per_minute: int = Field(30, gt=0)


class S3Settings(Section):
    endpoint: str = ""
    addressing_style: Literal["auto", "path", "virtual"] = "auto"  # auto: virtual on AWS, path elsewhere
    region: str = "us-east-1"
    bucket: str = ""
    prefix: str = "blobs/"
    access_key_id: str = ""
    secret_access_key: SecretStr = SecretStr("")  # SecretStr: never printed with the settings
    presign_redirects: bool = False
    presign_ttl_seconds: int = Field(900, gt=0)
    multipart_threshold_bytes: int = Field(16 * 1024 * 1024, ge=5 * 1024 * 1024)
    part_size_bytes: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024)
    upload_concurrency: int = Field(4, ge=1, le=16)  # multipart parts in flight (memory: this many parts)


class StorageSettings(Section):
    backend: Literal["local", "s3"] = "local"
    # Blobs no version refers to (a publish that crashed between storing and committing) and temp files of
    # crashed uploads are removed at start and then every interval, once older than the grace period.
    sweep_interval_seconds: float = Field(3600.0, gt=0)
    sweep_grace_seconds: float = Field(3600.0, ge=0)
    s3: S3Settings = S3Settings()


class PublishSettings(Section):
    max_bundle_bytes: int = Field(100 * 1024 * 1024, gt=0)
    max_entries: int = Field(10_000, gt=0)
    max_uncompressed_bytes: int = Field(512 * 1024 * 1024, gt=0)
    max_compression_ratio: int = Field(200, gt=0)
    max_manifest_bytes: int = Field(1024 * 1024, gt=0)
    max_nesting: int = Field(2, ge=0)  # archives inside the bundle inside archives...
    require_signature: bool = False
    trusted_ca_file: str = ""
    pinned_cert_fingerprints: list[str] = []


class WitnessPeer(Section):
    # For `witnesses`: a label (default: the key's name). For `witnessed_logs`: the log's checkpoint origin
    # (default: the key's name, which C2SP recommends to equal the origin).
    name: str = ""
    key: str  # a signed-note verifier key string "name+hash+base64" (0x04 cosignature key for witnesses)
    url: str = ""  # witness URL prefix; we POST <url>/add-checkpoint to ask it for cosignatures


class LedgerSettings(Section):
    origin: str = ""
    checkpoint_interval_seconds: float = Field(0.1, ge=0)
    witness_name: str = ""  # our name when cosigning other logs; default "<public host>/witness"
    witnesses: list[WitnessPeer] = []
    witness_retry_seconds: float = Field(10.0, gt=0)  # first wait before asking an unreachable witness again
    witnessed_logs: list[WitnessPeer] = []  # logs this appliance cosigns as a witness


class RegistrySettings(Section):
    name_prefix: str = ""
    # private: nothing readable without signing in, sign-up by invitation only (web/access.py, private_refusal)
    mode: Literal["public", "private"] = "public"


class BrandingSettings(Section):
    """Who runs this registry, as its pages and rendered MDM profiles say it (branding.py)."""

    name: str = Field("mcpstore", min_length=1, max_length=60)  # the registry's name
    operator: str = Field("", max_length=100)  # the company or team that runs it
    logo: str = ""  # a file name in <data_dir>/branding/ (.svg, .png, .jpg, .webp); empty: the default mark
    accent_color: str = "#1d4ed8"

    @field_validator("name", "operator")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("must be one line of printable text")
        return value.strip()

    @field_validator("logo")
    @classmethod
    def _logo_name(cls, value: str) -> str:
        if value and not _LOGO_NAME.fullmatch(value):
            raise ValueError("must be a plain file name in <data_dir>/branding/ ending .svg, .png, .jpg or .webp "
                             "(no folders, no '..')")
        return value

    @field_validator("accent_color")
    @classmethod
    def _color(cls, value: str) -> str:
        if not _HEX_COLOR.fullmatch(value):
            raise ValueError("must be a colour as #rrggbb")
        return value.lower()


class StripeSettings(Section):
    secret_key: SecretStr = SecretStr("")  # empty: no card payments
    webhook_secret: SecretStr = SecretStr("")  # whsec_… of the endpoint /api/payments/stripe/webhook
    api_base: str = ""  # another API address (tests, a stand-in); empty: Stripe's own


class LnbitsSettings(Section):
    url: str = ""  # empty: no Lightning payments
    invoice_key: SecretStr = SecretStr("")  # the wallet's invoice key (inkey): creates and checks invoices
    invoice_expiry_seconds: int = Field(900, gt=0)
    admin_key: SecretStr = SecretStr("")  # the same wallet's admin key: pays creators' Lightning payouts; empty: none


class PayoutSettings(Section):
    """Creator payouts (market/payouts.py): in batches, each creator's available balance once it reaches the
    minimum of its currency (in the currency's own units: the fees of a transfer should stay small against it)."""

    minimum: dict[str, str] = {"usd": "20.00", "eur": "20.00", "sat": "10000"}
    interval_seconds: float = Field(86400.0, ge=0)  # 0: only `mcpstore admin payouts run`
    # LNURL-pay endpoints on private or loopback addresses (a creator's URL must not reach the operator's LAN)
    allow_private_lnurl: bool = False


class MarketSettings(Section):
    # The creator's share of each payment in basis points (8000 = 80 %), fixed on each order when it is made.
    hobbyist_creator_share_bp: int = Field(8000, ge=0, le=10_000)  # hosted here
    pro_creator_share_bp: int = Field(9500, ge=0, le=10_000)  # self-hosted by the publisher
    org_internal_creator_share_bp: int | None = Field(None, ge=0, le=10_000)  # org packages not public; 10000: 100/0
    # Price bounds checked at publish, in the currency's own units (decimal strings); sat bounds separately.
    per_call_bounds: list[str] = ["0.01", "10.00"]
    subscription_bounds: list[str] = ["5.00", "100.00"]
    per_call_bounds_sat: list[str] = ["1", "100000"]
    subscription_bounds_sat: list[str] = ["1000", "1000000"]
    # Card payments below this (per currency) are refused: the fixed card fee would eat the payment.
    card_minimum: dict[str, str] = {"usd": "10.00", "eur": "10.00"}
    reconcile_interval_seconds: float = Field(600.0, ge=0)  # 0: only `mcpstore admin reconcile`
    reconcile_window_seconds: float = Field(7 * 86400.0, gt=0)
    # Lightning subscriptions: the next period's invoice (the reminder) is made this long before the period ends.
    renewal_notice_days: float = Field(3.0, gt=0, le=27)
    stripe: StripeSettings = StripeSettings()
    lnbits: LnbitsSettings = LnbitsSettings()
    payouts: PayoutSettings = PayoutSettings()

    @field_validator("per_call_bounds", "subscription_bounds", "per_call_bounds_sat", "subscription_bounds_sat")
    @classmethod
    def _two_decimals(cls, value: list[str]) -> list[str]:
        if len(value) != 2 or not all(re.fullmatch(r"[0-9]{1,15}(\.[0-9]{1,2})?", v) for v in value):
            raise ValueError('give [minimum, maximum] as decimal strings, e.g. ["0.01", "10.00"]')
        return value


class HostedSettings(Section):
    """Hosted execution (gateway/): published bundles run in a sandbox behind /mcp/{namespace}/{name}."""

    backend: Literal["auto", "bubblewrap", "docker", "off"] = "auto"  # auto: bubblewrap, else docker, else off
    memory_mb: int = Field(512, ge=16)
    cpus: float = Field(0.5, gt=0)
    pids: int = Field(64, ge=4)
    tmpfs_mb: int = Field(16, ge=1)
    init_timeout_seconds: float = Field(15.0, gt=0)
    call_timeout_seconds: float = Field(5.0, gt=0)
    idle_timeout_seconds: float = Field(300.0, gt=0)
    max_message_bytes: int = Field(1024 * 1024, ge=1024)
    max_sessions_per_user: int = Field(4, ge=1)
    max_sessions: int = Field(32, ge=1)
    docker_host: str = ""  # empty: DOCKER_HOST or the local engine's socket
    docker_image: str = "mcpstore-runtime:bookworm"  # built by packaging/build-runtime-image.sh
    docker_mount_host_usr: bool = False  # for the --skeleton image: the host's /usr mounted read-only
    allowed_origins: list[str] = []  # browser origins allowed to call /mcp/ besides the public URL's own
    # warm sandboxes per recently used hosted version (gateway/warm_pool.py): 0 = none; idle ones closed after
    # the idle time; all of them together within the memory cap (each counts memory_mb)
    warm_pool: int = Field(0, ge=0, le=16)
    warm_pool_idle_seconds: float = Field(300.0, gt=0)
    warm_pool_memory_mb: int = Field(2048, ge=0)
    publish_check: bool = True  # start each hosted bundle once at publish: tools/list against the manifest
    publish_check_seconds: float = Field(25.0, gt=0)  # how long a publish waits for it (a publish answers within 30 s)
    # a check still running then goes on in the background, the version pending, up to this in all; over it: quarantined
    publish_check_pending_seconds: float = Field(300.0, gt=0)
    # pro-tier packages' own endpoints: asked to initialize at publish and every interval (gateway/endpoint_health.py)
    endpoint_check_interval_seconds: float = Field(300.0, ge=10)
    endpoint_check_timeout_seconds: float = Field(5.0, gt=0)
    endpoint_check_private_addresses: bool = False  # true where publishers' endpoints are on the operator's network
    endpoint_ca_file: str = ""  # extra CA certificates to trust for them (an internal CA); empty: the system's


class OAuthSettings(Section):
    """The authorisation server of the hosted MCP endpoints (oauth/)."""

    code_seconds: int = Field(60, gt=0, le=600)  # authorisation codes are single-use and short-lived
    access_token_minutes: int = Field(60, gt=0)
    refresh_token_days: int = Field(30, gt=0)
    registrations_per_ip_per_hour: int = Field(20, gt=0)
    # client ID metadata documents (a client_id that is an https URL, oauth/client_documents.py): fetched with
    # this budget, from public addresses only unless allowed, trusting the system's CAs plus this file's
    client_metadata_seconds: float = Field(5.0, gt=0, le=30)
    client_metadata_private_addresses: bool = False
    client_metadata_ca_file: str = ""


class AuditSettings(Section):
    """The audit log (audit/): sealing, retention and the syslog collector exports are pushed to."""

    seal_interval_seconds: float = Field(30.0, gt=0, le=60)  # chains with new events are sealed this often
    retention_days: int = Field(0, ge=0)  # 0: keep every event; PCI DSS asks for at least 365
    prune_interval_seconds: float = Field(3600.0, gt=0)
    syslog_host: str = ""  # empty: no syslog pushes
    syslog_port: int = Field(514, ge=1, le=65535)  # plain TCP (RFC 6587); put TLS in front for RFC 5425
    syslog_timeout_seconds: float = Field(10.0, gt=0)


class MirrorSettings(Section):
    """The curated mirror (catalog/mirror.py): imports from upstream registries, newer versions wait for approval."""

    check_interval_seconds: float = Field(0.0, ge=0)  # look for newer upstream versions; 0: only `admin mirror check`
    timeout_seconds: float = Field(60.0, gt=0)  # one conversation with an upstream (a bundle download included)


class SiteOidcSettings(Section):
    """The one site-wide OpenID provider of a public registry (`[sso.oidc]`); orgs configure their own in the UI."""

    issuer: str = ""  # empty: no site-wide sign-in
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")  # empty: a public client (PKCE alone)
    algorithms: list[str] = ["RS256", "ES256", "EdDSA"]  # asymmetric only; never none or HS*
    label: str = Field("single sign-on", min_length=1, max_length=60)  # "Sign in with <label>"

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, value: list[str]) -> list[str]:
        from .oidc.idtoken import SUPPORTED_ALGORITHMS
        if not value or any(name not in SUPPORTED_ALGORITHMS for name in value):
            raise ValueError(f"choose from {list(SUPPORTED_ALGORITHMS)}")
        return value


class SsoSettings(Section):
    """Single sign-on (oidc/) and the e-mail domain checks (accounts/domains.py)."""

    oidc: SiteOidcSettings = SiteOidcSettings()
    dns_resolver: str = ""  # "host:port" asked for _mcpstore-challenge TXT records; empty: the system's resolver
    https_port: int = Field(443, ge=1, le=65535)  # where https://<domain>/.well-known/… is fetched
    ca_file: str = ""  # a CA bundle trusted besides the system's (IdPs and domain checks); empty: system only
    timeout_seconds: float = Field(10.0, gt=0, le=60)

    @field_validator("dns_resolver")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if value and not (host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError('give "host:port", e.g. "127.0.0.1:53" or "[::1]:53"')
        return value


class Settings(Section):
    data_dir: Path = Path("./mcpstore-data")
    server: ServerSettings = ServerSettings()
    accounts: AccountSettings = AccountSettings()
    storage: StorageSettings = StorageSettings()
    publish: PublishSettings = PublishSettings()
    ledger: LedgerSettings = LedgerSettings()
    registry: RegistrySettings = RegistrySettings()
    market: MarketSettings = MarketSettings()
    hosted: HostedSettings = HostedSettings()
    oauth: OAuthSettings = OAuthSettings()
    audit: AuditSettings = AuditSettings()
    sso: SsoSettings = SsoSettings()
    branding: BrandingSettings = BrandingSettings()
    mirror: MirrorSettings = MirrorSettings()

    @model_validator(mode="after")
    def _private_signup(self) -> "Settings":
        """A private registry takes new people by invitation (or SSO, SCIM) only: open sign-up becomes invite."""
        if self.registry.mode == "private" and self.accounts.signup == "open":
            self.accounts = self.accounts.model_copy(update={"signup": "invite"})
        return self

    @property
    def base_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        return f"http://{self.server.host}:{self.server.port}"

    @property
    def ledger_origin(self) -> str:
        """The origin a new data folder's ledger gets (ledger/origin.py fixes it from then on)."""
        if self.ledger.origin:
            return self.ledger.origin
        parts = urlsplit(self.base_url)
        return f"{parts.netloc}{parts.path}/ledger".replace("//", "/")

    @property
    def registry_name_prefix(self) -> str:
        """Reverse-DNS prefix of MCP Registry server names: `registry.name_prefix`, else the public URL's host
        name reversed (https://mcp.example.com -> `com.example.mcp`), else (no public URL, or an IP address or
        a single label such as localhost) `local.mcpstore`."""
        if self.registry.name_prefix:
            return self.registry.name_prefix
        host = (urlsplit(self.server.public_url).hostname or "") if self.server.public_url else ""
        labels = host.split(".")
        if len(labels) < 2 or not all(_DNS_LABEL.match(label) for label in labels) or labels[-1].isdigit():
            return DEFAULT_NAME_PREFIX
        return ".".join(reversed(labels))


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from None


def load_settings(
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from defaults, the TOML file, the environment and explicit overrides (CLI flags)."""
    environ = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = _read_file(config_file) if config_file else {}
    data = merge(data, env_overrides(environ))
    data = merge(data, overrides)
    label = f"{config_file} or MCPSTORE_* environment" if config_file else "MCPSTORE_* environment"
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, label)) from None
