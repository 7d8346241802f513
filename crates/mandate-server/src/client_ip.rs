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

/// A budget per client address (a burst, then one more every period), checked where a handler
/// decides it applies: `GET /authorize` counts only requests without a signed-in person, each of
/// which may store a pending authorization request. With a global budget too, every address
/// together is bounded (many addresses, each within its own budget).
pub struct AddressBudget {
    limiter: governor::DefaultKeyedRateLimiter<IpAddr>,
    global: Option<governor::DefaultDirectRateLimiter>,
}

/// Which budget a request exceeded, and the seconds until the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    Address(u64),
    Everyone(u64),
}

impl AddressBudget {
    /// `None` when the burst is 0 (no budget at all would refuse everything).
    pub fn new(burst: u32, period: std::time::Duration) -> Option<Self> {
        let burst = std::num::NonZeroU32::new(burst)?;
        let quota = governor::Quota::with_period(period)?.allow_burst(burst);
        Some(Self { limiter: governor::RateLimiter::keyed(quota), global: None })
    }

    /// Also at most `per_minute` from every address together (a burst of as many); 0: no
    /// global bound.
    pub fn with_global_per_minute(mut self, per_minute: u32) -> Self {
        self.global = std::num::NonZeroU32::new(per_minute)
            .map(|n| governor::RateLimiter::direct(governor::Quota::per_minute(n).allow_burst(n)));
        self
    }

    /// Takes one from `ip`'s budget, then from everyone's.
    pub fn take(&self, ip: IpAddr) -> Result<(), Spent> {
        use governor::clock::Clock;
        let wait = |not_until: governor::NotUntil<governor::clock::QuantaInstant>| {
            not_until.wait_time_from(governor::clock::DefaultClock::default().now()).as_secs_f64().ceil() as u64
        };
        self.limiter.check_key(&network_of(ip)).map_err(|n| Spent::Address(wait(n)))?;
        match &self.global {
            Some(g) => g.check().map_err(|n| Spent::Everyone(wait(n))),
            None => Ok(()),
        }
    }
}

impl AddressBudget {
    /// Forgets the addresses whose budget is whole again (they would start afresh anyway), and
    /// gives the memory back: without it, every address ever seen keeps an entry.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// Every minute, while `what` lives, `sweep` it (a keyed rate limiter forgetting idle keys); no
/// task outside a tokio runtime.
pub(crate) fn sweep_every_minute<T: Send + Sync + 'static>(what: std::sync::Weak<T>, sweep: fn(&T)) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        every.tick().await;
        loop {
            every.tick().await;
            match what.upgrade() {
                Some(w) => sweep(&w),
                None => return,
            }
        }
    });
}

/// The address a budget is kept for: an IPv4 address (or one mapped into IPv6) as it is, an IPv6
/// address by its /64, the block one host or one home is given (it can use every address in it).
fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_whose_budget_is_whole_again_are_forgotten() {
        // A budget that refills at once: every address is idle again right after its request.
        let budget = AddressBudget::new(1, std::time::Duration::from_nanos(1)).unwrap_or_else(|| unreachable!());
        for i in 0..200u8 {
            assert_eq!(budget.take(IpAddr::from([198, 51, 100, i])), Ok(()));
        }
        assert_eq!(budget.len(), 200);
        budget.forget_idle();
        assert!(budget.is_empty(), "{} left", budget.len());
        // One still spending its budget is kept.
        let slow = AddressBudget::new(1, std::time::Duration::from_secs(3600)).unwrap_or_else(|| unreachable!());
        assert_eq!(slow.take(IpAddr::from([198, 51, 100, 1])), Ok(()));
        slow.forget_idle();
        assert_eq!(slow.len(), 1);
    }

    #[test]
    fn an_ipv6_host_has_one_budget_for_its_whole_64() {
        let budget = AddressBudget::new(2, std::time::Duration::from_secs(3600)).unwrap_or_else(|| unreachable!());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|_| unreachable!());
        assert_eq!(budget.take(ip("2001:db8:1:2::1")), Ok(()));
        assert_eq!(budget.take(ip("2001:db8:1:2:ffff::9")), Ok(()));
        assert!(matches!(budget.take(ip("2001:db8:1:2:abcd::1")), Err(Spent::Address(_))), "the same /64");
        assert_eq!(budget.take(ip("2001:db8:1:3::1")), Ok(()), "another /64");
        assert_eq!(budget.take(ip("::ffff:198.51.100.7")), Ok(()));
        assert_eq!(budget.take(ip("198.51.100.7")), Ok(()), "a mapped address is its IPv4 one");
        assert!(matches!(budget.take(ip("198.51.100.7")), Err(Spent::Address(_))));
        assert_eq!(budget.take(ip("198.51.100.8")), Ok(()), "IPv4 addresses each have their own");
    }

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
