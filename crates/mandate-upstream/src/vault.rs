//! The vault: each person's tokens at each provider, sealed under the key-encryption key and
//! bound to (person, provider). A token near expiry is refreshed once: callers in this process
//! queue on one lock per account, and instances sharing the database take a lease on the row
//! (the one that wins refreshes; the others wait for the new version, or keep using a token that
//! has not expired yet). A provider that rotates refresh tokens and one that does not both work:
//! an answer without `refresh_token` keeps the old one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mandate_core::AuthServer;
use mandate_core::clock::UnixTime;
use mandate_core::model::UpstreamAccount;
use mandate_core::service::AuditDraft;
use serde::{Deserialize, Serialize};

use crate::provider::Provider;
use crate::{NotConnected, UpstreamError, oauth};

/// How long a refresh lease holds other instances off (a crashed holder's lease lapses). The
/// provider's metadata is read before the lease is taken, so a lease covers one token request
/// (at most `oauth::CALL_TIMEOUT`, 15 s) with room to spare.
const LEASE: i64 = 60;
/// How long a caller waits for another instance's refresh before giving up.
const WAIT: Duration = Duration::from_secs(65);
/// How often a waiting caller looks at the row again.
const POLL: Duration = Duration::from_millis(50);

/// What is sealed: never stored or logged in the clear.
#[derive(Serialize, Deserialize)]
struct Tokens {
    #[serde(rename = "a")]
    access: String,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    refresh: Option<String>,
}

/// A person's access token at a provider. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamToken {
    secret: String,
    pub expires_at: Option<UnixTime>,
}

impl UpstreamToken {
    /// The token itself, to send as the bearer credential.
    pub fn expose(&self) -> &str {
        &self.secret
    }
}

impl std::fmt::Debug for UpstreamToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamToken").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// What the account pages show of a connection (never a token).
#[derive(Debug, Clone)]
pub struct ConnectedAccount {
    pub provider: String,
    pub title: String,
    pub subject: Option<String>,
    pub scope: Option<String>,
    pub connected: bool,
    pub connected_at: UnixTime,
    pub refreshed_at: UnixTime,
    pub access_expires_at: Option<UnixTime>,
}

/// One refresh lock per (person, provider), dropped when nobody holds it.
type RefreshLocks = Mutex<HashMap<(String, String), Weak<tokio::sync::Mutex<()>>>>;

pub(crate) struct Vault {
    auth: Arc<AuthServer>,
    locks: RefreshLocks,
    /// Accounts whose last refresh failed for a passing reason, and when: not tried again for
    /// [`BACKOFF`] (every call would otherwise ask the provider again).
    failed: Mutex<HashMap<(String, String), Instant>>,
}

/// How long a refresh that failed for a passing reason is not tried again.
const BACKOFF: Duration = Duration::from_secs(30);

fn context(user_id: &str, provider: &str) -> String {
    mandate_core::keys::aad::upstream_account(user_id, provider)
}

/// Seconds before expiry at which a token is refreshed: a quarter of its life, 5 s to 60 s.
fn margin(a: &UpstreamAccount) -> i64 {
    a.access_expires_at.map_or(0, |e| (e.saturating_sub(a.refreshed_at) / 4).clamp(5, 60))
}

fn fresh(a: &UpstreamAccount, now: UnixTime) -> bool {
    a.access_expires_at.is_none_or(|e| e - now > margin(a))
}

fn expired(a: &UpstreamAccount, now: UnixTime) -> bool {
    a.access_expires_at.is_some_and(|e| e <= now)
}

impl Vault {
    pub fn new(auth: Arc<AuthServer>) -> Self {
        Self { auth, locks: Mutex::new(HashMap::new()), failed: Mutex::new(HashMap::new()) }
    }

    fn seal(&self, user_id: &str, provider: &str, tokens: &Tokens) -> Result<Vec<u8>, UpstreamError> {
        let plain = serde_json::to_vec(tokens).map_err(|_| UpstreamError::Crypto)?;
        self.auth.seal_secret(&plain, &context(user_id, provider)).map_err(|_| UpstreamError::Crypto)
    }

    fn open(&self, a: &UpstreamAccount) -> Result<Tokens, UpstreamError> {
        let plain = self.auth.open_secret(&a.sealed_tokens, &context(&a.user_id, &a.provider)).map_err(|_| {
            tracing::error!(provider = %a.provider, "an upstream account's tokens do not open with this key-encryption key");
            UpstreamError::Crypto
        })?;
        serde_json::from_slice(&plain).map_err(|_| UpstreamError::Crypto)
    }

    fn token_of(&self, a: &UpstreamAccount) -> Result<UpstreamToken, UpstreamError> {
        Ok(UpstreamToken { secret: self.open(a)?.access, expires_at: a.access_expires_at })
    }

