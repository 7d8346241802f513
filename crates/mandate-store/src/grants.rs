//! Grants, authorization codes and refresh-token families. Every state change that must happen
//! exactly once is a conditional UPDATE inside a transaction whose first statement writes, so
//! SQLite takes its write lock up front and PostgreSQL row locks serialise competitors.

use async_trait::async_trait;
use mandate_core::clock::UnixTime;
use mandate_core::error::StoreResult;
use mandate_core::model::{
    AuditEach, AuthorizationCode, Consent, Grant, Redemption, RefreshContext, RefreshToken, RetryWindow, RotateOutcome,
};
use mandate_core::secret::SecretHash;
use mandate_core::store::GrantStore;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::audit_keys::insert_event;
use crate::convert::*;
use crate::one_statement;
use crate::rotation::{insert_refresh, revoke_family, rotate};

const GRANT_COLS: &str = "id, user_id, client_id, scope, resource, created_at, activated_at, last_used_at, revoked_at";
const REFRESH_COLS: &str = "hash, grant_id, parent_hash, scope, issued_at, expires_at, rotated_at, revoked_at";

fn grant(r: &AnyRow) -> StoreResult<Grant> {
    Ok(Grant {
        id: text(r, "id")?,
        user_id: text(r, "user_id")?,
        client_id: text(r, "client_id")?,
        scope: scope(r, "scope")?,
        resource: text(r, "resource")?,
        created_at: int(r, "created_at")?,
        activated_at: opt_int(r, "activated_at")?,
        last_used_at: opt_int(r, "last_used_at")?,
        revoked_at: opt_int(r, "revoked_at")?,
    })
}

fn refresh(r: &AnyRow) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        hash: SecretHash(text(r, "hash")?),
        grant_id: text(r, "grant_id")?,
        parent_hash: opt_text(r, "parent_hash")?.map(SecretHash),
        scope: scope(r, "scope")?,
        issued_at: int(r, "issued_at")?,
        expires_at: int(r, "expires_at")?,
        rotated_at: opt_int(r, "rotated_at")?,
        revoked_at: opt_int(r, "revoked_at")?,
    })
}

