//! The authorization server as a client discovers it: metadata at every location clients try,
//! the issuer, PKCE, `iss`, registration, token endpoint authentication, and the JWKS.

use serde_json::{Map, Value};
use url::Url;

use crate::fetch::Net;
use crate::resource::Found;
use crate::{Report, Status, acceptable_scheme};

/// Where clients look for the metadata of `issuer`, in the order the MCP specification
/// (2025-11-25) gives: RFC 8414 and OpenID Connect with the well-known suffix inserted before
/// the issuer's path, then OpenID Connect's appended form; without a path, the two root forms.
pub(crate) fn discovery_locations(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let at = |p: String| {
        let mut u = issuer.clone();
        u.set_path(&p);
        u.set_query(None);
        u.set_fragment(None);
        u
    };
    if path.is_empty() {
        vec![at("/.well-known/oauth-authorization-server".into()), at("/.well-known/openid-configuration".into())]
    } else {
        vec![
            at(format!("/.well-known/oauth-authorization-server{path}")),
            at(format!("/.well-known/openid-configuration{path}")),
            at(format!("{path}/.well-known/openid-configuration")),
        ]
    }
}

fn strings(m: &Map<String, Value>, key: &str) -> Option<Vec<String>> {
    m.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
}

/// The discovery checks; returns the authorization server's metadata when it was found.
pub(crate) async fn check(net: &Net<'_>, found: &Found, report: &mut Report) -> Option<Map<String, Value>> {
    let Ok(issuer_url) = Url::parse(&found.issuer) else { return None };
    let mut seen = Vec::new();
    let mut metadata: Option<(Url, Map<String, Value>)> = None;
    for (i, location) in discovery_locations(&issuer_url).into_iter().enumerate() {
        let answer = net.get(&location).await;
        let doc = answer.as_ref().ok().filter(|a| a.status == 200).and_then(|a| a.json_object());
        seen.push(format!(
            "{location}: {}",
            match (&answer, &doc) {
                (Ok(_), Some(_)) => "200".to_owned(),
                (Ok(a), None) if a.status == 200 => "200 but not a JSON object".to_owned(),
                (Ok(a), None) => a.describe(),
                (Err(e), _) => e.clone(),
            }
        ));
        if metadata.is_none()
            && let Some(d) = doc
        {
            metadata = Some((location, d));
            if i == 0 {
                break;
            }
        }
    }
    let Some((source, m)) = metadata else {
        report.push(
            "as.discovery",
            "Authorization server metadata where clients look",
            Status::Fail,
            seen.join("; "),
            Some("Serve RFC 8414 metadata at the first location listed (or OpenID Connect discovery at one of the others); MCP clients try these, in this order, and nothing else."),
        );
        return None;
    };
    let first = discovery_locations(&issuer_url).first().cloned();
    if first.as_ref() == Some(&source) {
        report.push(
            "as.discovery",
            "Authorization server metadata where clients look",
            Status::Pass,
            format!("{source}"),
            None,
        );
    } else {
        report.push(
            "as.discovery",
            "Authorization server metadata where clients look",
            Status::Warn,
            seen.join("; "),
            Some("Found only at a later location: clients that try only RFC 8414's (some SDKs) will not find it. Serve it at the first location too."),
        );
    }

    let issuer = m.get("issuer").and_then(Value::as_str).unwrap_or_default();
    if issuer == found.issuer {
        report.push(
            "as.issuer",
            "The metadata's issuer is the one the resource named",
            Status::Pass,
            issuer.to_owned(),
            None,
        );
    } else {
        let hint = if issuer.trim_end_matches('/') == found.issuer.trim_end_matches('/') {
            " (they differ only by a trailing slash)"
        } else {
            ""
        };
        report.push(
            "as.issuer",
            "The metadata's issuer is the one the resource named",
            Status::Fail,
            format!("the metadata at {source} says issuer {issuer:?}; the resource's metadata names {:?}{hint}", found.issuer),
            Some("RFC 8414 §3.3: the `issuer` must be identical, byte for byte, to the URL the metadata was found from; clients refuse it otherwise (and tokens' `iss` must match it too). Make the resource's `authorization_servers` entry and the authorization server's issuer the same string."),
        );
    }

    let endpoints_ok = ["authorization_endpoint", "token_endpoint"].iter().all(|k| {
        m.get(*k)
            .and_then(Value::as_str)
            .and_then(|s| Url::parse(s).ok())
            .is_some_and(|u| acceptable_scheme(&u, net.allow_http))
    });
    report.push(
        "as.endpoints",
        "Authorization and token endpoints",
        if endpoints_ok { Status::Pass } else { Status::Fail },
        format!(
            "authorization_endpoint {}, token_endpoint {}",
            m.get("authorization_endpoint").and_then(Value::as_str).unwrap_or("(none)"),
            m.get("token_endpoint").and_then(Value::as_str).unwrap_or("(none)")
        ),
        (!endpoints_ok).then_some("Both are required, as https URLs (http only on loopback)."),
    );

    match strings(&m, "code_challenge_methods_supported") {
        Some(methods) if methods.iter().any(|x| x == "S256") => {
            report.push("as.pkce", "PKCE with S256", Status::Pass, methods.join(", "), None)
        }
        other => report.push(
            "as.pkce",
            "PKCE with S256",
            Status::Fail,
            match other {
                Some(methods) => format!("code_challenge_methods_supported: {}", methods.join(", ")),
                None => "no code_challenge_methods_supported".to_owned(),
            },
            Some("Support PKCE with S256 and say so in `code_challenge_methods_supported`: MCP clients must refuse an authorization server that does not advertise S256."),
        ),
    }

    if m.get("authorization_response_iss_parameter_supported") == Some(&Value::Bool(true)) {
        report.push("as.iss", "The `iss` authorization response parameter", Status::Pass, "supported", None);
    } else {
        report.push(
            "as.iss",
            "The `iss` authorization response parameter",
            Status::Warn,
            "authorization_response_iss_parameter_supported is not true",
            Some("Return `iss` with the code and advertise it (RFC 9207): it protects clients that use several authorization servers against mix-up attacks."),
        );
    }

    let cimd = m.get("client_id_metadata_document_supported") == Some(&Value::Bool(true));
    let dcr = m.get("registration_endpoint").and_then(Value::as_str);
    let mut ways = Vec::new();
    if cimd {
        ways.push("Client ID Metadata Documents".to_owned());
    }
    if let Some(r) = dcr {
        ways.push(format!("dynamic registration at {r}"));
    }
    if ways.is_empty() {
        report.push(
            "as.registration",
            "How a new client registers",
            Status::Warn,
            "neither client_id_metadata_document_supported nor registration_endpoint: pre-registered clients only",
            Some("Clients you have not registered in advance (Claude, ChatGPT, Cursor) cannot connect. Support Client ID Metadata Documents (preferred) or dynamic registration (RFC 7591)."),
        );
    } else {
        report.push("as.registration", "How a new client registers", Status::Pass, ways.join("; "), None);
    }

    match strings(&m, "token_endpoint_auth_methods_supported") {
        Some(methods) if methods.iter().any(|x| x == "none") => {
            report.push("as.token_auth", "Public clients at the token endpoint", Status::Pass, methods.join(", "), None)
        }
        other => report.push(
            "as.token_auth",
            "Public clients at the token endpoint",
            Status::Warn,
            match other {
                Some(methods) => format!("token_endpoint_auth_methods_supported: {}", methods.join(", ")),
                None => "no token_endpoint_auth_methods_supported (RFC 8414's default is client_secret_basic only)".to_owned(),
            },
            Some("Most MCP clients are public (no secret; PKCE instead). List \"none\" in `token_endpoint_auth_methods_supported`."),
        ),
    }

    if let Some(supported) = strings(&m, "scopes_supported") {
        let unknown: Vec<&String> = found.scopes.iter().filter(|s| !supported.contains(s)).collect();
        if unknown.is_empty() {
            report.push(
                "as.scopes",
                "The resource's scopes are the authorization server's",
                Status::Pass,
                supported.join(" "),
                None,
            );
        } else {
            report.push(
                "as.scopes",
                "The resource's scopes are the authorization server's",
                Status::Warn,
                format!(
                    "the resource asks for {} that the authorization server does not list",
                    unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
                ),
                Some("An authorization server that does not know a scope refuses it (`invalid_scope`) or drops it: configure the resource's scopes there."),
            );
        }
    }

    jwks(net, &m, report).await;
    Some(m)
}

