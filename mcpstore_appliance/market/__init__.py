"""The marketplace's money: a double-entry journal, orders, entitlements, payment providers, reconciliation.

No aiohttp server code here (the LNbits client uses aiohttp's client, as blobs/s3.py does); web/api_market.py is
the HTTP surface. `build_market` picks the providers the settings configure; the manual provider is always there.
"""

from __future__ import annotations

from pathlib import Path

from ..keys import load_or_create_secret
from .providers.manual import ManualProvider
from .payouts import Payouts
from .service import Market


def build_market(settings, db, keys_dir: Path) -> Market:
    market = settings.market
    providers: dict = {"manual": ManualProvider()}
    if market.stripe.secret_key.get_secret_value():
        from .providers.stripe_cards import StripeProvider  # the SDK is only imported where it is used

        providers["stripe"] = StripeProvider(market.stripe.secret_key.get_secret_value(),
                                             market.stripe.webhook_secret.get_secret_value(), market.stripe.api_base)
    if market.lnbits.url:
        from .providers.lnbits import LnbitsProvider

        providers["lnbits"] = LnbitsProvider(market.lnbits.url, market.lnbits.invoice_key.get_secret_value(),
                                             load_or_create_secret(keys_dir / "lnbits-webhook.key"),
                                             market.lnbits.invoice_expiry_seconds)
    payouts = Payouts(db, market, _payers(market, providers), settings.base_url)
    return Market(db, market, providers, settings.base_url, payouts)


def _payers(market, providers: dict) -> dict:
    """Payout methods: Lightning when the shop wallet's admin key is given, Stripe Connect with card payments."""
    payers: dict = {}
    if market.lnbits.url and market.lnbits.admin_key.get_secret_value():
        from .providers.lightning_payouts import LnbitsPayer

        payers["lightning"] = LnbitsPayer(market.lnbits.url, market.lnbits.admin_key.get_secret_value(),
                                          market.payouts.allow_private_lnurl)
    if "stripe" in providers:
        from .providers.stripe_connect import ConnectPayer

        payers["stripe"] = ConnectPayer(providers["stripe"].client)
    return payers
