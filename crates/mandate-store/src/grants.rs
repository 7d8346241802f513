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
use sqlx::{Any, Transaction};

use crate::SqlStore;
use crate::audit_keys::insert_event;
use crate::convert::*;
use crate::one_statement;

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

async fn insert_refresh(tx: &mut Transaction<'_, Any>, t: &RefreshToken) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, grant_id, parent_hash, scope, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&t.hash.0)
    .bind(&t.grant_id)
    .bind(t.parent_hash.as_ref().map(|h| h.0.clone()))
    .bind(t.scope.to_string())
    .bind(t.issued_at)
    .bind(t.expires_at)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Revokes a grant and its whole refresh family inside `tx`; true when the grant was live.
async fn revoke_family(tx: &mut Transaction<'_, Any>, grant_id: &str, now: UnixTime) -> StoreResult<bool> {
    let n = sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(grant_id)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?
        .rows_affected();
    // A revoked token never carries a sealed successor (sealing happens only on a live row).
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1, successor_sealed = NULL WHERE grant_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(grant_id)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(n == 1)
}

/// Takes the grant row's lock without changing anything visible; false when the grant is
/// revoked (then nothing may be issued). A refresh must not move `last_used_at` (it records MCP
/// use). On PostgreSQL the UPDATE takes the row lock every family operation takes first; on
/// SQLite any UPDATE takes the database write lock. Both engines count the matched row, changed
/// or not, so a live grant gives 1.
pub(crate) async fn lock_live_grant(tx: &mut Transaction<'_, Any>, grant_id: &str) -> StoreResult<bool> {
    let n = sqlx::query("UPDATE grants SET revoked_at = revoked_at WHERE id = $1 AND revoked_at IS NULL")
        .bind(grant_id)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?
        .rows_affected();
    Ok(n == 1)
}

/// Is the grant there and not revoked?
async fn grant_live(tx: &mut Transaction<'_, Any>, grant_id: &str) -> StoreResult<bool> {
    Ok(sqlx::query("SELECT id FROM grants WHERE id = $1 AND revoked_at IS NULL")
        .bind(grant_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(map_err)?
        .is_some())
}

/// What the rotation transaction knows about a presented token that was not current.
struct Spent {
    rotated_at: Option<UnixTime>,
    revoked_at: Option<UnixTime>,
    sealed: Option<String>,
}

async fn spent_token(tx: &mut Transaction<'_, Any>, hash: &str, grant_id: &str) -> StoreResult<Option<Spent>> {
    let row = sqlx::query(
        "SELECT rotated_at, revoked_at, successor_sealed FROM refresh_tokens WHERE hash = $1 AND grant_id = $2",
    )
    .bind(hash)
    .bind(grant_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_err)?;
    row.map(|r| {
        Ok(Spent {
            rotated_at: opt_int(&r, "rotated_at")?,
            revoked_at: opt_int(&r, "revoked_at")?,
            sealed: opt_text(&r, "successor_sealed")?,
        })
    })
    .transpose()
}

/// The successor of `parent`, when exactly one exists and it was never used (rotated) nor
/// revoked.
async fn unused_successor(tx: &mut Transaction<'_, Any>, parent: &str) -> StoreResult<Option<SecretHash>> {
    let rows = sqlx::query("SELECT hash, rotated_at, revoked_at FROM refresh_tokens WHERE parent_hash = $1")
        .bind(parent)
        .fetch_all(&mut **tx)
        .await
        .map_err(map_err)?;
    let [child] = rows.as_slice() else { return Ok(None) };
    if opt_int(child, "rotated_at")?.is_some() || opt_int(child, "revoked_at")?.is_some() {
        return Ok(None);
    }
    Ok(Some(SecretHash(text(child, "hash")?)))
}

/// The rotation's decision and writes (see `GrantStore::rotate_refresh`), inside `tx`.
async fn rotate(
    tx: &mut Transaction<'_, Any>,
    presented: &SecretHash,
    next: &RefreshToken,
    sealed: Option<String>,
    now: UnixTime,
    window: RetryWindow,
    lock: bool,
) -> StoreResult<RotateOutcome> {
    // 0. PostgreSQL: lock the grant first, as every family operation does (revocation too), so
    //    that competing operations on one family take turns instead of deadlocking, and every
    //    later statement sees what the previous holder committed. SQLite has one writer: the
    //    batch already holds the database's write lock.
    if lock && !lock_live_grant(tx, &next.grant_id).await? {
        return Ok(RotateOutcome::Inactive);
    }
    // 1. The normal case: the presented token is current and its grant live. Exactly one caller
    //    wins this, and keeps the successor sealed under the presented token for retries. The
    //    same statement clears the sealed successor on the presented token's parent: sealing
    //    happens only on rotation and each rotation clears the previous one, so the parent is the
    //    only other token of the family that can hold one, and once its successor is presented
    //    again it must not lead forward any more. Both rows are found by primary key: the cost
    //    does not grow with the family. (When the presented token is not current, its parent
    //    holds none, or the family is about to be revoked as reused.)
    let changed: Vec<AnyRow> = sqlx::query(
        "UPDATE refresh_tokens SET rotated_at = CASE WHEN hash = $1 THEN $2 ELSE rotated_at END, \
         successor_sealed = CASE WHEN hash = $1 THEN $3 ELSE NULL END \
         WHERE (hash = $1 AND grant_id = $4 AND rotated_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
         AND EXISTS (SELECT 1 FROM grants WHERE id = $4 AND revoked_at IS NULL)) \
         OR (hash = (SELECT parent_hash FROM refresh_tokens WHERE hash = $1 AND grant_id = $4) \
         AND successor_sealed IS NOT NULL) RETURNING hash",
    )
    .bind(&presented.0)
    .bind(now)
    .bind(sealed)
    .bind(&next.grant_id)
    .fetch_all(&mut **tx)
    .await
    .map_err(map_err)?;
    let mut rotated = false;
    for row in &changed {
        rotated |= text(row, "hash")? == presented.0;
    }
    if rotated {
        insert_refresh(tx, next).await?;
        return Ok(RotateOutcome::Rotated);
    }
    if !lock && !grant_live(tx, &next.grant_id).await? {
        return Ok(RotateOutcome::Inactive);
    }
    let Some(token) = spent_token(tx, &presented.0, &next.grant_id).await? else {
        return Ok(RotateOutcome::Inactive);
    };
    let outcome = match (token.rotated_at, token.revoked_at) {
        // Current but expired.
        (None, None) => RotateOutcome::Inactive,
        (Some(rotated_at), None) => match unused_successor(tx, &presented.0).await? {
            // 2. Rotated inside the grace window, successor unused: that same successor
            //    (a lost response, or concurrent refreshes). Nothing is written.
            Some(successor) if window.successor_since.is_some_and(|since| rotated_at >= since) => {
                match token.sealed {
                    Some(sealed) => RotateOutcome::Retry { successor, sealed },
                    // Rotated while there was no window to seal for: refuse without harm.
                    None => RotateOutcome::RaceLost,
                }
            }
            // 3. Rotated an instant ago, outside any window: a request that lost the race.
            Some(_) if rotated_at >= window.race_since => RotateOutcome::RaceLost,
            _ => RotateOutcome::ReuseDetected,
        },
        // Revoked while its grant is live (not made any more; kept strict).
        (_, Some(_)) => RotateOutcome::ReuseDetected,
    };
    if outcome != RotateOutcome::ReuseDetected {
        return Ok(outcome);
    }
    // 4. Anything else is reuse of an invalidated token of a live family (RFC 9700 §4.14.2):
    //    rotated outside the windows, or after its successor was used. The family is
    //    compromised.
    revoke_family(tx, &next.grant_id, now).await?;
    Ok(RotateOutcome::ReuseDetected)
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
