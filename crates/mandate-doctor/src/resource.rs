//! The MCP server's side: the 401 and its challenge, the protected resource metadata where
//! clients look for it, and CORS for browser-based clients.

use rmcp::transport::auth::WWWAuthenticateParams;
use serde_json::{Value, json};
use url::Url;

use crate::fetch::{Answer, Net};
use crate::{Options, Report, Status, acceptable_scheme};

/// What the authorization-server checks start from.
pub(crate) struct Found {
    /// The authorization server's issuer exactly as the metadata names it.
    pub(crate) issuer: String,
    /// Scopes the 401 asked for, or the metadata lists.
    pub(crate) scopes: Vec<String>,
}

const INITIALIZE: &str = "initialize";

fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": INITIALIZE,
           "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                      "clientInfo": {"name": "mandate-doctor", "version": env!("CARGO_PKG_VERSION")}}})
}

/// RFC 9728 §3.1: the well-known suffix inserted between the host and the resource's path, and
/// the root location some clients try first or only.
pub(crate) fn metadata_locations(url: &Url) -> (Option<Url>, Url) {
    let mut root = url.clone();
    root.set_path("/.well-known/oauth-protected-resource");
    root.set_query(None);
    root.set_fragment(None);
    let path = url.path().trim_end_matches('/');
    let inserted = (!path.is_empty()).then(|| {
        let mut u = root.clone();
        u.set_path(&format!("/.well-known/oauth-protected-resource{path}"));
        u
    });
    (inserted, root)
}

pub(crate) async fn check(net: &Net<'_>, url: &Url, options: &Options, report: &mut Report) -> Option<Found> {
    if !acceptable_scheme(url, net.allow_http) {
        report.push(
            "url",
            "The server's URL",
            Status::Fail,
            format!("{url} is not https"),
            Some("MCP clients require https outside loopback; serve the MCP endpoint over TLS (or pass --allow-http for a private network)."),
        );
        return None;
    }
    let challenge = unauthenticated(net, url, report).await?;
    let (inserted, root) = metadata_locations(url);
    let from_header = challenge.as_ref().and_then(|c| c.resource_metadata_url.clone());

    // Every location a client may use, and what is there.
    let at_inserted = match &inserted {
        Some(u) => Some((u.clone(), net.get(u).await)),
        None => None,
    };
    let at_root = net.get(&root).await;
    let readable =
        |a: &Result<Answer, String>| a.as_ref().ok().filter(|a| a.status == 200).and_then(Answer::json_object);
    let mut seen = Vec::new();
    if let Some((u, a)) = &at_inserted {
        seen.push(format!("{u}: {}", outcome(a)));
    }
    seen.push(format!("{root}: {}", outcome(&at_root)));
    let inserted_ok = at_inserted.as_ref().is_some_and(|(_, a)| readable(a).is_some());
    let root_ok = readable(&at_root).is_some();
    const TITLE: &str = "Protected resource metadata where clients look";
    match (&inserted, inserted_ok, root_ok) {
        (Some(_), true, _) | (None, _, true) => report.push("prm.locations", TITLE, Status::Pass, seen.join("; "), None),
        // Clients following the specification fall back to the root location; others do not.
        (Some(u), false, true) => report.push(
            "prm.locations",
            TITLE,
            Status::Warn,
            seen.join("; "),
            Some(&format!(
                "Serve the metadata at {u} too: RFC 9728 §3.1 inserts the well-known suffix before the resource's path, and clients look there first (the root location is for a resource without a path, and not every client falls back to it)."
            )),
        ),
        (_, _, _) => report.push(
            "prm.locations",
            TITLE,
            // The challenge names it: clients that read it still find the metadata.
            if from_header.is_some() { Status::Warn } else { Status::Fail },
            seen.join("; "),
            Some(&format!(
                "Serve the metadata at {} (RFC 9728 §3.1); clients that do not read `resource_metadata` from the 401 find it nowhere else.",
                inserted.as_ref().unwrap_or(&root)
            )),
        ),
    }

    // The document a client uses: the one the challenge names, else the first location.
    let (source, document) = if let Some(u) = &from_header {
        let a = net.get(u).await;
        match readable(&a) {
            Some(m) => (u.clone(), m),
            None => {
                report.push(
                    "prm.document",
                    "The metadata the 401 names",
                    Status::Fail,
                    format!("{u}: {}", outcome(&a)),
                    Some("`resource_metadata` in the challenge must be a URL that answers 200 with the RFC 9728 JSON document."),
                );
                return None;
            }
        }
    } else if let Some(m) = at_inserted.as_ref().and_then(|(_, a)| readable(a)) {
        (inserted.clone().unwrap_or(root.clone()), m)
    } else if let Some(m) = readable(&at_root) {
        (root.clone(), m)
    } else {
        report.push(
            "prm.document",
            "Protected resource metadata",
            Status::Fail,
            "no location answered a JSON document",
            None,
        );
        return None;
    };

    let resource = document.get("resource").and_then(Value::as_str).unwrap_or_default().to_owned();
    let expected = url.as_str();
    if resource == expected {
        report.push(
            "prm.resource",
            "`resource` is the server's URL",
            Status::Pass,
            format!("{resource} (from {source})"),
            None,
        );
    } else if resource.trim_end_matches('/') == expected.trim_end_matches('/') {
        report.push(
            "prm.resource",
            "`resource` is the server's URL",
            Status::Fail,
            format!("the metadata says {resource:?}, the server is {expected:?}: they differ only by a trailing slash"),
            Some("Make them identical, byte for byte. Clients send the URL they were given as `resource` (RFC 8707) and check the metadata's `resource` against it; a trailing slash on one side makes the check, or the authorization server's audience check, fail."),
        );
    } else {
        report.push(
            "prm.resource",
            "`resource` is the server's URL",
            Status::Fail,
            if resource.is_empty() {
                format!("the metadata at {source} has no `resource`")
            } else {
                format!("the metadata says {resource:?}, the server is {expected:?}")
            },
            Some("RFC 9728 §3.3: the `resource` in the metadata must be the URL the client connected to; clients refuse metadata for another resource."),
        );
    }

    let servers: Vec<String> = document
        .get("authorization_servers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let Some(issuer) = servers.first().cloned() else {
        report.push(
            "prm.authorization_servers",
            "The metadata names an authorization server",
            Status::Fail,
            format!("{source} has no `authorization_servers`"),
            Some("List the authorization server's issuer in `authorization_servers` (the MCP specification requires at least one)."),
        );
        return None;
    };
    match Url::parse(&issuer) {
        Ok(u) if acceptable_scheme(&u, net.allow_http) => report.push(
            "prm.authorization_servers",
            "The metadata names an authorization server",
            Status::Pass,
            servers.join(", "),
            None,
        ),
        _ => {
            report.push(
                "prm.authorization_servers",
                "The metadata names an authorization server",
                Status::Fail,
                format!("{issuer:?} is not an https URL"),
                Some("The issuer must be an https URL (http only on loopback)."),
            );
            return None;
        }
    }

    let scopes_supported: Vec<String> = document
        .get("scopes_supported")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let challenged: Vec<String> = challenge
        .as_ref()
        .and_then(|c| c.scope.as_deref())
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    cors(net, url, &source, options, report).await;
    let scopes = if challenged.is_empty() { scopes_supported } else { challenged };
    Some(Found { issuer, scopes })
}

