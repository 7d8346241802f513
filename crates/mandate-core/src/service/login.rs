//! Signing in: password check (argon2id off the runtime, same time for unknown users), and
//! browser sessions stored only as hashes, with a fresh id at every login (UI-09).

use super::{AuditDraft, AuthServer};
use crate::error::OAuthError;
use crate::model::{Session, User};
use crate::secret::{Secret, SecretHash, SecretKind, generate, random_token};

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the username or password is wrong")]
    BadCredentials,
    #[error(transparent)]
    Server(#[from] OAuthError),
}

impl AuthServer {
    /// Checks a username and password and opens a session; returns the session cookie value.
    pub async fn login(&self, username: &str, password: &str) -> Result<(Secret, Session, User), LoginError> {
        let user = self.store.user_by_name(username).await.map_err(OAuthError::from)?;
        let hash = user.as_ref().filter(|u| !u.disabled).map(|u| u.password_hash.clone());
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
            return Err(LoginError::BadCredentials);
        };
        let now = self.now();
        let secret = generate(self.rng.as_ref(), SecretKind::Session);
        let session = Session {
            hash: secret.hash(),
            user_id: user.id.clone(),
            csrf_token: random_token(self.rng.as_ref()),
            created_at: now,
            expires_at: now + self.settings.session_ttl,
        };
        self.store.insert_session(&session).await.map_err(OAuthError::from)?;
        self.audit(AuditDraft { kind: "user.login", outcome: "success", user: Some(&user.id), ..Default::default() })
            .await;
        Ok((secret, session, user))
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
