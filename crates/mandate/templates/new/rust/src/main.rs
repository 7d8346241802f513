//! __NAME__: an MCP server whose tools declare, once, the access they need (`notes.rs`).
//!
//! ```text
//! mandate dev -- cargo run -q                       # stdio, behind mandate's gateway
//! MANDATE_ISSUER=http://127.0.0.1:8080 cargo run -q -- --http 127.0.0.1:8000
//!                                                   # Streamable HTTP, mandate-guard in front
//! cargo run -q -- --print-resource http://127.0.0.1:8000/mcp   # its entry for mandate.toml
//! ```

mod access;
mod notes;

use std::sync::Arc;

use anyhow::{Context, bail};
use mandate_core::clock::SystemClock;
use mandate_guard::{Guard, GuardConfig, JwksKeySource, TokenCheck, Validator};
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpServerConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::tower::StreamableHttpService;

/// The resource's name: the scope prefix (`__NAME__.read`, …).
pub const NAME: &str = "__NAME__";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => {
            let running = notes::Notes::default().serve(rmcp::transport::stdio()).await?;
            running.waiting().await?;
        }
        ["--http", addr] => {
            let issuer = std::env::var("MANDATE_ISSUER").context("MANDATE_ISSUER: mandate's public URL")?;
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
            let resource = format!("http://{}/mcp", listener.local_addr()?);
            eprintln!("{NAME} is serving {resource} (tokens from {issuer})");
            axum::serve(listener, app(issuer.trim_end_matches('/'), &resource)?).await?;
        }
        ["--print-resource", uri] => print!("{}", access::resource_toml(&notes::tools(), NAME, uri)),
        _ => bail!("usage: {NAME} [--http ADDR | --print-resource URI]"),
    }
    Ok(())
}

/// The MCP endpoint at `/mcp` behind mandate-guard: tokens from `issuer` for `resource`, each
/// tool's scope enforced, RFC 9728 metadata published.
pub fn app(issuer: &str, resource: &str) -> anyhow::Result<axum::Router> {
    let keys = Arc::new(JwksKeySource::new(format!("{issuer}/jwks.json"))?);
    let access = access::access(&notes::tools(), NAME);
    let mut config = GuardConfig::new(resource, issuer);
    config.challenge_scopes = vec![access.scopes[0].clone()];
    config.scopes_supported = access.scopes;
    config.tools = access.tools;
    let host = url_host(resource);
    let validator = Validator::new(issuer, resource, keys, Arc::new(SystemClock));
    let guard = Arc::new(Guard::new(config, TokenCheck::Jwt(validator)));
    let service = StreamableHttpService::new(
        || Ok(notes::Notes::default()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_allowed_hosts([host]),
    );
    Ok(guard.protect(axum::Router::new().nest_service("/mcp", service)).merge(guard.metadata_router()))
}

/// `host:port` of an http(s) URL.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt as _;

    #[test]
    fn every_tool_declares_the_access_it_needs() {
        let found: Vec<(String, String)> =
            notes::tools().iter().map(|t| (t.name.to_string(), access::scope_of(t, NAME))).collect();
        let want = [("add_note", "write"), ("delete_note", "destructive"), ("list_notes", "read")];
        let want: Vec<(String, String)> = want.iter().map(|(t, c)| ((*t).to_owned(), format!("{NAME}.{c}"))).collect();
        assert_eq!(found, want);
        for t in notes::tools() {
            let declared = t.annotations.as_ref().and_then(|a| a.read_only_hint);
            assert!(declared.is_some(), "{}: say whether it only reads", t.name);
        }
    }

    #[tokio::test]
    async fn without_a_token_the_guard_answers_401_naming_its_metadata() {
        let app = app("http://127.0.0.1:8080", "http://127.0.0.1:8000/mcp").unwrap();
        let request = axum::http::Request::post("/mcp")
            .header("host", "127.0.0.1:8000")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(axum::body::Body::from(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 401);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("oauth-protected-resource/mcp"), "{challenge}");
        assert!(challenge.contains(&format!("scope=\"{NAME}.read\"")), "{challenge}");
        let metadata = axum::http::Request::get("/.well-known/oauth-protected-resource/mcp")
            .header("host", "127.0.0.1:8000")
            .body(axum::body::Body::empty())
            .unwrap();
        let body = app.oneshot(metadata).await.unwrap().into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(r#""authorization_servers":["http://127.0.0.1:8080"]"#), "{body}");
    }

    #[test]
    fn the_resource_entry_lists_each_tool_under_its_scope() {
        let toml = access::resource_toml(&notes::tools(), NAME, "http://127.0.0.1:8000/mcp");
        assert!(toml.contains(&format!("name = \"{NAME}.destructive\"\ndescription = \"Delete notes (cannot be undone)\"\ntools = [\"delete_note\"]\nirreversible = true")), "{toml}");
    }
}
