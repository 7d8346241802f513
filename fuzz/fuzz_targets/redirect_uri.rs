//! Redirect URIs: what may be registered (`validate_for_registration`), how a requested URI is
//! matched to a registered one (`matches`: exact, or a loopback URI on any port), and how one is
//! shown (`shown`: what `display_host`, `redirect_target` and `csp_source` return, from one parse).
//! Input: the first line is the registered URI, the rest the requested one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::redirect::{MAX_REDIRECT_URI_LEN, is_loopback, matches, shown, validate_for_registration};
use mandate_fuzz::split_line;
use url::Url;

fn loopback_host(u: &Url) -> bool {
    matches!(u.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"))
}

fuzz_target!(|data: &[u8]| {
    let (registered, requested) = split_line(data);
    let registered = String::from_utf8_lossy(registered);
    let requested = if data.contains(&b'\n') { String::from_utf8_lossy(requested) } else { registered.clone() };
    let (registered, requested) = (registered.as_ref(), requested.as_ref());

    let _ = (shown(registered), shown(requested));
    assert!(matches(registered, registered));

    if validate_for_registration(registered).is_err() {
        return;
    }
    // A registrable URI: bounded, no fragment, credentials, wildcard or white space; https with
    // a host, http on loopback only, or a reverse-domain private-use scheme.
    assert!(!registered.is_empty() && registered.len() <= MAX_REDIRECT_URI_LEN);
    assert!(!registered.contains(['#', '*']) && !registered.chars().any(|c| c.is_whitespace() || c.is_control()));
    let reg = Url::parse(registered).unwrap_or_else(|_| panic!("registered URI does not parse: {registered}"));
    assert!(reg.username().is_empty() && reg.password().is_none());
    match reg.scheme() {
        "https" => assert!(reg.host_str().is_some_and(|h| !h.is_empty())),
        "http" => assert!(is_loopback(registered) && loopback_host(&reg), "{registered}"),
        other => assert!(other.contains('.'), "{registered}"),
    }
    // `csp_source` may hold `,` or `;` (WHATWG hosts may: `https://a0.p,test;`); the page refuses
    // such a source and allows forms to its own origin only (`mandate_server` `page`).

    if !matches(registered, requested) || requested == registered {
        return;
    }
    // Only the port of a loopback URI may differ: the requested URI goes to the same host, with
    // the same path and query, and carries no fragment or credentials.
    let req = Url::parse(requested).unwrap_or_else(|_| panic!("matched URI does not parse: {requested}"));
    assert_eq!(req.scheme(), "http", "{registered} matched {requested}");
    assert_eq!(req.host_str(), reg.host_str(), "{registered} matched {requested}");
    assert!(loopback_host(&req), "{requested}");
    assert_eq!((req.path(), req.query()), (reg.path(), reg.query()), "{registered} matched {requested}");
    assert!(req.fragment().is_none() && req.username().is_empty() && req.password().is_none(), "{requested}");
});
