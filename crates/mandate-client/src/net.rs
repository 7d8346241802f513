//! Every URL the client fetches or opens passes here (C22, C23): `https` only, plain `http` only to
//! a loopback host when local development is explicitly allowed, and no connection to a private,
//! link-local or reserved address, checked on the address actually dialed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use mandate_core::ssrf::FetchPolicy;
use mandate_net::{GuardResolver, SystemResolver, forbidden_in_chain, literal_host_forbidden};
use reqwest::dns::Resolve;
use rmcp::transport::auth::{OAuthHttpClient, OAuthHttpClientFuture, OAuthHttpRedirectPolicy, OAuthHttpRequest};
use url::Url;

use crate::error::ClientError;
use crate::record::{HttpExchange, MaybeRecorder, body_text, header_pairs};

/// The longest wait for a connection, whatever the request's own limit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_OAUTH_BODY: usize = 1024 * 1024;
const MAX_REDIRECTS: usize = 5;

/// What the client may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetPolicy {
    /// Allow `http` to, and connections to, loopback hosts (`--allow-loopback-http`).
    pub allow_loopback_http: bool,
}

impl NetPolicy {
    fn fetch_policy(self) -> FetchPolicy {
        FetchPolicy { allow_loopback: self.allow_loopback_http, allow_http: self.allow_loopback_http }
    }
}

/// True for `localhost`, `*.localhost` and loopback IP literals.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        // `::ffff:127.0.0.1` is loopback too.
        Some(url::Host::Ipv6(ip)) => ip.to_canonical().is_loopback(),
        None => false,
    }
}

/// Checks a URL before it is fetched or opened. `what` names it in the error.
pub fn check_url(raw: &str, what: &'static str, policy: NetPolicy) -> Result<Url, ClientError> {
    let refuse = |reason: &str| ClientError::UnsafeUrl { what, url: raw.to_owned(), reason: reason.to_owned() };
    let url = Url::parse(raw).map_err(|_| refuse("not an absolute URL"))?;
    let private_literal = literal_host_forbidden(&url, FetchPolicy { allow_loopback: true, allow_http: true });
    if matches!(url.scheme(), "http" | "https") && private_literal {
        return Err(ClientError::PrivateAddress { url: raw.to_owned() });
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&url) && policy.allow_loopback_http => {}
        "http" if is_loopback_host(&url) => {
            return Err(refuse("plain http is allowed only for loopback hosts with --allow-loopback-http"));
        }
        "http" => return Err(refuse("plain http is allowed only for loopback hosts; use https")),
        _ => return Err(refuse("only https URLs are allowed")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refuse("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("credentials in the URL are not allowed"));
    }
    if is_loopback_host(&url) && !policy.allow_loopback_http {
        return Err(refuse("loopback hosts are allowed only with --allow-loopback-http"));
    }
    Ok(url)
}

/// Builds a reqwest client whose resolver refuses forbidden addresses and which never follows
/// redirects by itself. Connecting gives up after `timeout` (at most 10 s); each request sets
/// its own overall limit (an MCP event stream may rightly stay open for long).
pub fn guarded_reqwest(
    policy: NetPolicy,
    resolver: Option<Arc<dyn Resolve>>,
    timeout: Duration,
) -> Result<reqwest::Client, ClientError> {
    let inner = resolver.unwrap_or_else(|| Arc::new(SystemResolver));
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(CONNECT_TIMEOUT))
        .no_proxy()
        .tcp_nodelay(true)
        .user_agent(concat!("mandate-client/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardResolver::new(inner, policy.fetch_policy())))
        .build()
        .map_err(|e| ClientError::Network(e.to_string()))
}

/// Maps a reqwest failure, naming a guard refusal as such.
pub fn network_error(url: &str, e: &reqwest::Error) -> ClientError {
    if forbidden_in_chain(e) {
        ClientError::PrivateAddress { url: url.to_owned() }
    } else if e.is_timeout() {
        ClientError::Network(format!("{url}: timed out, no answer within the limit (raise it with --timeout)"))
    } else if e.is_connect() {
        ClientError::Network(format!("{url}: could not connect"))
    } else {
        ClientError::Network(format!("{url}: {e}"))
    }
}

/// The HTTP client rmcp's OAuth state machine uses (discovery, registration, token requests):
/// every request and every redirect hop checked, each given up after `timeout`. The first
/// refusal is kept so the caller can report it instead of rmcp's generic error.
#[derive(Clone)]
pub struct GuardedOAuthHttp {
    client: reqwest::Client,
    policy: NetPolicy,
    timeout: Duration,
    refusal: Arc<Mutex<Option<ClientError>>>,
    recorder: MaybeRecorder,
}

impl GuardedOAuthHttp {
    pub fn new(policy: NetPolicy, resolver: Option<Arc<dyn Resolve>>, timeout: Duration) -> Result<Self, ClientError> {
        Ok(Self {
            client: guarded_reqwest(policy, resolver, timeout)?,
            policy,
            timeout,
            refusal: Arc::default(),
            recorder: None,
        })
    }

    /// Records every exchange (each redirect hop on its own) with `recorder`.
    pub fn with_recorder(mut self, recorder: Option<Arc<dyn crate::record::Recorder>>) -> Self {
        self.recorder = recorder;
        self
    }

    fn record(&self, exchange: HttpExchange) {
        if let Some(r) = &self.recorder {
            r.http(exchange);
        }
    }

    /// The first URL this client refused, if any (taken).
    pub fn take_refusal(&self) -> Option<ClientError> {
        self.refusal.lock().ok().and_then(|mut r| r.take())
    }

    fn refuse(&self, e: ClientError) -> rmcp::transport::auth::OAuthHttpClientError {
        let text = e.to_string();
        if let Ok(mut slot) = self.refusal.lock()
            && slot.is_none()
        {
            *slot = Some(e);
        }
        text.into()
    }

    async fn run(
        &self,
        request: OAuthHttpRequest,
    ) -> Result<http::Response<Vec<u8>>, rmcp::transport::auth::OAuthHttpClientError> {
        let OAuthHttpRequest { request, redirect_policy, .. } = request;
        let (parts, body) = request.into_parts();
        let mut url = parts.uri.to_string();
        let mut method = parts.method;
        let mut body = Some(body);
        for _ in 0..=MAX_REDIRECTS {
            let checked = check_url(&url, "fetching", self.policy).map_err(|e| {
                self.record(HttpExchange {
                    purpose: "oauth".into(),
                    method: method.to_string(),
                    url: url.clone(),
                    error: Some(format!("not sent: {e}")),
                    ..Default::default()
                });
                self.refuse(e)
            })?;
            let mut req = self.client.request(method.clone(), checked).timeout(self.timeout);
            for (name, value) in &parts.headers {
                req = req.header(name, value);
            }
            if let Some(b) = body.clone() {
                req = req.body(b);
            }
            let mut exchange = HttpExchange {
                purpose: "oauth".into(),
                method: method.to_string(),
                url: url.clone(),
                request_headers: header_pairs(&parts.headers),
                request_body: body.as_deref().filter(|b| !b.is_empty()).map(body_text),
                ..Default::default()
            };
            let resp = req.send().await.map_err(|e| {
                let err = network_error(&url, &e);
                exchange.error = Some(err.to_string());
                self.record(exchange.clone());
                if matches!(err, ClientError::PrivateAddress { .. }) {
                    self.refuse(err)
                } else {
                    err.to_string().into()
                }
            })?;
            let status = resp.status();
            exchange.status = Some(status.as_u16());
            exchange.response_headers = header_pairs(resp.headers());
            if status.is_redirection() && redirect_policy == OAuthHttpRedirectPolicy::Follow {
                self.record(exchange);
                let Some(next) = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()) else {
                    return Err("redirect without a Location".into());
                };
                let base = Url::parse(&url).map_err(|e| e.to_string())?;
                url = base.join(next).map_err(|e| e.to_string())?.to_string();
                if status != reqwest::StatusCode::TEMPORARY_REDIRECT
                    && status != reqwest::StatusCode::PERMANENT_REDIRECT
                {
                    method = http::Method::GET;
                    body = None;
                }
                continue;
            }
            let mut builder = http::Response::builder().status(status);
            for (name, value) in resp.headers() {
                builder = builder.header(name, value);
            }
            let mut bytes = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| e.to_string())?;
                if bytes.len() + chunk.len() > MAX_OAUTH_BODY {
                    return Err(format!("{url}: response larger than {MAX_OAUTH_BODY} bytes").into());
                }
                bytes.extend_from_slice(&chunk);
            }
            exchange.response_body = Some(body_text(&bytes));
            self.record(exchange);
            return builder.body(bytes).map_err(|e| e.to_string().into());
        }
        Err(format!("{url}: more than {MAX_REDIRECTS} redirects").into())
    }
}

