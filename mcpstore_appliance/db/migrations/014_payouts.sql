-- Creator payouts (mcpstore_appliance/market/payouts.py) and the failed webhook deliveries the admin page lists.
-- Money stays in the journal: a payout row says where a sum went and in which state; its journal postings
-- (`payout:<key>` taking it from the creator, `payout-return:<key>` giving it back on failure) carry the amounts.

-- Where a creator (user:<id> or org:<id>) is paid: one Lightning destination (a Lightning address, an lnurl1…
-- string or an LNURL-pay URL) for msat, one Stripe Connect account for usd and eur.
CREATE TABLE market_payout_methods (
    creator     TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('lightning', 'stripe')),
    destination TEXT NOT NULL,
    ready       INTEGER NOT NULL DEFAULT 1,   -- Stripe: 0 until the account's onboarding enables transfers
    updated_at  REAL NOT NULL,
    PRIMARY KEY (creator, kind)
);

-- One payout of one creator in one currency. `idempotency_key` is the exactly-once key: the journal posting, the
-- LNbits payment (by the stored invoice's hash) and the Stripe transfer (its Idempotency-Key) all derive from it,
-- so a batch re-run after a crash finishes a payout instead of starting another.
-- status: reserved (taken from the creator, nobody paid yet), sending (an invoice fetched or a transfer asked
-- for: the provider is asked before anything else happens to it), paid, failed (the amount returned).
CREATE TABLE market_payouts (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    batch           TEXT NOT NULL,
    creator         TEXT NOT NULL,
    currency        TEXT NOT NULL CHECK (currency IN ('usd', 'eur', 'msat')),
    amount          INTEGER NOT NULL CHECK (amount > 0),
    method          TEXT NOT NULL CHECK (method IN ('lightning', 'stripe')),
    destination     TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'reserved' CHECK (status IN ('reserved', 'sending', 'paid', 'failed')),
    bolt11          TEXT,
    provider_ref    TEXT,                 -- the invoice's payment hash, or the Stripe transfer id
    error           TEXT,
    created_at      REAL NOT NULL,
    finished_at     REAL
);
CREATE INDEX market_payouts_by_creator ON market_payouts(creator, created_at);
CREATE INDEX market_payouts_open ON market_payouts(status) WHERE status IN ('reserved', 'sending');

-- Webhook deliveries that were refused (forged, stale, malformed) or could not be followed (the provider did not
-- answer): for the operator's admin page. Capped by market.payouts' cleanup to the newest rows.
CREATE TABLE market_webhook_failures (
    id          INTEGER PRIMARY KEY,
    provider    TEXT NOT NULL,
    code        TEXT NOT NULL,
    message     TEXT NOT NULL,
    received_at REAL NOT NULL
);
