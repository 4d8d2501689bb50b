-- L402 (tokens/l402.py): usage tokens an AI agent without an account paid for with Lightning. A payment hash is
-- redeemed once (its PRIMARY KEY); `used` of `calls` prepaid calls were reported, each call id once.
CREATE TABLE l402_tokens (
    payment_hash   TEXT PRIMARY KEY,
    jti            TEXT NOT NULL UNIQUE,
    package_id     INTEGER NOT NULL REFERENCES packages(id),
    calls          INTEGER NOT NULL CHECK (calls > 0),
    used           INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= calls),
    amount         INTEGER NOT NULL,                  -- msat paid
    transaction_id INTEGER NOT NULL REFERENCES market_transactions(id),
    redeemed_at    REAL NOT NULL,
    expires_at     REAL NOT NULL
);

CREATE TABLE l402_calls (
    jti     TEXT NOT NULL REFERENCES l402_tokens(jti),
    call_id TEXT NOT NULL,
    PRIMARY KEY (jti, call_id)
);

-- Lightning subscriptions (market/renewals.py): one invoice per order and period, made before the period ends;
-- paid, it is credited once by its own payment hash (market_payments) and extends the subscription by a month.
CREATE TABLE market_renewals (
    id         INTEGER PRIMARY KEY,
    order_id   INTEGER NOT NULL REFERENCES market_orders(id),
    period_end REAL NOT NULL,          -- the end of the paid period this invoice continues
    provider   TEXT NOT NULL,
    reference  TEXT NOT NULL,          -- the invoice's payment hash
    bolt11     TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    UNIQUE (order_id, period_end),
    UNIQUE (provider, reference)
);

-- A per-call reservation paid from an org's credits (market/settle.py wallet `org:<id>`): the wallet its unused
-- calls go back to. NULL: the buyer's own wallet, as before.
ALTER TABLE usage_tokens ADD COLUMN wallet TEXT;

-- A Lightning subscription its buyer cancelled: no more renewal invoices; access lasts to the paid period's end.
ALTER TABLE market_orders ADD COLUMN cancelled_at REAL;
