-- The demo apps' data (billing and todos), one person's rows at a time.
-- Kept in lockstep with migrations/sqlite/0002_demo_apps.sql.
CREATE TABLE demo_customers (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX demo_customers_user ON demo_customers (user_id, created_at);

CREATE TABLE demo_invoices (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX demo_invoices_user ON demo_invoices (user_id, created_at);

CREATE TABLE demo_todos (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    title TEXT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX demo_todos_user ON demo_todos (user_id, created_at);
