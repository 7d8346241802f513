//! SQLite: the normal case of the busiest writes (a refresh rotation, a code redemption) as one
//! call to the writer's connection, not four or five.
//!
//! sqlx runs each SQLite statement on the connection's own thread: every statement is a hand-off
//! there and back, and on a loaded core those hand-offs cost more than the statements. Here the
//! statements of the normal case go as one multi-statement query (sqlx binds `$N` to the N-th
//! argument in every statement of it), inside the job's savepoint on the single writer (see
//! [`crate::writer`]), so no other write interleaves.
//!
//! Each statement after the first is conditioned on the one before it having changed exactly one
//! row (SQLite's `changes()` counts the most recently *completed* statement), so the statements
//! happen all together or not at all, and the last one reports which. When they did not happen,
//! nothing was changed and the caller runs the full transaction (in the same savepoint), which
//! tells the other outcomes apart. PostgreSQL has its own one-statement form of the same writes
//! (see [`crate::one_statement`]).

use mandate_core::StoreError;
use mandate_core::clock::UnixTime;
use mandate_core::error::StoreResult;
use mandate_core::model::{AuditEvent, RefreshToken};
use mandate_core::secret::SecretHash;
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use crate::convert::{int, map_err};
use crate::one_statement::{EVENT_COLS, REFRESH_COLS, bind_event, bind_refresh, params};

/// The count the call's last statement selects. (The `Any` driver's `fetch_one` looks at the
/// first statement's result only, so every statement's results are fetched.)
fn last_count(rows: Vec<AnyRow>) -> StoreResult<bool> {
    match rows.last() {
        Some(row) => Ok(int(row, "n")? == 1),
        None => Err(StoreError::Backend("a one-call write returned no count".into())),
    }
}