fn outcome(a: &Result<Answer, String>) -> String {
    match a {
        Ok(a) if a.status == 200 && a.json_object().is_none() => "200 but not a JSON object".to_owned(),
        Ok(a) => a.describe(),
        Err(e) => e.clone(),
    }
}

/// The request without a token: 401 with a Bearer challenge naming the metadata and the scopes.
/// `None` stops the diagnosis; `Some(None)` goes on without a challenge.
async fn unauthenticated(net: &Net<'_>, url: &Url, report: &mut Report) -> Option<Option<WWWAuthenticateParams>> {
    let req = net
        .http
        .post(url.clone())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize_body().to_string());
    let answer = match net.send(req).await {
        Ok(a) => a,
        Err(e) => {
            report.push(
                "mcp.unauthorized",
                "A request without a token gets 401",
                Status::Fail,
                format!("{url}: {e}"),
                Some("Check the URL and that the server is running and reachable from here."),
            );
            return None;
        }
    };
    if answer.status != 401 {
        let (status, fix) = if (200..300).contains(&answer.status) {
            (
                Status::Fail,
                "The server answered without authorization: nothing protects it. Put the resource-server layer (mandate-guard, or the gateway) in front of it.",
            )
        } else {
            (
                Status::Fail,
                "MCP clients start authorization only on 401 with `WWW-Authenticate: Bearer …` (MCP authorization, 2025-11-25; RFC 6750 §3).",
            )
        };
        report.push(
            "mcp.unauthorized",
            "A request without a token gets 401",
            status,
            format!("POST {url} without a token: {}", answer.describe()),
            Some(fix),
        );
        return None;
    }
    report.push("mcp.unauthorized", "A request without a token gets 401", Status::Pass, "401", None);
    let Some(header) = answer.header("www-authenticate").map(str::to_owned) else {
        report.push(
            "mcp.challenge",
            "The 401 carries a Bearer challenge",
            Status::Fail,
            "no WWW-Authenticate header",
            Some("Answer 401 with `WWW-Authenticate: Bearer resource_metadata=\"…\", scope=\"…\"` (RFC 6750 §3, RFC 9728 §5.1)."),
        );
        return Some(None);
    };
    if !header.trim_start().to_ascii_lowercase().starts_with("bearer") {
        report.push(
            "mcp.challenge",
            "The 401 carries a Bearer challenge",
            Status::Fail,
            header,
            Some("The challenge's scheme must be Bearer (RFC 6750 §3)."),
        );
        return Some(None);
    }
    report.push("mcp.challenge", "The 401 carries a Bearer challenge", Status::Pass, header.clone(), None);
    let params = WWWAuthenticateParams::parse(&header, url);
    match &params.resource_metadata_url {
        Some(u) if u.origin() == url.origin() => {
            report.push("challenge.resource_metadata", "The challenge names the metadata", Status::Pass, u.to_string(), None)
        }
        Some(u) => report.push(
            "challenge.resource_metadata",
            "The challenge names the metadata",
            Status::Warn,
            format!("{u} is on another origin than {url}"),
            Some("Serve the metadata on the MCP server's own origin: careful clients (mandate's among them) refuse metadata from another origin, which could send people to sign in elsewhere."),
        ),
        None => report.push(
            "challenge.resource_metadata",
            "The challenge names the metadata",
            Status::Warn,
            "no resource_metadata parameter",
            Some("Add `resource_metadata=\"<metadata URL>\"` to the challenge (RFC 9728 §5.1); clients then need not guess the well-known location."),
        ),
    }
    match params.scope.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => report.push("challenge.scope", "The challenge says which scopes to ask for", Status::Pass, s.to_owned(), None),
        None => report.push(
            "challenge.scope",
            "The challenge says which scopes to ask for",
            Status::Warn,
            "no scope parameter",
            Some("Add `scope=\"…\"` with the scopes a client needs to start (MCP authorization, scope selection): without it clients ask for every scope in scopes_supported, or none."),
        ),
    }
    Some(Some(params))
}

