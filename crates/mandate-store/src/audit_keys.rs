//! Signing keys and the audit trail.

use async_trait::async_trait;
use mandate_core::clock::UnixTime;
use mandate_core::error::StoreResult;
use mandate_core::model::{AuditEvent, AuditFilter, StoredSigningKey};
use mandate_core::store::{AuditStore, KeyStore};

use crate::SqlStore;
use crate::convert::*;

#[async_trait]
impl KeyStore for SqlStore {
    async fn insert_key(&self, k: &StoredSigningKey) -> StoreResult<()> {
        self.execute(sqlx::query(
            "INSERT INTO signing_keys (kid, alg, encrypted_private_key, public_jwk, created_at, activates_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(k.encrypted_private_key.clone())
        .bind(&k.public_jwk)
        .bind(k.created_at)
        .bind(k.activates_at)
        ).await?;
        Ok(())
    }

    async fn list_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, encrypted_private_key, public_jwk, created_at, activates_at FROM signing_keys ORDER BY activates_at, created_at, kid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(StoredSigningKey {
                    kid: text(r, "kid")?,
                    alg: text(r, "alg")?,
                    encrypted_private_key: bytes(r, "encrypted_private_key")?,
                    public_jwk: text(r, "public_jwk")?,
                    created_at: int(r, "created_at")?,
                    activates_at: int(r, "activates_at")?,
                })
            })
            .collect()
    }
}

/// One audit event's INSERT (both engines).
pub(crate) fn insert_event(e: &AuditEvent) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO audit_events (id, at, kind, outcome, user_id, client_id, grant_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&e.id)
    .bind(e.at)
    .bind(&e.kind)
    .bind(&e.outcome)
    .bind(e.user_id.clone())
    .bind(e.client_id.clone())
    .bind(e.grant_id.clone())
    .bind(e.detail.clone())
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append(&self, e: &AuditEvent) -> StoreResult<()> {
        self.execute(insert_event(e)).await?;
        Ok(())
    }

    async fn append_all(&self, events: &[AuditEvent]) -> StoreResult<()> {
        // One event is one statement: on PostgreSQL a round trip, not three (BEGIN, INSERT, COMMIT).
        if let [event] = events {
            return self.append(event).await;
        }
        let events = events.to_vec();
        self.write(move |mut tx| {
            Box::pin(async move {
                for e in &events {
                    insert_event(e).execute(&mut *tx).await.map_err(map_err)?;
                }
                tx.commit().await.map_err(map_err)
            })
        })
        .await
    }

    async fn events(&self, f: &AuditFilter) -> StoreResult<Vec<AuditEvent>> {
        // Optional filters bound as NULL-or-value keep one static query for both engines.
        let rows = sqlx::query(
            "SELECT id, at, kind, outcome, user_id, client_id, grant_id, detail FROM audit_events \
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR client_id = $2) AND at >= $3 \
             AND ($5 IS NULL OR seq < (SELECT seq FROM audit_events WHERE id = $5)) \
             ORDER BY seq DESC LIMIT $4",
        )
        .bind(f.user_id.clone())
        .bind(f.client_id.clone())
        .bind(f.since.unwrap_or(i64::MIN))
        .bind(if f.limit > 0 { f.limit } else { 1000 })
        .bind(f.before.clone())
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut events = rows
            .iter()
            .map(|r| {
                Ok(AuditEvent {
                    id: text(r, "id")?,
                    at: int(r, "at")?,
                    kind: text(r, "kind")?,
                    outcome: text(r, "outcome")?,
                    user_id: opt_text(r, "user_id")?,
                    client_id: opt_text(r, "client_id")?,
                    grant_id: opt_text(r, "grant_id")?,
                    detail: opt_text(r, "detail")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }

    async fn last_tool_calls(&self, user_id: &str) -> StoreResult<Vec<(String, UnixTime)>> {
        let rows = sqlx::query(
            "SELECT client_id, MAX(at) AS at FROM audit_events WHERE user_id = $1 AND kind = 'tool.call' \
             AND outcome = 'success' AND client_id IS NOT NULL GROUP BY client_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(|r| Ok((text(r, "client_id")?, int(r, "at")?))).collect()
    }

    async fn clients_in_trail(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT client_id FROM audit_events WHERE user_id = $1 AND client_id IS NOT NULL ORDER BY client_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(|r| text(r, "client_id")).collect()
    }
}
