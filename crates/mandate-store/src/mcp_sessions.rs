//! MCP sessions shared by every instance: owner binding and the initialize parameters rmcp needs
//! to resume a session on another instance.

use async_trait::async_trait;
use mandate_core::clock::UnixTime;
use mandate_core::error::StoreResult;
use mandate_core::store::McpSessionStore;

use crate::SqlStore;
use crate::convert::*;

/// Seconds between writes of a session's `last_seen`.
const TOUCH_EVERY: i64 = 60;

#[async_trait]
impl McpSessionStore for SqlStore {
    async fn save_mcp_session_state(&self, id: &str, state: &str, now: UnixTime) -> StoreResult<()> {
        self.execute(
            sqlx::query(
                "INSERT INTO mcp_sessions (id, state, created_at, last_seen) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET state = $2, last_seen = $3",
            )
            .bind(id)
            .bind(state)
            .bind(now),
        )
        .await?;
        Ok(())
    }

    async fn mcp_session_state(&self, id: &str, fresh_after: UnixTime) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT state FROM mcp_sessions WHERE id = $1 AND last_seen >= $2")
            .bind(id)
            .bind(fresh_after)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(row.map(|r| opt_text(&r, "state")).transpose()?.flatten())
    }

    async fn bind_mcp_session(&self, id: &str, owner: &str, now: UnixTime, keep: i64) -> StoreResult<Vec<String>> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.write(move |mut tx| {
            Box::pin(async move {
                // An owned session keeps its owner: a second bind cannot take it over.
                sqlx::query(
                    "INSERT INTO mcp_sessions (id, owner, created_at, last_seen) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET owner = $2, last_seen = $3 WHERE mcp_sessions.owner IS NULL",
                )
                .bind(&id)
                .bind(&owner)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                // The session being bound always stays (the guard is about to hand it out), with
                // the `keep - 1` others used most recently (`last_seen` is in seconds: among
                // sessions seen in the same second, the order is by id). The ids dropped go back
                // to the caller: their sessions leave memory too.
                let dropped = sqlx::query(
                    "DELETE FROM mcp_sessions WHERE owner = $1 AND id <> $2 AND id NOT IN \
             (SELECT id FROM mcp_sessions WHERE owner = $1 AND id <> $2 ORDER BY last_seen DESC, id LIMIT $3) \
             RETURNING id",
                )
                .bind(&owner)
                .bind(&id)
                .bind(keep - 1)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
                let dropped = dropped.iter().map(|r| text(r, "id")).collect::<StoreResult<Vec<_>>>()?;
                tx.commit().await.map_err(map_err)?;
                Ok(dropped)
            })
        })
        .await
    }

    async fn touch_mcp_session(&self, id: &str, now: UnixTime, fresh_after: UnixTime) -> StoreResult<Option<String>> {
        // Mostly a read: `last_seen` is written at most once a minute per session, so a busy
        // session does not turn every MCP request into a write.
        let row = sqlx::query("SELECT owner, last_seen FROM mcp_sessions WHERE id = $1 AND owner IS NOT NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        let Some(row) = row else { return Ok(None) };
        let last_seen = int(&row, "last_seen")?;
        if last_seen < fresh_after {
            return Ok(None);
        }
        if now - last_seen >= TOUCH_EVERY {
            self.execute(
                sqlx::query("UPDATE mcp_sessions SET last_seen = $1 WHERE id = $2 AND last_seen < $1")
                    .bind(now)
                    .bind(id),
            )
            .await?;
        }
        opt_text(&row, "owner")
    }

    async fn delete_mcp_session(&self, id: &str) -> StoreResult<()> {
        self.execute(sqlx::query("DELETE FROM mcp_sessions WHERE id = $1").bind(id)).await?;
        Ok(())
    }
}