    /// The account, when it is connected.
    async fn connected(&self, user_id: &str, provider: &str) -> Result<UpstreamAccount, UpstreamError> {
        match self.auth.store().upstream_account(user_id, provider).await? {
            Some(a) if a.connected => Ok(a),
            Some(_) => Err(UpstreamError::NotConnected { provider: provider.to_owned(), why: NotConnected::Refused }),
            None => Err(UpstreamError::NotConnected { provider: provider.to_owned(), why: NotConnected::Never }),
        }
    }

    /// Stores a new connection (after the person approved at the provider).
    pub async fn store(
        &self,
        user_id: &str,
        provider: &str,
        subject: Option<String>,
        response: &oauth::TokenResponse,
    ) -> Result<(), UpstreamError> {
        let now = self.auth.now();
        let tokens = Tokens { access: response.access_token.clone(), refresh: response.refresh_token.clone() };
        let account = UpstreamAccount {
            user_id: user_id.to_owned(),
            provider: provider.to_owned(),
            subject,
            sealed_tokens: self.seal(user_id, provider, &tokens)?,
            scope: response.scope.clone(),
            access_expires_at: response.lifetime().map(|l| now.saturating_add(l)),
            // Never a version an earlier connection of this account had: a refresh begun over
            // that one cannot land on this one (see UpstreamStore::save_upstream_account).
            version: {
                let mut r = [0u8; 2];
                self.auth.randomness().fill(&mut r);
                now.saturating_mul(1000).saturating_add(i64::from(u16::from_le_bytes(r) % 1000))
            },
            connected: true,
            connected_at: now,
            refreshed_at: now,
        };
        self.auth.store().save_upstream_account(&account).await?;
        self.auth
            .audit(AuditDraft {
                kind: "upstream.connect",
                outcome: "success",
                user: Some(user_id),
                detail: Some(format!("connected the {provider} account")),
                ..Default::default()
            })
            .await;
        Ok(())
    }

    /// Revokes an account's tokens at the provider in the background (they are being replaced).
    pub fn revoke_later(&self, provider: &Provider, http: &reqwest::Client, old: &UpstreamAccount) {
        if let Ok(tokens) = self.open(old) {
            self.revoke_tokens_later(provider, http, tokens);
        }
    }

    fn revoke_tokens_later(&self, provider: &Provider, http: &reqwest::Client, tokens: Tokens) {
        let Some(m) = provider.metadata_if_known() else { return };
        let Some(endpoint) = m.revocation_endpoint.clone() else { return };
        let (spec, http) = (provider.spec.clone(), http.clone());
        tokio::spawn(async move {
            if let Some(r) = &tokens.refresh {
                let _ = oauth::revoke(&http, &spec, &endpoint, r, "refresh_token").await;
            }
            let _ = oauth::revoke(&http, &spec, &endpoint, &tokens.access, "access_token").await;
        });
    }

    pub async fn accounts(
        &self,
        user_id: &str,
        title: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<ConnectedAccount>, UpstreamError> {
        let rows = self.auth.store().upstream_accounts(user_id).await?;
        Ok(rows
            .into_iter()
            .map(|a| ConnectedAccount {
                title: title(&a.provider).unwrap_or_else(|| a.provider.clone()),
                provider: a.provider,
                subject: a.subject,
                scope: a.scope,
                connected: a.connected,
                connected_at: a.connected_at,
                refreshed_at: a.refreshed_at,
                access_expires_at: a.access_expires_at,
            })
            .collect())
    }

    pub async fn token(
        &self,
        provider: &Provider,
        http: &reqwest::Client,
        user_id: &str,
    ) -> Result<UpstreamToken, UpstreamError> {
        let a = self.connected(user_id, &provider.spec.name).await?;
        let got = if fresh(&a, self.auth.now()) {
            self.token_of(&a)
        } else {
            self.refresh(provider, http, user_id, a.version, false).await
        };
        self.unusable_is_disconnected(got, &a).await
    }

    /// Tokens that no longer open (the key-encryption key changed without them): the account is
    /// marked disconnected, so the person is asked to connect it again instead of failing forever.
    async fn unusable_is_disconnected(
        &self,
        got: Result<UpstreamToken, UpstreamError>,
        a: &UpstreamAccount,
    ) -> Result<UpstreamToken, UpstreamError> {
        match got {
            Err(UpstreamError::Crypto) => {
                self.auth.store().abandon_upstream_refresh(&a.user_id, &a.provider, a.version, true).await?;
                Err(UpstreamError::NotConnected { provider: a.provider.clone(), why: NotConnected::Refused })
            }
            other => other,
        }
    }

    pub async fn rejected(
        &self,
        provider: &Provider,
        http: &reqwest::Client,
        user_id: &str,
        rejected: &UpstreamToken,
    ) -> Result<UpstreamToken, UpstreamError> {
        let a = self.connected(user_id, &provider.spec.name).await?;
        let current = match self.token_of(&a) {
            Ok(t) => t,
            Err(e) => return self.unusable_is_disconnected(Err(e), &a).await,
        };
        if current != *rejected {
            return Ok(current);
        }
        let got = self.refresh(provider, http, user_id, a.version, true).await;
        self.unusable_is_disconnected(got, &a).await
    }

    /// The lock every caller in this process takes before refreshing one account.
    fn lock_for(&self, user_id: &str, provider: &str) -> Arc<tokio::sync::Mutex<()>> {
        let key = (user_id.to_owned(), provider.to_owned());
        let Ok(mut locks) = self.locks.lock() else {
            return Arc::new(tokio::sync::Mutex::new(()));
        };
        if let Some(l) = locks.get(&key).and_then(Weak::upgrade) {
            return l;
        }
        locks.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key, Arc::downgrade(&l));
        l
    }

