//! A known client quirk, with `--login`: clients that omit `resource` (RFC 8707). MCP clients
//! written before the 2025-06-18 specification do, and some still do. After the main sign-in,
//! the doctor signs in once more as they would: the same client, the same scopes, PKCE, and no
//! `resource` in the authorization request or at the token endpoint. Then it reads what it got
//! and asks the server whether it takes it.
//!
//! Refusing such a request is allowed (warn: those clients cannot connect). Defaulting the
//! audience to the resource passes. A token with no audience fails: it is good at every resource
//! server of the issuer. So does a token for another resource that the server accepts anyway.

use std::time::Duration;

use mandate_client::callback::check_callback;
use mandate_client::login::{CallbackListener, LoginMode, Timeouts, run_user_agent};
use mandate_client::net::{NetPolicy, check_url, guarded_reqwest};
use mandate_client::{ClientError, CredentialVault};
use mandate_core::clock::OsRandom;
use mandate_core::secret::random_token;
use serde_json::{Map, Value};
use url::Url;

use crate::fetch::Net;
use crate::login::{Login, claims_of, close_session, initialize, mcp_post};
use crate::resource::Found;
use crate::{Report, Status};

const ID: &str = "quirk.no_resource";
const TITLE: &str = "Clients that omit `resource` (RFC 8707)";

/// What one sign-in without `resource` came to.
enum Outcome {
    /// Refused at the authorization endpoint or the token endpoint, with the error.
    Refused(String),
    /// A token (and what the server said to it).
    Token { token: String },
    /// The doctor could not try (no stored client, the person did not come back, …).
    NotTried(String),
}

pub(crate) async fn check(
    net: &Net<'_>,
    url: &Url,
    found: &Found,
    metadata: &Map<String, Value>,
    vault: &CredentialVault,
    login: &Login,
    report: &mut Report,
) {
    let resource = mandate_client::connection::canonical_resource(url);
    let outcome = sign_in_without_resource(net, url, found, metadata, vault, login, &resource).await;
    let token = match outcome {
        Outcome::NotTried(why) => return report.push(ID, TITLE, Status::Warn, format!("not tried: {why}"), None),
        Outcome::Refused(error) => {
            return report.push(
                ID,
                TITLE,
                Status::Warn,
                format!("without `resource` the authorization server refused: {error}"),
                Some("RFC 8707 lets it refuse, but MCP clients from before the 2025-06-18 specification omit `resource` and cannot connect; an authorization server that serves one resource can default to it"),
            );
        }
        Outcome::Token { token } => token,
    };
    let status = match net.send(mcp_post(net, url, &token, None, &initialize())).await {
        Ok(a) => {
            if a.status == 200 {
                close_session(net, url, &token, a.header("mcp-session-id")).await;
            }
            a.status
        }
        Err(e) => return report.push(ID, TITLE, Status::Warn, format!("the server did not answer: {e}"), None),
    };
    let audiences: Option<Vec<String>> = claims_of(&token).map(|(_, c)| match &c["aud"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    });
    let (status, saw, fix) = judge(audiences.as_deref(), &resource, status);
    report.push(ID, TITLE, status, saw, fix);
}

/// The verdict on a token got without `resource` (`audiences`: `None` for an opaque token) that
/// the server answered `status` to.
fn judge(audiences: Option<&[String]>, resource: &str, status: u16) -> (Status, String, Option<&'static str>) {
    let accepted = status == 200;
    let Some(audiences) = audiences else {
        return if accepted {
            (Status::Pass, "without `resource`: an opaque token, which the server accepts".into(), None)
        } else {
            (
                Status::Warn,
                format!("without `resource`: an opaque token, which the server refuses ({status})"),
                Some("clients that omit `resource` get a token they cannot use here"),
            )
        };
    };
    let ours = audiences.iter().any(|a| a.trim_end_matches('/') == resource.trim_end_matches('/'));
    let aud = audiences.join(" ");
    match (audiences.is_empty(), ours, accepted) {
        (false, true, true) => (
            Status::Pass,
            format!(
                "without `resource` the token's aud is still {aud}: the authorization server defaults to this resource, and the server accepts it"
            ),
            None,
        ),
        (false, true, false) => (
            Status::Warn,
            format!("without `resource` the token's aud is {aud}, yet initialize with it answered {status}"),
            Some("the token names this server: find why it refuses it (the server's log)"),
        ),
        (true, _, _) => (
            Status::Fail,
            format!(
                "without `resource` the token has no aud (initialize with it answered {status}): it is good at every resource server of this issuer"
            ),
            Some(
                "default the audience to the one resource the client may use (or refuse with invalid_target); never issue a token without aud",
            ),
        ),
        (false, false, true) => (
            Status::Fail,
            format!("without `resource` the token is for {aud}, and the server accepts it"),
            Some("the server must refuse tokens whose aud does not name it (RFC 8707, MCP: token audience validation)"),
        ),
        (false, false, false) => (
            Status::Warn,
            format!("without `resource` the token is for {aud}, which this server rightly refuses ({status})"),
            Some(
                "clients that omit `resource` get a token they cannot use here; an authorization server can default the audience when the client may use one resource only",
            ),
        ),
    }
}

