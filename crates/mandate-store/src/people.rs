//! The end of a person's access (disable, remove, a new password) and the re-sealing of every
//! value sealed under the key-encryption key. Each is one write through [`SqlStore::write`].

use async_trait::async_trait;
use mandate_core::clock::UnixTime;
use mandate_core::error::{StoreError, StoreResult};
use mandate_core::model::{AuditOf, PersonRevocation, Reseal, ResealCount, SealedRef};
use mandate_core::service::LoginThrottleKeys;
use mandate_core::store::{PeopleStore, SealedStore};
use sqlx::{Any, Transaction};

use crate::SqlStore;
use crate::audit_keys::insert_event;
use crate::convert::*;

/// Runs one statement in `tx`; the rows it affected.
async fn run(tx: &mut Transaction<'_, Any>, sql: &'static str, binds: &[Bind<'_>]) -> StoreResult<u64> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t.to_string()),
            Bind::Int(i) => q.bind(*i),
        };
    }
    Ok(q.execute(&mut **tx).await.map_err(map_err)?.rows_affected())
}

enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// Revokes the person's grants and their refresh tokens, forgets their consents and MCP
/// sessions (grant row first, as every transaction touching a grant's tokens does).
async fn revoke_access(
    tx: &mut Transaction<'_, Any>,
    user_id: &str,
    mcp_owner: &str,
    now: UnixTime,
) -> StoreResult<(u64, u64)> {
    use Bind::*;
    let grants = run(
        tx,
        "UPDATE grants SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        &[Int(now), Text(user_id)],
    )
    .await?;
    run(
        tx,
        "UPDATE refresh_tokens SET revoked_at = $1, successor_sealed = NULL WHERE revoked_at IS NULL \
         AND grant_id IN (SELECT id FROM grants WHERE user_id = $2)",
        &[Int(now), Text(user_id)],
    )
    .await?;
    run(tx, "DELETE FROM consents WHERE user_id = $1", &[Text(user_id)]).await?;
    let mcp = run(tx, "DELETE FROM mcp_sessions WHERE owner = $1", &[Text(mcp_owner)]).await?;
    Ok((grants, mcp))
}

async fn end_sessions(tx: &mut Transaction<'_, Any>, user_id: &str) -> StoreResult<u64> {
    run(tx, "DELETE FROM sessions WHERE user_id = $1", &[Bind::Text(user_id)]).await
}

/// Writes the event `audit` makes of `outcome`, then commits.
async fn finish<O>(mut tx: Transaction<'_, Any>, audit: AuditOf<O>, outcome: &O) -> StoreResult<()> {
    if let Some(event) = audit(outcome) {
        insert_event(&event).execute(&mut *tx).await.map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)
}

#[async_trait]
impl PeopleStore for SqlStore {
    async fn disable_user(
        &self,
        user_id: &str,
        mcp_owner: &str,
        now: UnixTime,
        audit: AuditOf<PersonRevocation>,
    ) -> StoreResult<Option<PersonRevocation>> {
        let (user_id, mcp_owner) = (user_id.to_owned(), mcp_owner.to_owned());
        self.write(move |mut tx| {
            Box::pin(async move {
                let found =
                    run(&mut tx, "UPDATE users SET disabled = 1 WHERE id = $1", &[Bind::Text(&user_id)]).await?;
                if found == 0 {
                    return Ok(None);
                }
                let (grants, mcp_sessions) = revoke_access(&mut tx, &user_id, &mcp_owner, now).await?;
                let sessions = end_sessions(&mut tx, &user_id).await?;
                let done = PersonRevocation { grants, sessions, mcp_sessions };
                finish(tx, audit, &done).await?;
                Ok(Some(done))
            })
        })
        .await
    }