/// A browser-based client (the MCP Inspector, a web agent) must read the metadata and call the
/// endpoint across origins.
async fn cors(net: &Net<'_>, url: &Url, metadata: &Url, options: &Options, report: &mut Report) {
    let origin = options.browser_origin.as_deref().unwrap_or(crate::DEFAULT_BROWSER_ORIGIN);
    let meta = net.send(net.http.get(metadata.clone()).header("origin", origin)).await;
    let meta_ok = meta.as_ref().is_ok_and(|a| allows(a, origin));
    let preflight = net
        .send(
            net.http
                .request(reqwest::Method::OPTIONS, url.clone())
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "authorization, content-type, mcp-protocol-version"),
        )
        .await;
    let preflight_ok = preflight.as_ref().is_ok_and(|a| (200..300).contains(&a.status) && allows(a, origin));
    let exposes = preflight
        .as_ref()
        .ok()
        .and_then(|a| a.header("access-control-expose-headers"))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let saw = format!(
        "metadata from {origin}: {}; preflight of {url}: {}",
        if meta_ok { "readable" } else { "not readable" },
        match &preflight {
            Ok(a) if preflight_ok =>
                format!("allowed (exposes: {})", if exposes.is_empty() { "nothing" } else { &exposes }),
            Ok(a) => format!("no CORS permission for that origin (status {})", a.status),
            Err(e) => e.clone(),
        }
    );
    if meta_ok && preflight_ok {
        report.push("cors", "Browser-based clients can connect", Status::Pass, saw, None);
    } else {
        report.push(
            "cors",
            "Browser-based clients can connect",
            Status::Warn,
            saw,
            Some("Only browser-based clients are affected. Answer the metadata with `Access-Control-Allow-Origin: *`, and allow the origins of the browser clients you support on the MCP endpoint, exposing `WWW-Authenticate` and `Mcp-Session-Id` (mandate: `mcp_allowed_origins`)."),
        );
    }
}

fn allows(a: &Answer, origin: &str) -> bool {
    a.header("access-control-allow-origin").is_some_and(|v| v == "*" || v == origin)
}
