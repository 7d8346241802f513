//! The OAuth side of every authorization server measured, through one HTTP client code path:
//! discovery (RFC 8414, else OpenID discovery), dynamic client registration, signing in and
//! consenting over HTTP as a browser does (each server's own forms), authorization requests with
//! PKCE, and the token endpoint's two grants.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use mandate_core::clock::OsRandom;
use serde_json::{Value, json};

/// Addresses handed out to authorization requests, one each.
static NEXT_ADDRESS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// The redirect URI every benchmark client registers (never followed).
pub const CALLBACK: &str = "https://agent.bench/callback";

/// How a person signs in and consents at this server.
#[derive(Clone, Debug)]
pub enum SignIn {
    /// mandate's sign-in and consent pages (CSRF field, `request`, Origin and Sec-Fetch-Site
    /// as a browser sends them on a same-origin form post).
    MandateForms { user: String, password: String },
    /// oidc-provider's development interactions: a sign-in form (the login is the account id,
    /// any password) and a consent form.
    OidcDev,
    /// The TS SDK's demo provider: /authorize approves at once.
    None,
}

/// One authorization server and one client of it, as the driver talks to them.
#[derive(Clone)]
pub struct AuthServer {
    pub http: reqwest::Client,
    pub base: String,
    pub authorize_endpoint: String,
    pub token_endpoint: String,
    /// Dynamic client registration (none: the client is pre-registered).
    pub registration_endpoint: Option<String>,
    pub client_id: String,
    pub scope: String,
    pub resource: Option<String>,
    pub sign_in: SignIn,
}

/// The HTTP client every target gets: keep-alive, no redirects followed, TCP_NODELAY.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Cookies by name, as a browser keeps them for one site (paths ignored: sending a cookie to
/// more paths than it was set for changes nothing here).
#[derive(Default, Clone, Debug)]
pub struct Jar(BTreeMap<String, String>);

impl Jar {
    pub fn absorb(&mut self, headers: &reqwest::header::HeaderMap) {
        for v in headers.get_all(reqwest::header::SET_COOKIE) {
            let Ok(s) = v.to_str() else { continue };
            let Some((name, value)) = s.split(';').next().and_then(|p| p.split_once('=')) else { continue };
            let lower = s.to_ascii_lowercase();
            if value.is_empty() || lower.contains("max-age=0") || lower.contains("expires=thu, 01 jan 1970") {
                self.0.remove(name.trim());
            } else {
                self.0.insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }

    pub fn header(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }
}

fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].replace("&amp;", "&"))
}

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A new PKCE pair: (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let verifier = mandate_core::secret::random_token(&OsRandom);
    let challenge = mandate_core::pkce::s256(&verifier);
    (verifier, challenge)
}

/// The code in an authorization response's `Location`, if it is a success.
pub fn code_in(location: &str) -> Option<String> {
    if !location.starts_with(CALLBACK) || param(location, "error").is_some() {
        return None;
    }
    param(location, "code")
}

/// Tokens from the token endpoint.
pub struct Tokens {
    pub access: String,
    pub refresh: Option<String>,
}

impl AuthServer {
    /// Reads the server's metadata (RFC 8414, else OpenID discovery) and registers a public
    /// client unless `client_id` is given (a pre-registered client).
    pub async fn discover(
        http: reqwest::Client,
        base: &str,
        client_id: Option<String>,
        scope: &str,
        resource: Option<String>,
        sign_in: SignIn,
    ) -> anyhow::Result<Self> {
        let mut meta = None;
        for doc in ["oauth-authorization-server", "openid-configuration"] {
            let r = http.get(format!("{base}/.well-known/{doc}")).send().await?;
            if r.status().is_success() {
                meta = Some(r.json::<Value>().await?);
                break;
            }
        }
        let meta = meta.with_context(|| format!("{base}: no authorization server metadata"))?;
        let endpoint = |k: &str| meta[k].as_str().map(str::to_owned).with_context(|| format!("{base}: no {k}"));
        let (authorize_endpoint, token_endpoint) = (endpoint("authorization_endpoint")?, endpoint("token_endpoint")?);
        let mut server = Self {
            http,
            base: base.to_owned(),
            authorize_endpoint,
            token_endpoint,
            registration_endpoint: None,
            client_id: String::new(),
            scope: scope.to_owned(),
            resource,
            sign_in,
        };
        match client_id {
            Some(id) => server.client_id = id,
            None => {
                server.registration_endpoint = Some(endpoint("registration_endpoint")?);
                server.client_id = server.register().await?;
            }
        }
        Ok(server)
    }

    /// Registers another public client (RFC 7591) with the same metadata.
    pub async fn register(&self) -> anyhow::Result<String> {
        let base = &self.base;
        let endpoint = self.registration_endpoint.as_deref().with_context(|| format!("{base}: no registration"))?;
        let body = json!({"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none",
                          "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
                          "client_name": "bench", "scope": self.scope});
        let r = self.http.post(endpoint).json(&body).send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        ensure!(status.is_success(), "{base}: registration answered {status}: {v}");
        v["client_id"].as_str().map(str::to_owned).with_context(|| format!("{base}: no client_id in {v}"))
    }

    pub fn authorize_url(&self, challenge: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", CALLBACK)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("scope", &self.scope)
            .append_pair("state", "bench");
        if let Some(r) = &self.resource {
            q.append_pair("resource", r);
        }
        format!("{}?{}", self.authorize_endpoint, q.finish())
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http") { location.to_owned() } else { format!("{}{location}", self.base) }
    }

