-- Hardening (issue 13). Kept in lockstep with migrations/postgres/0007_hardening.sql.
-- RV-09: the resources an operator-registered client serves (JSON list of resource URIs); it may
-- introspect tokens whose audience is one of them.
ALTER TABLE clients ADD COLUMN served_resources TEXT NOT NULL DEFAULT '[]';
-- DC-10: when the client first got an authorization code. Dynamic clients never used are
-- collected after a while; a client once used never is.
ALTER TABLE clients ADD COLUMN used_at INTEGER;
UPDATE clients SET used_at = created_at WHERE EXISTS (SELECT 1 FROM grants WHERE grants.client_id = clients.id);
CREATE INDEX clients_kind_created ON clients (kind, created_at);
-- PK-12: finding an earlier request of the same client with the same PKCE challenge.
CREATE INDEX pending_client_challenge ON pending_authorizations (client_id, code_challenge);
