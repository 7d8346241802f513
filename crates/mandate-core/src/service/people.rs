//! Operator actions on people (`mandate users disable|enable|remove|passwd`) and the rotation of
//! the key-encryption key (`mandate keys rotate-kek`).

use std::sync::{Arc, Mutex};

use super::admin::AdminError;
use super::{AuditDraft, AuthServer};
use crate::keys::{KeyEncryptionKey, aad};
use crate::model::{AuditEvent, AuditOf, PersonRevocation, Reseal, ResealCount, SealedRef, User};

fn describe(r: &PersonRevocation) -> String {
    format!(
        "{} grant(s) revoked, {} browser session(s) and {} MCP session(s) ended",
        r.grants, r.sessions, r.mcp_sessions
    )
}

fn with_detail<O>(base: AuditEvent, detail: impl FnOnce(&O) -> String + Send + 'static) -> AuditOf<O> {
    Box::new(move |o| Some(AuditEvent { detail: Some(detail(o)), ..base }))
}

impl AuthServer {
    /// Whether this server was given a fallback key-encryption key (see [`KeyEncryptionKey`]).
    pub fn kek_has_fallback(&self) -> bool {
        self.keys.kek().has_fallback()
    }

    /// Whether `key` is this server's key-encryption key (its fallback aside).
    pub fn kek_is(&self, key: &KeyEncryptionKey) -> bool {
        self.keys.kek().same_key(key)
    }

    /// The person `who` names: by id, else by username (an id wins over a username).
    pub async fn find_person(&self, who: &str) -> Result<Option<User>, AdminError> {
        if let Some(u) = self.store.user_by_id(who).await? {
            return Ok(Some(u));
        }
        Ok(self.store.user_by_name(who.trim()).await?)
    }

    /// The key the MCP session registry files this person's sessions under
    /// (`mandate_guard::owner_key` of this issuer and the person's id, the tokens' `sub`).
    fn mcp_owner(&self, user_id: &str) -> String {
        format!("{}\u{1f}{user_id}", self.settings.issuer)
    }

    /// Disables a person: they can no longer sign in (the sign-in page answers as for a wrong
    /// password), and every grant, browser session and MCP session of theirs ends at once (RT-11
    /// (a)). `None` when the person is gone.
    pub async fn disable_person(&self, user: &User) -> Result<Option<PersonRevocation>, AdminError> {
        let base = self.audit_record(AuditDraft {
            kind: "user.disabled",
            outcome: "success",
            user: Some(&user.id),
            ..Default::default()
        });
        let audit = with_detail(base, |r: &PersonRevocation| format!("disabled by an operator; {}", describe(r)));
        let done = self.store.disable_user(&user.id, &self.mcp_owner(&user.id), self.now(), audit).await?;
        self.note_revocation().await;
        Ok(done)
    }

    /// Lets a disabled person sign in again; what disabling revoked stays revoked. False when the
    /// person is gone.
    pub async fn enable_person(&self, user: &User) -> Result<bool, AdminError> {
        let base = self.audit_record(AuditDraft {
            kind: "user.enabled",
            outcome: "success",
            user: Some(&user.id),
            detail: Some("enabled by an operator".into()),
            ..Default::default()
        });
        Ok(self.store.enable_user(&user.id, Box::new(move |_| Some(base))).await?)
    }

    /// Deletes a person and everything of theirs in one transaction, revoking their grants. The
    /// audit trail stays, with a `user.removed` event naming the username the id had.
    pub async fn remove_person(&self, user: &User) -> Result<Option<PersonRevocation>, AdminError> {
        let base = self.audit_record(AuditDraft {
            kind: "user.removed",
            outcome: "success",
            user: Some(&user.id),
            ..Default::default()
        });
        let name = user.username.clone();
        let audit =
            with_detail(base, move |r: &PersonRevocation| format!("{name:?} removed by an operator; {}", describe(r)));
        let done = self
            .store
            .remove_user(
                &user.id,
                &super::LoginThrottleKeys::for_username(&user.username),
                &self.mcp_owner(&user.id),
                audit,
            )
            .await?;
        self.note_revocation().await;
        Ok(done)
    }

    /// Sets a new password (argon2id) and ends the person's browser sessions; with
    /// `revoke_grants`, also revokes every grant and MCP session (RT-11 (b)).
    pub async fn change_password(
        &self,
        user: &User,
        password: String,
        revoke_grants: bool,
    ) -> Result<Option<PersonRevocation>, AdminError> {
        let hash = self.passwords.hash(password).await?;
        let base = self.audit_record(AuditDraft {
            kind: "user.password_set",
            outcome: "success",
            user: Some(&user.id),
            ..Default::default()
        });
        let audit = with_detail(base, |r: &PersonRevocation| format!("password set by an operator; {}", describe(r)));
        let owner = self.mcp_owner(&user.id);
        let done = self.store.change_password(&user.id, &hash, revoke_grants, &owner, self.now(), audit).await?;
        if revoke_grants {
            self.note_revocation().await;
        }
        Ok(done)
    }

    /// Re-seals every value sealed under the key-encryption key (signing keys, connected
    /// accounts' tokens, provider requests' secrets) under `new`, in one transaction. Each value
    /// is opened with `new` (already rotated), else with this server's key or its fallback; one
    /// that opens with none of them stops the rotation with nothing changed.
    /// Without `new`, the server's own key is the new one (its fallback the old).
    pub async fn rotate_kek(&self, new: Option<&KeyEncryptionKey>) -> Result<ResealCount, AdminError> {
        let current = self.keys.kek().clone();
        let new = new.map_or_else(|| current.without_fallback(), KeyEncryptionKey::without_fallback);
        let rng = self.rng.clone();
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let failed = failure.clone();
        let reseal: Reseal = Arc::new(move |what: SealedRef<'_>, sealed: &[u8]| {
            let (bound, name) = match what {
                SealedRef::SigningKey { kid } => (aad::signing_key(kid), format!("signing key {kid}")),
                SealedRef::UpstreamAccount { user_id, provider } => (
                    aad::upstream_account(user_id, provider),
                    format!("the {provider} account connected by person {user_id}"),
                ),
                SealedRef::ProviderFlow { state_hash } => {
                    (aad::provider_flow(state_hash), "a provider sign-in in flight".to_owned())
                }
            };
            let result = new
                .open(sealed, &bound)
                .or_else(|_| current.open(sealed, &bound))
                .map_err(|_| {
                    format!(
                        "{name} opens with neither the configured key-encryption key{} nor the new one",
                        if current.has_fallback() { " (nor its fallback)" } else { "" }
                    )
                })
                .and_then(|plain| new.seal(rng.as_ref(), &plain, &bound).map_err(|e| e.to_string()));
            if let (Err(e), Ok(mut slot)) = (&result, failed.lock()) {
                *slot = Some(e.clone());
            }
            result
        });
        let base = self.audit_record(AuditDraft { kind: "key.kek_rotated", outcome: "success", ..Default::default() });
        let audit = with_detail(base, |c: &ResealCount| {
            format!(
                "every sealed value re-sealed under a new key-encryption key: {} signing key(s), {} connected account(s), \
                 {} provider request(s)",
                c.signing_keys, c.upstream_accounts, c.provider_flows
            )
        });
        match self.store.reseal_all(reseal, audit).await {
            Ok(count) => Ok(count),
            Err(e) => match failure.lock().ok().and_then(|mut s| s.take()) {
                Some(why) => Err(AdminError::Invalid(format!("{why}: nothing was changed"))),
                None => Err(e.into()),
            },
        }
    }
}
