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
        sqlx::query(
            "INSERT INTO mcp_sessions (id, state, created_at, last_seen) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET state = $2, last_seen = $3",
        )
        .bind(id)
        .bind(state)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
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

    async fn bind_mcp_session(&self, id: &str, owner: &str, now: UnixTime, keep: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // An owned session keeps its owner: a second bind cannot take it over.
        sqlx::query(
            "INSERT INTO mcp_sessions (id, owner, created_at, last_seen) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET owner = $2, last_seen = $3 WHERE mcp_sessions.owner IS NULL",
        )
        .bind(id)
        .bind(owner)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "DELETE FROM mcp_sessions WHERE owner = $1 AND id NOT IN \
             (SELECT id FROM mcp_sessions WHERE owner = $1 ORDER BY last_seen DESC, id LIMIT $2)",
        )
        .bind(owner)
        .bind(keep)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(())
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
            sqlx::query("UPDATE mcp_sessions SET last_seen = $1 WHERE id = $2 AND last_seen < $1")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        }
        opt_text(&row, "owner")
    }

    async fn delete_mcp_session(&self, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM mcp_sessions WHERE id = $1").bind(id).execute(&self.pool).await.map_err(map_err)?;
        Ok(())
    }
}