    async fn enable_user(&self, user_id: &str, audit: AuditOf<bool>) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.write(move |mut tx| {
            Box::pin(async move {
                let found =
                    run(&mut tx, "UPDATE users SET disabled = 0 WHERE id = $1", &[Bind::Text(&user_id)]).await?;
                if found == 0 {
                    return Ok(false);
                }
                finish(tx, audit, &true).await?;
                Ok(true)
            })
        })
        .await
    }

    async fn remove_user(
        &self,
        user_id: &str,
        throttle: &LoginThrottleKeys,
        mcp_owner: &str,
        audit: AuditOf<PersonRevocation>,
    ) -> StoreResult<Option<PersonRevocation>> {
        let (user_id, mcp_owner) = (user_id.to_owned(), mcp_owner.to_owned());
        // The person's sign-in failure counts: from every address, and per address.
        let (account, prefix) = (throttle.account.clone(), throttle.address_prefix.clone());
        self.write(move |mut tx| {
            Box::pin(async move {
                use Bind::*;
                let uid = Text(&user_id);
                let live = sqlx::query("SELECT COUNT(*) AS n FROM grants WHERE user_id = $1 AND revoked_at IS NULL")
                    .bind(&user_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let grants = u64::try_from(int(&live, "n")?).unwrap_or(0);
                if run(&mut tx, "DELETE FROM users WHERE id = $1", &[Text(&user_id)]).await? == 0 {
                    return Ok(None);
                }
                // Rows in the order the token writes take them, so a refresh or a code redemption
                // running meanwhile waits instead of deadlocking (PostgreSQL): codes, then grants
                // (each family operation locks its grant first), then refresh tokens.
                run(&mut tx, "DELETE FROM authorization_codes WHERE user_id = $1", &[Text(&user_id)]).await?;
                run(&mut tx, "UPDATE grants SET revoked_at = revoked_at WHERE user_id = $1", &[Text(&user_id)]).await?;
                run(
                    &mut tx,
                    "DELETE FROM refresh_tokens WHERE grant_id IN (SELECT id FROM grants WHERE user_id = $1)",
                    &[Text(&user_id)],
                )
                .await?;
                for sql in [
                    "DELETE FROM grants WHERE user_id = $1",
                    "DELETE FROM pending_authorizations WHERE user_id = $1",
                    "DELETE FROM consents WHERE user_id = $1",
                    "DELETE FROM provider_flows WHERE user_id = $1",
                    "DELETE FROM upstream_accounts WHERE user_id = $1",
                    "DELETE FROM federated_identities WHERE user_id = $1",
                    "DELETE FROM demo_invoices WHERE user_id = $1",
                    "DELETE FROM demo_customers WHERE user_id = $1",
                    "DELETE FROM demo_todos WHERE user_id = $1",
                ] {
                    run(&mut tx, sql, std::slice::from_ref(&uid)).await?;
                }
                let sessions = end_sessions(&mut tx, &user_id).await?;
                let mcp_sessions =
                    run(&mut tx, "DELETE FROM mcp_sessions WHERE owner = $1", &[Text(&mcp_owner)]).await?;
                let prefix_len = i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX);
                run(
                    &mut tx,
                    "DELETE FROM login_failures WHERE username = $1 OR SUBSTR(username, 1, CAST($2 AS INTEGER)) = $3",
                    &[Text(&account), Int(prefix_len), Text(&prefix)],
                )
                .await?;
                let done = PersonRevocation { grants, sessions, mcp_sessions };
                finish(tx, audit, &done).await?;
                Ok(Some(done))
            })
        })
        .await
    }

    async fn change_password(
        &self,
        user_id: &str,
        password_hash: &str,
        revoke_grants: bool,
        mcp_owner: &str,
        now: UnixTime,
        audit: AuditOf<PersonRevocation>,
    ) -> StoreResult<Option<PersonRevocation>> {
        let (user_id, hash, mcp_owner) = (user_id.to_owned(), password_hash.to_owned(), mcp_owner.to_owned());
        self.write(move |mut tx| {
            Box::pin(async move {
                let found = run(
                    &mut tx,
                    "UPDATE users SET password_hash = $1 WHERE id = $2",
                    &[Bind::Text(&hash), Bind::Text(&user_id)],
                )
                .await?;
                if found == 0 {
                    return Ok(None);
                }
                let (grants, mcp_sessions) =
                    if revoke_grants { revoke_access(&mut tx, &user_id, &mcp_owner, now).await? } else { (0, 0) };
                let sessions = end_sessions(&mut tx, &user_id).await?;
                let done = PersonRevocation { grants, sessions, mcp_sessions };
                finish(tx, audit, &done).await?;
                Ok(Some(done))
            })
        })
        .await
    }
}

fn resealed(reseal: &Reseal, what: SealedRef<'_>, sealed: &[u8]) -> StoreResult<Vec<u8>> {
    reseal(what, sealed).map_err(StoreError::Corrupt)
}

#[async_trait]
impl SealedStore for SqlStore {
    async fn reseal_all(&self, reseal: Reseal, audit: AuditOf<ResealCount>) -> StoreResult<ResealCount> {
        let lock = self.engine == crate::Engine::Postgres;
        self.write(move |mut tx| {
            Box::pin(async move {
                // Dialect branch: PostgreSQL runs writers side by side, so the sealed tables are
                // locked against writes (reads go on) until the rotation commits; SQLite's one
                // writer already holds the database's write lock.
                if lock {
                    sqlx::query("LOCK TABLE signing_keys, upstream_accounts, provider_flows IN EXCLUSIVE MODE")
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                let mut count = ResealCount::default();
                let rows = sqlx::query("SELECT kid, encrypted_private_key FROM signing_keys ORDER BY kid")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(map_err)?;
                for r in rows {
                    let kid = text(&r, "kid")?;
                    let next =
                        resealed(&reseal, SealedRef::SigningKey { kid: &kid }, &bytes(&r, "encrypted_private_key")?)?;
                    sqlx::query("UPDATE signing_keys SET encrypted_private_key = $1 WHERE kid = $2")
                        .bind(next)
                        .bind(&kid)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    count.signing_keys += 1;
                }
                let rows = sqlx::query(
                    "SELECT user_id, provider, sealed_tokens FROM upstream_accounts ORDER BY user_id, provider",
                )
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
                for r in rows {
                    let (user_id, provider) = (text(&r, "user_id")?, text(&r, "provider")?);
                    let what = SealedRef::UpstreamAccount { user_id: &user_id, provider: &provider };
                    let next = resealed(&reseal, what, &bytes(&r, "sealed_tokens")?)?;
                    sqlx::query("UPDATE upstream_accounts SET sealed_tokens = $1 WHERE user_id = $2 AND provider = $3")
                        .bind(next)
                        .bind(&user_id)
                        .bind(&provider)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    count.upstream_accounts += 1;
                }
                let rows = sqlx::query("SELECT state_hash, sealed_secrets FROM provider_flows ORDER BY state_hash")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(map_err)?;
                for r in rows {
                    let state_hash = text(&r, "state_hash")?;
                    let what = SealedRef::ProviderFlow { state_hash: &state_hash };
                    let next = resealed(&reseal, what, &bytes(&r, "sealed_secrets")?)?;
                    sqlx::query("UPDATE provider_flows SET sealed_secrets = $1 WHERE state_hash = $2")
                        .bind(next)
                        .bind(&state_hash)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    count.provider_flows += 1;
                }
                finish(tx, audit, &count).await?;
                Ok(count)
            })
        })
        .await
    }
}
