//! The client's discovery (as `client_resource_metadata`) with the authorization server metadata
//! (RFC 8414) fuzzed: the challenge and resource metadata are the real ones. Input: the
//! authorization server metadata document.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mandate_fuzz::{Discovery, FakeNetwork, GOOD_CHALLENGE, GOOD_PRM, ISSUER, assert_metadata_is_safe, discover};

fuzz_target!(|data: &[u8]| {
    let net = Arc::new(FakeNetwork {
        challenge: GOOD_CHALLENGE.to_owned(),
        prm: GOOD_PRM.as_bytes().to_vec(),
        asm: data.to_vec(),
        fetched: Default::default(),
    });
    if let Discovery::Accepted(m) = discover(net) {
        assert_metadata_is_safe(&m);
        // Metadata found through the resource's own pointer is the named server's: its issuer.
        let issuer = m.issuer.as_deref().unwrap_or_else(|| panic!("accepted metadata without an issuer"));
        assert_eq!(issuer.trim_end_matches('/'), ISSUER);
    }
});
