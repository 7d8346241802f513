//! Signing in: password check (argon2id off the runtime, same time for unknown users), and
//! browser sessions stored only as hashes, with a fresh id at every login (UI-09).

use super::{AuditDraft, AuthServer};
use crate::error::OAuthError;
use crate::model::{Session, User};
use crate::secret::{Secret, SecretHash, SecretKind, generate, random_token};

/// Failures from one address within this window count towards that address's lock on the account.
const FAILURE_WINDOW: i64 = 15 * 60;
/// From this many failures in the window, the account is locked for that address...
const LOCK_AFTER: i64 = 5;
/// ...for a minute, doubling with each further failure, up to a quarter of an hour.
pub(super) const FIRST_LOCK: i64 = 60;
const LONGEST_LOCK: i64 = 15 * 60;
/// Failures from all addresses together within this window count towards the account-wide lock
/// (UI-11: many addresses, a few guesses each).
const ACCOUNT_WINDOW: i64 = 3600;
/// From this many failures in the window, the account is locked everywhere (more than one
/// address may fail before its own lock, so one address alone never locks the person out: UI-13)...
const ACCOUNT_LOCK_AFTER: i64 = 10;
/// ...for a minute, doubling with each further failure, up to half an hour: temporary (UI-13).
const ACCOUNT_LONGEST_LOCK: i64 = 30 * 60;

/// The lock for `failures` counted in a window: none below `after`, then `FIRST_LOCK` doubling
/// with each further failure up to `longest`.
pub(super) fn lock_for(failures: i64, after: i64, longest: i64) -> Option<i64> {
    (failures >= after).then(|| {
        let doublings = u32::try_from((failures - after).min(10)).unwrap_or(10);
        (FIRST_LOCK << doublings).min(longest)
    })
}

/// The throttle key of one account from one address (the kinds are prefixes no input can forge:
/// the user's text comes only after the first separator).
fn address_key(username: &str, client: &str) -> String {
    format!("{}{}", LoginThrottleKeys::for_username(username).address_prefix, truncate(client))
}

/// The throttle key of one account, from every address together.
fn account_key(username: &str) -> String {
    LoginThrottleKeys::for_username(username).account
}

/// The sign-in throttle keys of one username: from every address together, and the prefix of
/// those per address. Only this module knows their form; the store is handed them whole (a
/// person removed takes their failure counts along).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginThrottleKeys {
    pub account: String,
    pub address_prefix: String,
}

