//! Errors. [`OAuthError`] is the one protocol error type: every endpoint renders it the same way
//! (RFC 6749 §5.2, RFC 6750 §3, RFC 7591 §3.2.2, RFC 8707). [`StoreError`] is what storage
//! reports; it becomes `server_error` (or `temporarily_unavailable`) at the protocol edge, with
//! the detail logged and never sent to the client.

use std::borrow::Cow;

/// The registered OAuth error codes mandate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    InvalidRedirectUri,
    InvalidClientMetadata,
    InvalidToken,
    InsufficientScope,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status this code is answered with when it is not a redirect.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => 401,
            ErrorCode::InsufficientScope => 403,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

/// An OAuth protocol error: a code and a short, safe, ASCII description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", code.as_str(), description)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    /// The client tried HTTP Basic authentication: a 401 must carry `WWW-Authenticate: Basic`.
    pub basic_auth_attempted: bool,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self { code, description: sanitize(description.into()), basic_auth_attempted: false }
    }
    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    pub fn invalid_target(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidTarget, d)
    }
    pub fn unauthorized_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, d)
    }
    pub fn server_error() -> Self {
        Self::new(ErrorCode::ServerError, "the server could not complete the request")
    }
    pub fn unavailable() -> Self {
        Self::new(ErrorCode::TemporarilyUnavailable, "the service is temporarily unavailable; retry later")
    }
    pub fn with_basic_auth(mut self, attempted: bool) -> Self {
        self.basic_auth_attempted = attempted;
        self
    }
    pub fn status(&self) -> u16 {
        self.code.http_status()
    }
}

/// RFC 6749 §5.2: `error_description` is limited to %x20-21 / %x23-5B / %x5D-7E. Anything else
/// (quotes, backslashes, non-ASCII, control characters) is replaced, so no input is echoed raw.
fn sanitize(d: Cow<'static, str>) -> Cow<'static, str> {
    let ok = |c: char| matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e');
    if d.chars().all(ok) { d } else { Cow::Owned(d.chars().map(|c| if ok(c) { c } else { '?' }).collect()) }
}

/// What storage can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (e.g. a username that exists).
    #[error("already exists: {0}")]
    Conflict(String),
    /// The database cannot be reached right now.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else the backend reported.
    #[error("database error: {0}")]
    Backend(String),
    /// The database refused a value (e.g. a NUL byte in text on PostgreSQL).
    #[error("value refused by the database: {0}")]
    InvalidInput(String),
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                tracing::error!(%detail, "database unavailable");
                OAuthError::unavailable()
            }
            StoreError::InvalidInput(detail) => {
                tracing::warn!(%detail, "input refused by the database");
                OAuthError::invalid_request("the request contains characters that cannot be stored")
            }
            other => {
                tracing::error!(error = %other, "storage failure");
                OAuthError::server_error()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_never_carry_unsafe_characters_tk_11() {
        let e = OAuthError::invalid_request("bad code \"<script>\" é\n");
        assert_eq!(e.description, "bad code ?<script>? ??");
    }

    #[test]
    fn statuses_follow_rfc_6749() {
        assert_eq!(ErrorCode::InvalidClient.http_status(), 401);
        assert_eq!(ErrorCode::InvalidGrant.http_status(), 400);
        assert_eq!(ErrorCode::InsufficientScope.http_status(), 403);
        assert_eq!(ErrorCode::TemporarilyUnavailable.http_status(), 503);
    }
}
