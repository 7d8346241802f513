//! Upstream accounts: sign-in identities, the vault's rows (sealed tokens, a version and a refresh
//! lease so that one refresh happens per expiry across every instance), provider flows.

use async_trait::async_trait;
use mandate_core::clock::UnixTime;
use mandate_core::error::{StoreError, StoreResult};
use mandate_core::model::{FederatedIdentity, FlowPurpose, ProviderFlow, UpstreamAccount, User};
use mandate_core::secret::SecretHash;
use mandate_core::store::UpstreamStore;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::convert::*;

const ACCOUNT_COLS: &str = "user_id, provider, subject, sealed_tokens, scope, access_expires_at, version, connected, \
                            connected_at, refreshed_at";

fn account(r: &AnyRow) -> StoreResult<UpstreamAccount> {
    Ok(UpstreamAccount {
        user_id: text(r, "user_id")?,
        provider: text(r, "provider")?,
        subject: opt_text(r, "subject")?,
        sealed_tokens: bytes(r, "sealed_tokens")?,
        scope: opt_text(r, "scope")?,
        access_expires_at: opt_int(r, "access_expires_at")?,
        version: int(r, "version")?,
        connected: flag(r, "connected")?,
        connected_at: int(r, "connected_at")?,
        refreshed_at: int(r, "refreshed_at")?,
    })
}

fn identity(r: &AnyRow) -> StoreResult<FederatedIdentity> {
    Ok(FederatedIdentity {
        provider: text(r, "provider")?,
        subject: text(r, "subject")?,
        user_id: text(r, "user_id")?,
        email: opt_text(r, "email")?,
        created_at: int(r, "created_at")?,
    })
}