impl LoginThrottleKeys {
    pub fn for_username(username: &str) -> Self {
        let short = truncate(username);
        Self { account: format!("account\u{1f}{short}"), address_prefix: format!("login\u{1f}{short}\u{1f}") }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the username or password is wrong")]
    BadCredentials,
    /// Too many failures for this username (known or not): refused whatever the password, until
    /// the given time (UI-11).
    #[error("too many failed sign-ins; try again later")]
    Locked { until: crate::clock::UnixTime },
    #[error(transparent)]
    Server(#[from] OAuthError),
}

impl AuthServer {
    /// Checks a username and password and opens a session; returns the session cookie value.
    /// Two locks, both counted for known and unknown names alike: one per (account, client
    /// address), so that failures from one place cannot lock the person out everywhere (UI-13),
    /// and one per account across all addresses, longer to reach and temporary, against guesses
    /// spread over many addresses (UI-11). While either holds, the right password gets exactly
    /// the answer a wrong one gets.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: &str,
    ) -> Result<(Secret, Session, User), LoginError> {
        let by_address = address_key(username, client);
        let by_account = account_key(username);
        let now = self.now();
        for (key, scope) in [(&by_address, "from this address"), (&by_account, "from every address")] {
            if let Some(until) = self.store.login_locked_until(key).await.map_err(OAuthError::from)?
                && until > now
            {
                self.audit(AuditDraft {
                    kind: "user.login",
                    outcome: "locked",
                    detail: Some(format!(
                        "sign-in refused from {client} while {:?} is locked {scope}",
                        truncate(username)
                    )),
                    ..Default::default()
                })
                .await;
                return Err(LoginError::Locked { until });
            }
        }
        let user = self.store.user_by_name(username).await.map_err(OAuthError::from)?;
        // A person created by a provider's sign-in has no password: the dummy hash is checked instead.
        let hash =
            user.as_ref().filter(|u| !u.disabled && !u.password_hash.is_empty()).map(|u| u.password_hash.clone());
        let ok = self.passwords.verify(password.to_owned(), hash).await;
        let (true, Some(user)) = (ok, user.clone()) else {
            self.audit(AuditDraft {
                kind: "user.login",
                outcome: "failure",
                user: user.as_ref().map(|u| u.id.as_str()),
                detail: Some(format!("wrong username or password for {:?}", truncate(username))),
                ..Default::default()
            })
            .await;
            let failures = self
                .store
                .record_login_failure(&by_address, now, now - FAILURE_WINDOW)
                .await
                .map_err(OAuthError::from)?;
            let account_failures = self
                .store
                .record_login_failure(&by_account, now, now - ACCOUNT_WINDOW)
                .await
                .map_err(OAuthError::from)?;
            let mut locked_until = None;
            if let Some(lock) = lock_for(failures, LOCK_AFTER, LONGEST_LOCK) {
                self.store.lock_login(&by_address, now + lock).await.map_err(OAuthError::from)?;
                locked_until = Some(now + lock);
            }
            if let Some(lock) = lock_for(account_failures, ACCOUNT_LOCK_AFTER, ACCOUNT_LONGEST_LOCK) {
                self.store.lock_login(&by_account, now + lock).await.map_err(OAuthError::from)?;
                self.audit(AuditDraft {
                    kind: "user.login",
                    outcome: "account_locked",
                    user: user.as_ref().map(|u| u.id.as_str()),
                    detail: Some(format!(
                        "{:?} locked for {lock} s after {account_failures} failed sign-ins from any address",
                        truncate(username)
                    )),
                    ..Default::default()
                })
                .await;
                locked_until = Some(locked_until.map_or(now + lock, |u: i64| u.max(now + lock)));
            }
            return Err(match locked_until {
                Some(until) => LoginError::Locked { until },
                None => LoginError::BadCredentials,
            });
        };
        // The person proved who they are: their address starts afresh. The account-wide count is
        // left to its window, so a guesser cannot have it reset by the person's own sign-ins.
        self.store.clear_login_failures(&by_address).await.map_err(OAuthError::from)?;
        let (secret, session) = self.open_session(&user, None).await?;
        Ok((secret, session, user))
    }

    /// Opens a browser session for a person who proved who they are (a password, or a provider's
    /// sign-in named in `via`), with a fresh id (UI-09); returns the cookie value and the session.
    pub async fn open_session(&self, user: &User, via: Option<&str>) -> Result<(Secret, Session), OAuthError> {
        let now = self.now();
        let secret = generate(self.rng.as_ref(), SecretKind::Session);
        let session = Session {
            hash: secret.hash(),
            user_id: user.id.clone(),
            csrf_token: random_token(self.rng.as_ref()),
            created_at: now,
            expires_at: now + self.settings.session_ttl,
        };
        self.store.insert_session(&session).await?;
        self.audit(AuditDraft {
            kind: "user.login",
            outcome: "success",
            user: Some(&user.id),
            detail: via.map(|p| format!("signed in with {p}")),
            ..Default::default()
        })
        .await;
        Ok((secret, session))
    }

    /// The session and person behind a session cookie value, if valid.
    pub async fn session(&self, cookie_value: &str) -> Result<Option<(Session, User)>, OAuthError> {
        if cookie_value.len() > 200 {
            return Ok(None);
        }
        let Some(session) = self.store.session(&SecretHash::of(cookie_value), self.now()).await? else {
            return Ok(None);
        };
        Ok(self.store.user_by_id(&session.user_id).await?.filter(|u| !u.disabled).map(|u| (session, u)))
    }

    pub async fn logout(&self, cookie_value: &str) -> Result<(), OAuthError> {
        self.store.delete_session(&SecretHash::of(cookie_value)).await?;
        Ok(())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
