//! `Authorization: Basic` client credentials (RFC 6749 §2.3.1: form-urlencoded id and secret,
//! base64). Input: the raw header value; when it holds a `\n`, also the two sides of it as a
//! client id and secret, encoded as a client does and parsed back (roundtrip).
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use mandate_fuzz::split_line;
use mandate_server::fuzzing::basic_credentials;

fn headers(value: &[u8]) -> Option<http::HeaderMap> {
    let v = http::HeaderValue::from_bytes(value).ok()?;
    let mut h = http::HeaderMap::new();
    h.insert(http::header::AUTHORIZATION, v);
    Some(h)
}

fuzz_target!(|data: &[u8]| {
    if let Some(h) = headers(data) {
        let _ = basic_credentials(&h);
    }
    let (id, secret) = split_line(data);
    if !data.contains(&b'\n') {
        return;
    }
    let (Ok(id), Ok(secret)) = (std::str::from_utf8(id), std::str::from_utf8(secret)) else { return };
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let value = format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(id), enc(secret))));
    let h = headers(value.as_bytes()).unwrap_or_else(|| panic!("a Basic header is always a valid header value"));
    let creds = basic_credentials(&h)
        .unwrap_or_else(|e| panic!("well-formed credentials refused: {e:?}"))
        .unwrap_or_else(|| panic!("credentials not read"));
    assert_eq!(creds.client_id, id);
    assert_eq!(creds.client_secret, secret);
});
