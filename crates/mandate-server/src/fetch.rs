//! Outbound fetches of Client ID Metadata Documents, behind an SSRF guard: the addresses a name
//! resolves to are checked in the resolver reqwest dials with (so a DNS answer that changes
//! between check and connect cannot slip through), IP-literal hosts are checked before any
//! request, redirects are never followed, and size, time and concurrency are capped.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mandate_core::service::{ClientDocumentFetcher, FetchError, FetchedDocument};
use mandate_core::ssrf::FetchPolicy;
use mandate_net::{GuardResolver, SystemResolver, forbidden_in_chain, literal_host_forbidden};
use reqwest::dns::Resolve;
use tokio::sync::Semaphore;

use mandate_core::service::cimd_limits::MAX_DOCUMENT_BYTES;

/// The whole fetch, connect to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Fetches in flight at once; more fail fast (SS-16).
const MAX_CONCURRENT_FETCHES: usize = 8;

/// The production [`ClientDocumentFetcher`].
pub struct GuardedFetcher {
    client: reqwest::Client,
    policy: FetchPolicy,
    permits: Semaphore,
}

impl GuardedFetcher {
    pub fn new(policy: FetchPolicy) -> Result<Self, reqwest::Error> {
        Self::with_resolver(policy, Arc::new(SystemResolver))
    }

    /// With a custom name resolver (tests map names to chosen addresses).
    pub fn with_resolver(policy: FetchPolicy, resolver: Arc<dyn Resolve>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .no_proxy()
            .user_agent(concat!("mandate/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardResolver::new(resolver, policy)))
            .build()?;
        Ok(Self { client, policy, permits: Semaphore::new(MAX_CONCURRENT_FETCHES) })
    }
}

/// `(cacheable, max_age)` from a Cache-Control header.
fn cache_control(value: Option<&str>) -> (bool, Option<i64>) {
    let Some(v) = value else { return (true, None) };
    let mut max_age = None;
    for directive in v.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-store" || directive == "no-cache" {
            return (false, None);
        }
        if let Some(n) = directive.strip_prefix("max-age=") {
            max_age = n.trim_matches('"').parse::<i64>().ok();
        }
    }
    (true, max_age)
}

#[async_trait]
impl ClientDocumentFetcher for GuardedFetcher {
    async fn fetch(&self, url: &str) -> Result<FetchedDocument, FetchError> {
        let parsed = mandate_core::service::validate_document_url(url, self.policy)?;
        if literal_host_forbidden(&parsed, self.policy) {
            return Err(FetchError::ForbiddenAddress);
        }
        let _permit = self.permits.try_acquire().map_err(|_| FetchError::Busy)?;
        let mut resp = self.client.get(parsed).header("accept", "application/json").send().await.map_err(|e| {
            if forbidden_in_chain(&e) {
                FetchError::ForbiddenAddress
            } else {
                FetchError::Transport(transport_reason(&e))
            }
        })?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status(status));
        }
        if resp.content_length().is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
            return Err(FetchError::TooLarge);
        }
        let (cacheable, max_age) = cache_control(resp.headers().get("cache-control").and_then(|v| v.to_str().ok()));
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Transport(transport_reason(&e)))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(FetchedDocument { body, max_age, cacheable })
    }
}

fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "transfer failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_parsing() {
        assert_eq!(cache_control(Some("public, max-age=600")), (true, Some(600)));
        assert_eq!(cache_control(Some("no-store")), (false, None));
        assert_eq!(cache_control(None), (true, None));
    }
}