    /// Refreshes the account read at `seen` (unless someone did meanwhile). `force`: the
    /// provider rejected the current access token, so it is refreshed even if not yet due.
    async fn refresh(
        &self,
        provider: &Provider,
        http: &reqwest::Client,
        user_id: &str,
        seen: i64,
        force: bool,
    ) -> Result<UpstreamToken, UpstreamError> {
        let name = &provider.spec.name;
        let lock = self.lock_for(user_id, name);
        let _one_at_a_time = lock.lock().await;
        let started = Instant::now();
        loop {
            let a = self.connected(user_id, name).await?;
            let now = self.auth.now();
            if a.version != seen || (!force && fresh(&a, now)) {
                // Refreshed meanwhile, here or by another instance.
                return self.token_of(&a);
            }
            if self.backing_off(user_id, name) {
                return if expired(&a, now) {
                    Err(UpstreamError::Unavailable(format!("{name}: the last refresh failed moments ago")))
                } else {
                    self.token_of(&a)
                };
            }
            // The provider's endpoints first (discovery may take a while): not under the lease.
            let endpoint = match provider.metadata(http).await.and_then(|m| m.token().map(str::to_owned)) {
                Ok(e) => e,
                Err(e) => {
                    self.note_failure(user_id, name);
                    tracing::warn!(provider = %name, error = %e, "cannot refresh an upstream token");
                    return if expired(&a, now) { Err(e) } else { self.token_of(&a) };
                }
            };
            if self.auth.store().claim_upstream_refresh(user_id, name, a.version, now, now + LEASE).await? {
                return self.refresh_held(provider, http, a, force, &endpoint).await;
            }
            // Another instance is refreshing: a token that has not expired still serves.
            if !force && !expired(&a, now) {
                return self.token_of(&a);
            }
            if started.elapsed() > WAIT {
                return Err(UpstreamError::Unavailable(format!("{name}: another instance's refresh did not finish")));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn backing_off(&self, user_id: &str, provider: &str) -> bool {
        let Ok(mut failed) = self.failed.lock() else { return false };
        failed.retain(|_, at| at.elapsed() < BACKOFF);
        failed.contains_key(&(user_id.to_owned(), provider.to_owned()))
    }

    fn note_failure(&self, user_id: &str, provider: &str) {
        if let Ok(mut failed) = self.failed.lock() {
            failed.insert((user_id.to_owned(), provider.to_owned()), Instant::now());
        }
    }

    /// The refresh itself, with the lease held.
    async fn refresh_held(
        &self,
        provider: &Provider,
        http: &reqwest::Client,
        a: UpstreamAccount,
        force: bool,
        endpoint: &str,
    ) -> Result<UpstreamToken, UpstreamError> {
        let store = self.auth.store();
        let (user_id, name) = (a.user_id.as_str(), provider.spec.name.as_str());
        let tokens = self.open(&a)?;
        let Some(refresh_token) = tokens.refresh.clone() else {
            // Nothing to renew with: the token serves until it expires (or the upstream refuses it).
            if !force && !expired(&a, self.auth.now()) {
                store.abandon_upstream_refresh(user_id, name, a.version, false).await?;
                return self.token_of(&a);
            }
            store.abandon_upstream_refresh(user_id, name, a.version, true).await?;
            self.refresh_failed(user_id, name, "the access token expired and the provider gave no refresh token").await;
            return Err(UpstreamError::NotConnected { provider: name.to_owned(), why: NotConnected::Expired });
        };
        match oauth::refresh(http, &provider.spec, endpoint, &refresh_token).await {
            Ok(resp) => {
                let now = self.auth.now();
                let next = Tokens {
                    access: resp.access_token.clone(),
                    refresh: resp.refresh_token.clone().or(tokens.refresh),
                };
                let sealed = self.seal(user_id, name, &next)?;
                let expires = resp.lifetime().map(|l| now.saturating_add(l));
                let scope = resp.scope.as_deref();
                if store.finish_upstream_refresh(user_id, name, a.version, &sealed, expires, scope, now).await? {
                    return Ok(UpstreamToken { secret: next.access, expires_at: expires });
                }
                // Disconnected or connected again meanwhile: what is stored now wins, and the
                // tokens just obtained are revoked rather than left live.
                self.revoke_tokens_later(provider, http, next);
                let current = self.connected(user_id, name).await?;
                self.token_of(&current)
            }
            Err(UpstreamError::Refused { error, .. }) if error == "invalid_grant" => {
                store.abandon_upstream_refresh(user_id, name, a.version, true).await?;
                self.refresh_failed(
                    user_id,
                    name,
                    "the provider refused the refresh token; the person must connect again",
                )
                .await;
                Err(UpstreamError::NotConnected { provider: name.to_owned(), why: NotConnected::Refused })
            }
            Err(e) => {
                store.abandon_upstream_refresh(user_id, name, a.version, false).await?;
                self.note_failure(user_id, name);
                tracing::warn!(provider = %name, error = %e, "refreshing an upstream token failed");
                // The detail (addresses, codes) is for operators' logs; the person's trail says
                // what happened.
                self.refresh_failed(user_id, name, "the provider could not be reached or answered an error").await;
                if expired(&a, self.auth.now()) { Err(e) } else { self.token_of(&a) }
            }
        }
    }

    async fn refresh_failed(&self, user_id: &str, provider: &str, why: &str) {
        self.auth
            .audit(AuditDraft {
                kind: "upstream.refresh",
                outcome: "failure",
                user: Some(user_id),
                detail: Some(format!("{provider}: {why}")),
                ..Default::default()
            })
            .await;
    }

    /// Deletes an account of a provider that is no longer configured.
    pub async fn forget(&self, user_id: &str, provider: &str) -> Result<bool, UpstreamError> {
        let existed = self.auth.store().delete_upstream_account(user_id, provider).await?;
        if existed {
            self.auth
                .audit(AuditDraft {
                    kind: "upstream.disconnect",
                    outcome: "success",
                    user: Some(user_id),
                    detail: Some(format!(
                        "disconnected the {provider} account (the provider is no longer configured: nothing was revoked there)"
                    )),
                    ..Default::default()
                })
                .await;
        }
        Ok(existed)
    }

    pub async fn disconnect(
        &self,
        provider: &Provider,
        http: &reqwest::Client,
        user_id: &str,
    ) -> Result<bool, UpstreamError> {
        let name = &provider.spec.name;
        let Some(a) = self.auth.store().upstream_account(user_id, name).await? else {
            return Ok(false);
        };
        // Revoked at the provider first (the refresh token, which ends the grant at most
        // providers, then the access token); the account is deleted whatever the provider says.
        let mut revoked = "the provider offers no revocation endpoint".to_owned();
        let tokens = self.open(&a);
        let metadata = provider.metadata(http).await;
        if tokens.is_err() {
            revoked = "its tokens could not be opened to revoke them".to_owned();
        } else if let Err(e) = &metadata {
            tracing::warn!(provider = %name, error = %e, "cannot reach the provider to revoke");
            revoked = "the provider could not be reached to revoke its tokens".to_owned();
        }
        if let Ok(tokens) = tokens
            && let Ok(m) = metadata
            && let Some(endpoint) = m.revocation_endpoint.as_deref()
        {
            let mut outcome = Ok(());
            if let Some(r) = &tokens.refresh {
                outcome = oauth::revoke(http, &provider.spec, endpoint, r, "refresh_token").await;
            }
            if outcome.is_ok() {
                outcome = oauth::revoke(http, &provider.spec, endpoint, &tokens.access, "access_token").await;
            }
            revoked = match outcome {
                Ok(()) => "revoked at the provider".to_owned(),
                Err(e) => {
                    tracing::warn!(provider = %name, error = %e, "revoking an upstream token failed");
                    format!("revoking at the provider failed: {e}")
                }
            };
        }
        let existed = self.auth.store().delete_upstream_account(user_id, name).await?;
        self.auth
            .audit(AuditDraft {
                kind: "upstream.disconnect",
                outcome: "success",
                user: Some(user_id),
                detail: Some(format!("disconnected the {name} account ({revoked})")),
                ..Default::default()
            })
            .await;
        Ok(existed)
    }
}