#[async_trait]
impl UpstreamStore for SqlStore {
    async fn insert_provider_flow(&self, f: &ProviderFlow) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO provider_flows (state_hash, provider, purpose, user_id, browser_hash, sealed_secrets, \
             return_to, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(f.state_hash.as_str())
            .bind(&f.provider)
            .bind(f.purpose.as_str())
            .bind(f.user_id.as_deref())
            .bind(f.browser_hash.as_str())
            .bind(f.sealed_secrets.clone())
            .bind(f.return_to.as_deref())
            .bind(f.created_at)
            .bind(f.expires_at),
        )
        .await?;
        Ok(())
    }

    async fn take_provider_flow(&self, state_hash: &SecretHash, now: UnixTime) -> StoreResult<Option<ProviderFlow>> {
        let query = sqlx::query(
            "DELETE FROM provider_flows WHERE state_hash = $1 RETURNING state_hash, provider, purpose, user_id, \
             browser_hash, sealed_secrets, return_to, created_at, expires_at",
        )
        .bind(state_hash.as_str());
        let row = self
            .write(move |mut tx| {
                Box::pin(async move {
                    let row = query.fetch_optional(&mut *tx).await.map_err(map_err)?;
                    tx.commit().await.map_err(map_err)?;
                    Ok(row)
                })
            })
            .await?;
        let Some(r) = row else { return Ok(None) };
        let purpose = text(&r, "purpose")?;
        let flow = ProviderFlow {
            state_hash: SecretHash(text(&r, "state_hash")?),
            provider: text(&r, "provider")?,
            purpose: FlowPurpose::parse(&purpose).ok_or_else(|| StoreError::Corrupt(format!("purpose {purpose}")))?,
            user_id: opt_text(&r, "user_id")?,
            browser_hash: SecretHash(text(&r, "browser_hash")?),
            sealed_secrets: bytes(&r, "sealed_secrets")?,
            return_to: opt_text(&r, "return_to")?,
            created_at: int(&r, "created_at")?,
            expires_at: int(&r, "expires_at")?,
        };
        Ok((flow.expires_at > now).then_some(flow))
    }

    async fn identity_user(&self, provider: &str, subject: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT user_id FROM federated_identities WHERE provider = $1 AND subject = $2")
            .bind(provider)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|r| text(&r, "user_id")).transpose()
    }

    async fn link_identity(&self, i: &FederatedIdentity) -> StoreResult<()> {
        self.execute(insert_identity(i)).await?;
        Ok(())
    }

    async fn identities_of(&self, user_id: &str) -> StoreResult<Vec<FederatedIdentity>> {
        let rows = sqlx::query(
            "SELECT provider, subject, user_id, email, created_at FROM federated_identities WHERE user_id = $1 \
             ORDER BY provider, created_at",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(identity).collect()
    }

    async fn insert_user_with_identity(&self, u: &User, i: &FederatedIdentity) -> StoreResult<()> {
        let (u, i) = (u.clone(), i.clone());
        self.write(move |mut tx| {
            Box::pin(async move {
                crate::clients_users::insert_user(&u).execute(&mut *tx).await.map_err(map_err)?;
                insert_identity(&i).execute(&mut *tx).await.map_err(map_err)?;
                tx.commit().await.map_err(map_err)
            })
        })
        .await
    }

    async fn upstream_account(&self, user_id: &str, provider: &str) -> StoreResult<Option<UpstreamAccount>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM upstream_accounts WHERE user_id = $1 AND provider = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(provider)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(account).transpose()
    }

    async fn upstream_accounts(&self, user_id: &str) -> StoreResult<Vec<UpstreamAccount>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM upstream_accounts WHERE user_id = $1 ORDER BY provider");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(account).collect()
    }

    async fn save_upstream_account(&self, a: &UpstreamAccount) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO upstream_accounts (user_id, provider, subject, sealed_tokens, scope, access_expires_at, \
             version, refreshing_until, connected, connected_at, refreshed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, 1, $8, $9) \
             ON CONFLICT (user_id, provider) DO UPDATE SET subject = $3, sealed_tokens = $4, scope = $5, \
             access_expires_at = $6, version = upstream_accounts.version + 1, refreshing_until = NULL, connected = 1, \
             connected_at = $8, refreshed_at = $9",
            )
            .bind(&a.user_id)
            .bind(&a.provider)
            .bind(a.subject.as_deref())
            .bind(a.sealed_tokens.clone())
            .bind(a.scope.as_deref())
            .bind(a.access_expires_at)
            .bind(a.version)
            .bind(a.connected_at)
            .bind(a.refreshed_at),
        )
        .await?;
        Ok(())
    }

    async fn claim_upstream_refresh(
        &self,
        user_id: &str,
        provider: &str,
        version: i64,
        now: UnixTime,
        until: UnixTime,
    ) -> StoreResult<bool> {
        let done = self.execute(sqlx::query(
            "UPDATE upstream_accounts SET refreshing_until = $1 WHERE user_id = $2 AND provider = $3 AND version = $4 \
             AND connected = 1 AND (refreshing_until IS NULL OR refreshing_until <= $5)",
        )
        .bind(until)
        .bind(user_id)
        .bind(provider)
        .bind(version)
        .bind(now)
        ).await?;
        Ok(done == 1)
    }

    async fn finish_upstream_refresh(
        &self,
        user_id: &str,
        provider: &str,
        version: i64,
        sealed_tokens: &[u8],
        access_expires_at: Option<UnixTime>,
        scope: Option<&str>,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let done = self.execute(sqlx::query(
            "UPDATE upstream_accounts SET sealed_tokens = $1, access_expires_at = $2, scope = COALESCE($3, scope), \
             refreshed_at = $4, version = version + 1, refreshing_until = NULL WHERE user_id = $5 AND provider = $6 \
             AND version = $7 AND connected = 1",
        )
        .bind(sealed_tokens.to_vec())
        .bind(access_expires_at)
        .bind(scope)
        .bind(now)
        .bind(user_id)
        .bind(provider)
        .bind(version)
        ).await?;
        Ok(done == 1)
    }

    async fn abandon_upstream_refresh(
        &self,
        user_id: &str,
        provider: &str,
        version: i64,
        disconnect: bool,
    ) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "UPDATE upstream_accounts SET refreshing_until = NULL, \
             connected = CASE WHEN $1 = 1 THEN 0 ELSE connected END, \
             version = CASE WHEN $1 = 1 THEN version + 1 ELSE version END \
             WHERE user_id = $2 AND provider = $3 AND version = $4",
            )
            .bind(i64::from(disconnect))
            .bind(user_id)
            .bind(provider)
            .bind(version),
        )
        .await?;
        Ok(())
    }

    async fn delete_upstream_account(&self, user_id: &str, provider: &str) -> StoreResult<bool> {
        let done = self
            .execute(
                sqlx::query("DELETE FROM upstream_accounts WHERE user_id = $1 AND provider = $2")
                    .bind(user_id)
                    .bind(provider),
            )
            .await?;
        Ok(done == 1)
    }
}

fn insert_identity(i: &FederatedIdentity) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO federated_identities (provider, subject, user_id, email, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&i.provider)
    .bind(&i.subject)
    .bind(&i.user_id)
    .bind(i.email.as_deref())
    .bind(i.created_at)
}
