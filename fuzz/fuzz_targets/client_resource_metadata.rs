//! The client's discovery from a 401 (mandate-client's `Connection::discover`, on rmcp's
//! `AuthorizationManager`): the `WWW-Authenticate` challenge and the protected resource metadata
//! (RFC 9728) it points to, over an in-memory network; the authorization server metadata is the
//! real one. Input: the first line is the challenge, the rest the resource metadata document.
//! Whatever discovery accepts must pass mandate-client's checks: S256, https endpoints.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mandate_fuzz::{Discovery, FakeNetwork, GOOD_ASM, assert_metadata_is_safe, discover, split_line};

fuzz_target!(|data: &[u8]| {
    let (challenge, prm) = split_line(data);
    let net = Arc::new(FakeNetwork {
        challenge: String::from_utf8_lossy(challenge).into_owned(),
        prm: prm.to_vec(),
        asm: GOOD_ASM.as_bytes().to_vec(),
        fetched: Default::default(),
    });
    if let Discovery::Accepted(m) = discover(net) {
        assert_metadata_is_safe(&m);
    }
});
