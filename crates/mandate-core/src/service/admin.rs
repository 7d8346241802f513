//! Operator actions behind the `mandate users|clients|grants|audit|keys` commands.

use serde_json::json;

use super::keyman::KeyManagerError;
use super::{AuditDraft, AuthServer};
use crate::error::{OAuthError, StoreError};
use crate::keys::KeyState;
use crate::model::{AuditEvent, AuditFilter, AuthMethod, Client, ClientKind, Grant, User};
use crate::password::PasswordError;
use crate::redirect;
use crate::scope::ScopeSet;
use crate::secret::{Secret, SecretKind, generate, random_id};

/// Audit events deleted per maintenance run at most (it runs every ten minutes; a first run on a
/// long trail catches up over several).
const AUDIT_PURGE_LIMIT: u64 = 100_000;

/// A pre-registered client, as the operator describes it.
#[derive(Debug, Clone)]
pub struct ClientRegistration {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub confidential: bool,
    pub allow_refresh: bool,
    /// The scopes this client may ever be granted (a ceiling); `None` for any the resources offer.
    pub scope: Option<ScopeSet>,
    /// The resources this client serves (a resource server): with a secret, it may introspect
    /// tokens issued for them (RV-09). Each must be a configured resource.
    pub resources: Vec<String>,
}

/// A signing key as `mandate keys list` shows it.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub state: KeyState,
    pub created_at: i64,
    pub activates_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("a user named {0:?} already exists")]
    UserExists(String),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyManagerError),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
}

impl AuthServer {
    pub async fn add_user(&self, username: &str, password: String) -> Result<User, AdminError> {
        let username = username.trim();
        let valid = !username.is_empty()
            && username.chars().count() <= 64
            && username.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if !valid {
            return Err(AdminError::Invalid("a username is 1 to 64 letters, digits, '.', '_', '-' or '@'".into()));
        }
        let user = User {
            id: random_id(self.rng.as_ref()),
            username: username.to_owned(),
            password_hash: self.passwords.hash(password).await?,
            created_at: self.now(),
            disabled: false,
        };
        match self.store.insert_user(&user).await {
            Err(StoreError::Conflict(_)) => return Err(AdminError::UserExists(username.to_owned())),
            other => other?,
        }
        self.audit(AuditDraft { kind: "user.created", outcome: "success", user: Some(&user.id), ..Default::default() })
            .await;
        Ok(user)
    }

    /// Sets a new password for an existing user, or creates the user; returns the user.
    pub async fn set_or_create_user(&self, username: &str, password: String) -> Result<User, AdminError> {
        match self.store.user_by_name(username).await? {
            Some(u) => {
                let hash = self.passwords.hash(password).await?;
                self.store.set_password(&u.id, &hash).await?;
                self.audit(AuditDraft {
                    kind: "user.password_set",
                    outcome: "success",
                    user: Some(&u.id),
                    ..Default::default()
                })
                .await;
                Ok(User { password_hash: hash, ..u })
            }
            None => self.add_user(username, password).await,
        }
    }

    pub async fn list_users(&self) -> Result<Vec<User>, AdminError> {
        Ok(self.store.list_users().await?)
    }

