//! Browser sessions, pending authorization requests and remembered consent.

use async_trait::async_trait;
use mandate_core::clock::UnixTime;
use mandate_core::error::StoreResult;
use mandate_core::model::{Consent, PendingAuthorization, Session};
use mandate_core::secret::SecretHash;
use mandate_core::store::{AuthorizationRequestStore, ConsentStore, SessionStore};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use crate::SqlStore;
use crate::convert::*;

#[async_trait]
impl SessionStore for SqlStore {
    async fn insert_session(&self, s: &Session) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO sessions (hash, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&s.hash.0)
            .bind(&s.user_id)
            .bind(&s.csrf_token)
            .bind(s.created_at)
            .bind(s.expires_at),
        )
        .await?;
        Ok(())
    }

    async fn session(&self, hash: &SecretHash, now: UnixTime) -> StoreResult<Option<Session>> {
        let row = sqlx::query("SELECT hash, user_id, csrf_token, created_at, expires_at FROM sessions WHERE hash = $1 AND expires_at > $2")
            .bind(&hash.0)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|r| {
            Ok(Session {
                hash: SecretHash(text(&r, "hash")?),
                user_id: text(&r, "user_id")?,
                csrf_token: text(&r, "csrf_token")?,
                created_at: int(&r, "created_at")?,
                expires_at: int(&r, "expires_at")?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, hash: &SecretHash) -> StoreResult<()> {
        self.execute(sqlx::query("DELETE FROM sessions WHERE hash = $1").bind(&hash.0)).await?;
        Ok(())
    }
}

fn pending(r: &AnyRow) -> StoreResult<PendingAuthorization> {
    Ok(PendingAuthorization {
        id: text(r, "id")?,
        client_id: text(r, "client_id")?,
        redirect_uri: text(r, "redirect_uri")?,
        redirect_uri_explicit: flag(r, "redirect_uri_explicit")?,
        scope: scope(r, "scope")?,
        resource: text(r, "resource")?,
        state: opt_text(r, "state")?,
        code_challenge: text(r, "code_challenge")?,
        created_at: int(r, "created_at")?,
        expires_at: int(r, "expires_at")?,
        user_id: opt_text(r, "user_id")?,
    })
}

#[async_trait]
impl AuthorizationRequestStore for SqlStore {
    async fn insert_pending(&self, p: &PendingAuthorization) -> StoreResult<()> {
        self.execute(sqlx::query(
            "INSERT INTO pending_authorizations (id, client_id, redirect_uri, redirect_uri_explicit, scope, resource, state, \
             code_challenge, created_at, expires_at, user_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&p.id)
        .bind(&p.client_id)
        .bind(&p.redirect_uri)
        .bind(i64::from(p.redirect_uri_explicit))
        .bind(p.scope.to_string())
        .bind(&p.resource)
        .bind(p.state.clone())
        .bind(&p.code_challenge)
        .bind(p.created_at)
        .bind(p.expires_at)
        .bind(p.user_id.clone())
        ).await?;
        Ok(())
    }

    async fn challenge_uses(&self, client_id: &str, code_challenge: &str, since: UnixTime) -> StoreResult<i64> {
        // Counted up to a bound: the answer only needs to say "again" and roughly how often.
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM pending_authorizations \
             WHERE client_id = $1 AND code_challenge = $2 AND created_at >= $3 LIMIT 1000) earlier",
        )
        .bind(client_id)
        .bind(code_challenge)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        int(&row, "n")
    }

    async fn pending(&self, id: &str) -> StoreResult<Option<PendingAuthorization>> {
        let row = sqlx::query(
            "SELECT id, client_id, redirect_uri, redirect_uri_explicit, scope, resource, state, code_challenge, created_at, \
             expires_at, user_id FROM pending_authorizations WHERE id = $1 AND consumed_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(pending).transpose()
    }

    async fn bind_pending(&self, id: &str, user_id: &str) -> StoreResult<bool> {
        let n = self.execute(sqlx::query(
            "UPDATE pending_authorizations SET user_id = $1 WHERE id = $2 AND (user_id IS NULL OR user_id = $1)",
        )
        .bind(user_id)
        .bind(id)
        ).await?;
        Ok(n == 1)
    }

    async fn consume_pending(&self, id: &str, now: UnixTime) -> StoreResult<bool> {
        let n = self
            .execute(
                sqlx::query("UPDATE pending_authorizations SET consumed_at = $1 WHERE id = $2 AND consumed_at IS NULL")
                    .bind(now)
                    .bind(id),
            )
            .await?;
        Ok(n == 1)
    }
}

#[async_trait]
impl ConsentStore for SqlStore {
    async fn consent(
        &self,
        user_id: &str,
        client_id: &str,
        redirect_host: &str,
        resource: &str,
    ) -> StoreResult<Option<Consent>> {
        let row = sqlx::query(
            "SELECT user_id, client_id, redirect_host, resource, scope, updated_at FROM consents \
             WHERE user_id = $1 AND client_id = $2 AND redirect_host = $3 AND resource = $4",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(redirect_host)
        .bind(resource)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.map(|r| {
            Ok(Consent {
                user_id: text(&r, "user_id")?,
                client_id: text(&r, "client_id")?,
                redirect_host: text(&r, "redirect_host")?,
                resource: text(&r, "resource")?,
                scope: scope(&r, "scope")?,
                updated_at: int(&r, "updated_at")?,
            })
        })
        .transpose()
    }
}

/// Remembers a consent (or widens one) inside `tx`.
pub(crate) async fn save_consent_in(tx: &mut Transaction<'_, Any>, c: &Consent) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO consents (user_id, client_id, redirect_host, resource, scope, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (user_id, client_id, redirect_host, resource) DO UPDATE SET scope = excluded.scope, updated_at = excluded.updated_at",
    )
    .bind(&c.user_id)
    .bind(&c.client_id)
    .bind(&c.redirect_host)
    .bind(&c.resource)
    .bind(c.scope.to_string())
    .bind(c.updated_at)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}