    async fn get(&self, jar: &mut Jar, url: &str) -> anyhow::Result<(reqwest::StatusCode, Option<String>, String)> {
        let r = self.http.get(self.absolute(url)).header("cookie", jar.header()).send().await?;
        jar.absorb(r.headers());
        let location = r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok((r.status(), location, r.text().await?))
    }

    /// A same-origin form post, with the headers a browser sends.
    async fn post_form(&self, jar: &mut Jar, url: &str, form: &[(&str, &str)]) -> anyhow::Result<Option<String>> {
        let r = self
            .http
            .post(self.absolute(url))
            .header("cookie", jar.header())
            .header("origin", &self.base)
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await?;
        jar.absorb(r.headers());
        let (status, location) =
            (r.status(), r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned));
        ensure!(status.is_redirection(), "POST {url} answered {status}: {}", r.text().await.unwrap_or_default());
        Ok(location)
    }

    /// Signs `account` in and consents, as a browser does, from a first authorization request
    /// to its code. The cookies stay in `jar`: later requests get a code with no page.
    pub async fn sign_in(&self, jar: &mut Jar, account: &str) -> anyhow::Result<(String, String)> {
        let (verifier, challenge) = pkce();
        let mut next = self.authorize_url(&challenge);
        for _ in 0..12 {
            let (status, location, body) = self.get(jar, &next).await?;
            let Some(location) = location else {
                // A page: a sign-in or consent form to fill in.
                ensure!(
                    status.is_success(),
                    "GET {next} answered {status}: {}",
                    body.chars().take(300).collect::<String>()
                );
                next = self.fill_in(jar, &next, &body, account).await?.context("a form post led nowhere")?;
                if let Some(code) = code_in(&next) {
                    return Ok((code, verifier));
                }
                ensure!(!next.starts_with(CALLBACK), "the authorization was refused: {next}");
                continue;
            };
            if let Some(code) = code_in(&location) {
                return Ok((code, verifier));
            }
            ensure!(!location.starts_with(CALLBACK), "the authorization was refused: {location}");
            next = location;
        }
        bail!("{}: no code after 12 steps of signing in", self.base)
    }

    async fn fill_in(
        &self,
        jar: &mut Jar,
        page_url: &str,
        body: &str,
        account: &str,
    ) -> anyhow::Result<Option<String>> {
        match &self.sign_in {
            SignIn::MandateForms { user, password } => {
                let csrf = hidden(body, "csrf").with_context(|| format!("no csrf field on {page_url}"))?;
                let request = hidden(body, "request").unwrap_or_default();
                if body.contains("name=\"password\"") {
                    let mut form = vec![("csrf", csrf.as_str()), ("username", user), ("password", password)];
                    if !request.is_empty() {
                        form.push(("request", &request));
                    }
                    self.post_form(jar, "/login", &form).await
                } else {
                    let form =
                        [("csrf", csrf.as_str()), ("request", &request), ("action", "allow"), ("scope", &self.scope)];
                    self.post_form(jar, "/consent", &form).await
                }
            }
            SignIn::OidcDev => {
                let path = url::Url::parse(&self.absolute(page_url))?.path().to_owned();
                if body.contains("name=\"prompt\" value=\"login\"") {
                    self.post_form(jar, &path, &[("prompt", "login"), ("login", account), ("password", "any")]).await
                } else if body.contains("name=\"prompt\" value=\"consent\"") {
                    self.post_form(jar, &path, &[("prompt", "consent")]).await
                } else {
                    bail!("an unexpected page at {page_url}: {}", body.chars().take(300).collect::<String>())
                }
            }
            SignIn::None => bail!("{page_url} shows a page; this server was expected to approve at once"),
        }
    }

    /// One authorization request with the session in `jar`: a code at once, or an error.
    pub async fn authorize(&self, jar: &Jar) -> anyhow::Result<(String, String)> {
        let (verifier, challenge) = pkce();
        // A client address of its own for each request (mandate trusts `X-Forwarded-For` in this
        // harness; the peers ignore it): the per-address /authorize limit is not measured.
        let n = NEXT_ADDRESS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let address = format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
        let r = self
            .http
            .get(self.authorize_url(&challenge))
            .header("cookie", jar.header())
            .header("x-forwarded-for", address)
            .send()
            .await?;
        let status = r.status();
        let location = r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        // Read the body as a browser would, so that the connection is reused.
        let _ = r.bytes().await?;
        match location.as_deref().and_then(code_in) {
            Some(code) if status.is_redirection() => Ok((code, verifier)),
            _ => bail!("authorize answered {status}, Location {location:?}"),
        }
    }

    async fn token(&self, form: &[(&str, &str)]) -> anyhow::Result<Tokens> {
        let r = self.http.post(&self.token_endpoint).form(form).send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        ensure!(status.is_success(), "token endpoint answered {status}: {v}");
        Ok(Tokens {
            access: v["access_token"].as_str().map(str::to_owned).with_context(|| format!("no access_token in {v}"))?,
            refresh: v["refresh_token"].as_str().map(str::to_owned),
        })
    }

    pub async fn redeem(&self, code: &str, verifier: &str) -> anyhow::Result<Tokens> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", verifier),
            ("client_id", &self.client_id),
            ("redirect_uri", CALLBACK),
        ])
        .await
    }

    /// A refresh; the answer must carry a new refresh token (rotation).
    pub async fn refresh(&self, refresh_token: &str) -> anyhow::Result<String> {
        let t = self
            .token(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", &self.client_id)])
            .await?;
        let next = t.refresh.context("no refresh_token in the refresh answer")?;
        ensure!(next != refresh_token, "the refresh token was not rotated");
        Ok(next)
    }
}