impl OAuthHttpClient for GuardedOAuthHttp {
    fn execute(&self, request: OAuthHttpRequest) -> OAuthHttpClientFuture<'_> {
        Box::pin(self.run(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str, policy: NetPolicy) -> bool {
        check_url(raw, "opening", policy).is_err()
    }

    #[test]
    fn authorization_url_schemes_c23() {
        let dev = NetPolicy { allow_loopback_http: true };
        for bad in [
            "javascript:alert(1)",
            "file:///etc/passwd",
            "data:text/html,hi",
            "vbscript:msgbox",
            "http://example.com/authorize",
            "ftp://example.com/",
            "https://user:pw@example.com/",
        ] {
            assert!(refused(bad, dev), "{bad}");
        }
        assert!(!refused("https://as.example.com/authorize?x=1", NetPolicy::default()));
        assert!(!refused("http://127.0.0.1:8080/authorize", dev));
        assert!(!refused("http://localhost:8080/authorize", dev));
        assert!(refused("http://127.0.0.1:8080/authorize", NetPolicy::default()));
        // IPv4-mapped loopback is loopback: refused without the flag, over https too.
        assert!(refused("https://[::ffff:127.0.0.1]:8443/token", NetPolicy::default()));
        assert!(refused("https://[::1]:8443/token", NetPolicy::default()));
        assert!(!refused("https://[::ffff:127.0.0.1]:8443/token", dev));
    }

    #[test]
    fn private_literals_are_refused_c22() {
        let dev = NetPolicy { allow_loopback_http: true };
        for bad in
            ["https://10.0.0.5/x", "https://169.254.169.254/latest", "https://[fd00::1]/", "https://192.168.1.1/"]
        {
            assert!(matches!(check_url(bad, "fetching", dev), Err(ClientError::PrivateAddress { .. })), "{bad}");
        }
    }
}
