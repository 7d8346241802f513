//! Users and clients.

use async_trait::async_trait;
use mandate_core::StoreError;
use mandate_core::clock::UnixTime;
use mandate_core::error::StoreResult;
use mandate_core::model::{AuthMethod, Client, ClientKind, User};
use mandate_core::scope::ScopeSet;
use mandate_core::secret::SecretHash;
use mandate_core::store::{ClientStore, UserStore};
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::convert::*;

fn user(row: &AnyRow) -> StoreResult<User> {
    Ok(User {
        id: text(row, "id")?,
        username: text(row, "username")?,
        password_hash: text(row, "password_hash")?,
        created_at: int(row, "created_at")?,
        disabled: flag(row, "disabled")?,
    })
}

const USER_COLS: &str = "id, username, password_hash, created_at, disabled";

#[async_trait]
impl UserStore for SqlStore {
    async fn insert_user(&self, u: &User) -> StoreResult<()> {
        self.execute(insert_user(u)).await?;
        Ok(())
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE username = $1");
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(username).fetch_optional(&self.pool).await.map_err(map_err)?;
        row.as_ref().map(user).transpose()
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await.map_err(map_err)?;
        row.as_ref().map(user).transpose()
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> StoreResult<bool> {
        let n = self
            .execute(sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2").bind(password_hash).bind(user_id))
            .await?;
        Ok(n == 1)
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users ORDER BY created_at, username");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(user).collect()
    }
}

const CLIENT_COLS: &str = "id, kind, name, secret_hash, auth_method, redirect_uris, allows_refresh, allowed_scope, metadata, created_at, refresh_after, served_resources";

fn client(row: &AnyRow) -> StoreResult<Client> {
    let corrupt = |c: &str| StoreError::Corrupt(c.to_owned());
    Ok(Client {
        id: text(row, "id")?,
        kind: ClientKind::parse(&text(row, "kind")?).ok_or_else(|| corrupt("clients.kind"))?,
        name: text(row, "name")?,
        secret_hash: opt_text(row, "secret_hash")?.map(SecretHash),
        auth_method: AuthMethod::parse(&text(row, "auth_method")?).ok_or_else(|| corrupt("clients.auth_method"))?,
        redirect_uris: serde_json::from_str(&text(row, "redirect_uris")?)
            .map_err(|_| corrupt("clients.redirect_uris"))?,
        allows_refresh: flag(row, "allows_refresh")?,
        allowed_scope: opt_text(row, "allowed_scope")?
            .map(|s| ScopeSet::parse(&s).map_err(|_| corrupt("clients.allowed_scope")))
            .transpose()?,
        metadata: serde_json::from_str(&text(row, "metadata")?).map_err(|_| corrupt("clients.metadata"))?,
        created_at: int(row, "created_at")?,
        refresh_after: opt_int(row, "refresh_after")?,
        served_resources: serde_json::from_str(&text(row, "served_resources")?)
            .map_err(|_| corrupt("clients.served_resources"))?,
    })
}

impl SqlStore {
    async fn write_client(&self, c: &Client, upsert: bool) -> StoreResult<()> {
        let conflict = if upsert {
            " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name, secret_hash = excluded.secret_hash, \
             auth_method = excluded.auth_method, redirect_uris = excluded.redirect_uris, allows_refresh = excluded.allows_refresh, \
             allowed_scope = excluded.allowed_scope, metadata = excluded.metadata, refresh_after = excluded.refresh_after, \
             served_resources = excluded.served_resources"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO clients ({CLIENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12){conflict}"
        );
        let result = self
            .execute(
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&c.id)
                    .bind(c.kind.as_str())
                    .bind(&c.name)
                    .bind(c.secret_hash.as_ref().map(|h| h.0.clone()))
                    .bind(c.auth_method.as_str())
                    .bind(serde_json::to_string(&c.redirect_uris).map_err(|e| StoreError::Backend(e.to_string()))?)
                    .bind(i64::from(c.allows_refresh))
                    .bind(c.allowed_scope.as_ref().map(ToString::to_string))
                    .bind(c.metadata.to_string())
                    .bind(c.created_at)
                    .bind(c.refresh_after)
                    .bind(serde_json::to_string(&c.served_resources).map_err(|e| StoreError::Backend(e.to_string()))?),
            )
            .await;
        self.clients.invalidate();
        result.map(|_| ())
    }
}

#[async_trait]
impl ClientStore for SqlStore {
    async fn insert_client(&self, c: &Client) -> StoreResult<()> {
        self.write_client(c, false).await
    }

    async fn upsert_client(&self, c: &Client) -> StoreResult<()> {
        self.write_client(c, true).await
    }

    async fn client_by_id(&self, id: &str) -> StoreResult<Option<Client>> {
        if let Some(c) = self.clients.get(id) {
            return Ok(Some(c));
        }
        let generation = self.clients.generation();
        let sql = format!("SELECT {CLIENT_COLS} FROM clients WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await.map_err(map_err)?;
        let found = row.as_ref().map(client).transpose()?;
        if let Some(c) = &found {
            self.clients.put(generation, c);
        }
        Ok(found)
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        let sql = format!("SELECT {CLIENT_COLS} FROM clients ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(client).collect()
    }

    async fn dynamic_registrations(&self, since: UnixTime) -> StoreResult<(i64, i64)> {
        // Both counts bounded: the caller only compares them with its limits (at most 100 000).
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM (SELECT 1 AS one FROM clients WHERE kind = 'dynamic' AND created_at >= $1 LIMIT 100000) r) AS recent, \
               (SELECT COUNT(*) FROM (SELECT 1 AS one FROM clients WHERE kind = 'dynamic' AND used_at IS NULL LIMIT 100000) u) AS unused",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok((int(&row, "recent")?, int(&row, "unused")?))
    }

    async fn remove_client(&self, id: &str, now: UnixTime) -> StoreResult<bool> {
        let id = id.to_owned();
        let removed = self.write(move |mut tx| Box::pin(async move {
        let n = sqlx::query("DELETE FROM clients WHERE id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        sqlx::query("UPDATE grants SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $1, successor_sealed = NULL WHERE revoked_at IS NULL AND grant_id IN (SELECT id FROM grants WHERE client_id = $2)")
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query("DELETE FROM consents WHERE client_id = $1").bind(&id).execute(&mut *tx).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(n > 0)
        })).await;
        self.clients.invalidate();
        removed
    }
}

/// The statement that adds a person (also run inside the transaction that links a provider's
/// account to a new person).
pub(crate) fn insert_user(u: &User) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query("INSERT INTO users (id, username, password_hash, created_at, disabled) VALUES ($1, $2, $3, $4, $5)")
        .bind(&u.id)
        .bind(&u.username)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .bind(i64::from(u.disabled))
}
