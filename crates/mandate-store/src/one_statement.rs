//! PostgreSQL: the writes of the authorization flow's busiest requests as one statement each, so
//! a refresh grant or a code redemption costs two round trips in all (its one read, then this),
//! not seven, and an authorization already consented to writes its grant and code in one, not five.
//!
//! SQLite has no data-modifying `WITH`, and needs none: its writes run on the writer task in
//! process, where a round trip costs nothing (see [`crate::writer`]). On PostgreSQL each statement
//! is one round trip and its own transaction (autocommit), so each one here is written to be
//! right on its own: everything it changes is kept or lost together, its audit record included.
//!
//! Concurrency: in a data-modifying `WITH`, every part sees the snapshot taken when the statement
//! began, but an `UPDATE` that finds its row changed by a transaction that committed meanwhile
//! checks its `WHERE` again against the row as committed (PostgreSQL's READ COMMITTED rule), so
//! each "exactly once" condition below (`rotated_at IS NULL`, `consumed_at IS NULL`,
//! `activated_at IS NULL`) is decided on the latest row, never on the snapshot.

use mandate_core::clock::UnixTime;
use mandate_core::error::StoreResult;
use mandate_core::model::{AuditEvent, AuthorizationCode, Grant, Redemption, RefreshToken};
use mandate_core::secret::SecretHash;
use sqlx::AnyPool;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use crate::convert::{int, map_err};

pub(crate) type Q = Query<'static, sqlx::Any, AnyArguments>;

/// Columns of an audit row, then of a refresh token, as this module's statements insert them.
pub(crate) const EVENT_COLS: &str = "id, at, kind, outcome, user_id, client_id, grant_id, detail";
pub(crate) const REFRESH_COLS: &str = "hash, grant_id, parent_hash, scope, issued_at, expires_at";

