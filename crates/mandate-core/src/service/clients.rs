//! Finding clients (registered, pre-registered, or by metadata document) and authenticating
//! them at the token, revocation and introspection endpoints (OAuth 2.1 §2.4, §3.2.1).

use super::cimd::{self, FetchError};
use super::login::lock_for;
use super::{AuditDraft, AuthServer};
use crate::error::OAuthError;
use crate::model::{AuthMethod, Client};
use crate::params::Params;
use crate::secret::SecretHash;

/// Wrong secrets for one client within this window count towards its lock (UI-14)...
const SECRET_FAILURE_WINDOW: i64 = 15 * 60;
/// ...from this many on, every secret presented for it is refused as wrong (the right one
/// too), for a minute doubling with each further failure, up to a quarter of an hour.
const SECRET_LOCK_AFTER: i64 = 10;
const SECRET_LONGEST_LOCK: i64 = 15 * 60;

/// The throttle key of a client's secret (a prefix of its own, distinct from sign-in keys).
fn secret_key(client_id: &str) -> String {
    format!("client\u{1f}{client_id}")
}

/// Credentials from an `Authorization: Basic` header, already percent-decoded (RFC 6749 §2.3.1).
#[derive(Clone)]
pub struct BasicCredentials {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials").field("client_id", &self.client_id).field("client_secret", &"***").finish()
    }
}

impl AuthServer {
    /// The client named by `client_id`: stored, or fetched from its metadata document URL.
    /// `Ok(None)` when no such client exists.
    pub async fn find_client(&self, client_id: &str) -> Result<Option<Client>, ClientLookupError> {
        if client_id.len() > 2000 {
            return Ok(None);
        }
        let now = self.now();
        let stored = self.store.client_by_id(client_id).await?;
        if !cimd::is_document_url(client_id) {
            return Ok(stored);
        }
        if let Some(c) = stored.as_ref()
            && c.refresh_after.is_some_and(|t| t > now)
        {
            return Ok(stored);
        }
        cimd::validate_document_url(client_id, self.settings.fetch_policy)?;
        let doc = self.documents.fetch(client_id).await?;
        let client = cimd::parse_document(client_id, &doc, &self.resources, now)?;
        // Keep the first-seen time so grants and the audit trail stay stable across refetches.
        let client = match stored {
            Some(old) => Client { created_at: old.created_at, ..client },
            None => client,
        };
        self.store.upsert_client(&client).await?;
        Ok(Some(client))
    }

    /// Authenticates the client of a token, revocation or introspection request.
    pub async fn authenticate_client(
        &self,
        params: &Params,
        basic: Option<&BasicCredentials>,
    ) -> Result<Client, OAuthError> {
        let attempted_basic = basic.is_some();
        let fail = |why: &'static str| OAuthError::invalid_client(why).with_basic_auth(attempted_basic);
        let body_id = params.single("client_id")?;
        let body_secret = params.single("client_secret")?;
        let (client_id, secret, used) = match basic {
            Some(b) => {
                if body_secret.is_some() {
                    return Err(OAuthError::invalid_request("use one client authentication method, not several"));
                }
                if body_id.is_some_and(|id| id != b.client_id) {
                    return Err(fail("client authentication failed"));
                }
                (
                    b.client_id.as_str(),
                    Some(b.client_secret.as_str()).filter(|s| !s.is_empty()),
                    AuthMethod::ClientSecretBasic,
                )
            }
            None => {
                let id = body_id.ok_or_else(|| fail("client authentication is required"))?;
                let method = if body_secret.is_some() { AuthMethod::ClientSecretPost } else { AuthMethod::None };
                (id, body_secret, method)
            }
        };
        let client = match self.find_client(client_id).await {
            Ok(Some(c)) => c,
            Ok(None) | Err(ClientLookupError::Document(_)) => return Err(fail("client authentication failed")),
            Err(ClientLookupError::Store(e)) => return Err(e.into()),
        };
        match (client.auth_method, secret) {
            (AuthMethod::None, None) => Ok(client),
            (AuthMethod::None, Some(_)) => Err(fail("client authentication failed")),
            (registered, Some(secret)) => {
                let key = secret_key(&client.id);
                let now = self.now();
                // Locked: the answer a wrong secret gets, whatever was presented (UI-14).
                if self.store.login_locked_until(&key).await?.is_some_and(|until| until > now) {
                    self.audit(AuditDraft {
                        kind: "client.auth",
                        outcome: "locked",
                        client: Some(&client.id),
                        detail: Some("client authentication refused while the client's secret is locked".into()),
                        ..Default::default()
                    })
                    .await;
                    return Err(fail("client authentication failed"));
                }
                let ok = client.secret_hash.as_ref().is_some_and(|h| h.ct_eq(&SecretHash::of(secret)));
                if !ok {
                    self.secret_failed(&client.id, &key, now).await?;
                    return Err(fail("client authentication failed"));
                }
                if registered != used {
                    return Err(fail("client authentication failed"));
                }
                Ok(client)
            }
            (_, None) => Err(fail("client authentication failed")),
        }
    }
}

impl AuthServer {
    /// Counts a wrong secret for a client with one; locks its secret past the threshold.
    async fn secret_failed(&self, client_id: &str, key: &str, now: crate::clock::UnixTime) -> Result<(), OAuthError> {
        let failures = self.store.record_login_failure(key, now, now - SECRET_FAILURE_WINDOW).await?;
        if let Some(lock) = lock_for(failures, SECRET_LOCK_AFTER, SECRET_LONGEST_LOCK) {
            self.store.lock_login(key, now + lock).await?;
            self.audit(AuditDraft {
                kind: "client.auth",
                outcome: "secret_locked",
                client: Some(client_id),
                detail: Some(format!("client secret locked for {lock} s after {failures} wrong secrets")),
                ..Default::default()
            })
            .await;
        }
        Ok(())
    }
}

/// Why a client could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum ClientLookupError {
    #[error(transparent)]
    Store(#[from] crate::error::StoreError),
    #[error(transparent)]
    Document(#[from] FetchError),
}
