-- Failed sign-ins per username (known or not), for the per-account lock.
-- Kept in lockstep with migrations/sqlite/0003_login_throttle.sql.
CREATE TABLE login_failures (
    username TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    first_failure_at BIGINT NOT NULL,
    locked_until BIGINT
);
