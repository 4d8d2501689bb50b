-- SAML 2.0 sign-in per org (accounts/saml.py), the accounts an org's single sign-on created just in time
-- (accounts/sso_provision.py), and the per-org mapping of IdP group names to org roles that SSO and SCIM share
-- (accounts/group_roles.py).
CREATE TABLE sso_group_roles (
    org_id     INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    group_name TEXT NOT NULL COLLATE NOCASE,  -- as the IdP names it (a SCIM Group's displayName, a SAML value)
    role       TEXT NOT NULL CHECK (role IN ('admin', 'publisher', 'auditor', 'member')),  -- never owner
    PRIMARY KEY (org_id, group_name)
) WITHOUT ROWID;

-- An account created by an org's SSO: that org's IdP may sign in as it again (and only as accounts it or the
-- org's SCIM created, so an IdP never takes over someone else's account).
CREATE TABLE sso_users (
    user_id       INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    org_id        INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    protocol      TEXT NOT NULL,              -- 'saml' (or 'oidc')
    created_at    REAL NOT NULL,
    last_login_at REAL
);

CREATE TABLE saml_idps (
    org_id          INTEGER PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
    entity_id       TEXT NOT NULL,
    sso_url         TEXT NOT NULL,            -- HTTP-Redirect binding
    certificate     TEXT NOT NULL,            -- the IdP's signing certificate, base64 DER
    group_attribute TEXT NOT NULL,
    email_attribute TEXT,                     -- NULL: the NameID is the e-mail address
    enabled         INTEGER NOT NULL DEFAULT 1,
    updated_at      REAL NOT NULL
);

-- AuthnRequests sent, so that a Response must answer one of ours (InResponseTo); kept until they expire.
CREATE TABLE saml_requests (
    request_id   TEXT PRIMARY KEY,
    org_id       INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    browser_hash TEXT NOT NULL,               -- sha256 of the cookie given to the browser that started it
    next         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    used_at      REAL
);
CREATE INDEX saml_requests_by_expiry ON saml_requests(expires_at);

-- Assertions accepted, remembered until they expire: the same assertion is never accepted twice.
CREATE TABLE saml_assertions (
    org_id       INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    assertion_id TEXT NOT NULL,
    expires_at   REAL NOT NULL,
    PRIMARY KEY (org_id, assertion_id)
) WITHOUT ROWID;
CREATE INDEX saml_assertions_by_expiry ON saml_assertions(expires_at);
