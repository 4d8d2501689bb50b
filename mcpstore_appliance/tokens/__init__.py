"""Usage tokens: licence keys, EdDSA usage JWTs and their JWKS, revocations, per-call reservations and reports.

No aiohttp here; web/api_usage.py is the HTTP surface. `validators/` (at the top of the repository) holds the
stand-alone validators a self-hosted publisher runs against the JWKS.
"""

from __future__ import annotations

from pathlib import Path

from .keyring import KeyRing
from .usage import UsageGrant, UsageTokens

__all__ = ["KeyRing", "UsageGrant", "UsageTokens", "hosted_rules", "build_usage", "usage_keys_dir"]


def usage_keys_dir(settings) -> Path:
    return Path(settings.data_dir) / "keys" / "usage"


def build_usage(settings, db, accounts, market) -> UsageTokens:
    """Usage tokens; with LNbits configured, also L402 for agents without an account (root key keys/l402.key)."""
    l402 = None
    if "lnbits" in market.providers:
        from ..keys import load_or_create_secret
        from .l402 import L402

        l402 = L402(db, load_or_create_secret(Path(settings.data_dir) / "keys" / "l402.key"),
                    market.providers["lnbits"], settings.base_url, settings.market)
    return UsageTokens(db, KeyRing(usage_keys_dir(settings)), settings.base_url, accounts.principal_for_user,
                       settings.market, l402)


def hosted_rules(usage: UsageTokens, market):
    """Hosted calls follow the market: paid packages need access (an entitlement; per-call packages credits,
    charged per tools/call from the caller's usage-token reservation or wallet, given back when a call fails).
    The gateway is built with them (app.py)."""
    from ..gateway.billing import HostedRules, MarketBilling
    from .licences import access_kind

    async def may_call(principal, package: dict) -> bool:
        return await access_kind(usage.db, principal, {**package, "id": package["package_id"]}) is not None

    return HostedRules(may_call, MarketBilling(market, usage.calls))
