//! Which network addresses an outbound fetch (a Client ID Metadata Document, later JWKS and
//! metadata) may reach: public unicast only, unless loopback is explicitly allowed for tests.
//! RFC 6890 special-use ranges, private, link-local, CGNAT, multicast, NAT64-mapped and
//! IPv4-mapped forms are all refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What an outbound fetch may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchPolicy {
    /// Allow 127.0.0.0/8 and ::1 (local development and tests only).
    pub allow_loopback: bool,
    /// Allow plain `http` URLs (local development and tests only).
    pub allow_http: bool,
}

fn v4_forbidden(ip: Ipv4Addr, policy: FetchPolicy) -> bool {
    let o = ip.octets();
    if ip.is_loopback() {
        return !policy.allow_loopback;
    }
    ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1])) // 100.64/10 CGNAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24 IETF protocol assignments
        || (o[0] == 198 && (18..20).contains(&o[1])) // 198.18/15 benchmarking
        || o[0] >= 240 // reserved
}

/// True when a connection to `ip` must not be made.
pub fn is_forbidden(ip: IpAddr, policy: FetchPolicy) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4, policy),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_forbidden(v4, policy);
            }
            if v6.is_loopback() {
                return !policy.allow_loopback;
            }
            let seg = v6.segments();
            v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
                || (seg[0] & 0xffc0) == 0xfe80 // fe80::/10 link local
                || (seg[0] & 0xffc0) == 0xfec0 // fec0::/10 site local (deprecated)
                || (seg[0] == 0x64 && seg[1] == 0xff9b) // 64:ff9b::/96 NAT64
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || (seg[0] == 0x2002) // 6to4 can embed private v4
                || (seg[0] == 0x2001 && seg[1] < 0x0200) // 2001::/23 IETF protocol assignments (Teredo, ORCHID, benchmarking)
                || (seg[0] == 0x0100 && seg[1..4].iter().all(|s| *s == 0)) // 100::/64 discard-only
                || is_v4_compatible(v6)
        }
    }
}

fn is_v4_compatible(v6: Ipv6Addr) -> bool {
    let seg = v6.segments();
    seg[..6].iter().all(|s| *s == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_ranges_are_refused_ss_10() {
        let p = FetchPolicy::default();
        for ip in [
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "127.0.0.1",
            "0.0.0.0",
            "fc00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::1",
            "::ffff:127.0.0.1",
            "::",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:1ff:ffff::1",
            "100::1",
        ] {
            let addr: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert!(is_forbidden(addr, p), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "1.1.1.1", "2001:200::1", "2001:4860::8888", "100:0:0:1::1"] {
            let addr: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert!(!is_forbidden(addr, p), "{ip}");
        }
    }

    #[test]
    fn loopback_only_when_allowed() {
        let p = FetchPolicy { allow_loopback: true, allow_http: true };
        assert!(!is_forbidden("127.0.0.1".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), p));
        assert!(is_forbidden("10.0.0.1".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), p));
    }
}
