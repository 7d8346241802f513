//! `--login`: the doctor signs in as a client would (discovery, registration, PKCE; the person
//! consents in the browser), then reads the access token it got: `iss`, `aud`, `scope` and
//! lifetime (RFC 9068), and checks that the server accepts it. With a tool named, it calls that
//! tool with a token that lacks its scope and checks the 403 challenge names the scope (MCP RS11).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use mandate_client::{ConnectOptions, Connection, CredentialVault, LoginMode, NetPolicy};
use serde_json::{Value, json};
use url::Url;

use crate::fetch::Net;
use crate::resource::Found;
use crate::{Report, Status};

/// How `--login` signs in.
#[derive(Clone, Debug)]
pub struct Login {
    /// Open the system browser (else print the URL for the person to open).
    pub open_browser: bool,
    /// Scopes to ask for instead of what the challenge names.
    pub scope: Option<String>,
    /// How long the person has to sign in and consent.
    pub timeout: Duration,
    /// A tool the token was not granted (its scope left out): it is called for real, and must be
    /// refused with `403 insufficient_scope` naming the scope.
    pub call_without_scope: Option<String>,
}

/// Access tokens living longer than this are called out (RFC 9700 §2.2.2: short-lived).
const LONG_LIVED: u64 = 3600;

pub(crate) async fn check(
    net: &Net<'_>,
    url: &Url,
    found: &Found,
    metadata: Option<&serde_json::Map<String, Value>>,
    login: &Login,
    report: &mut Report,
) {
    let mut options = ConnectOptions::new(url.as_str());
    options.client_name = "mandate doctor".into();
    options.scope = login.scope.clone();
    options.login = if login.open_browser { LoginMode::Browser } else { LoginMode::NoBrowser };
    if url.scheme() == "http" && !crate::is_loopback(url) {
        // The client signs in over https, or plain http on loopback only: never off it.
        return report.push(
            "login",
            "Sign in and consent",
            Status::Fail,
            "not tried: a sign-in sends credentials, so it needs https (or plain http on loopback)",
            Some("run the doctor against the https URL, or from the server's own machine on loopback"),
        );
    }
    options.policy = NetPolicy { allow_loopback_http: crate::is_loopback(url) };
    options.login_timeout = login.timeout;
    // Nothing is kept: a fresh registration and a token held in memory only.
    let vault = Arc::new(CredentialVault::in_memory());
    let connection = match Connection::new(options, vault.clone()) {
        Ok(c) => c,
        Err(e) => return report.push("login", "Sign in and consent", Status::Fail, e.to_string(), None),
    };
    let token = match connection.login().await {
        Ok(()) => match connection.access_token().await {
            Ok(Some(t)) => t,
            Ok(None) => return report.push("login", "Sign in and consent", Status::Fail, "no access token", None),
            Err(e) => return report.push("login", "Sign in and consent", Status::Fail, e.to_string(), None),
        },
        Err(e) => {
            return report.push(
                "login",
                "Sign in and consent",
                Status::Fail,
                e.to_string(),
                Some("the checks above name what a client needs; a failure here with none above is the authorization server's (its log says why)"),
            );
        }
    };
    report.push("login", "Sign in and consent", Status::Pass, format!("signed in at {}", found.issuer), None);
    let resource = mandate_client::connection::canonical_resource(url);
    let claims = claims_of(&token);
    let granted: Option<Vec<String>> = claims.as_ref().map(|(_, c)| {
        c["scope"].as_str().or_else(|| c["scp"].as_str()).unwrap_or("").split_whitespace().map(str::to_owned).collect()
    });
    match claims {
        Some((header, claims)) => read_claims(&header, &claims, &found.issuer, &resource, report),
        None => report.push(
            "token.format",
            "The access token",
            Status::Warn,
            "an opaque token (not a JWT): neither clients nor the doctor can read it",
            Some("a resource server must introspect it (RFC 7662); a JWT access token (RFC 9068) can be checked offline against the JWKS"),
        ),
    }
    accepted(net, url, &token, report).await;
    if let Some(tool) = &login.call_without_scope {
        insufficient_scope(net, url, &token, tool, granted.as_deref(), report).await;
    }
    if let Some(m) = metadata {
        crate::without_resource::check(net, url, found, m, &vault, login, report).await;
    }
}

