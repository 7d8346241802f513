//! Configuration: defaults < TOML file (`--config` or `MANDATE_CONFIG`) < `MANDATE_*`
//! environment variables < command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Every setting, with its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// The public URL: the issuer identifier, byte-identical in every document and token. When
    /// unset and `listen` is a loopback address, it is `http://<listen>` (see [`Config::resolve`]).
    pub public_url: Option<String>,
    /// `sqlite://PATH` or `postgres://...`.
    pub database: String,
    /// Allow an http public URL that is not loopback (never in production).
    pub insecure_http: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// ES256 (default) or EdDSA.
    pub signing_alg: String,
    pub access_token_ttl: i64,
    pub refresh_token_ttl: i64,
    /// A refresh-token family's absolute lifetime from its grant, however often refreshed.
    pub refresh_family_ttl: i64,
    pub refresh_grace: i64,
    /// Dynamic registrations accepted per minute, from all addresses together.
    pub registrations_per_minute: i64,
    /// Dynamic clients stored that never got an authorization code, at most; past it `/register`
    /// answers 429 until some are collected.
    pub max_unused_clients: i64,
    /// Seconds after which a dynamic client that never got an authorization code is deleted.
    pub unused_client_ttl: i64,
    /// Seconds an audit event is kept; 0 keeps every event.
    pub audit_retention: i64,
    /// Seconds a rotated-in signing key is published before it signs.
    pub key_activation_delay: i64,
    /// The key-encryption key (32 bytes, base64url). Prefer the environment or a key file.
    pub secret_key: Option<String>,
    /// A file holding the key-encryption key; for SQLite, created next to the database if absent.
    pub secret_key_file: Option<PathBuf>,
    /// A second key-encryption key, accepted when opening sealed values but never used to seal:
    /// set while the key-encryption key is rotated (`mandate keys rotate-kek`).
    pub fallback_secret_key: Option<String>,
    /// A file holding the fallback key-encryption key.
    pub fallback_secret_key_file: Option<PathBuf>,
    /// Log filter (`info`, `mandate=debug`, ...); `RUST_LOG` wins when set.
    pub log: String,
    /// Protected resources: MCP servers elsewhere that trust mandate (`uri`, `scopes`), and
    /// upstream MCP servers mandate serves as a gateway at `<public_url>/mcp/<name>`
    /// (`upstream_url`, or `command` + `args`); the demo apps at `<public_url>/mcp` unless
    /// entries of the first kind are given. See docs/GATEWAY.md.
    pub resources: Option<Vec<crate::gateway::ResourceEntry>>,
    /// Upstream providers: sign-in with an existing identity provider, and accounts tools act
    /// with (docs/UPSTREAM.md).
    pub providers: Option<Vec<crate::providers::ProviderEntry>>,
    /// Offer the password form on the sign-in page (false: providers only).
    pub password_login: bool,
    /// Where the demo apps' MCP endpoint lives, when not at `<public_url>/mcp` (an MCP server
    /// run separately with `--mcp-only`).
    pub resource_url: Option<String>,
    /// Seed a demo user (password printed at start) and demo data.
    pub demo: bool,
    /// Serve only the MCP endpoint, trusting the authorization server at `issuer`.
    pub mcp_only: bool,
    /// The authorization server's issuer, for `mcp_only`.
    pub issuer: Option<String>,
    /// Browser origins allowed to call `/mcp` besides its own (e.g. `["http://localhost:6274"]`
    /// for the MCP Inspector).
    pub mcp_allowed_origins: Vec<String>,
    /// People (usernames) who may use `/inspector`; empty (the default): the inspector is not
    /// served. `mandate dev` names its `dev` person.
    pub inspector_operators: Vec<String>,
    /// New MCP sessions (`initialize`) one caller (person and agent) may open at once, then
    /// `mcp_new_sessions_per_minute`; beyond that, 429.
    pub mcp_new_sessions_burst: u32,
    pub mcp_new_sessions_per_minute: u32,
    /// A trusted reverse proxy sits in front: rate limits and the sign-in lock use the address it
    /// appends to `X-Forwarded-For` (never enable without such a proxy: clients could pick it).
    pub trust_forwarded_for: bool,
    /// On SIGTERM or Ctrl-C, how long in-flight requests get to finish before the process exits
    /// anyway (seconds).
    pub shutdown_timeout: u64,
    /// Seconds an authorization-server request may take; past it, 503 `temporarily_unavailable`
    /// with `Retry-After`, and the request's work is dropped (a locked or slow database, RL-08).
    pub request_timeout: u64,
    /// Authorization-server requests answered at once; one more gets 503 at once (load
    /// shedding, RL-14). MCP streams, health and metrics are not counted.
    pub max_in_flight: usize,
    /// `GET /authorize` without a signed-in person, from every address together, per minute (0:
    /// unbounded); each may store a pending request.
    pub anonymous_authorizations_per_minute: u32,
    /// Serve `/metrics` (Prometheus) on a listener of its own at this address, e.g.
    /// `127.0.0.1:9464`; off the public listener.
    pub metrics_listen: Option<String>,
    /// Scrapes must send `Authorization: Bearer <metrics_token>`. Without `metrics_listen`,
    /// `/metrics` is then served on the public listener. Never logged.
    pub metrics_token: Option<String>,
    /// Whether `public_url` was implied by `listen` rather than set (it then follows the port
    /// actually bound, for `--listen 127.0.0.1:0`).
    #[serde(skip)]
    pub public_url_implied: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            database: "sqlite://mandate.db".into(),
            insecure_http: false,
            tls_cert: None,
            tls_key: None,
            signing_alg: "ES256".into(),
            access_token_ttl: 3600,
            refresh_token_ttl: 30 * 24 * 3600,
            refresh_family_ttl: 90 * 24 * 3600,
            refresh_grace: 10,
            registrations_per_minute: 60,
            max_unused_clients: 1000,
            unused_client_ttl: 24 * 3600,
            audit_retention: 0,
            key_activation_delay: 600,
            secret_key: None,
            secret_key_file: None,
            fallback_secret_key: None,
            fallback_secret_key_file: None,
            log: "info".into(),
            resources: None,
            providers: None,
            password_login: true,
            resource_url: None,
            demo: false,
            mcp_only: false,
            issuer: None,
            mcp_allowed_origins: Vec::new(),
            inspector_operators: Vec::new(),
            mcp_new_sessions_burst: mandate_guard::NewSessionLimit::default().burst,
            mcp_new_sessions_per_minute: mandate_guard::NewSessionLimit::default().per_minute,
            trust_forwarded_for: false,
            shutdown_timeout: 10,
            request_timeout: 10,
            max_in_flight: 256,
            anonymous_authorizations_per_minute: 3000,
            metrics_listen: None,
            metrics_token: None,
            public_url_implied: false,
        }
    }
}

