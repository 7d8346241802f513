//! The SSRF guard shared by every outbound fetch mandate makes (the authorization server fetching
//! Client ID Metadata Documents, the agent's client fetching metadata, tokens and MCP responses).
//!
//! The addresses a name resolves to are checked inside the resolver reqwest dials with, so a DNS
//! answer that changes between check and connect cannot slip through; IP-literal hosts never reach
//! a resolver, so callers check them with [`literal_host_forbidden`] before sending.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mandate_core::ssrf::{FetchPolicy, is_forbidden};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Marks a resolution refused by the guard; found again in reqwest's error chain.
#[derive(Debug)]
pub struct ForbiddenAddress;

impl std::fmt::Display for ForbiddenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("address not allowed")
    }
}
impl StdError for ForbiddenAddress {}

/// Resolves with the system resolver.
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Wraps a resolver; refuses the name when any address it resolves to is forbidden.
pub struct GuardResolver {
    inner: Arc<dyn Resolve>,
    policy: FetchPolicy,
}

impl GuardResolver {
    pub fn new(inner: Arc<dyn Resolve>, policy: FetchPolicy) -> Self {
        Self { inner, policy }
    }
}

impl Resolve for GuardResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let inner = self.inner.clone();
        let policy = self.policy;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = inner.resolve(name).await?.collect();
            if addrs.is_empty() || addrs.iter().any(|a| is_forbidden(a.ip(), policy)) {
                return Err(Box::new(ForbiddenAddress) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// True when the URL's host is an IP literal the policy forbids.
pub fn literal_host_forbidden(url: &reqwest::Url, policy: FetchPolicy) -> bool {
    let Some(host) = url.host_str() else { return true };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| is_forbidden(ip, policy))
}

/// True when the guard refused an address somewhere in this error's chain.
pub fn forbidden_in_chain(e: &(dyn StdError + 'static)) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<ForbiddenAddress>() {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn literal_hosts_are_checked_ss_10() {
        let strict = FetchPolicy::default();
        let dev = FetchPolicy { allow_loopback: true, allow_http: true };
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(literal_host_forbidden(&url("http://10.0.0.5/x"), dev));
        assert!(literal_host_forbidden(&url("http://[fe80::1]/x"), dev));
        assert!(literal_host_forbidden(&url("http://169.254.169.254/latest"), dev));
        assert!(literal_host_forbidden(&url("http://127.0.0.1:8080/"), strict));
        assert!(!literal_host_forbidden(&url("http://127.0.0.1:8080/"), dev));
        assert!(!literal_host_forbidden(&url("https://example.com/"), strict));
    }

    #[test]
    fn forbidden_marker_is_found_in_a_chain() {
        #[derive(Debug)]
        struct Outer(ForbiddenAddress);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("outer")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        assert!(forbidden_in_chain(&Outer(ForbiddenAddress)));
        assert!(!forbidden_in_chain(&std::fmt::Error));
    }
}
