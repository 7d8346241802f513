//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP AS6, AS7):
//! a `client_id` that is an https URL names a JSON document describing the client. Fetching is
//! the HTTP layer's job (behind an SSRF guard); the rules for the URL and the document live here.

use async_trait::async_trait;
use serde_json::Value;

use crate::clock::UnixTime;
use crate::model::{AuthMethod, Client, ClientKind};
use crate::redirect;
use crate::scope::ResourceCatalog;
use crate::ssrf::FetchPolicy;

/// Largest document accepted (CIMD §6.6 recommends 5 KB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// Cache bounds for a fetched document, in seconds.
pub const MIN_CACHE_SECONDS: i64 = 60;
pub const MAX_CACHE_SECONDS: i64 = 24 * 3600;
pub const DEFAULT_CACHE_SECONDS: i64 = 300;

/// A fetched document and how long it may be cached (`None`: not at all).
#[derive(Debug, Clone)]
pub struct FetchedDocument {
    pub body: Vec<u8>,
    /// From `Cache-Control`: `Some(seconds)` for max-age, `None` for no-store/no-cache.
    pub max_age: Option<i64>,
    pub cacheable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("the client metadata URL resolves to an address that may not be fetched")]
    ForbiddenAddress,
    #[error("the client metadata URL is not allowed: {0}")]
    BadUrl(&'static str),
    #[error("the client metadata document could not be fetched: {0}")]
    Transport(String),
    #[error("the client metadata server answered HTTP {0}")]
    Status(u16),
    #[error("the client metadata document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("too many client metadata fetches in progress; retry shortly")]
    Busy,
    #[error("the client metadata document is invalid: {0}")]
    Invalid(String),
}

/// Fetches a client metadata document. Implementations must refuse forbidden addresses before
/// connecting, never follow redirects, cap size and time.
#[async_trait]
pub trait ClientDocumentFetcher: Send + Sync {
    async fn fetch(&self, url: &str) -> Result<FetchedDocument, FetchError>;
}

/// Is this `client_id` a metadata-document URL (as opposed to a registered id)?
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// CIMD §3: https, a path, no dot segments, no fragment, no user information.
pub fn validate_document_url(raw: &str, policy: FetchPolicy) -> Result<url::Url, FetchError> {
    if raw.len() > 2000 {
        return Err(FetchError::BadUrl("too long"));
    }
    if raw.contains('#') {
        return Err(FetchError::BadUrl("it must not contain a fragment"));
    }
    let url = url::Url::parse(raw).map_err(|_| FetchError::BadUrl("not an absolute URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        _ => return Err(FetchError::BadUrl("it must use https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::BadUrl("it must not contain user information"));
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err(FetchError::BadUrl("it must have a path"));
    }
    // Dot segments are resolved by the parser, so compare against the raw text.
    if url.as_str() != raw {
        return Err(FetchError::BadUrl("it must be in normal form (no dot segments)"));
    }
    Ok(url)
}

