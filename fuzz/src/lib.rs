//! Shared pieces of the fuzz targets: input framing, a runtime for the async entry points, the
//! fixed signing key of the JWT target, and an in-memory network for the client's discovery.
//!
//! Inputs are plain bytes with line framing (the first line is one field, the rest another), so
//! the seed corpora under `corpus/<target>/` are the very values the tests use, readable as text.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use mandate_client::NetPolicy;
use mandate_client::net::check_url;
use rmcp::transport::auth::{
    AuthorizationManager, AuthorizationMetadata, AuthorizationMetadataSource, OAuthHttpClient, OAuthHttpClientError,
    OAuthHttpClientFuture, OAuthHttpRequest,
};

/// Splits at the first `\n`: `(first line, rest)`; without one, `(all, empty)`.
pub fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Runs a future to completion on one shared current-thread runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("runtime: {e}"))
    })
    .block_on(f)
}

/// The Ed25519 key the JWT target signs structured tokens with (generated for the fuzzer only).
pub const JWT_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIOF1zfqufQkWQjKWF+TEBSUEQHYgqb5kOAebCTdHcpFA
-----END PRIVATE KEY-----
";
pub const JWT_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAREC9GwCXG71Nf5xbWJ2yS1NgGRBQo6drEaT5+CYOrOk=
-----END PUBLIC KEY-----
";
pub const JWT_KID: &str = "fuzz-key-1";
pub const ISSUER: &str = "https://auth.example.com";
pub const RESOURCE: &str = "https://mcp.example.com/mcp";
/// The fixed "now" of the targets that read a clock.
pub const NOW: i64 = 1_800_000_000;

/// The MCP server the client discovers.
pub const SERVER: &str = "https://mcp.example.com/mcp";
/// A protected resource metadata document naming [`ISSUER`] (the tests' shape).
pub const GOOD_PRM: &str = r#"{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://auth.example.com"],"scopes_supported":["todos.read","todos.write"]}"#;
/// Authorization server metadata as mandate publishes it.
pub const GOOD_ASM: &str = r#"{"issuer":"https://auth.example.com","authorization_endpoint":"https://auth.example.com/authorize","token_endpoint":"https://auth.example.com/token","registration_endpoint":"https://auth.example.com/register","code_challenge_methods_supported":["S256"],"response_types_supported":["code"],"scopes_supported":["todos.read","todos.write"],"authorization_response_iss_parameter_supported":true,"client_id_metadata_document_supported":true}"#;
/// The guard's 401 challenge for [`SERVER`].
pub const GOOD_CHALLENGE: &str = r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="todos.read""#;

/// An in-memory network for rmcp's discovery: the MCP endpoint answers 401 with `challenge`,
/// every protected-resource well-known URL answers `prm`, every authorization-server one `asm`.
/// Like mandate's `GuardedOAuthHttp`, each URL must first pass [`check_url`].
pub struct FakeNetwork {
    pub challenge: String,
    pub prm: Vec<u8>,
    pub asm: Vec<u8>,
    /// Every URL fetched, in order.
    pub fetched: Mutex<Vec<String>>,
}

impl FakeNetwork {
    async fn respond(&self, url: String) -> Result<http::Response<Vec<u8>>, OAuthHttpClientError> {
        if let Ok(mut f) = self.fetched.lock() {
            f.push(url.clone());
        }
        check_url(&url, "fetching", NetPolicy::default()).map_err(|e| e.to_string())?;
        let path = url::Url::parse(&url).map(|u| u.path().to_owned()).unwrap_or_default();
        let json = |body: &[u8]| {
            http::Response::builder().status(200).header("content-type", "application/json").body(body.to_vec())
        };
        let response = if path.starts_with("/.well-known/oauth-protected-resource") {
            json(&self.prm)
        } else if path.starts_with("/.well-known/oauth-authorization-server")
            || path.contains("/.well-known/openid-configuration")
        {
            json(&self.asm)
        } else {
            match http::HeaderValue::from_str(&self.challenge) {
                Ok(v) => http::Response::builder().status(401).header("www-authenticate", v).body(Vec::new()),
                Err(_) => http::Response::builder().status(401).body(Vec::new()),
            }
        };
        response.map_err(|e| e.to_string().into())
    }
}

impl OAuthHttpClient for FakeNetwork {
    fn execute(&self, request: OAuthHttpRequest) -> OAuthHttpClientFuture<'_> {
        Box::pin(self.respond(request.request.uri().to_string()))
    }
}

/// What the client's discovery made of the network: the metadata it would use, or why not.
pub enum Discovery {
    /// Metadata accepted by rmcp and by mandate-client's own checks.
    Accepted(AuthorizationMetadata),
    Refused,
}

/// The discovery of `mandate_client::Connection` (`discover` then `check_metadata`), against a
/// [`FakeNetwork`].
pub fn discover(net: Arc<FakeNetwork>) -> Discovery {
    block_on(async move {
        let Ok(manager) = AuthorizationManager::new_with_oauth_http_client(SERVER, net.clone()).await else {
            return Discovery::Refused;
        };
        let Ok(resolution) = manager.resolve_metadata_from_challenge(Some(net.challenge.as_str())).await else {
            return Discovery::Refused;
        };
        if resolution.source == AuthorizationMetadataSource::LegacyEndpointFallback {
            return Discovery::Refused;
        }
        match mandate_client::connection::check_authorization_metadata(&resolution.metadata, NetPolicy::default()) {
            Ok(()) => Discovery::Accepted(resolution.metadata),
            Err(_) => Discovery::Refused,
        }
    })
}

/// The properties of accepted metadata: PKCE S256, and every endpoint an https URL with a host
/// (the default policy allows no loopback), with no user information.
pub fn assert_metadata_is_safe(m: &AuthorizationMetadata) {
    assert!(m.code_challenge_methods_supported.as_ref().is_some_and(|v| v.iter().any(|x| x == "S256")));
    let mut endpoints = vec![&m.authorization_endpoint, &m.token_endpoint];
    endpoints.extend(m.registration_endpoint.as_ref());
    for e in endpoints {
        let u = url::Url::parse(e).unwrap_or_else(|_| panic!("accepted endpoint is no URL: {e:?}"));
        assert_eq!(u.scheme(), "https", "{e:?}");
        assert!(u.host_str().is_some_and(|h| !h.is_empty()), "{e:?}");
        assert!(u.username().is_empty() && u.password().is_none(), "{e:?}");
    }
}
