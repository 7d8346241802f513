//! Who is signed in to mandate's pages, for faces mounted beside them that are not part of this
//! crate (the `/inspector`): the same session cookie, the same cross-site rule for posts.

use std::sync::Arc;

use axum::http::HeaderMap;
use mandate_core::AuthServer;
use mandate_core::error::OAuthError;
use mandate_core::model::User;

use crate::CookieNames;
use crate::http::{cookie, cross_site};

/// Reads the signed-in person of a request.
#[derive(Clone)]
pub struct SignedIn {
    auth: Arc<AuthServer>,
    cookies: CookieNames,
}

impl SignedIn {
    pub fn new(auth: Arc<AuthServer>) -> Self {
        let cookies = CookieNames::for_https(auth.settings.is_https());
        Self { auth, cookies }
    }

    /// The person whose browser session the request carries (a disabled person has none).
    pub async fn person(&self, headers: &HeaderMap) -> Result<Option<User>, OAuthError> {
        let Some(value) = cookie(headers, self.cookies.session) else { return Ok(None) };
        Ok(self.auth.session(&value).await?.map(|(_, user)| user))
    }

    /// True when a state-changing request must be refused as coming from another site (the rule
    /// of mandate's own forms: `Sec-Fetch-Site`, then `Origin`).
    pub fn cross_site(&self, headers: &HeaderMap) -> bool {
        cross_site(headers, &self.auth.settings.issuer)
    }

    /// mandate's public URL (its issuer).
    pub fn public_url(&self) -> &str {
        &self.auth.settings.issuer
    }
}
