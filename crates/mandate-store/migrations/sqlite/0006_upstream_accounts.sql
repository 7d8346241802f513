-- Upstream accounts: people's identities at providers that sign them in (linked by the
-- provider's stable subject), their connected accounts (the vault: tokens sealed under the
-- key-encryption key), and the provider authorization requests in flight.
-- Kept in lockstep with migrations/postgres/0006_upstream_accounts.sql.
CREATE TABLE federated_identities (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX federated_identities_user ON federated_identities (user_id);

CREATE TABLE upstream_accounts (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    subject TEXT,
    sealed_tokens BLOB NOT NULL,
    scope TEXT,
    access_expires_at INTEGER,
    version INTEGER NOT NULL,
    refreshing_until INTEGER,
    connected INTEGER NOT NULL,
    connected_at INTEGER NOT NULL,
    refreshed_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, provider)
);

CREATE TABLE provider_flows (
    state_hash TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    purpose TEXT NOT NULL,
    user_id TEXT,
    browser_hash TEXT NOT NULL,
    sealed_secrets BLOB NOT NULL,
    return_to TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX provider_flows_expires ON provider_flows (expires_at);