/// `$first, …` for `n` parameters.
pub(crate) fn params(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

pub(crate) fn bind_refresh(q: Q, t: &RefreshToken) -> Q {
    q.bind(t.hash.0.clone())
        .bind(t.grant_id.clone())
        .bind(t.parent_hash.as_ref().map(|h| h.0.clone()))
        .bind(t.scope.to_string())
        .bind(t.issued_at)
        .bind(t.expires_at)
}

pub(crate) fn bind_event(q: Q, e: &AuditEvent) -> Q {
    q.bind(e.id.clone())
        .bind(e.at)
        .bind(e.kind.clone())
        .bind(e.outcome.clone())
        .bind(e.user_id.clone())
        .bind(e.client_id.clone())
        .bind(e.grant_id.clone())
        .bind(e.detail.clone())
}

/// A grant and its code, from an authorization already consented to, in one statement; the
/// client is marked used (never collected as unused, DC-10). A consent to remember as well is
/// written by the caller's transaction instead.
pub(crate) async fn insert_grant_with_code(pool: &AnyPool, g: &Grant, c: &AuthorizationCode) -> StoreResult<()> {
    sqlx::query(
        "WITH g AS (INSERT INTO grants (id, user_id, client_id, scope, resource, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id), \
         c AS (INSERT INTO authorization_codes (hash, grant_id, client_id, user_id, redirect_uri, redirect_uri_explicit, \
         code_challenge, scope, resource, expires_at) SELECT $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 FROM g \
         RETURNING hash) \
         UPDATE clients SET used_at = $6 WHERE id = $3 AND used_at IS NULL AND EXISTS (SELECT 1 FROM c)",
    )
    .bind(g.id.clone())
    .bind(g.user_id.clone())
    .bind(g.client_id.clone())
    .bind(g.scope.to_string())
    .bind(g.resource.clone())
    .bind(g.created_at)
    .bind(c.hash.0.clone())
    .bind(c.grant_id.clone())
    .bind(c.client_id.clone())
    .bind(c.user_id.clone())
    .bind(c.redirect_uri.clone())
    .bind(i64::from(c.redirect_uri_explicit))
    .bind(c.code_challenge.clone())
    .bind(c.scope.to_string())
    .bind(c.resource.clone())
    .bind(c.expires_at)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// The normal refresh in one statement: when the grant is live and `presented` is its current,
/// unexpired token, marks it rotated (keeping `sealed`), clears the sealed successor of its parent,
/// stores `next` and writes `event`. Grant row first, as every family operation takes it.
///
/// True when it rotated. False means nothing was changed but, possibly, the clearing of the
/// parent's sealed successor that the full rotation would make too: the caller then runs the
/// full rotation, which tells a retry, a lost race, reuse and an inactive grant apart.
pub(crate) async fn rotate(
    pool: &AnyPool,
    presented: &SecretHash,
    next: &RefreshToken,
    sealed: Option<&str>,
    now: UnixTime,
    event: Option<&AuditEvent>,
) -> StoreResult<bool> {
    let mut sql = format!(
        "WITH g AS (UPDATE grants SET revoked_at = revoked_at WHERE id = $4 AND revoked_at IS NULL RETURNING id), \
         r AS (UPDATE refresh_tokens SET rotated_at = CASE WHEN hash = $1 THEN $2 ELSE rotated_at END, \
         successor_sealed = CASE WHEN hash = $1 THEN $3 ELSE NULL END \
         WHERE EXISTS (SELECT 1 FROM g) AND ((hash = $1 AND grant_id = $4 AND rotated_at IS NULL AND revoked_at IS NULL \
         AND expires_at > $2) OR (hash = (SELECT parent_hash FROM refresh_tokens WHERE hash = $1 AND grant_id = $4) \
         AND successor_sealed IS NOT NULL)) RETURNING hash), \
         i AS (INSERT INTO refresh_tokens ({REFRESH_COLS}) SELECT {} FROM r WHERE r.hash = $1 RETURNING hash)",
        params(5, 6)
    );
    if event.is_some() {
        sql.push_str(&format!(", e AS (INSERT INTO audit_events ({EVENT_COLS}) SELECT {} FROM i)", params(11, 8)));
    }
    sql.push_str(" SELECT CAST(COUNT(*) AS BIGINT) AS n FROM i");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(presented.0.clone())
        .bind(now)
        .bind(sealed.map(str::to_owned))
        .bind(next.grant_id.clone());
    q = bind_refresh(q, next);
    if let Some(e) = event {
        q = bind_event(q, e);
    }
    let row = q.fetch_one(pool).await.map_err(map_err)?;
    Ok(int(&row, "n")? == 1)
}

/// A code redemption in one statement, whatever its outcome: spends the code (when unspent);
/// then, only if it was spent here, activates its grant (live, not yet active, its person
/// enabled), stores `refresh` and writes `activated`; a code spent whose grant could not be
/// activated is [`Redemption::GrantRevoked`] and writes `revoked`. Code row first, then grant
/// row: the order in which removing a person deletes them too.
pub(crate) async fn redeem(
    pool: &AnyPool,
    code: &SecretHash,
    grant_id: &str,
    refresh: Option<&RefreshToken>,
    now: UnixTime,
    activated: Option<&AuditEvent>,
    revoked: Option<&AuditEvent>,
) -> StoreResult<Redemption> {
    let mut sql = String::from(
        "WITH c AS (UPDATE authorization_codes SET consumed_at = $1 WHERE hash = $2 AND consumed_at IS NULL RETURNING hash), \
         g AS (UPDATE grants SET activated_at = $1, last_used_at = $1 WHERE id = $3 AND revoked_at IS NULL \
         AND activated_at IS NULL AND EXISTS (SELECT 1 FROM users u WHERE u.id = grants.user_id AND u.disabled = 0) \
         AND EXISTS (SELECT 1 FROM c) RETURNING id)",
    );
    let mut next = 4;
    if refresh.is_some() {
        sql.push_str(&format!(
            ", i AS (INSERT INTO refresh_tokens ({REFRESH_COLS}) SELECT {} FROM g)",
            params(next, 6)
        ));
        next += 6;
    }
    if activated.is_some() {
        sql.push_str(&format!(", ea AS (INSERT INTO audit_events ({EVENT_COLS}) SELECT {} FROM g)", params(next, 8)));
        next += 8;
    }
    if revoked.is_some() {
        sql.push_str(&format!(
            ", er AS (INSERT INTO audit_events ({EVENT_COLS}) SELECT {} FROM c WHERE NOT EXISTS (SELECT 1 FROM g))",
            params(next, 8)
        ));
    }
    sql.push_str(
        " SELECT CAST((SELECT COUNT(*) FROM c) AS BIGINT) AS spent, CAST((SELECT COUNT(*) FROM g) AS BIGINT) AS activated",
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(code.0.clone()).bind(grant_id.to_owned());
    if let Some(t) = refresh {
        q = bind_refresh(q, t);
    }
    for e in [activated, revoked].into_iter().flatten() {
        q = bind_event(q, e);
    }
    let row = q.fetch_one(pool).await.map_err(map_err)?;
    Ok(match (int(&row, "spent")?, int(&row, "activated")?) {
        (0, _) => Redemption::CodeAlreadyUsed,
        (_, 0) => Redemption::GrantRevoked,
        _ => Redemption::Activated,
    })
}

/// The statements themselves, on PostgreSQL (skipped without `MANDATE_TEST_POSTGRES_URL`): the
/// store's suites pass whether or not the normal case takes this path (the full transaction
/// would answer the same), so these check that it does.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use mandate_core::store::GrantStore;
    use sqlx::{Connection, Executor};

    use super::*;
    use crate::SqlStore;
    use crate::fixtures::{event, pending_grant, token};

    async fn store() -> Option<(SqlStore, String, String)> {
        let admin = std::env::var("MANDATE_TEST_POSTGRES_URL").ok()?;
        sqlx::any::install_default_drivers();
        let name = format!("mandate_os_{}", mandate_core::secret::random_id(&mandate_core::clock::OsRandom))
            .to_lowercase()
            .replace(['-', '_'], "");
        let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
        let store = SqlStore::open(&crate::url_with_database(&admin, &name)).await.unwrap();
        Some((store, admin, name))
    }

    async fn drop_database(store: SqlStore, admin: &str, name: &str) {
        store.pool().close().await;
        let mut conn = sqlx::AnyConnection::connect(admin).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await.unwrap();
    }

    #[tokio::test]
    async fn each_token_write_is_one_statement_on_postgres() {
        let Some((s, admin, name)) = store().await else {
            eprintln!("MANDATE_TEST_POSTGRES_URL not set: PostgreSQL case skipped");
            return;
        };
        let code = pending_grant(&s).await;
        let pool = s.pool().clone();
        let issued = event("e1", "token.issued");
        let r0 = token("r0", None);
        let outcome = redeem(&pool, &code.hash, "g", Some(&r0), 1, Some(&issued), None).await.unwrap();
        assert_eq!(outcome, Redemption::Activated);
        assert_eq!(redeem(&pool, &code.hash, "g", None, 2, None, None).await.unwrap(), Redemption::CodeAlreadyUsed);

        // The normal case rotates here; the same token again does not (the caller then runs the
        // full rotation); neither does a token of another grant, nor one of a revoked grant.
        assert!(rotate(&pool, &r0.hash, &token("r1", Some("r0")), Some("sealed"), 3, None).await.unwrap());
        assert!(!rotate(&pool, &r0.hash, &token("r2", Some("r0")), None, 4, None).await.unwrap());
        let other = RefreshToken { grant_id: "nope".into(), ..token("r2", Some("r1")) };
        assert!(!rotate(&pool, &SecretHash("r1".into()), &other, None, 4, None).await.unwrap());
        assert!(s.refresh_token(&SecretHash("r2".into())).await.unwrap().is_none());
        let refreshed = event("e2", "token.refreshed");
        assert!(
            rotate(&pool, &SecretHash("r1".into()), &token("r2", Some("r1")), None, 5, Some(&refreshed)).await.unwrap()
        );
        // Rotating r1 cleared the successor sealed on its parent r0.
        let sealed: Option<String> =
            sqlx::query_scalar("SELECT successor_sealed FROM refresh_tokens WHERE hash = 'r0'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(sealed, None);
        s.revoke_grant("g", 6).await.unwrap();
        assert!(!rotate(&pool, &SecretHash("r2".into()), &token("r3", Some("r2")), None, 7, None).await.unwrap());
        let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE id IN ('e1', 'e2')")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(events, 2);
        drop_database(s, &admin, &name).await;
    }
}
