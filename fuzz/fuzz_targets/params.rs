//! Form bodies and query strings: `Params` (OAuth 2.1 §3.1: a repeated parameter is an error,
//! an empty one absent, control characters refused) and the server's `form_params` (content type).
//! Input: the first line is the `Content-Type`, the rest the body; the whole input is also parsed
//! as a query string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::params::Params;
use mandate_fuzz::split_line;

fn check(input: &[u8]) {
    let params = Params::parse(input);
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(input).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    for (name, _) in &pairs {
        let values: Vec<&str> = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect();
        assert_eq!(params.is_repeated(name), values.len() > 1);
        match params.single(name) {
            Ok(Some(v)) => {
                assert_eq!(values, [v], "single() returned a value of a repeated or other parameter");
                assert!(!v.is_empty() && !v.chars().any(char::is_control));
            }
            Ok(None) => assert!(values.len() == 1 && values[0].is_empty()),
            Err(_) => assert!(values.len() > 1 || values[0].chars().any(char::is_control)),
        }
        for v in params.all(name) {
            assert!(!v.is_empty() && !v.chars().any(char::is_control));
        }
    }
    // Parse → serialize → parse: the same answers.
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        ser.append_pair(k, v);
    }
    let again = Params::parse(ser.finish().as_bytes());
    for (name, _) in &pairs {
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
