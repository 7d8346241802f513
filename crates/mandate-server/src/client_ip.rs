//! The client's address, for rate limits and the sign-in lock: the TCP peer, or, when the
//! operator declares a trusted reverse proxy in front (`trust_forwarded_for`), the last address
//! that proxy appended to `X-Forwarded-For` (earlier entries are the client's own claims).

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};
use tower_governor::GovernorError;
use tower_governor::key_extractor::KeyExtractor;

/// The client address as the server should believe it.
pub fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        // Only the last entry was written by the proxy; an unparseable one is not replaced by an
        // earlier (client-supplied) entry.
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|a| a.trim().parse::<IpAddr>().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    peer
}

/// Rate-limit key: [`client_ip`].
#[derive(Debug, Clone, Copy)]
pub struct ClientIpKeyExtractor {
    pub trust_forwarded_for: bool,
}

impl KeyExtractor for ClientIpKeyExtractor {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<IpAddr, GovernorError> {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        client_ip(req.headers(), peer, self.trust_forwarded_for).ok_or(GovernorError::UnableToExtractKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap_or_else(|_| unreachable!()));
        let peer: Option<IpAddr> = "10.0.0.2".parse().ok();
        assert_eq!(client_ip(&h, peer, false), peer, "untrusted: the peer");
        assert_eq!(client_ip(&h, peer, true), "203.0.113.7".parse().ok(), "trusted: what the proxy appended");
        assert_eq!(client_ip(&HeaderMap::new(), peer, true), peer, "no header: the peer");
    }
}
