//! `[[providers]]`: upstream identity providers and the services whose accounts tools act with
//! (docs/UPSTREAM.md). Each entry is checked at load; its client secret comes from the
//! environment, never from the file. Also `mandate providers list`.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use mandate_upstream::{ClientAuth, Endpoints, ProviderSpec, redirect_uri};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// One `[[providers]]` entry as written in the configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// Short name: lower-case letters, digits, `-` and `_` (in the redirect URI and the trail).
    pub name: String,
    /// What people read ("Continue with <title>"); default: the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Discovered from (OpenID Connect discovery, then RFC 8414); byte-identical in its documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    pub client_id: String,
    /// The environment variable holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// Refused with an explanation: secrets do not belong in the file.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<String>,
    /// `client_secret_basic` (default with a secret), `client_secret_post`, or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Offer "Continue with <title>" on the sign-in page.
    #[serde(default)]
    pub sign_in: bool,
    /// A first sign-in by an account nobody is linked to creates a person (default true); false:
    /// only people who linked it from their account pages sign in with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_people: Option<bool>,
    /// RFC 8707 resource to ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The userinfo member with the stable subject (default `sub`; GitHub: `id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_claim: Option<String>,
    /// Extra authorization request parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_params: BTreeMap<String, String>,
}

/// https, or http on loopback only.
fn check_url(at: &str, what: &str, value: &str) -> anyhow::Result<()> {
    let u = url::Url::parse(value).with_context(|| format!("{at}: {what} {value:?} is not a URL"))?;
    let loopback = u.host_str().is_some_and(|h| {
        h == "localhost" || h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    });
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => bail!("{at}: {what} must use https (http only on loopback)"),
    }
}

/// The configured providers, checked, their secrets read from the environment.
pub fn specs(config: &Config) -> anyhow::Result<Vec<ProviderSpec>> {
    specs_with(config, true)
}

/// Authorization request parameters mandate sets itself (`extra_params` cannot replace them).
const OWN_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
    "scope",
    "nonce",
    "resource",
];