/// Turns a fetched document into a client; the document's `client_id` must equal the URL exactly.
pub fn parse_document(
    url: &str,
    doc: &FetchedDocument,
    resources: &ResourceCatalog,
    now: UnixTime,
) -> Result<Client, FetchError> {
    let invalid = |why: &str| FetchError::Invalid(why.to_owned());
    if doc.body.len() > MAX_DOCUMENT_BYTES {
        return Err(FetchError::TooLarge);
    }
    let v: Value =
        crate::json::parse_strict(&doc.body).map_err(|_| invalid("not JSON (each member may appear once)"))?;
    let obj = v.as_object().ok_or_else(|| invalid("not a JSON object"))?;
    if obj.get("client_id").and_then(Value::as_str) != Some(url) {
        return Err(invalid("its client_id does not equal the URL it was fetched from"));
    }
    let name = obj
        .get("client_name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty() && n.chars().count() <= 200)
        .ok_or_else(|| invalid("client_name is missing or too long"))?;
    if let Some(problem) = crate::text::display_name_problem(name) {
        return Err(invalid(&format!("client_name {problem}")));
    }
    let uris = obj
        .get("redirect_uris")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty() && a.len() <= 20)
        .ok_or_else(|| invalid("redirect_uris is missing"))?;
    let mut redirect_uris = Vec::with_capacity(uris.len());
    for u in uris {
        let s = u.as_str().ok_or_else(|| invalid("redirect_uris must be strings"))?;
        redirect::validate_for_registration(s).map_err(|e| invalid(&e.to_string()))?;
        redirect_uris.push(s.to_owned());
    }
    match obj.get("token_endpoint_auth_method").and_then(Value::as_str) {
        None | Some("none") => {}
        Some(_) => return Err(invalid("only public clients (token_endpoint_auth_method none) are supported")),
    }
    if obj.contains_key("client_secret") || obj.contains_key("client_secret_expires_at") {
        return Err(invalid("a metadata document must not carry a client secret"));
    }
    let allows_refresh = obj
        .get("grant_types")
        .and_then(Value::as_array)
        .is_some_and(|g| g.iter().any(|t| t.as_str() == Some("refresh_token")));
    let allowed_scope =
        obj.get("scope").and_then(Value::as_str).and_then(|s| super::registration::known_scopes(s, resources));
    let ttl = if doc.cacheable {
        doc.max_age.unwrap_or(DEFAULT_CACHE_SECONDS).clamp(MIN_CACHE_SECONDS, MAX_CACHE_SECONDS)
    } else {
        0
    };
    Ok(Client {
        id: url.to_owned(),
        kind: ClientKind::MetadataDocument,
        name: name.trim().to_owned(),
        secret_hash: None,
        auth_method: AuthMethod::None,
        redirect_uris,
        allows_refresh,
        allowed_scope,
        metadata: v.clone(),
        created_at: now,
        refresh_after: Some(now + ttl),
        served_resources: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(body: &str) -> FetchedDocument {
        FetchedDocument { body: body.as_bytes().to_vec(), max_age: Some(600), cacheable: true }
    }

    #[test]
    fn url_rules_ss_02() {
        let p = FetchPolicy::default();
        assert!(validate_document_url("https://cimd.test/c.json", p).is_ok());
        for bad in [
            "http://cimd.test/c.json",
            "https://cimd.test",
            "https://cimd.test/",
            "https://cimd.test/a/../c.json",
            "https://cimd.test/c.json#x",
            "https://u:p@cimd.test/c.json",
        ] {
            assert!(validate_document_url(bad, p).is_err(), "{bad}");
        }
    }

    #[test]
    fn document_rules_ss_03_ss_07() {
        let cat = ResourceCatalog::demo("https://as.test").unwrap();
        let url = "https://cimd.test/c.json";
        let good = r#"{"client_id":"https://cimd.test/c.json","client_name":"Claude","redirect_uris":["https://claude.ai/cb"],"grant_types":["authorization_code","refresh_token"]}"#;
        let c = parse_document(url, &doc(good), &cat, 0).unwrap();
        assert_eq!(c.name, "Claude");
        assert!(c.allows_refresh);
        assert_eq!(c.refresh_after, Some(600));
        for bad in [
            r#"{"client_id":"https://cimd.test/c.json/","client_name":"x","redirect_uris":["https://a.test/cb"]}"#,
            r#"{"client_id":"https://other.test/c.json","client_name":"x","redirect_uris":["https://a.test/cb"]}"#,
            r#"{"client_id":"https://cimd.test/c.json","redirect_uris":["https://a.test/cb"]}"#,
            r#"{"client_id":"https://cimd.test/c.json","client_name":"x","redirect_uris":["javascript:alert(1)"]}"#,
            r#"{"client_id":"https://cimd.test/c.json","client_name":"x","redirect_uris":["https://a.test/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#,
            r#"{"client_id":"https://cimd.test/c.json","client_name":"x","redirect_uris":["https://a.test/cb"],"client_secret":"s"}"#,
            "[]",
        ] {
            assert!(parse_document(url, &doc(bad), &cat, 0).is_err(), "{bad}");
        }
    }
}
