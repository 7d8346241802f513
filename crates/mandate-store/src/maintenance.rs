//! Purging state that can no longer be used.

use async_trait::async_trait;
use mandate_core::clock::UnixTime;
use mandate_core::error::StoreResult;
use mandate_core::store::MaintenanceStore;

use crate::SqlStore;

/// Expired codes and pending requests are kept a day longer so that a late replay still gets a
/// precise answer (and a replayed code still revokes its grant).
const GRACE: i64 = 24 * 3600;
/// MCP sessions unused this long are gone (the guard stops honouring them after an hour).
const MCP_SESSION_IDLE: i64 = 3600;
/// Audit events deleted per statement.
const AUDIT_BATCH: u64 = 5_000;

#[async_trait]
impl MaintenanceStore for SqlStore {
    async fn purge_expired(&self, now: UnixTime, sealed_until: UnixTime) -> StoreResult<u64> {
        let statements: [(&'static str, i64); 11] = [
            ("DELETE FROM provider_flows WHERE expires_at < $1", now),
            // A grace window that has passed: the rotated token can no longer lead forward.
            (
                "UPDATE refresh_tokens SET successor_sealed = NULL WHERE successor_sealed IS NOT NULL AND rotated_at <= $1",
                sealed_until,
            ),
            ("DELETE FROM mcp_sessions WHERE last_seen < $1", now - MCP_SESSION_IDLE),
            ("DELETE FROM sessions WHERE expires_at < $1", now),
            ("DELETE FROM pending_authorizations WHERE expires_at < $1", now - GRACE),
            ("DELETE FROM authorization_codes WHERE expires_at < $1", now - GRACE),
            ("DELETE FROM grants WHERE activated_at IS NULL AND created_at < $1", now - GRACE),
            ("DELETE FROM refresh_tokens WHERE expires_at < $1", now),
            ("DELETE FROM revoked_access_tokens WHERE expires_at < $1", now),
            // A revoked grant nothing refers to any more: its codes and refresh tokens are gone
            // (above), and an access token naming a grant that is not there is refused as
            // revoked. Without this, every authorization ever made stays a row (RL-13).
            (
                "DELETE FROM grants WHERE revoked_at IS NOT NULL AND revoked_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM refresh_tokens WHERE refresh_tokens.grant_id = grants.id) \
                 AND NOT EXISTS (SELECT 1 FROM authorization_codes WHERE authorization_codes.grant_id = grants.id)",
                now,
            ),
            (
                "DELETE FROM login_failures WHERE first_failure_at < $1 AND (locked_until IS NULL OR locked_until < $1)",
                now - 3600,
            ),
        ];
        let mut total = 0;
        for (sql, cutoff) in statements {
            total += self.execute(sqlx::query(sql).bind(cutoff)).await?;
        }
        Ok(total)
    }

    async fn purge_unused_clients(&self, registered_before: UnixTime) -> StoreResult<u64> {
        // `used_at` is set with the first code, in its transaction; the grant check also covers
        // clients registered before it existed.
        let n = self
            .execute(
                sqlx::query(
                    "DELETE FROM clients WHERE kind = 'dynamic' AND used_at IS NULL AND created_at < $1 \
                     AND NOT EXISTS (SELECT 1 FROM grants WHERE grants.client_id = clients.id)",
                )
                .bind(registered_before),
            )
            .await?;
        if n > 0 {
            self.clients.invalidate();
        }
        Ok(n)
    }

    async fn purge_audit(&self, before: UnixTime, limit: u64) -> StoreResult<u64> {
        // In batches, each its own statement: deleting a year of trail at once would hold the
        // SQLite writer (or a PostgreSQL transaction) for as long as it takes.
        let mut total = 0;
        while total < limit {
            let batch = i64::try_from((limit - total).min(AUDIT_BATCH)).unwrap_or(0);
            let n = self
                .execute(
                    sqlx::query(
                        "DELETE FROM audit_events WHERE seq IN \
                         (SELECT seq FROM audit_events WHERE at < $1 ORDER BY seq LIMIT $2)",
                    )
                    .bind(before)
                    .bind(batch),
                )
                .await?;
            total += n;
            if n < u64::try_from(batch).unwrap_or(0) || n == 0 {
                break;
            }
        }
        Ok(total)
    }

    async fn announce_revocation(&self) -> StoreResult<()> {
        // Dialect branch: only PostgreSQL has notifications; a SQLite file has one process.
        if self.engine == crate::Engine::Postgres {
            self.execute(sqlx::query("SELECT pg_notify($1, '')").bind(crate::REVOCATION_CHANNEL)).await?;
        }
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        // The readers, and on SQLite the writer too (it takes the write lock: a database that
        // cannot be written is not ready).
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(crate::convert::map_err)?;
        if self.engine == crate::Engine::Sqlite {
            self.execute(sqlx::query("SELECT 1")).await?;
        }
        Ok(())
    }
}