/// The JOSE header and the claims of a JWT, unverified (the server verifies; this reads).
pub(crate) fn claims_of(token: &str) -> Option<(Value, Value)> {
    let mut parts = token.split('.');
    let (h, c, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let decode = |p: &str| -> Option<Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    Some((decode(h)?, decode(c)?))
}

fn read_claims(header: &Value, claims: &Value, issuer: &str, resource: &str, report: &mut Report) {
    let alg = header["alg"].as_str().unwrap_or("?");
    let typ = header["typ"].as_str().unwrap_or("(none)");
    if typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt") {
        report.push(
            "token.format",
            "The access token",
            Status::Pass,
            format!("a JWT access token (typ {typ}, alg {alg})"),
            None,
        );
    } else {
        report.push(
            "token.format",
            "The access token",
            Status::Warn,
            format!("a JWT with typ {typ} (alg {alg})"),
            Some("RFC 9068 access tokens carry typ \"at+jwt\", so that an ID token cannot pass for one"),
        );
    }
    match claims["iss"].as_str() {
        Some(iss) if iss == issuer => report.push("token.iss", "Token issuer", Status::Pass, iss, None),
        other => report.push(
            "token.iss",
            "Token issuer",
            Status::Fail,
            format!("iss {} where the metadata names {issuer}", other.unwrap_or("(none)")),
            Some("the token's iss must be the issuer of the authorization server metadata, byte for byte"),
        ),
    }
    let audiences: Vec<&str> = match &claims["aud"] {
        Value::String(a) => vec![a.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let trimmed = resource.trim_end_matches('/');
    if audiences.iter().any(|a| a.trim_end_matches('/') == trimmed) {
        report.push("token.aud", "Token audience", Status::Pass, audiences.join(" "), None);
    } else if audiences.is_empty() {
        report.push(
            "token.aud",
            "Token audience",
            Status::Fail,
            "no aud: the token is good at every resource server of this issuer",
            Some("put the resource the client asked for (RFC 8707 `resource`) in aud, and have the server refuse tokens for others"),
        );
    } else {
        report.push(
            "token.aud",
            "Token audience",
            Status::Fail,
            format!("aud {} for a token asked for {resource}", audiences.join(" ")),
            Some("the token's aud must be the resource URL the client sent as `resource` (RFC 8707)"),
        );
    }
    let scope = claims["scope"].as_str().or_else(|| claims["scp"].as_str()).unwrap_or("");
    if scope.trim().is_empty() {
        report.push(
            "token.scope",
            "Token scopes",
            Status::Warn,
            "no scope claim",
            Some("RFC 9068: `scope`, the scopes granted, space-separated; resource servers decide per tool from it"),
        );
    } else {
        report.push("token.scope", "Token scopes", Status::Pass, scope, None);
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    match (claims["exp"].as_u64(), claims["iat"].as_u64()) {
        (Some(exp), iat) => {
            let lifetime = exp.saturating_sub(iat.unwrap_or(now));
            let what = format!("expires in {} s (lifetime {lifetime} s)", exp.saturating_sub(now));
            if lifetime > LONG_LIVED {
                report.push(
                    "token.lifetime",
                    "Token lifetime",
                    Status::Warn,
                    what,
                    Some("access tokens should be short-lived (an hour at most; refresh tokens carry the session)"),
                );
            } else {
                report.push("token.lifetime", "Token lifetime", Status::Pass, what, None);
            }
        }
        (None, _) => report.push(
            "token.lifetime",
            "Token lifetime",
            Status::Fail,
            "no exp: the token never expires",
            Some("RFC 9068 requires exp"),
        ),
    }
}

pub(crate) fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
           "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                      "clientInfo": {"name": "mandate-doctor", "version": env!("CARGO_PKG_VERSION")}}})
}

pub(crate) fn mcp_post(
    net: &Net<'_>,
    url: &Url,
    token: &str,
    session: Option<&str>,
    body: &Value,
) -> reqwest::RequestBuilder {
    let mut req = net
        .http
        .post(url.clone())
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    req
}

/// The server accepts the token the doctor was given for it.
async fn accepted(net: &Net<'_>, url: &Url, token: &str, report: &mut Report) {
    match net.send(mcp_post(net, url, token, None, &initialize())).await {
        Ok(a) if a.status == 200 => {
            close_session(net, url, token, a.header("mcp-session-id")).await;
            report.push("token.accepted", "The server accepts the token", Status::Pass, "initialize answered 200", None)
        }
        Ok(a) => report.push(
            "token.accepted",
            "The server accepts the token",
            Status::Fail,
            format!("initialize with the token answered {} {}", a.describe(), a.header("www-authenticate").unwrap_or("")),
            Some("a token the authorization server issued for this resource must be accepted: check the issuer, audience and keys the server validates with"),
        ),
        Err(e) => report.push("token.accepted", "The server accepts the token", Status::Fail, e, None),
    }
}

/// Calls `tool` with a token that lacks its scope: the server must refuse it with 403 and a
/// challenge naming the scope (MCP RS11), so that clients can step up.
async fn insufficient_scope(
    net: &Net<'_>,
    url: &Url,
    token: &str,
    tool: &str,
    granted: Option<&[String]>,
    report: &mut Report,
) {
    const ID: &str = "challenge.insufficient_scope";
    const TITLE: &str = "A tool the token lacks the scope for: 403 naming it";
    let Ok(init) = net.send(mcp_post(net, url, token, None, &initialize())).await else {
        return report.push(ID, TITLE, Status::Fail, "initialize failed", None);
    };
    let session = init.header("mcp-session-id").map(str::to_owned);
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let _ = net.send(mcp_post(net, url, token, session.as_deref(), &initialized)).await;
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    let answer = net.send(mcp_post(net, url, token, session.as_deref(), &call)).await;
    close_session(net, url, token, session.as_deref()).await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return report.push(ID, TITLE, Status::Fail, e, None),
    };
    let challenge = answer.header("www-authenticate").unwrap_or("").to_owned();
    let named = challenge_scopes(&challenge);
    // The challenge must name a scope the token lacks: naming only what it holds gives a client
    // nothing to ask for.
    let names_missing = match granted {
        Some(held) => named.iter().any(|s| !held.contains(s)),
        None => !named.is_empty(),
    };
    match (answer.status, challenge.contains("insufficient_scope")) {
        (403, true) if names_missing => report.push(ID, TITLE, Status::Pass, format!("403 {challenge}"), None),
        (403, _) => report.push(
            ID,
            TITLE,
            Status::Fail,
            format!("403 with WWW-Authenticate: {}", if challenge.is_empty() { "(none)" } else { &challenge }),
            Some("answer Bearer error=\"insufficient_scope\", scope=\"<the scopes needed>\", naming the scope the token lacks, so that clients can ask the person for it (step-up)"),
        ),
        (status, _) => report.push(
            ID,
            TITLE,
            Status::Fail,
            format!("{status}: the call was not refused for want of scope (was its scope granted after all?)"),
            Some("check the tool's scope per call, before it runs, and answer 403 insufficient_scope naming it"),
        ),
    }
}

/// The scopes a `WWW-Authenticate` challenge names (`scope="a b"`).
fn challenge_scopes(challenge: &str) -> Vec<String> {
    let Some(at) = challenge.find("scope=\"") else { return Vec::new() };
    let rest = &challenge[at + "scope=\"".len()..];
    rest.split('"').next().unwrap_or("").split_whitespace().map(str::to_owned).collect()
}

/// Ends the MCP session the doctor opened (behind a gateway it may hold a process).
pub(crate) async fn close_session(net: &Net<'_>, url: &Url, token: &str, session: Option<&str>) {
    if let Some(id) = session {
        let req = net.http.delete(url.clone()).bearer_auth(token).header("mcp-session-id", id);
        let _ = net.send(req).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn jwt(header: &Value, claims: &Value) -> String {
        let e = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.sig", e(header), e(claims))
    }

    fn statuses(report: &Report) -> Vec<(&'static str, Status)> {
        report.checks.iter().map(|c| (c.id, c.status)).collect()
    }

    #[test]
    fn a_good_token_passes_and_each_flaw_is_named() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let header = json!({"alg": "ES256", "typ": "at+jwt"});
        let good = json!({"iss": "https://as.example", "aud": "https://mcp.example/mcp", "scope": "notes.read",
                          "iat": now, "exp": now + 300});
        let (h, c) = claims_of(&jwt(&header, &good)).unwrap();
        let mut report = Report { url: String::new(), checks: Vec::new() };
        read_claims(&h, &c, "https://as.example", "https://mcp.example/mcp", &mut report);
        assert!(report.checks.iter().all(|c| c.status == Status::Pass), "{:?}", report.checks);

        let bad = json!({"iss": "https://as.example/", "aud": ["https://other.example/mcp"], "iat": now, "exp": now + 86_400});
        let (h, c) = claims_of(&jwt(&json!({"alg": "RS256", "typ": "JWT"}), &bad)).unwrap();
        let mut report = Report { url: String::new(), checks: Vec::new() };
        read_claims(&h, &c, "https://as.example", "https://mcp.example/mcp", &mut report);
        assert_eq!(
            statuses(&report),
            [
                ("token.format", Status::Warn),
                ("token.iss", Status::Fail),
                ("token.aud", Status::Fail),
                ("token.scope", Status::Warn),
                ("token.lifetime", Status::Warn),
            ]
        );
        let no_exp = json!({"iss": "https://as.example", "aud": "https://mcp.example/mcp/", "scope": "a"});
        let (h, c) = claims_of(&jwt(&header, &no_exp)).unwrap();
        let mut report = Report { url: String::new(), checks: Vec::new() };
        read_claims(&h, &c, "https://as.example", "https://mcp.example/mcp", &mut report);
        assert_eq!(report.check("token.aud").unwrap().status, Status::Pass, "a trailing slash is the same resource");
        assert_eq!(report.check("token.lifetime").unwrap().status, Status::Fail);
    }

    #[tokio::test]
    async fn no_sign_in_over_plain_http_off_loopback() {
        let http = reqwest::Client::new();
        let net = Net { http: &http, allow_http: true };
        let found = Found { issuer: "http://10.0.0.5:8080".into(), scopes: Vec::new() };
        let login =
            Login { open_browser: false, scope: None, timeout: Duration::from_secs(1), call_without_scope: None };
        let mut report = Report { url: String::new(), checks: Vec::new() };
        let url = Url::parse("http://10.0.0.5:8000/mcp").unwrap();
        check(&net, &url, &found, None, &login, &mut report).await;
        let c = report.check("login").unwrap();
        assert_eq!(c.status, Status::Fail);
        assert!(c.saw.contains("needs https"), "{}", c.saw);
    }

    #[test]
    fn the_scopes_a_challenge_names_are_read() {
        let c = r#"Bearer error="insufficient_scope", scope="invoices.send customers.read", resource_metadata="x""#;
        assert_eq!(challenge_scopes(c), ["invoices.send", "customers.read"]);
        assert!(challenge_scopes(r#"Bearer error="insufficient_scope""#).is_empty());
    }

    #[test]
    fn an_opaque_token_is_not_read() {
        assert!(claims_of("an-opaque-token").is_none());
        assert!(claims_of("a.b.c.d").is_none());
        assert!(claims_of("bm90IGpzb24.bm90IGpzb24.x").is_none());
    }
}
