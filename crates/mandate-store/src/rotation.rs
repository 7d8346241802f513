//! Refresh-token families: storing a token, the full rotation (every outcome of presenting a
//! refresh token, see `GrantStore::rotate_refresh`) and the revocation of a whole family. The
//! normal rotation also has a one-call form per engine (`one_call`, `one_statement`).

use mandate_core::clock::UnixTime;
use mandate_core::error::StoreResult;
use mandate_core::model::{RefreshToken, RetryWindow, RotateOutcome};
use mandate_core::secret::SecretHash;
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use crate::convert::*;

pub(crate) async fn insert_refresh(tx: &mut Transaction<'_, Any>, t: &RefreshToken) -> StoreResult<()> {
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
pub(crate) async fn revoke_family(tx: &mut Transaction<'_, Any>, grant_id: &str, now: UnixTime) -> StoreResult<bool> {
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
pub(crate) async fn rotate(
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