/// The providers checked; `read_secrets`: also read each `client_secret_env` (false for
/// commands that never call a provider, which need not have the secrets in their environment).
pub fn specs_with(config: &Config, read_secrets: bool) -> anyhow::Result<Vec<ProviderSpec>> {
    let mut out: Vec<ProviderSpec> = Vec::new();
    for e in config.providers.iter().flatten() {
        let at = format!("[[providers]] {:?}", e.name);
        if !mandate_gateway::valid_name(&e.name) {
            bail!("{at}: name must be 1 to 40 lower-case letters, digits, '-' or '_', starting with a letter");
        }
        if out.iter().any(|p| p.name == e.name) {
            bail!("{at}: two providers have this name");
        }
        if e.client_secret.is_some() {
            bail!(
                "{at}: the client secret does not belong in the configuration file; put it in an environment variable and name it with client_secret_env"
            );
        }
        if e.client_id.is_empty() {
            bail!("{at}: client_id is empty");
        }
        let endpoints = Endpoints {
            authorization: e.authorization_endpoint.clone(),
            token: e.token_endpoint.clone(),
            revocation: e.revocation_endpoint.clone(),
            userinfo: e.userinfo_endpoint.clone(),
            jwks: e.jwks_uri.clone(),
        };
        for (what, v) in [
            ("issuer", &e.issuer),
            ("authorization_endpoint", &endpoints.authorization),
            ("token_endpoint", &endpoints.token),
            ("revocation_endpoint", &endpoints.revocation),
            ("userinfo_endpoint", &endpoints.userinfo),
            ("jwks_uri", &endpoints.jwks),
        ] {
            if let Some(v) = v {
                check_url(&at, what, v)?;
            }
        }
        if e.issuer.is_none() && (endpoints.authorization.is_none() || endpoints.token.is_none()) {
            bail!("{at}: set issuer (discovered), or authorization_endpoint and token_endpoint");
        }
        let secret = match &e.client_secret_env {
            Some(var) if read_secrets => Some(std::env::var(var).with_context(|| {
                format!("{at}: client_secret_env names {var}, which is not set in the environment")
            })?),
            Some(_) => Some(String::new()),
            None => None,
        };
        let title = e.title.clone().unwrap_or_else(|| e.name.clone());
        if mandate_core::text::display_name_problem(&title).is_some() {
            bail!(
                "{at}: title must be 1 to 200 characters without control, bidirectional-formatting or invisible characters"
            );
        }
        if let Some(k) = e.extra_params.keys().find(|k| OWN_PARAMS.contains(&k.as_str())) {
            bail!("{at}: extra_params cannot set {k}: mandate sets it");
        }
        let client_auth = match e.client_auth.as_deref() {
            None if secret.is_some() => ClientAuth::ClientSecretBasic,
            None => ClientAuth::None,
            Some(s) => ClientAuth::parse(s).with_context(|| {
                format!("{at}: client_auth must be client_secret_basic, client_secret_post or none, not {s:?}")
            })?,
        };
        if client_auth != ClientAuth::None && secret.is_none() {
            bail!("{at}: client_auth {:?} needs client_secret_env", e.client_auth.as_deref().unwrap_or_default());
        }
        let scopes = if e.scopes.is_empty() && e.sign_in && e.issuer.is_some() {
            vec!["openid".into()]
        } else {
            e.scopes.clone()
        };
        if scopes.iter().any(|s| s == "openid") && e.issuer.is_none() {
            bail!("{at}: the openid scope needs issuer (its ID tokens are checked against it)");
        }
        if e.create_people.is_some() && !e.sign_in {
            bail!("{at}: create_people is for a sign-in provider (sign_in = true)");
        }
        if e.sign_in && !scopes.iter().any(|s| s == "openid") && endpoints.userinfo.is_none() {
            bail!(
                "{at}: a sign-in provider needs the openid scope (ID tokens) or a userinfo_endpoint with subject_claim"
            );
        }
        if let Some(r) = &e.resource {
            check_url(&at, "resource", r)?;
        }
        out.push(ProviderSpec {
            name: e.name.clone(),
            title,
            issuer: e.issuer.clone(),
            endpoints,
            client_id: e.client_id.clone(),
            client_secret: secret,
            client_auth,
            scopes,
            sign_in: e.sign_in,
            create_people: e.create_people.unwrap_or(true),
            resource: e.resource.clone(),
            subject_claim: e.subject_claim.clone().unwrap_or_else(|| "sub".into()),
            extra_params: e.extra_params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            redirect_uri: redirect_uri(config.public_url(), &e.name),
        });
    }
    if !config.password_login && !out.iter().any(|p| p.sign_in) {
        bail!("password_login = false needs at least one provider with sign_in = true, or nobody could sign in");
    }
    Ok(out)
}