/// The normal refresh: when the grant is live and `presented` is its current, unexpired token,
/// marks it rotated (keeping `sealed`), stores `next`, writes `event` and clears the successor
/// sealed on the presented token's parent (see `rotation::rotate`, step 1). True when it rotated;
/// false when it changed nothing.
pub(crate) async fn rotate(
    tx: &mut Transaction<'_, Any>,
    presented: &SecretHash,
    next: &RefreshToken,
    sealed: Option<&str>,
    now: UnixTime,
    event: Option<&AuditEvent>,
) -> StoreResult<bool> {
    let mut sql = format!(
        "UPDATE refresh_tokens SET rotated_at = $2, successor_sealed = $3 WHERE hash = $1 AND grant_id = $4 \
         AND rotated_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
         AND EXISTS (SELECT 1 FROM grants WHERE id = $4 AND revoked_at IS NULL); \
         INSERT INTO refresh_tokens ({REFRESH_COLS}) SELECT {} WHERE changes() = 1;",
        params(5, 6)
    );
    if event.is_some() {
        sql.push_str(&format!(
            " INSERT INTO audit_events ({EVENT_COLS}) SELECT {} WHERE changes() = 1;",
            params(11, 8)
        ));
    }
    // The successor ($5, fresh) exists only if it was stored just now.
    sql.push_str(
        " UPDATE refresh_tokens SET successor_sealed = NULL \
         WHERE hash = (SELECT parent_hash FROM refresh_tokens WHERE hash = $1 AND grant_id = $4) \
         AND successor_sealed IS NOT NULL AND EXISTS (SELECT 1 FROM refresh_tokens WHERE hash = $5); \
         SELECT CAST(COUNT(*) AS BIGINT) AS n FROM refresh_tokens WHERE hash = $5",
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(presented.0.clone())
        .bind(now)
        .bind(sealed.map(str::to_owned))
        .bind(next.grant_id.clone());
    q = bind_refresh(q, next);
    if let Some(e) = event {
        q = bind_event(q, e);
    }
    last_count(q.fetch_all(&mut **tx).await.map_err(map_err)?)
}

/// The normal code redemption: when the code is unspent and its grant live, not yet active and
/// its person enabled, activates the grant, spends the code, stores `refresh` and writes
/// `event`. True when it did; false when it changed nothing.
pub(crate) async fn redeem(
    tx: &mut Transaction<'_, Any>,
    code: &SecretHash,
    grant_id: &str,
    refresh: Option<&RefreshToken>,
    now: UnixTime,
    event: Option<&AuditEvent>,
) -> StoreResult<bool> {
    let mut sql = String::from(
        "UPDATE grants SET activated_at = $1, last_used_at = $1 WHERE id = $3 AND revoked_at IS NULL \
         AND activated_at IS NULL AND EXISTS (SELECT 1 FROM users u WHERE u.id = grants.user_id AND u.disabled = 0) \
         AND EXISTS (SELECT 1 FROM authorization_codes WHERE hash = $2 AND grant_id = $3 AND consumed_at IS NULL); \
         UPDATE authorization_codes SET consumed_at = $1 WHERE hash = $2 AND consumed_at IS NULL AND changes() = 1;",
    );
    let mut next = 4;
    if refresh.is_some() {
        sql.push_str(&format!(
            " INSERT INTO refresh_tokens ({REFRESH_COLS}) SELECT {} WHERE changes() = 1;",
            params(next, 6)
        ));
        next += 6;
    }
    if event.is_some() {
        sql.push_str(&format!(
            " INSERT INTO audit_events ({EVENT_COLS}) SELECT {} WHERE changes() = 1;",
            params(next, 8)
        ));
    }
    sql.push_str(" SELECT CAST(changes() AS BIGINT) AS n");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(code.0.clone()).bind(grant_id.to_owned());
    if let Some(t) = refresh {
        q = bind_refresh(q, t);
    }
    if let Some(e) = event {
        q = bind_event(q, e);
    }
    last_count(q.fetch_all(&mut **tx).await.map_err(map_err)?)
}

/// The calls themselves on a SQLite file: the store's suites pass whether or not the normal case
/// takes this path (the full transaction would answer the same), so these check that it does,
/// and that a call which does not apply changes nothing.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use mandate_core::store::GrantStore;

    use super::*;
    use crate::SqlStore;
    use crate::fixtures::{event, pending_grant, token};

    async fn call_rotate(s: &SqlStore, presented: &str, next: RefreshToken, sealed: Option<&str>, now: i64) -> bool {
        let (presented, sealed) = (SecretHash(presented.into()), sealed.map(str::to_owned));
        let id = format!("e-{}", next.hash.0);
        s.write(move |mut tx| {
            Box::pin(async move {
                let done =
                    rotate(&mut tx, &presented, &next, sealed.as_deref(), now, Some(&event(&id, "token.refreshed")))
                        .await?;
                tx.commit().await.map_err(map_err)?;
                Ok(done)
            })
        })
        .await
        .unwrap()
    }

    async fn call_redeem(s: &SqlStore, code: &str, first: Option<RefreshToken>, now: i64) -> bool {
        let code = SecretHash(code.into());
        s.write(move |mut tx| {
            Box::pin(async move {
                let done = redeem(&mut tx, &code, "g", first.as_ref(), now, Some(&event("e-redeemed", "token.issued")))
                    .await?;
                tx.commit().await.map_err(map_err)?;
                Ok(done)
            })
        })
        .await
        .unwrap()
    }

    async fn count(s: &SqlStore, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap()
    }

    #[tokio::test]
    async fn each_token_write_is_one_call_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqlStore::open(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        pending_grant(&s).await;

        // Redemption: once, with its first token and record; the spent code again changes nothing.
        assert!(call_redeem(&s, "code", Some(token("r0", None)), 1).await);
        assert_eq!(s.grant("g").await.unwrap().unwrap().activated_at, Some(1));
        assert_eq!(s.code(&SecretHash("code".into())).await.unwrap().unwrap().consumed_at, Some(1));
        assert!(s.refresh_token(&SecretHash("r0".into())).await.unwrap().is_some());
        assert!(!call_redeem(&s, "code", Some(token("x0", None)), 2).await);
        assert!(s.refresh_token(&SecretHash("x0".into())).await.unwrap().is_none());

        // Rotation: the current token rotates, its successor and record stored, the seal kept.
        assert!(call_rotate(&s, "r0", token("r1", Some("r0")), Some("sealed"), 3).await);
        let r0 = s.refresh_token(&SecretHash("r0".into())).await.unwrap().unwrap();
        assert_eq!(r0.rotated_at, Some(3));
        // The same token again, in the same second: nothing (the caller runs the full rotation).
        assert!(!call_rotate(&s, "r0", token("r2", Some("r0")), None, 3).await);
        assert!(s.refresh_token(&SecretHash("r2".into())).await.unwrap().is_none());
        let sealed = count(&s, "SELECT COUNT(*) FROM refresh_tokens WHERE hash = 'r0' AND successor_sealed = 'sealed'");
        assert_eq!(sealed.await, 1, "a call that did not rotate changed nothing");
        // A token of another grant: nothing.
        let other = RefreshToken { grant_id: "nope".into(), ..token("r2", Some("r1")) };
        assert!(!call_rotate(&s, "r1", other, None, 4).await);
        // An expired one: nothing.
        assert!(!call_rotate(&s, "r1", token("r2", Some("r1")), None, 1000).await);
        // r1 rotates: the successor sealed on its parent r0 is cleared.
        assert!(call_rotate(&s, "r1", token("r2", Some("r1")), None, 5).await);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM refresh_tokens WHERE successor_sealed IS NOT NULL").await, 0);
        // A revoked grant: nothing.
        s.revoke_grant("g", 6).await.unwrap();
        assert!(!call_rotate(&s, "r2", token("r3", Some("r2")), None, 7).await);
        assert!(s.refresh_token(&SecretHash("r3".into())).await.unwrap().is_none());
        // One record per write that happened, none for the others.
        assert_eq!(count(&s, "SELECT COUNT(*) FROM audit_events").await, 3);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM refresh_tokens").await, 3);
        s.close().await;
    }
}