/// Environment variables read (as `MANDATE_<NAME>`).
const ENV_KEYS: &[&str] = &[
    "listen",
    "public_url",
    "database",
    "insecure_http",
    "tls_cert",
    "tls_key",
    "signing_alg",
    "access_token_ttl",
    "refresh_token_ttl",
    "refresh_family_ttl",
    "refresh_grace",
    "registrations_per_minute",
    "max_unused_clients",
    "unused_client_ttl",
    "audit_retention",
    "key_activation_delay",
    "secret_key",
    "secret_key_file",
    "fallback_secret_key",
    "fallback_secret_key_file",
    "log",
    "resource_url",
    "password_login",
    "demo",
    "mcp_only",
    "issuer",
    "mcp_allowed_origins",
    "inspector_operators",
    "mcp_new_sessions_burst",
    "mcp_new_sessions_per_minute",
    "trust_forwarded_for",
    "shutdown_timeout",
    "request_timeout",
    "max_in_flight",
    "anonymous_authorizations_per_minute",
    "metrics_listen",
    "metrics_token",
];

/// Loads the configuration; `overrides` are the flags given on the command line.
pub fn load(file: Option<&Path>, overrides: &impl Serialize) -> anyhow::Result<Config> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    let file = file.map(Path::to_path_buf).or_else(|| std::env::var_os("MANDATE_CONFIG").map(PathBuf::from));
    if let Some(path) = file {
        if !path.exists() {
            bail!("configuration file {} does not exist", path.display());
        }
        fig = fig.merge(Toml::file(path));
    }
    fig = fig.merge(Env::prefixed("MANDATE_").only(ENV_KEYS)).merge(Serialized::defaults(overrides));
    let mut config: Config = fig.extract().context("invalid configuration")?;
    config.resolve()?;
    Ok(config)
}

