//! The address classifier every outbound fetch dials through (`mandate_core::ssrf::is_forbidden`,
//! and `mandate_net::literal_host_forbidden` for IP-literal hosts), against a table of the ranges
//! no fetch may reach, written here independently of the classifier's code.
//! Input: the first byte's low bit allows loopback; then 4 bytes of an IPv4 address, 16 of an
//! IPv6 address, and the rest as the host of an `https` URL.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use mandate_core::ssrf::{FetchPolicy, is_forbidden};

/// IPv4 special-use ranges (RFC 6890 and its successors) other than loopback.
const V4: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 0, 0, 0], 24),
    ([192, 0, 2, 0], 24),
    ([192, 168, 0, 0], 16),
    ([198, 18, 0, 0], 15),
    ([198, 51, 100, 0], 24),
    ([203, 0, 113, 0], 24),
    ([224, 0, 0, 0], 4),
    ([240, 0, 0, 0], 4),
];

/// IPv6 ranges no fetch may reach, other than loopback and IPv4-mapped addresses.
const V6: &[(u128, u32)] = &[
    (0, 96),                                     // ::/96, IPv4-compatible (and ::)
    (0x0100 << 112, 64),                         // 100::/64 discard-only
    (0x2001 << 112, 23),                         // IETF protocol assignments (Teredo, ORCHID, ...)
    (0x2001_0db8 << 96, 32),                     // documentation
    (0x2002 << 112, 16),                         // 6to4
    (0x0064_ff9b << 96, 32),                     // NAT64: 64:ff9b::/96 and the local-use 64:ff9b:1::/48, whole /32
    (0xfc00 << 112, 7),                          // unique local
    (0xfe80 << 112, 10),                         // link local
    (0xfec0 << 112, 10),                         // site local (deprecated)
    (0xff00 << 112, 8),                          // multicast
];

fn v4_expected(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    let within = |(net, len): ([u8; 4], u32)| {
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
    };
    if within(([127, 0, 0, 0], 8)) {
        return !allow_loopback;
    }
    V4.iter().any(|r| within(*r))
}

fn v6_expected(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    let bits = u128::from(ip);
    if bits >> 32 == 0xffff {
        return v4_expected(Ipv4Addr::from((bits & 0xffff_ffff) as u32), allow_loopback);
    }
    if bits == 1 {
        return !allow_loopback;
    }
    V6.iter().any(|&(net, len)| {
        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        bits & mask == net & mask
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let allow = flags & 1 == 1;
    let policy = FetchPolicy { allow_loopback: allow, allow_http: allow };
    if let Some(b) = rest.get(..4) {
        let v4 = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        let expected = v4_expected(v4, allow);
        assert_eq!(is_forbidden(IpAddr::V4(v4), policy), expected, "{v4}");
        // The same address written as IPv6 (mapped) is judged the same: no bypass by spelling.
        assert_eq!(is_forbidden(IpAddr::V6(v4.to_ipv6_mapped()), policy), expected, "{}", v4.to_ipv6_mapped());
    }
    if let Some(b) = rest.get(4..20) {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(b);
        let v6 = Ipv6Addr::from(octets);
        assert_eq!(is_forbidden(IpAddr::V6(v6), policy), v6_expected(v6, allow), "{v6}");
    }
    // A URL's host, however spelled (`127.1`, `0x7f000001`, `[::ffff:7f00:1]`): judged as the
    // address the URL parser reads it as.
    if let (Some(b), Ok(host)) = (rest.get(20..), std::str::from_utf8(rest.get(20..).unwrap_or_default())) {
        let _ = b;
        if let Ok(url) = reqwest::Url::parse(&format!("https://{host}/")) {
            let forbidden = mandate_net::literal_host_forbidden(&url, policy);
            match url.host() {
                Some(url::Host::Ipv4(a)) => assert_eq!(forbidden, v4_expected(a, allow), "{host} is {a}"),
                Some(url::Host::Ipv6(a)) => assert_eq!(forbidden, v6_expected(a, allow), "{host} is {a}"),
                Some(url::Host::Domain(_)) => assert!(!forbidden, "a name is judged by the resolver: {host}"),
                None => assert!(forbidden, "no host: {host}"),
            }
        }
    }
});
