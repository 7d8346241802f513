-- MCP sessions, shared by every instance: who opened each one (the guard refuses anyone else) and
-- the client's initialize parameters (so another instance can resume it).
-- Kept in lockstep with migrations/sqlite/0004_mcp_sessions.sql.
CREATE TABLE mcp_sessions (
    id TEXT PRIMARY KEY,
    owner TEXT,
    state TEXT,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE INDEX mcp_sessions_owner ON mcp_sessions (owner, last_seen);
CREATE INDEX mcp_sessions_last_seen ON mcp_sessions (last_seen);
