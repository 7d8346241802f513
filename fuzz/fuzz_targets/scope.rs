//! Scope strings (`ScopeSet::parse`, RFC 6749 §3.3) and resource indicators
//! (`canonical_resource`, RFC 8707). Input: the string. Parsing then rendering then parsing gives
//! the same set; canonicalisation is idempotent and yields an absolute http(s) URI.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::scope::{ScopeSet, canonical_resource};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(set) = ScopeSet::parse(&s) {
        let tokens: Vec<&str> = set.iter().collect();
        assert!(tokens.len() <= 64);
        for (i, t) in tokens.iter().enumerate() {
            assert!(!t.is_empty() && t.len() <= 128, "{t:?}");
            assert!(t.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)), "{t:?}");
            assert!(!tokens[..i].contains(t), "duplicate {t:?}");
            assert!(set.contains(t));
        }
        let rendered = set.to_string();
        let again = ScopeSet::parse(&rendered).unwrap_or_else(|e| panic!("rendered scope refused: {e:?}"));
        assert_eq!(again, set);
        assert!(set.is_subset_of(&again) && again.is_subset_of(&set));
        assert_eq!(set.union(&set), set);
        assert_eq!(set.intersection(&set), set);
        assert!(set.difference(&set).is_empty());
    }
    if let Ok(c) = canonical_resource(&s) {
        assert_eq!(canonical_resource(&c).as_deref(), Ok(c.as_str()), "not idempotent: {s:?} -> {c:?}");
        let u = url::Url::parse(&c).unwrap_or_else(|_| panic!("{c}"));
        assert!(matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        assert!(u.fragment().is_none() && u.username().is_empty() && u.password().is_none());
        assert!(!c.contains('#'));
    }
});
