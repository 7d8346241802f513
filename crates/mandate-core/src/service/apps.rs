//! The "connected apps" view: which clients hold a grant from a person, and revoking them.

use super::{AuditDraft, AuthServer};
use crate::clock::UnixTime;
use crate::error::OAuthError;
use crate::scope::ScopeSet;

use super::authorize::ScopeLine;

/// One application a person has connected.
#[derive(Debug, Clone)]
pub struct ConnectedApp {
    pub client_id: String,
    pub name: String,
    pub verified: bool,
    pub scopes: Vec<ScopeLine>,
    pub granted_at: UnixTime,
    /// When it last called a tool for the person (not when it last renewed its token).
    pub last_used_at: Option<UnixTime>,
}

impl AuthServer {
    /// Every client holding a live grant from this person, grants of one client merged.
    pub async fn connected_apps(&self, user_id: &str) -> Result<Vec<ConnectedApp>, OAuthError> {
        let grants = self.store.list_grants(Some(user_id)).await?;
        let calls = self.store.last_tool_calls(user_id).await?;
        let last_call = |client_id: &str| calls.iter().find(|(c, _)| c == client_id).map(|(_, at)| *at);
        let mut apps: Vec<(ConnectedApp, ScopeSet)> = Vec::new();
        for g in grants.iter().filter(|g| g.activated_at.is_some()) {
            if let Some((app, scope)) = apps.iter_mut().find(|(a, _)| a.client_id == g.client_id) {
                *scope = scope.union(&g.scope);
                app.granted_at = app.granted_at.min(g.created_at);
                continue;
            }
            let client = self.store.client_by_id(&g.client_id).await?;
            let app = ConnectedApp {
                client_id: g.client_id.clone(),
                name: client.as_ref().map(|c| c.name.clone()).unwrap_or_else(|| g.client_id.clone()),
                verified: client.as_ref().is_some_and(|c| c.is_verified()),
                scopes: Vec::new(),
                granted_at: g.created_at,
                last_used_at: last_call(&g.client_id),
            };
            apps.push((app, g.scope.clone()));
        }
        Ok(apps
            .into_iter()
            .map(|(mut app, scope)| {
                app.scopes = scope.iter().map(|s| self.scope_line(s)).collect();
                app
            })
            .collect())
    }

    /// Revokes everything a person granted a client and forgets the consent. False when the
    /// person had granted that client nothing (which looks the same as another person's client).
    pub async fn revoke_app(&self, user_id: &str, client_id: &str) -> Result<bool, OAuthError> {
        let n = self.store.revoke_user_client(user_id, client_id, self.now()).await?;
        self.note_revocation().await;
        if n > 0 {
            self.audit(AuditDraft {
                kind: "grant.revoked",
                outcome: "success",
                user: Some(user_id),
                client: Some(client_id),
                detail: Some(format!("revoked by the person on the connected apps page ({n} grant(s))")),
                ..Default::default()
            })
            .await;
        }
        Ok(n > 0)
    }
}
