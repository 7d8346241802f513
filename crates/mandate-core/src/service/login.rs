//! Signing in: password check (argon2id off the runtime, same time for unknown users), and
//! browser sessions stored only as hashes, with a fresh id at every login (UI-09).

use super::{AuditDraft, AuthServer};
use crate::error::OAuthError;
use crate::model::{Session, User};
use crate::secret::{Secret, SecretHash, SecretKind, generate, random_token};

/// Failures within this window count towards the per-account lock.
const FAILURE_WINDOW: i64 = 15 * 60;
/// From this many failures in the window, the account is locked...
const LOCK_AFTER: i64 = 5;
/// ...for a minute, doubling with each further failure, up to a quarter of an hour.
const FIRST_LOCK: i64 = 60;
const LONGEST_LOCK: i64 = 15 * 60;

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
    /// `client` (the client's address) scopes the lock, so that failures from one place cannot
    /// lock the person out everywhere (UI-13); the per-address rate limit bounds the rest.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: &str,
    ) -> Result<(Secret, Session, User), LoginError> {
        let account = format!("{}\u{1f}{}", truncate(username), truncate(client));
        let now = self.now();
        if let Some(until) = self.store.login_locked_until(&account).await.map_err(OAuthError::from)?
            && until > now
        {
            self.audit(AuditDraft {
                kind: "user.login",
                outcome: "locked",
                detail: Some(format!("sign-in refused while {:?} is locked from {client}", truncate(username))),
                ..Default::default()
            })
            .await;
            return Err(LoginError::Locked { until });
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
            let failures =
                self.store.record_login_failure(&account, now, now - FAILURE_WINDOW).await.map_err(OAuthError::from)?;
            if failures >= LOCK_AFTER {
                let doublings = u32::try_from((failures - LOCK_AFTER).min(10)).unwrap_or(10);
                let until = now + (FIRST_LOCK << doublings).min(LONGEST_LOCK);
                self.store.lock_login(&account, until).await.map_err(OAuthError::from)?;
                return Err(LoginError::Locked { until });
            }
            return Err(LoginError::BadCredentials);
        };
        self.store.clear_login_failures(&account).await.map_err(OAuthError::from)?;
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