/// `mandate providers list`: what to register at each provider, exactly.
pub fn list(config: &Config) -> anyhow::Result<()> {
    let specs = specs(config)?;
    if specs.is_empty() {
        println!("No providers are configured ([[providers]] in the configuration file; see docs/UPSTREAM.md).");
        return Ok(());
    }
    for p in specs {
        println!("{} ({})", p.name, p.title);
        println!("  redirect URI to register: {}", p.redirect_uri);
        println!("  client id:                {}", p.client_id);
        let from = p.issuer.clone().unwrap_or_else(|| "explicit endpoints".into());
        println!("  endpoints from:           {from}");
        let mut uses = Vec::new();
        if p.sign_in {
            uses.push("sign-in");
        }
        uses.push("connected accounts");
        println!("  used for:                 {}", uses.join(", "));
        println!("  scopes:                   {}", if p.scopes.is_empty() { "-".into() } else { p.scopes.join(" ") });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::load_toml as load;

    fn error(toml: &str) -> String {
        format!("{:#}", load(toml).expect_err("refused"))
    }

    const OIDC: &str = "[[providers]]\nname = \"idp\"\ntitle = \"Example ID\"\nissuer = \"https://id.example.com\"\nclient_id = \"mandate\"\nsign_in = true\n";

    #[test]
    fn a_provider_gets_its_redirect_uri_defaults_and_its_secret_from_the_environment() {
        // Any variable set in the test's environment stands for the secret (tests cannot set one).
        let secret = std::env::var("PATH").expect("PATH is set");
        let c = load(&format!("public_url = \"https://auth.example.com\"\n{OIDC}client_secret_env = \"PATH\"\n"))
            .expect("valid");
        let found = specs(&c).expect("valid");
        assert_eq!(found.len(), 1);
        let p = &found[0];
        assert_eq!(p.redirect_uri, "https://auth.example.com/upstream/idp/callback");
        assert_eq!(p.client_secret.as_deref(), Some(secret.as_str()));
        assert_eq!(p.client_auth, ClientAuth::ClientSecretBasic);
        assert_eq!(p.scopes, vec!["openid".to_owned()], "a sign-in provider with an issuer asks for openid");
        assert!(!format!("{p:?}").contains(&secret), "Debug hides the secret");
        // Without a secret: a public client.
        let c = load(OIDC).expect("valid");
        assert_eq!(specs(&c).expect("valid")[0].client_auth, ClientAuth::None);
    }

    #[test]
    fn each_bad_provider_entry_is_refused_with_its_reason() {
        for (toml, why) in [
            (format!("{OIDC}client_secret = \"in-the-file\"\n"), "does not belong in the configuration file"),
            (OIDC.replace("https://id.example.com", "http://id.example.com"), "issuer must use https"),
            (OIDC.replace("name = \"idp\"", "name = \"Example ID\""), "name must be 1 to 40 lower-case"),
            (format!("{OIDC}{OIDC}"), "two providers have this name"),
            (
                OIDC.replace("issuer = \"https://id.example.com\"\n", ""),
                "set issuer (discovered), or authorization_endpoint and token_endpoint",
            ),
            (format!("{OIDC}client_auth = \"private_key_jwt\"\n"), "client_auth must be client_secret_basic"),
            (format!("{OIDC}client_auth = \"client_secret_post\"\n"), "needs client_secret_env"),
            (format!("{OIDC}scopes = [\"email\"]\n"), "needs the openid scope"),
            (format!("{OIDC}resource = \"ftp://x\"\n"), "resource must use https"),
            (format!("{OIDC}colour = \"blue\"\n"), "unknown field: found `colour`"),
            (format!("{OIDC}[providers.extra_params]\nstate = \"fixed\"\n"), "extra_params cannot set state"),
            (OIDC.replace("Example ID", "Example\u{202e}DI"), "title must be 1 to 200 characters"),
            ("password_login = false\n".to_owned(), "password_login = false needs at least one provider with sign_in"),
            (
                "[[resources]]\nname = \"gh\"\nupstream_url = \"https://api.example.com/mcp\"\nprovider = \"nope\"\n"
                    .to_owned(),
                "provider \"nope\" is not a [[providers]] entry",
            ),
            (
                format!(
                    "{OIDC}[[resources]]\nname = \"gh\"\nupstream_url = \"https://api.example.com/mcp\"\nprovider = \"idp\"\nupstream_identity = true\n"
                ),
                "set provider or upstream_identity, not both",
            ),
            (
                format!("{OIDC}[[resources]]\nname = \"gh\"\ncommand = \"server\"\nprovider = \"idp\"\n"),
                "provider is for an HTTP upstream",
            ),
            (
                format!(
                    "{OIDC}[[resources]]\nuri = \"https://api.example.com/mcp\"\nname = \"API\"\nprovider = \"idp\"\n"
                ),
                "provider is for a gateway resource",
            ),
        ] {
            let e = error(&toml);
            assert!(e.contains(why), "{toml}\n→ {e}");
        }
        // A secret variable unset: the file loads (admin commands never call the provider), and
        // serving refuses, naming it.
        let c = load(&format!("{OIDC}client_secret_env = \"MANDATE_TEST_UNSET_VARIABLE\"\n")).expect("loads");
        let e = format!("{:#}", specs(&c).expect_err("refused"));
        assert!(e.contains("MANDATE_TEST_UNSET_VARIABLE, which is not set"), "{e}");
        // With a sign-in provider, the password form may go.
        let c = load(&format!("password_login = false\n{OIDC}")).expect("valid");
        assert!(!c.password_login);
    }
}
