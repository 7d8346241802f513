//! The TOML configuration file (`mandate serve --config`): figment's TOML and the settings'
//! validation (`config::load`, with the gateway and provider entries). The `mandate` crate is a
//! binary, so its configuration modules are compiled in here from their source files unchanged.
//! Input: the file. Whatever loads must be a safe, consistent configuration.
#![no_main]
#![allow(dead_code, unused_imports)]

#[path = "../../crates/mandate/src/config.rs"]
mod config;
#[path = "../../crates/mandate/src/gateway.rs"]
mod gateway;
#[path = "../../crates/mandate/src/providers.rs"]
mod providers;

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn path() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| std::env::temp_dir().join(format!("mandate-fuzz-config-{}.toml", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    if std::fs::write(path(), data).is_err() {
        return;
    }
    let Ok(c) = config::load(Some(path()), &serde_json::json!({})) else { return };
    let public = url::Url::parse(c.public_url()).unwrap_or_else(|_| panic!("public_url {:?}", c.public_url()));
    let host = public.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match public.scheme() {
        "https" => {}
        "http" => assert!(loopback || c.insecure_http, "{}", c.public_url()),
        other => panic!("public_url scheme {other}"),
    }
    assert_eq!(c.issuer(), public.origin().ascii_serialization());
    assert!(c.access_token_ttl >= 60 && c.refresh_token_ttl >= 60);
    assert!((0..=300).contains(&c.refresh_grace) && c.key_activation_delay >= 0 && c.shutdown_timeout <= 600);
    assert!(!(c.secret_key.is_some() && c.secret_key_file.is_some()));
    assert_eq!(c.tls_cert.is_some(), c.tls_key.is_some());
    assert!(!(c.mcp_only && c.issuer.is_none()));
    assert!((1..=300).contains(&c.request_timeout) && (1..=100_000).contains(&c.max_in_flight));
});