    /// Adds a pre-registered client; returns it and, for a confidential one, its secret (once).
    pub async fn add_client(&self, reg: ClientRegistration) -> Result<(Client, Option<Secret>), AdminError> {
        let name = reg.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(AdminError::Invalid("a client name is 1 to 200 characters".into()));
        }
        if let Some(problem) = crate::text::display_name_problem(name) {
            return Err(AdminError::Invalid(format!("the client name {problem}")));
        }
        if reg.redirect_uris.is_empty() {
            return Err(AdminError::Invalid("give at least one --redirect-uri".into()));
        }
        for uri in &reg.redirect_uris {
            redirect::validate_for_registration(uri).map_err(|e| AdminError::Invalid(format!("{uri}: {e}")))?;
        }
        if let Some(scope) = &reg.scope {
            if scope.is_empty() {
                return Err(AdminError::Invalid("--scope names no scope".into()));
            }
            let unknown = scope.difference(&self.resources.all_scopes());
            if !unknown.is_empty() {
                return Err(AdminError::Invalid(format!("no resource offers the scope {unknown}")));
            }
        }
        let mut served_resources = Vec::with_capacity(reg.resources.len());
        for r in &reg.resources {
            let uri = crate::scope::canonical_resource(r)
                .map_err(|e| AdminError::Invalid(format!("--resource {r}: {}", e.description)))?;
            if !self.resources.resources().iter().any(|d| d.uri == uri) {
                return Err(AdminError::Invalid(format!("--resource {r}: no configured resource has this URI")));
            }
            if !served_resources.contains(&uri) {
                served_resources.push(uri);
            }
        }
        if !served_resources.is_empty() && !reg.confidential {
            return Err(AdminError::Invalid("--resource needs --confidential (introspection needs a secret)".into()));
        }
        let secret = reg.confidential.then(|| generate(self.rng.as_ref(), SecretKind::ClientSecret));
        let auth_method = if reg.confidential { AuthMethod::ClientSecretBasic } else { AuthMethod::None };
        let id = super::registration::uuid_like(self);
        let client = Client {
            id: id.clone(),
            kind: ClientKind::Preregistered,
            name: name.to_owned(),
            secret_hash: secret.as_ref().map(Secret::hash),
            auth_method,
            redirect_uris: reg.redirect_uris.clone(),
            allows_refresh: reg.allow_refresh,
            allowed_scope: reg.scope.clone(),
            metadata: json!({
                "client_id": id,
                "client_name": name,
                "redirect_uris": reg.redirect_uris,
                "token_endpoint_auth_method": auth_method.as_str(),
            }),
            created_at: self.now(),
            refresh_after: None,
            served_resources,
        };
        self.store.insert_client(&client).await?;
        self.audit(AuditDraft {
            kind: "client.registered",
            outcome: "success",
            client: Some(&client.id),
            detail: Some(format!("pre-registered by an operator as {name:?}")),
            ..Default::default()
        })
        .await;
        Ok((client, secret))
    }

    pub async fn list_clients(&self) -> Result<Vec<Client>, AdminError> {
        Ok(self.store.list_clients().await?)
    }

    /// Removes a client and revokes its grants. False when unknown.
    pub async fn remove_client(&self, id: &str) -> Result<bool, AdminError> {
        let removed = self.store.remove_client(id, self.now()).await?;
        self.note_revocation().await;
        if removed {
            self.audit(AuditDraft {
                kind: "client.removed",
                outcome: "success",
                client: Some(id),
                ..Default::default()
            })
            .await;
        }
        Ok(removed)
    }

    pub async fn list_grants(&self) -> Result<Vec<Grant>, AdminError> {
        Ok(self.store.list_grants(None).await?)
    }

    /// Revokes one grant. False when unknown or already revoked.
    pub async fn revoke_grant_by_operator(&self, id: &str) -> Result<bool, AdminError> {
        let grant = self.store.grant(id).await?;
        let revoked = self.store.revoke_grant(id, self.now()).await?;
        self.note_revocation().await;
        if let (true, Some(g)) = (revoked, grant) {
            self.audit(AuditDraft {
                kind: "grant.revoked",
                outcome: "success",
                user: Some(&g.user_id),
                client: Some(&g.client_id),
                grant: Some(id),
                detail: Some("revoked by an operator".into()),
            })
            .await;
        }
        Ok(revoked)
    }

    pub async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, AdminError> {
        Ok(self.store.events(filter).await?)
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, AdminError> {
        let now = self.now();
        let ring = self.keys.ring(now).await?;
        Ok(ring
            .keys()
            .iter()
            .enumerate()
            .map(|(i, k)| KeyInfo {
                kid: k.kid.clone(),
                alg: k.alg.as_str().to_owned(),
                state: ring.state(i, now),
                created_at: k.created_at,
                activates_at: k.activates_at,
            })
            .collect())
    }

    /// Publishes a new signing key that signs after the configured activation delay.
    pub async fn rotate_key(&self) -> Result<KeyInfo, AdminError> {
        let now = self.now();
        let key = self.keys.rotate(self.settings.signing_alg, now, self.settings.key_activation_delay).await?;
        self.audit(AuditDraft {
            kind: "key.rotated",
            outcome: "success",
            detail: Some(format!(
                "key {} published; signs from {} UTC",
                key.kid,
                crate::clock::format_utc(key.activates_at)
            )),
            ..Default::default()
        })
        .await;
        Ok(KeyInfo {
            kid: key.kid,
            alg: key.alg,
            state: KeyState::Next,
            created_at: key.created_at,
            activates_at: key.activates_at,
        })
    }

    /// Deletes expired state, clears sealed successors whose grace window has passed, deletes
    /// dynamic clients never used within `unused_client_ttl` of their registration, and audit
    /// events older than `audit_retention` when it is set (see
    /// [`crate::store::MaintenanceStore`]); returns rows deleted or cleared.
    pub async fn purge_expired(&self) -> Result<u64, AdminError> {
        let now = self.now();
        let purged = self.store.purge_expired(now, now - self.settings.refresh_grace).await?;
        let clients = self.store.purge_unused_clients(now - self.settings.unused_client_ttl).await?;
        if clients > 0 {
            self.audit(AuditDraft {
                kind: "client.collected",
                outcome: "success",
                detail: Some(format!(
                    "{clients} dynamically registered client(s) never used within {} deleted",
                    super::human_duration(self.settings.unused_client_ttl)
                )),
                ..Default::default()
            })
            .await;
        }
        let audit = match self.settings.audit_retention {
            0 => 0,
            keep => self.store.purge_audit(now - keep, AUDIT_PURGE_LIMIT).await?,
        };
        if audit > 0 {
            self.audit(AuditDraft {
                kind: "audit.collected",
                outcome: "success",
                detail: Some(format!(
                    "{audit} audit event(s) older than {} deleted (audit_retention)",
                    super::human_duration(self.settings.audit_retention)
                )),
                ..Default::default()
            })
            .await;
        }
        Ok(purged + clients + audit)
    }

    /// Ready to serve: the database answers and the signing keys are loaded (`/readyz`).
    pub async fn readiness(&self) -> Result<(), &'static str> {
        self.store.ping().await.map_err(|_| "database unreachable")?;
        self.keys.ring_is_current(self.now()).await.map_err(|_| "signing keys not loaded")?;
        Ok(())
    }

    /// The JSON Web Key Set to publish now.
    pub async fn jwks(&self) -> Result<jsonwebtoken::jwk::JwkSet, OAuthError> {
        let now = self.now();
        Ok(self.keys.ring(now).await?.jwks(now))
    }
}
