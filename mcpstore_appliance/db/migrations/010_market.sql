-- The marketplace's money (mcpstore_appliance/market): a double-entry journal in integer minor units, orders with
-- their split fixed at creation, payments credited once per provider reference, entitlements, reconciliation.
-- Journal currencies: usd and eur in cents, msat (millisatoshis) for Lightning. No REAL column holds money.

-- One account per (kind, owner, currency). kind: wallet (a buyer's prepaid credits; owner user:<id> or
-- org:<id>), creator (owed to a creator; owner user:<id> or org:<id>), revenue (the platform's cut), fees (provider
-- fees, the platform's expense), clearing (money at a provider; owner = the provider's name).
-- `balance` is the sum of the account's entries, kept in the same transaction that adds them so that a debit can
-- test it atomically; `market.journal.check` proves it against the entries.
CREATE TABLE market_accounts (
    id       INTEGER PRIMARY KEY,
    kind     TEXT NOT NULL CHECK (kind IN ('wallet', 'creator', 'revenue', 'fees', 'clearing')),
    owner    TEXT NOT NULL,
    currency TEXT NOT NULL CHECK (currency IN ('usd', 'eur', 'msat')),
    balance  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (kind, owner, currency)
);

-- One journal transaction: its entries sum to zero. `reference` makes postings idempotent (a payment, a
-- refund, a call's reservation id): the same reference is never posted twice.
CREATE TABLE market_transactions (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,      -- payment, fee, debit, refund, payout, grant
    reference  TEXT NOT NULL UNIQUE,
    currency   TEXT NOT NULL,
    order_id   INTEGER,
    memo       TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);

CREATE TABLE market_entries (
    id             INTEGER PRIMARY KEY,
    transaction_id INTEGER NOT NULL REFERENCES market_transactions(id),
    account_id     INTEGER NOT NULL REFERENCES market_accounts(id),
    amount         INTEGER NOT NULL CHECK (amount <> 0)
);
CREATE INDEX market_entries_by_account ON market_entries(account_id);

-- What a buyer asked to pay for. The price, currency and creator's share are copied here when the order is made,
-- so a later change of price or split never changes what an order pays out.
CREATE TABLE market_orders (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('purchase', 'subscription', 'credits')),
    buyer_user_id    INTEGER NOT NULL REFERENCES users(id),
    buyer_org_id     INTEGER REFERENCES orgs(id),             -- an org buying for its members
    scope            TEXT NOT NULL DEFAULT 'user' CHECK (scope IN ('user', 'org', 'seats')),
    seats            TEXT NOT NULL DEFAULT '[]',              -- JSON user ids, for scope 'seats'
    package_id       INTEGER REFERENCES packages(id),         -- NULL: a wallet top-up for any package
    major            INTEGER,                                 -- the major version the entitlement covers
    amount           INTEGER NOT NULL CHECK (amount > 0),     -- in the price's minor units (cents, sat)
    currency         TEXT NOT NULL CHECK (currency IN ('usd', 'eur', 'sat')),
    creator          TEXT,                                    -- user:<id> or org:<id>; NULL for top-ups
    creator_share_bp INTEGER NOT NULL CHECK (creator_share_bp BETWEEN 0 AND 10000),
    provider         TEXT NOT NULL,
    provider_ref     TEXT,                                    -- checkout session, payment intent, payment hash
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'refunded')),
    pay_url          TEXT,                                    -- a Checkout link
    bolt11           TEXT,                                    -- a Lightning invoice
    created_at       REAL NOT NULL,
    expires_at       REAL,
    paid_at          REAL,
    UNIQUE (provider, provider_ref)
);
CREATE INDEX market_orders_by_buyer ON market_orders(buyer_user_id, created_at);
CREATE INDEX market_orders_pending ON market_orders(provider, status, created_at);

-- Each payment a provider confirmed, once: the UNIQUE key is what makes crediting exactly-once however often
-- (and in whatever order) webhooks, reconciliation and success pages report it. A subscription order has one row
-- per paid period.
CREATE TABLE market_payments (
    id             INTEGER PRIMARY KEY,
    provider       TEXT NOT NULL,
    reference      TEXT NOT NULL,
    order_id       INTEGER NOT NULL REFERENCES market_orders(id),
    amount         INTEGER NOT NULL,
    currency       TEXT NOT NULL,
    fee            INTEGER NOT NULL DEFAULT 0,
    payment_id     TEXT,                  -- the provider's charge handle (a PaymentIntent), for refunds
    transaction_id INTEGER NOT NULL REFERENCES market_transactions(id),
    credited_at    REAL NOT NULL,
    refunded_at    REAL,
    UNIQUE (provider, reference)
);

-- Access to a package's major version: for one user, a whole org, or named seats of an org.
CREATE TABLE market_entitlements (
    id          INTEGER PRIMARY KEY,
    package_id  INTEGER NOT NULL REFERENCES packages(id),
    major       INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('purchase', 'subscription', 'per_call', 'grant')),
    scope       TEXT NOT NULL CHECK (scope IN ('user', 'org', 'seats')),
    user_id     INTEGER REFERENCES users(id),
    org_id      INTEGER REFERENCES orgs(id),
    order_id    INTEGER REFERENCES market_orders(id),
    reference   TEXT,                      -- a manual grant's or offline payment's reference
    period_end  REAL,                      -- subscriptions: access until then; NULL: no end
    created_at  REAL NOT NULL,
    revoked_at  REAL,
    CHECK ((scope = 'user') = (user_id IS NOT NULL AND org_id IS NULL))
);
CREATE INDEX market_entitlements_by_package ON market_entitlements(package_id, major);
CREATE UNIQUE INDEX market_entitlements_one_per_order ON market_entitlements(order_id) WHERE order_id IS NOT NULL;

CREATE TABLE market_seats (
    entitlement_id INTEGER NOT NULL REFERENCES market_entitlements(id),
    user_id        INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (entitlement_id, user_id)
);

-- Webhook events seen, by the provider's event id (Stripe) or payment hash (LNbits): for the admin's list of
-- failed webhooks and to answer replays without asking the provider again.
CREATE TABLE market_webhook_events (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (provider, event_id)
);

-- What reconciliation found for the operator: credits the provider does not know, amounts that differ.
CREATE TABLE market_findings (
    id         INTEGER PRIMARY KEY,
    provider   TEXT NOT NULL,
    reference  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    details    TEXT NOT NULL DEFAULT '{}',
    found_at   REAL NOT NULL,
    UNIQUE (provider, reference, kind)
);