/// `localhost`, or an IP address on the loopback interface; a name merely starting with "127."
/// (`127.0.0.1.nip.io`) is not.
fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `http://<addr>` (`https://` when serving TLS) as an origin in normal form (`[::1]`
/// bracketed, no default port).
fn implied_public_url(addr: SocketAddr, tls: bool) -> String {
    let text = format!("{}://{addr}", if tls { "https" } else { "http" });
    url::Url::parse(&text).map(|u| u.origin().ascii_serialization()).unwrap_or(text)
}

impl Config {
    /// The rate at which one caller may open MCP sessions on each guarded endpoint.
    pub fn new_sessions(&self) -> mandate_guard::NewSessionLimit {
        mandate_guard::NewSessionLimit {
            burst: self.mcp_new_sessions_burst,
            per_minute: self.mcp_new_sessions_per_minute,
        }
    }

    /// Fills in the public URL when `listen` implies it, then refuses settings that are unsafe or
    /// contradictory.
    pub fn resolve(&mut self) -> anyhow::Result<()> {
        let listen: SocketAddr = self.listen.parse().with_context(|| {
            format!("listen {:?} is not an address such as 127.0.0.1:8080 or [::1]:8080", self.listen)
        })?;
        if self.public_url.is_none() {
            if !listen.ip().is_loopback() {
                bail!(
                    "listening on {listen}, which is not a loopback address, needs the public URL that people and \
                     clients use: --public-url https://auth.example.com (or MANDATE_PUBLIC_URL, or public_url in the \
                     configuration file)"
                );
            }
            self.public_url = Some(implied_public_url(listen, self.tls_cert.is_some()));
            self.public_url_implied = true;
        }
        self.validate()
    }

    /// The server is listening on `addr`: a public URL implied by `listen` follows the port
    /// bound (it differs only for port 0).
    pub fn bound_to(&mut self, addr: SocketAddr) {
        if self.public_url_implied {
            self.public_url = Some(implied_public_url(addr, self.tls_cert.is_some()));
        }
    }

    /// The public URL; empty before [`Config::resolve`].
    pub fn public_url(&self) -> &str {
        self.public_url.as_deref().unwrap_or_default()
    }

    /// Refuses settings that are unsafe or contradictory.
    fn validate(&self) -> anyhow::Result<()> {
        let public_url = self.public_url();
        let url = url::Url::parse(public_url).with_context(|| format!("public_url {public_url:?} is not a URL"))?;
        // The issuer must be exactly what browsers send as Origin: lower case, no default port,
        // no path, no credentials.
        if url.origin().ascii_serialization() != public_url.trim_end_matches('/') {
            bail!(
                "public_url must be an origin in normal form such as https://auth.example.com (no path, query, fragment, \
                 credentials, default port or upper case); did you mean {}?",
                url.origin().ascii_serialization()
            );
        }
        let host = url.host_str().unwrap_or_default();
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(host) || self.insecure_http => {}
            "http" => bail!(
                "public_url {public_url} uses http on a non-loopback host; use https (or --insecure-http for a throwaway test setup)"
            ),
            other => bail!("public_url must use https, not {other}"),
        }
        if self.secret_key.is_some() && self.secret_key_file.is_some() {
            bail!("set either secret_key (MANDATE_SECRET_KEY) or secret_key_file, not both");
        }
        if self.fallback_secret_key.is_some() && self.fallback_secret_key_file.is_some() {
            bail!("set either fallback_secret_key (MANDATE_FALLBACK_SECRET_KEY) or fallback_secret_key_file, not both");
        }
        if self.demo && (self.mcp_only || !is_loopback_host(host)) {
            bail!(
                "--demo seeds a user with a printed password: only for a loopback public_url, and not with --mcp-only"
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("--tls-cert and --tls-key go together");
        }
        // Browsers send the https origin as Origin and cookies are Secure only for an https
        // issuer: served over TLS, the public URL must be https.
        if self.tls_cert.is_some() && url.scheme() != "https" {
            bail!("serving TLS (--tls-cert) needs an https public URL, not {public_url}");
        }
        for (name, v) in [
            ("access_token_ttl", self.access_token_ttl),
            ("refresh_token_ttl", self.refresh_token_ttl),
            ("refresh_family_ttl", self.refresh_family_ttl),
        ] {
            if v < 60 {
                bail!("{name} must be at least 60 seconds");
            }
        }
        if let Some(m) = &self.metrics_listen {
            let addr: SocketAddr = m.parse().with_context(|| {
                format!("metrics_listen {m:?} is not an address such as 127.0.0.1:9464 or [::1]:9464")
            })?;
            if self.listen.parse::<SocketAddr>().is_ok_and(|l| l == addr && addr.port() != 0) {
                bail!(
                    "metrics_listen must differ from listen ({addr}): without a separate listener, set metrics_token"
                );
            }
        }
        if let Some(t) = &self.metrics_token
            && (t.chars().count() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            bail!("metrics_token must be at least 16 characters, without spaces");
        }
        if self.mcp_new_sessions_burst == 0 || self.mcp_new_sessions_per_minute == 0 {
            bail!("mcp_new_sessions_burst and mcp_new_sessions_per_minute must be at least 1");
        }
        if self.shutdown_timeout > 600 {
            bail!("shutdown_timeout must be at most 600 seconds");
        }
        if !(1..=300).contains(&self.request_timeout) {
            bail!("request_timeout must be between 1 and 300 seconds");
        }
        if !(1..=100_000).contains(&self.max_in_flight) {
            bail!("max_in_flight must be between 1 and 100000");
        }
        if self.anonymous_authorizations_per_minute > 1_000_000 {
            bail!("anonymous_authorizations_per_minute must be between 0 (unbounded) and 1000000");
        }
        if self.registrations_per_minute < 1 || self.max_unused_clients < 1 {
            bail!("registrations_per_minute and max_unused_clients must be at least 1");
        }
        if self.unused_client_ttl < 600 {
            bail!("unused_client_ttl must be at least 600 seconds");
        }
        if self.audit_retention != 0 && self.audit_retention < 86_400 {
            bail!("audit_retention must be 0 (keep every event) or at least 86400 seconds (a day)");
        }
        if !(0..=300).contains(&self.refresh_grace) {
            bail!("refresh_grace must be between 0 and 300 seconds");
        }
        if self.key_activation_delay < 0 {
            bail!("key_activation_delay must not be negative");
        }
        mandate_core::keys::SigningAlg::parse(&self.signing_alg)?;
        if self.mcp_only && self.issuer.is_none() {
            bail!("--mcp-only needs --issuer, the authorization server to trust");
        }
        if let Some(issuer) = &self.issuer {
            let u = url::Url::parse(issuer).with_context(|| format!("--issuer {issuer:?} is not a URL"))?;
            if u.scheme() != "https" && !(u.scheme() == "http" && is_loopback_host(u.host_str().unwrap_or_default())) {
                bail!("--issuer must use https (http only on loopback)");
            }
        }
        for name in &self.inspector_operators {
            if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                bail!("inspector_operators: {name:?} is not a username");
            }
        }
        if !self.inspector_operators.is_empty() && self.mcp_only {
            bail!("inspector_operators: the inspector is served with the authorization server, not with --mcp-only");
        }
        for o in &self.mcp_allowed_origins {
            let u = url::Url::parse(o).with_context(|| format!("mcp_allowed_origins: {o:?} is not an origin"))?;
            if u.origin().ascii_serialization() != o.trim_end_matches('/') {
                bail!("mcp_allowed_origins: {o:?} must be an origin such as https://app.example.com");
            }
        }
        // Shape only: commands that never call a provider need not hold its secret.
        crate::providers::specs_with(self, false)?;
        crate::gateway::plain_resources(self)?;
        // Gateway entries are checked there, --mcp-only with them included.
        crate::gateway::upstreams(self)?;
        if let Some(r) = &self.resource_url {
            mandate_core::scope::canonical_resource(r)
                .map_err(|e| anyhow::anyhow!("--resource-url: {}", e.description))?;
        }
        Ok(())
    }

    /// The issuer: the public URL without its trailing slash.
    pub fn issuer(&self) -> String {
        self.public_url().trim_end_matches('/').to_owned()
    }

    /// The file of a SQLite database (`None` for PostgreSQL or an in-memory database).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let path = self.database.strip_prefix("sqlite://").or_else(|| self.database.strip_prefix("sqlite:"))?;
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path.contains(":memory:") {
            return None;
        }
        Some(PathBuf::from(path))
    }

    /// Where the key-encryption key is kept when it does not come from the environment.
    pub fn key_file(&self) -> Option<PathBuf> {
        if let Some(p) = &self.secret_key_file {
            return Some(p.clone());
        }
        let mut path = self.sqlite_path()?.into_os_string();
        path.push(".key");
        Some(PathBuf::from(path))
    }
}

/// Loads a configuration file holding `toml` (no flags): for tests.
#[cfg(test)]
pub(crate) fn load_toml(toml: &str) -> anyhow::Result<Config> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("mandate.toml");
    std::fs::write(&path, toml)?;
    load(Some(&path), &serde_json::json!({}))
}

#[cfg(test)]
mod tests;
