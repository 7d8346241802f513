//! Failed attempts per throttle key (sign-ins per account and address, per account; client
//! secrets per client): the `username` column holds the key.

use async_trait::async_trait;
use mandate_core::clock::UnixTime;
use mandate_core::error::StoreResult;
use mandate_core::store::LoginThrottleStore;

use crate::SqlStore;
use crate::convert::*;

#[async_trait]
impl LoginThrottleStore for SqlStore {
    async fn record_login_failure(&self, username: &str, now: UnixTime, window_start: UnixTime) -> StoreResult<i64> {
        // One statement, so concurrent failures all count (UI-12).
        let query = sqlx::query(
            "INSERT INTO login_failures (username, failures, first_failure_at) VALUES ($1, 1, $2) \
             ON CONFLICT (username) DO UPDATE SET \
               failures = CASE WHEN login_failures.first_failure_at < $3 THEN 1 ELSE login_failures.failures + 1 END, \
               first_failure_at = CASE WHEN login_failures.first_failure_at < $3 THEN $2 ELSE login_failures.first_failure_at END \
             RETURNING failures",
        )
        .bind(username)
        .bind(now)
        .bind(window_start);
        self.write(move |mut tx| {
            Box::pin(async move {
                let row = query.fetch_one(&mut *tx).await.map_err(map_err)?;
                tx.commit().await.map_err(map_err)?;
                int(&row, "failures")
            })
        })
        .await
    }

    async fn lock_login(&self, username: &str, until: UnixTime) -> StoreResult<()> {
        self.execute(
            sqlx::query("UPDATE login_failures SET locked_until = $1 WHERE username = $2").bind(until).bind(username),
        )
        .await?;
        Ok(())
    }

    async fn login_locked_until(&self, username: &str) -> StoreResult<Option<UnixTime>> {
        let row = sqlx::query("SELECT locked_until FROM login_failures WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(row.map(|r| opt_int(&r, "locked_until")).transpose()?.flatten())
    }

    async fn clear_login_failures(&self, username: &str) -> StoreResult<()> {
        self.execute(sqlx::query("DELETE FROM login_failures WHERE username = $1").bind(username)).await?;
        Ok(())
    }
}
