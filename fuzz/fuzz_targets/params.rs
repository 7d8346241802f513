//! Form bodies and query strings: `Params` (OAuth 2.1 §3.1: a repeated parameter is an error,
//! an empty one absent, control characters and values that are not well-formed percent-encoded
//! UTF-8 refused) and the server's `form_params` (content type).
//! Input: the first line is the `Content-Type`, the rest the body; the whole input is also parsed
//! as a query string.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use mandate_core::params::Params;
use mandate_fuzz::split_line;

/// The value a raw form value stands for, when it is well formed: `+` a space, each `%` followed
/// by two hex digits, the bytes UTF-8 (decoded here by hand, independently of the parser).
fn well_formed(raw: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok().filter(|_| hex.bytes().all(|b| b.is_ascii_hexdigit()))?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Distinct names the oracle checks in one input.
const MAX_NAMES: usize = 64;

fn check(input: &[u8]) {
    let params = Params::parse(input);
    // (name as decoded, the value if well formed)
    let pairs: Vec<(String, Option<String>)> = input
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = match p.iter().position(|&b| b == b'=') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (p, &b""[..]),
            };
            let name = form_urlencoded::parse(name).map(|(k, _)| k.into_owned()).next().unwrap_or_default();
            (name, well_formed(value))
        })
        .collect();
    // Each name's values, in order, grouped once; each distinct name is checked once. Beyond
    // MAX_NAMES distinct names only the first are checked (the parser still parses them all):
    // checking every one of a thousand names made each input quadratic (400 executions a second).
    let mut by_name: BTreeMap<&str, Vec<&Option<String>>> = BTreeMap::new();
    let mut order = Vec::new();
    for (name, value) in &pairs {
        let values = by_name.entry(name.as_str()).or_default();
        if values.is_empty() {
            order.push(name.as_str());
        }
        values.push(value);
    }
    for name in order.iter().take(MAX_NAMES) {
        let values = &by_name[name];
        let repeated = values.len() > 1;
        assert_eq!(params.is_repeated(name), repeated);
        match params.single(name) {
            Ok(Some(v)) => {
                assert!(!repeated, "single() returned a value of a repeated parameter");
                assert_eq!(values[0].as_deref(), Some(v), "single() returned another value");
                assert!(!v.is_empty() && !v.chars().any(char::is_control));
            }
            Ok(None) => assert!(!repeated && values[0].as_deref() == Some("")),
            Err(_) => assert!(
                repeated || values[0].as_ref().is_none_or(|v| v.chars().any(char::is_control)),
                "refused a well-formed, single, clean value"
            ),
        }
        for v in params.all(name) {
            assert!(!v.is_empty() && !v.chars().any(char::is_control));
        }
    }
    // Parse → serialize → parse: the same answers for every well-formed parameter.
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        if let Some(v) = v {
            ser.append_pair(k, v);
        }
    }
    let again = Params::parse(ser.finish().as_bytes());
    for name in order.iter().take(MAX_NAMES).filter(|n| by_name[*n].iter().all(|v| v.is_some())) {
        assert_eq!(params.single(name).ok(), again.single(name).ok());
        assert_eq!(params.all(name), again.all(name));
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let (content_type, body) = split_line(data);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(content_type) {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    let body = bytes::Bytes::copy_from_slice(body);
    if mandate_server::fuzzing::form_params(&headers, &body).is_ok() {
        let ct = std::str::from_utf8(content_type).unwrap_or_default();
        assert!(
            ct.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
        );
        check(&body);
    }
});