#[async_trait]
impl GrantStore for SqlStore {
    async fn insert_grant_with_code(
        &self,
        g: &Grant,
        c: &AuthorizationCode,
        consent: Option<&Consent>,
    ) -> StoreResult<()> {
        if self.engine == crate::Engine::Postgres && consent.is_none() {
            return one_statement::insert_grant_with_code(&self.pool, g, c).await;
        }
        let (g, c, consent) = (g.clone(), c.clone(), consent.cloned());
        self.write(move |mut tx| {
            Box::pin(async move {
                sqlx::query(
            "INSERT INTO grants (id, user_id, client_id, scope, resource, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&g.id)
        .bind(&g.user_id)
        .bind(&g.client_id)
        .bind(g.scope.to_string())
        .bind(&g.resource)
        .bind(g.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
                sqlx::query(
            "INSERT INTO authorization_codes (hash, grant_id, client_id, user_id, redirect_uri, redirect_uri_explicit, \
             code_challenge, scope, resource, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&c.hash.0)
        .bind(&c.grant_id)
        .bind(&c.client_id)
        .bind(&c.user_id)
        .bind(&c.redirect_uri)
        .bind(i64::from(c.redirect_uri_explicit))
        .bind(&c.code_challenge)
        .bind(c.scope.to_string())
        .bind(&c.resource)
        .bind(c.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
                // The client is used from now on: never collected as unused (DC-10).
                sqlx::query("UPDATE clients SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
                    .bind(g.created_at)
                    .bind(&g.client_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if let Some(consent) = &consent {
                    crate::sessions::save_consent_in(&mut tx, consent).await?;
                }
                tx.commit().await.map_err(map_err)
            })
        })
        .await
    }

    async fn code(&self, hash: &SecretHash) -> StoreResult<Option<AuthorizationCode>> {
        let row = sqlx::query(
            "SELECT hash, grant_id, client_id, user_id, redirect_uri, redirect_uri_explicit, code_challenge, scope, resource, \
             expires_at, consumed_at FROM authorization_codes WHERE hash = $1",
        )
        .bind(&hash.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.map(|r| {
            Ok(AuthorizationCode {
                hash: SecretHash(text(&r, "hash")?),
                grant_id: text(&r, "grant_id")?,
                client_id: text(&r, "client_id")?,
                user_id: text(&r, "user_id")?,
                redirect_uri: text(&r, "redirect_uri")?,
                redirect_uri_explicit: flag(&r, "redirect_uri_explicit")?,
                code_challenge: text(&r, "code_challenge")?,
                scope: scope(&r, "scope")?,
                resource: text(&r, "resource")?,
                expires_at: int(&r, "expires_at")?,
                consumed_at: opt_int(&r, "consumed_at")?,
            })
        })
        .transpose()
    }

    async fn consume_code(&self, hash: &SecretHash, now: UnixTime) -> StoreResult<bool> {
        let n = self
            .execute(
                sqlx::query("UPDATE authorization_codes SET consumed_at = $1 WHERE hash = $2 AND consumed_at IS NULL")
                    .bind(now)
                    .bind(&hash.0),
            )
            .await?;
        Ok(n == 1)
    }

    async fn activate_grant(&self, grant_id: &str, refresh: Option<&RefreshToken>, now: UnixTime) -> StoreResult<bool> {
        let (grant_id, refresh) = (grant_id.to_owned(), refresh.cloned());
        self.write(move |mut tx| Box::pin(async move {
        let n = sqlx::query(
            "UPDATE grants SET activated_at = $1, last_used_at = $1 WHERE id = $2 AND revoked_at IS NULL AND activated_at IS NULL \
             AND EXISTS (SELECT 1 FROM users u WHERE u.id = grants.user_id AND u.disabled = 0)",
        )
        .bind(now)
        .bind(&grant_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if n != 1 {
            tx.rollback().await.map_err(map_err)?;
            return Ok(false);
        }
        if let Some(t) = &refresh {
            insert_refresh(&mut tx, t).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(true)
        })).await
    }

    async fn redeem_code(
        &self,
        code: &SecretHash,
        grant_id: &str,
        refresh: Option<&RefreshToken>,
        now: UnixTime,
        audit: AuditEach<Redemption>,
    ) -> StoreResult<Redemption> {
        if self.engine == crate::Engine::Postgres {
            let (activated, revoked) = (audit(&Redemption::Activated), audit(&Redemption::GrantRevoked));
            return one_statement::redeem(
                &self.pool,
                code,
                grant_id,
                refresh,
                now,
                activated.as_ref(),
                revoked.as_ref(),
            )
            .await;
        }
        let (code, grant_id, refresh) = (code.clone(), grant_id.to_owned(), refresh.cloned());
        self.write(move |mut tx| Box::pin(async move {
        // SQLite (PostgreSQL: `one_statement::redeem`): one writer, so no two writes interleave.
        // The normal case in one call; anything else below.
        let event = audit(&Redemption::Activated);
        if crate::one_call::redeem(&mut tx, &code, &grant_id, refresh.as_ref(), now, event.as_ref()).await? {
            tx.commit().await.map_err(map_err)?;
            return Ok(Redemption::Activated);
        }
        let activated = sqlx::query(
            "UPDATE grants SET activated_at = $1, last_used_at = $1 WHERE id = $2 AND revoked_at IS NULL AND activated_at IS NULL \
             AND EXISTS (SELECT 1 FROM users u WHERE u.id = grants.user_id AND u.disabled = 0)",
        )
        .bind(now)
        .bind(&grant_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected()
            == 1;
        let spent =
            sqlx::query("UPDATE authorization_codes SET consumed_at = $1 WHERE hash = $2 AND consumed_at IS NULL")
                .bind(now)
                .bind(&code.0)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected()
                == 1;
        if !spent {
            tx.rollback().await.map_err(map_err)?;
            return Ok(Redemption::CodeAlreadyUsed);
        }
        if !activated {
            if let Some(event) = audit(&Redemption::GrantRevoked) {
                insert_event(&event).execute(&mut *tx).await.map_err(map_err)?;
            }
            tx.commit().await.map_err(map_err)?;
            return Ok(Redemption::GrantRevoked);
        }
        if let Some(t) = &refresh {
            insert_refresh(&mut tx, t).await?;
        }
        if let Some(event) = audit(&Redemption::Activated) {
            insert_event(&event).execute(&mut *tx).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(Redemption::Activated)
        })).await
    }

    async fn grant(&self, id: &str) -> StoreResult<Option<Grant>> {
        let sql = format!("SELECT {GRANT_COLS} FROM grants WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await.map_err(map_err)?;
        row.as_ref().map(grant).transpose()
    }

    async fn list_grants(&self, user_id: Option<&str>) -> StoreResult<Vec<Grant>> {
        let rows = match user_id {
            Some(u) => {
                let sql = format!("SELECT {GRANT_COLS} FROM grants WHERE revoked_at IS NULL AND user_id = $1 ORDER BY created_at DESC, id");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(u).fetch_all(&self.pool).await
            }
            None => {
                let sql = format!("SELECT {GRANT_COLS} FROM grants WHERE revoked_at IS NULL AND activated_at IS NOT NULL ORDER BY created_at DESC, id");
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await
            }
        }
        .map_err(map_err)?;
        rows.iter().map(grant).collect()
    }

    async fn revoke_grant(&self, id: &str, now: UnixTime) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |mut tx| {
            Box::pin(async move {
                let live = revoke_family(&mut tx, &id, now).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(live)
            })
        })
        .await
    }

    async fn revoke_user_client(&self, user_id: &str, client_id: &str, now: UnixTime) -> StoreResult<u64> {
        let (user_id, client_id) = (user_id.to_owned(), client_id.to_owned());
        self.write(move |mut tx| Box::pin(async move {
        let n = sqlx::query(
            "UPDATE grants SET revoked_at = $1 WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(&user_id)
        .bind(&client_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1, successor_sealed = NULL WHERE revoked_at IS NULL AND grant_id IN \
             (SELECT id FROM grants WHERE user_id = $2 AND client_id = $3)",
        )
        .bind(now)
        .bind(&user_id)
        .bind(&client_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query("DELETE FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(&user_id)
            .bind(&client_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(n)
        })).await
    }

    async fn refresh_token(&self, hash: &SecretHash) -> StoreResult<Option<RefreshToken>> {
        let sql = format!("SELECT {REFRESH_COLS} FROM refresh_tokens WHERE hash = $1");
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&hash.0).fetch_optional(&self.pool).await.map_err(map_err)?;
        row.as_ref().map(refresh).transpose()
    }

    async fn refresh_context(&self, hash: &SecretHash) -> StoreResult<Option<RefreshContext>> {
        // One read: the token, its grant, and its person (absent or disabled: not enabled).
        let row = sqlx::query(
            "SELECT t.hash, t.grant_id, t.parent_hash, t.scope AS token_scope, t.issued_at, t.expires_at, t.rotated_at, \
             t.revoked_at AS token_revoked_at, g.id, g.user_id, g.client_id, g.scope, g.resource, g.created_at, \
             g.activated_at, g.last_used_at, g.revoked_at, \
             (CASE WHEN EXISTS (SELECT 1 FROM users u WHERE u.id = g.user_id AND u.disabled = 0) THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END) \
             AS person_enabled \
             FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id WHERE t.hash = $1",
        )
        .bind(&hash.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        let Some(r) = row else { return Ok(None) };
        let token = RefreshToken {
            hash: SecretHash(text(&r, "hash")?),
            grant_id: text(&r, "grant_id")?,
            parent_hash: opt_text(&r, "parent_hash")?.map(SecretHash),
            scope: scope(&r, "token_scope")?,
            issued_at: int(&r, "issued_at")?,
            expires_at: int(&r, "expires_at")?,
            rotated_at: opt_int(&r, "rotated_at")?,
            revoked_at: opt_int(&r, "token_revoked_at")?,
        };
        Ok(Some(RefreshContext { token, grant: grant(&r)?, person_enabled: flag(&r, "person_enabled")? }))
    }

    async fn rotate_refresh(
        &self,
        presented: &SecretHash,
        next: &RefreshToken,
        sealed: Option<&str>,
        now: UnixTime,
        window: RetryWindow,
        audit: AuditEach<RotateOutcome>,
    ) -> StoreResult<RotateOutcome> {
        let lock = self.engine == crate::Engine::Postgres;
        // PostgreSQL: the normal case in one statement; anything else in the full rotation below.
        if lock
            && one_statement::rotate(&self.pool, presented, next, sealed, now, audit(&RotateOutcome::Rotated).as_ref())
                .await?
        {
            return Ok(RotateOutcome::Rotated);
        }
        let (presented, next, sealed) = (presented.clone(), next.clone(), sealed.map(str::to_owned));
        self.write(move |mut tx| {
            Box::pin(async move {
                // SQLite: the normal case in one call (see `one_call`); anything else in full.
                let event = (!lock).then(|| audit(&RotateOutcome::Rotated)).flatten();
                if !lock
                    && crate::one_call::rotate(&mut tx, &presented, &next, sealed.as_deref(), now, event.as_ref())
                        .await?
                {
                    tx.commit().await.map_err(map_err)?;
                    return Ok(RotateOutcome::Rotated);
                }
                let outcome = rotate(&mut tx, &presented, &next, sealed, now, window, lock).await?;
                if let Some(event) = audit(&outcome) {
                    insert_event(&event).execute(&mut *tx).await.map_err(map_err)?;
                }
                tx.commit().await.map_err(map_err)?;
                Ok(outcome)
            })
        })
        .await
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
            )
            .bind(jti)
            .bind(expires_at),
        )
        .await?;
        Ok(())
    }

    async fn access_revoked(&self, grant_id: Option<&str>, jti: Option<&str>) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT (CASE WHEN $1 IS NULL OR EXISTS (SELECT 1 FROM grants WHERE id = $1 AND revoked_at IS NULL) THEN 0 ELSE 1 END) \
             + (SELECT COUNT(*) FROM revoked_access_tokens WHERE jti = $2) AS n",
        )
        .bind(grant_id.map(str::to_owned))
        .bind(jti.map(str::to_owned))
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(int(&row, "n")? > 0)
    }

    async fn access_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        Ok(sqlx::query("SELECT jti FROM revoked_access_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .is_some())
    }
}
