#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test harness
//! Property tests (FZ-05): PKCE S256 round trips and refuses every other verifier; the redirect
//! matcher never matches a URI that differs in any byte, except a loopback URI's port; scope
//! strings survive parse → render → parse and malformed tokens are always refused.

use mandate_core::pkce::{s256, validate_challenge, verify};
use mandate_core::redirect::matches;
use mandate_core::scope::ScopeSet;
use proptest::prelude::*;

fn verifier() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[A-Za-z0-9._~-]{43,128}").unwrap()
}

/// A printable ASCII byte other than `b`.
fn other_byte(b: u8, pick: u8) -> u8 {
    let c = 0x21 + (pick % 94);
    if c != b {
        c
    } else if c == 0x7e {
        0x21
    } else {
        c + 1
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn pkce_round_trips(v in verifier()) {
        let ch = s256(&v);
        prop_assert_eq!(ch.len(), 43);
        prop_assert!(validate_challenge(Some(&ch), Some("S256")).is_ok());
        prop_assert!(verify(&v, &ch));
        // The challenge is never accepted as its own verifier (PK-11).
        prop_assert!(!verify(&ch, &ch));
    }

    #[test]
    fn pkce_refuses_any_other_verifier(v in verifier(), at in any::<prop::sample::Index>(), pick in any::<u8>()) {
        let ch = s256(&v);
        let mut bytes = v.clone().into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = other_byte(bytes[i], pick);
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert!(!verify(&changed, &ch), "{} vs {}", changed, v);
        // Truncated or extended by one character.
        prop_assert!(!verify(&v[..v.len() - 1], &ch));
        let longer = format!("{v}a");
        prop_assert!(!verify(&longer, &ch));
    }

    #[test]
    fn redirect_matching_is_exact_for_https(
        host in "[a-z]{1,12}\\.(test|example)",
        path in "(/[a-zA-Z0-9_-]{0,10}){1,3}",
        at in any::<prop::sample::Index>(),
        pick in any::<u8>(),
    ) {
        let registered = format!("https://{host}{path}");
        prop_assert!(matches(&registered, &registered));
        let mut bytes = registered.clone().into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = other_byte(bytes[i], pick);
        let requested = String::from_utf8(bytes).unwrap();
        prop_assert!(!matches(&registered, &requested), "{} matched {}", requested, registered);
        for suffix in ["/", "?x=1", "#f"] {
            let longer = format!("{registered}{suffix}");
            prop_assert!(!matches(&registered, &longer));
        }
    }

    #[test]
    fn loopback_redirects_differ_only_by_port(
        host in prop::sample::select(vec!["127.0.0.1", "[::1]", "localhost"]),
        registered_port in prop::option::of(1024u16..),
        requested_port in 1u16..,
        path in "(/[a-zA-Z0-9_-]{1,10}){1,2}",
        at in any::<prop::sample::Index>(),
        pick in any::<u8>(),
    ) {
        let port = |p: Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
        let registered = format!("http://{host}{}{path}", port(registered_port));
        let same_but_port = format!("http://{host}:{requested_port}{path}");
        prop_assert!(matches(&registered, &same_but_port), "{} vs {}", registered, same_but_port);
        // Any byte changed outside the port is refused.
        let port_start = "http://".len() + host.len();
        let port_end = port_start + port(registered_port).len();
        let mut bytes = registered.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(!(port_start..port_end).contains(&i));
        bytes[i] = other_byte(bytes[i], pick);
        let requested = String::from_utf8(bytes).unwrap();
        prop_assert!(!matches(&registered, &requested), "{} matched {}", requested, registered);
    }

    #[test]
    fn scope_strings_round_trip(tokens in prop::collection::vec("[!#-\\[\\]-~]{1,20}", 0..10)) {
        let set = ScopeSet::parse(&tokens.join(" ")).unwrap();
        let rendered = set.to_string();
        prop_assert_eq!(ScopeSet::parse(&rendered).unwrap(), set.clone());
        for t in &tokens {
            prop_assert!(set.contains(t));
        }
    }

    #[test]
    fn scope_tokens_with_forbidden_characters_are_refused(
        good in "[a-z.]{1,10}",
        bad in prop::sample::select(vec!['"', '\\', '\u{7f}', '\u{0}', '\t', '\n', 'é', '\u{202e}']),
    ) {
        let token = format!("{good}{bad}");
        prop_assert!(ScopeSet::parse(&format!("{good} {token}")).is_err(), "{:?} accepted", token);
    }
}
