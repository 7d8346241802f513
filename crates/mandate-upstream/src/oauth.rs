//! The provider's token, revocation and userinfo endpoints, as an OAuth client: the code
//! exchange (PKCE verifier, `redirect_uri`, RFC 8707 `resource`), the refresh grant, RFC 7009
//! revocation. No token is ever put in an error or a log line.

use std::time::Duration;

use serde::Deserialize;

use crate::UpstreamError;
use crate::provider::{ClientAuth, ProviderSpec};

/// The longest any provider call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A token response (RFC 6749 §5.1), with the OpenID ID token when there is one.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<serde_json::Value>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
}

impl TokenResponse {
    /// `expires_in` as seconds (some providers send it as a string).
    pub fn lifetime(&self) -> Option<i64> {
        match self.expires_in.as_ref()? {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .filter(|s| *s > 0)
        // No provider means more than a year; a larger number would only overflow.
        .map(|s| s.min(366 * 24 * 3600))
    }
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse").field("expires_in", &self.expires_in).field("scope", &self.scope).finish()
    }
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

/// A token endpoint request with the client's authentication; the provider's answer or its
/// OAuth error code.
async fn token_request(
    http: &reqwest::Client,
    spec: &ProviderSpec,
    endpoint: &str,
    mut form: Vec<(&str, String)>,
) -> Result<TokenResponse, UpstreamError> {
    let mut req = http.post(endpoint).header("accept", "application/json").timeout(CALL_TIMEOUT);
    req = authenticate(req, spec, &mut form);
    let resp = req.form(&form).send().await.map_err(|e| unavailable(spec, "token endpoint", &e))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| unavailable(spec, "token endpoint", &e))?;
    if status.is_success() {
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            UpstreamError::Unavailable(format!(
                "{}: the token endpoint answered something that is not a token",
                spec.name
            ))
        })?;
        if let Some(t) = &parsed.token_type
            && !t.eq_ignore_ascii_case("bearer")
        {
            return Err(UpstreamError::Unavailable(format!("{}: token type {t:?} is not Bearer", spec.name)));
        }
        return Ok(parsed);
    }
    match serde_json::from_slice::<ErrorResponse>(&body) {
        Ok(e) => Err(UpstreamError::Refused { provider: spec.name.clone(), error: sanitize(&e.error) }),
        Err(_) => {
            Err(UpstreamError::Unavailable(format!("{}: token endpoint answered HTTP {}", spec.name, status.as_u16())))
        }
    }
}

fn authenticate(
    req: reqwest::RequestBuilder,
    spec: &ProviderSpec,
    form: &mut Vec<(&str, String)>,
) -> reqwest::RequestBuilder {
    match (spec.client_auth, &spec.client_secret) {
        (ClientAuth::ClientSecretBasic, Some(secret)) => {
            // RFC 6749 §2.3.1: each part form-encoded before Basic.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            req.basic_auth(enc(&spec.client_id), Some(enc(secret)))
        }
        (ClientAuth::ClientSecretPost, Some(secret)) => {
            form.push(("client_id", spec.client_id.clone()));
            form.push(("client_secret", secret.clone()));
            req
        }
        _ => {
            form.push(("client_id", spec.client_id.clone()));
            req
        }
    }
}

/// The code exchange.
pub async fn exchange_code(
    http: &reqwest::Client,
    spec: &ProviderSpec,
    endpoint: &str,
    code: &str,
    verifier: &str,
) -> Result<TokenResponse, UpstreamError> {
    let mut form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.to_owned()),
        ("redirect_uri", spec.redirect_uri.clone()),
        ("code_verifier", verifier.to_owned()),
    ];
    if let Some(r) = &spec.resource {
        form.push(("resource", r.clone()));
    }
    token_request(http, spec, endpoint, form).await
}

/// The refresh grant.
pub async fn refresh(
    http: &reqwest::Client,
    spec: &ProviderSpec,
    endpoint: &str,
    refresh_token: &str,
) -> Result<TokenResponse, UpstreamError> {
    let mut form = vec![("grant_type", "refresh_token".to_owned()), ("refresh_token", refresh_token.to_owned())];
    if let Some(r) = &spec.resource {
        form.push(("resource", r.clone()));
    }
    token_request(http, spec, endpoint, form).await
}

/// RFC 7009 revocation of one token.
pub async fn revoke(
    http: &reqwest::Client,
    spec: &ProviderSpec,
    endpoint: &str,
    token: &str,
    hint: &str,
) -> Result<(), UpstreamError> {
    let mut form = vec![("token", token.to_owned()), ("token_type_hint", hint.to_owned())];
    let req = authenticate(http.post(endpoint).timeout(CALL_TIMEOUT), spec, &mut form);
    let resp = req.form(&form).send().await.map_err(|e| unavailable(spec, "revocation endpoint", &e))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(UpstreamError::Unavailable(format!(
            "{}: revocation endpoint answered HTTP {}",
            spec.name,
            resp.status().as_u16()
        )))
    }
}

/// The userinfo document (for providers without ID tokens).
pub async fn userinfo(
    http: &reqwest::Client,
    spec: &ProviderSpec,
    endpoint: &str,
    access_token: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, UpstreamError> {
    let resp = http
        .get(endpoint)
        .bearer_auth(access_token)
        .header("accept", "application/json")
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| unavailable(spec, "userinfo endpoint", &e))?;
    if !resp.status().is_success() {
        return Err(UpstreamError::Unavailable(format!(
            "{}: userinfo answered HTTP {}",
            spec.name,
            resp.status().as_u16()
        )));
    }
    resp.json().await.map_err(|_| UpstreamError::Unavailable(format!("{}: userinfo is not a JSON object", spec.name)))
}

/// A transport failure, described without the request (whose body holds secrets).
fn unavailable(spec: &ProviderSpec, what: &str, e: &reqwest::Error) -> UpstreamError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "unreachable"
    } else {
        "failed"
    };
    UpstreamError::Unavailable(format!("{}: {what} {kind}", spec.name))
}

/// An error code from a provider, kept to what RFC 6749 allows in one (and short).
pub(crate) fn sanitize(code: &str) -> String {
    code.chars().filter(|c| matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetime(v: serde_json::Value) -> Option<i64> {
        let r: TokenResponse =
            serde_json::from_value(serde_json::json!({"access_token": "t", "expires_in": v})).ok()?;
        r.lifetime()
    }

    #[test]
    fn lifetimes_are_read_as_numbers_or_strings_and_clamped() {
        assert_eq!(lifetime(serde_json::json!(3600)), Some(3600));
        assert_eq!(lifetime(serde_json::json!("60")), Some(60));
        assert_eq!(lifetime(serde_json::json!(0)), None);
        assert_eq!(lifetime(serde_json::json!(-5)), None);
        assert_eq!(lifetime(serde_json::json!(i64::MAX)), Some(366 * 24 * 3600), "no overflow later");
        assert_eq!(lifetime(serde_json::json!("soon")), None);
    }

    #[test]
    fn provider_error_codes_keep_only_what_rfc_6749_allows() {
        assert_eq!(sanitize("invalid_grant"), "invalid_grant");
        assert_eq!(sanitize("bad\"code\\\n<script>"), "badcode<script>");
        assert_eq!(sanitize(&"x".repeat(200)).len(), 64);
    }
}
