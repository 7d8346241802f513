//! Constant PKCE challenges (PK-12, RFC 9700 §2.1.1: "make a reasonable effort at detecting and
//! preventing the use of constant PKCE challenge"). Detected and recorded, not refused: the same
//! authorization URL opened twice (a reload, a second tab, a link followed again after signing
//! in) legitimately repeats its challenge, and each code stays single-use and bound to it.

use super::{AuditDraft, AuthServer};
use crate::error::OAuthError;
use crate::model::PendingAuthorization;

/// Earlier requests of the same client within this window are compared (pending requests are
/// kept about this long after they expire).
pub(super) const CHALLENGE_REUSE_WINDOW: i64 = 24 * 3600;

impl AuthServer {
    /// Counts (`pkce_challenge_reuses`) a request whose challenge the same client sent before in
    /// the window, and records an audit event `authorize.pkce_challenge_reused` the first time
    /// it repeats (then every 10th time), so a flood of one URL does not flood the trail.
    pub(super) async fn note_challenge_reuse(&self, pending: &PendingAuthorization) -> Result<(), OAuthError> {
        let since = pending.created_at - CHALLENGE_REUSE_WINDOW;
        let earlier = self.store.challenge_uses(&pending.client_id, &pending.code_challenge, since).await?;
        if earlier == 0 {
            return Ok(());
        }
        self.counters.pkce_challenge_reuses.inc();
        if earlier == 1 || earlier % 10 == 0 {
            self.audit(AuditDraft {
                kind: "authorize.pkce_challenge_reused",
                outcome: "detected",
                client: Some(&pending.client_id),
                detail: Some(format!(
                    "the client sent the same PKCE code_challenge in {} authorization requests within {} hours",
                    earlier + 1,
                    CHALLENGE_REUSE_WINDOW / 3600
                )),
                ..Default::default()
            })
            .await;
        }
        Ok(())
    }
}
