-- Failed sign-ins per username (known or not), for the per-account lock.
-- Kept in lockstep with migrations/postgres/0003_login_throttle.sql.
CREATE TABLE login_failures (
    username TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    first_failure_at INTEGER NOT NULL,
    locked_until INTEGER
);