/// The authorization code flow as a client that omits `resource` runs it, with the client the
/// main sign-in registered.
async fn sign_in_without_resource(
    net: &Net<'_>,
    url: &Url,
    found: &Found,
    metadata: &Map<String, Value>,
    vault: &CredentialVault,
    login: &Login,
    resource: &str,
) -> Outcome {
    let Ok(Some((creds, secret))) = vault.load(resource) else {
        return Outcome::NotTried("the main sign-in left no client".into());
    };
    let endpoint = |k: &str| metadata.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(authorization_endpoint), Some(token_endpoint)) =
        (endpoint("authorization_endpoint"), endpoint("token_endpoint"))
    else {
        return Outcome::NotTried("the metadata names no authorization or token endpoint".into());
    };
    let iss_advertised =
        metadata.get("authorization_response_iss_parameter_supported").and_then(Value::as_bool).unwrap_or(false);
    let policy = NetPolicy { allow_loopback_http: crate::is_loopback(url) };
    let verifier = random_token(&OsRandom);
    let state = random_token(&OsRandom);
    let listener = match CallbackListener::bind().await {
        Ok(l) => l,
        Err(e) => return Outcome::NotTried(e.to_string()),
    };
    let redirect_uri = listener.redirect_uri().to_owned();
    let mut auth_url = match check_url(&authorization_endpoint, "the authorization endpoint", policy) {
        Ok(u) => u,
        Err(e) => return Outcome::NotTried(e.to_string()),
    };
    {
        let mut q = auth_url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &creds.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("code_challenge", &mandate_core::pkce::s256(&verifier))
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", &state);
        if !creds.granted_scopes.is_empty() {
            q.append_pair("scope", &creds.granted_scopes.join(" "));
        }
    }
    listener.expect(&state, Some(&found.issuer), iss_advertised);
    eprintln!(
        "Now once more without `resource`, as some clients sign in (the authorization server may ask you to consent again)."
    );
    let mode = if login.open_browser { LoginMode::Browser } else { LoginMode::NoBrowser };
    let Ok(http) = guarded_reqwest(policy, None, Duration::from_secs(30)) else {
        return Outcome::NotTried("no HTTP client".into());
    };
    let timeouts = Timeouts { login: login.timeout, request: Duration::from_secs(30) };
    let callback = match run_user_agent(mode, &auth_url, listener, &http, policy, timeouts).await {
        Ok(c) => c,
        Err(e) => return Outcome::NotTried(e.to_string()),
    };
    let code = match check_callback(&callback, &state, Some(&found.issuer), iss_advertised) {
        Ok(code) => code,
        Err(ClientError::AccessDenied(_)) => return Outcome::NotTried("the person declined".into()),
        Err(e) if callback.error.is_some() => return Outcome::Refused(e.to_string()),
        Err(e) => return Outcome::NotTried(e.to_string()),
    };
    let Ok(token_url) = check_url(&token_endpoint, "the token endpoint", policy) else {
        return Outcome::NotTried("the token endpoint is not a URL the client may use".into());
    };
    let mut form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    let mut req = net.http.post(token_url);
    match &secret {
        Some(s) => req = req.basic_auth(&creds.client_id, Some(s)),
        None => form.push(("client_id", creds.client_id.clone())),
    }
    let answer = match net.send(req.form(&form)).await {
        Ok(a) => a,
        Err(e) => return Outcome::NotTried(format!("the token endpoint did not answer: {e}")),
    };
    let body = answer.json_object().unwrap_or_default();
    match (answer.status, body.get("access_token").and_then(Value::as_str)) {
        (200, Some(token)) => Outcome::Token { token: token.to_owned() },
        (status, _) => Outcome::Refused(format!(
            "the token endpoint answered {status} {}",
            body.get("error").and_then(Value::as_str).unwrap_or("(no error code)")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "https://mcp.example/mcp";

    fn verdict(aud: Option<&[&str]>, status: u16) -> Status {
        let owned: Option<Vec<String>> = aud.map(|a| a.iter().map(|s| (*s).to_owned()).collect());
        judge(owned.as_deref(), R, status).0
    }

    #[test]
    fn each_outcome_has_its_verdict() {
        // Defaulted to this resource (a trailing slash aside), accepted: pass.
        assert_eq!(verdict(Some(&[R]), 200), Status::Pass);
        assert_eq!(verdict(Some(&["https://mcp.example/mcp/"]), 200), Status::Pass);
        // No audience: a token good everywhere, whatever this server says.
        assert_eq!(verdict(Some(&[]), 200), Status::Fail);
        assert_eq!(verdict(Some(&[]), 401), Status::Fail);
        // Another resource's token, accepted here: fail; refused here: warn.
        assert_eq!(verdict(Some(&["https://other.example/mcp"]), 200), Status::Fail);
        assert_eq!(verdict(Some(&["https://other.example/mcp"]), 401), Status::Warn);
        // This server's token, refused anyway: warn.
        assert_eq!(verdict(Some(&[R]), 401), Status::Warn);
        // Opaque: the server's answer decides.
        assert_eq!(verdict(None, 200), Status::Pass);
        assert_eq!(verdict(None, 401), Status::Warn);
        let (_, saw, fix) = judge(Some(&[]), R, 200);
        assert!(saw.contains("no aud") && fix.is_some_and(|f| f.contains("never issue a token without aud")), "{saw}");
    }
}