/// The signing keys a resource server validates tokens with.
async fn jwks(net: &Net<'_>, m: &Map<String, Value>, report: &mut Report) {
    let Some(uri) = m.get("jwks_uri").and_then(Value::as_str) else {
        report.push(
            "jwks",
            "Signing keys for validating tokens",
            Status::Warn,
            "no jwks_uri",
            Some("Without published keys a resource server cannot validate JWT access tokens itself; it needs introspection (RFC 7662)."),
        );
        return;
    };
    let Ok(url) = Url::parse(uri) else {
        report.push(
            "jwks",
            "Signing keys for validating tokens",
            Status::Fail,
            format!("jwks_uri {uri:?} is not a URL"),
            None,
        );
        return;
    };
    let answer = net.get(&url).await;
    let keys = match &answer {
        Ok(a) if a.status == 200 => a.json_object().and_then(|o| o.get("keys").and_then(Value::as_array).cloned()),
        _ => None,
    };
    let Some(keys) = keys else {
        report.push(
            "jwks",
            "Signing keys for validating tokens",
            Status::Fail,
            format!(
                "{url}: {}",
                match &answer {
                    Ok(a) if a.status == 200 => "200 but no `keys` array".to_owned(),
                    Ok(a) => a.describe(),
                    Err(e) => e.clone(),
                }
            ),
            Some("The JWKS must answer 200 with {\"keys\": [...]}: resource servers cannot validate any token while it does not."),
        );
        return;
    };
    let mut usable = Vec::new();
    let mut unusable = Vec::new();
    for k in &keys {
        let kid = k.get("kid").and_then(Value::as_str).unwrap_or("(no kid)").to_owned();
        let signing = k.get("use").and_then(Value::as_str).is_none_or(|u| u == "sig");
        let parsed = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(k.clone())
            .ok()
            .and_then(|jwk| jsonwebtoken::DecodingKey::from_jwk(&jwk).ok());
        match (signing, parsed) {
            (true, Some(_)) => usable.push(kid),
            _ => unusable.push(kid),
        }
    }
    if usable.is_empty() {
        report.push(
            "jwks",
            "Signing keys for validating tokens",
            Status::Fail,
            format!("{url}: {} key(s), none usable for signatures", keys.len()),
            Some("Publish the public signing key(s) as JWKs with `kty`, `kid`, the key's parameters and `alg`."),
        );
    } else {
        let extra = if unusable.is_empty() { String::new() } else { format!("; not usable: {}", unusable.join(", ")) };
        report.push(
            "jwks",
            "Signing keys for validating tokens",
            Status::Pass,
            format!("{url}: usable {}{extra}", usable.join(", ")),
            None,
        );
    }
}
