-- OpenID Connect sign-in (oidc/) and e-mail domains an org has proven it owns (accounts/domains.py).
-- The appliance is here the OIDC *client* (relying party); oauth/ is the unrelated server side.

-- One IdP per org. The client secret is sealed with keys/sso.key (XSalsa20-Poly1305) and never shown again.
CREATE TABLE oidc_configs (
    org_id          INTEGER PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
    issuer          TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    sealed_secret   BLOB,                      -- NULL: a public client (PKCE alone)
    algorithms      TEXT NOT NULL,             -- space separated allowlist, never none or HS*
    group_roles     TEXT NOT NULL DEFAULT '{}',-- JSON {idp group name: org role}
    default_role    TEXT,                      -- role when no group maps; NULL refuses the sign-in
    enabled         INTEGER NOT NULL DEFAULT 1,
    updated_at      REAL NOT NULL
);

-- A sign-in in progress: state and nonce bound to the browser that started it (a cookie whose hash is kept),
-- single use (deleted when the callback reads it) and short-lived.
CREATE TABLE oidc_logins (
    state_hash   TEXT PRIMARY KEY,             -- sha256 hex of `state`
    browser_hash TEXT NOT NULL,                -- sha256 hex of the browser's binding cookie
    org_id       INTEGER REFERENCES orgs(id) ON DELETE CASCADE,  -- NULL: the site-wide provider
    nonce        TEXT NOT NULL,
    verifier     TEXT NOT NULL,                -- PKCE code_verifier
    next_path    TEXT NOT NULL,
    expires_at   REAL NOT NULL
);

-- Which IdP subject is which account: (issuer, sub) is the stable identity, not the e-mail.
CREATE TABLE oidc_identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    last_login REAL NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX oidc_identities_by_user ON oidc_identities(user_id);

-- E-mail domains claimed by orgs; several orgs may claim one, only one may prove it.
CREATE TABLE org_domains (
    org_id      INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    domain      TEXT NOT NULL,                 -- lowercase ASCII (IDNA)
    token       TEXT NOT NULL,                 -- the value published in DNS or the .well-known file
    verified_at REAL,
    method      TEXT,                          -- dns or https, once verified
    require_sso INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL,
    PRIMARY KEY (org_id, domain)
);
CREATE UNIQUE INDEX org_domains_one_owner ON org_domains(domain) WHERE verified_at IS NOT NULL;
