use super::*;

fn with_url(url: &str) -> Config {
    Config { public_url: Some(url.into()), ..Config::default() }
}

#[test]
fn http_outside_loopback_is_refused() {
    let mut c = with_url("http://auth.example.com");
    assert!(c.resolve().is_err());
    c.insecure_http = true;
    assert!(c.resolve().is_ok());
    for bad in [
        "https://auth.example.com/tenant",
        "https://AUTH.example.com",
        "https://auth.example.com:443",
        "http://127.0.0.1.nip.io",
        "https://u:p@auth.example.com",
    ] {
        assert!(with_url(bad).resolve().is_err(), "{bad}");
    }
    for good in ["https://auth.example.com", "http://localhost:8080", "http://[::1]:8080", "http://127.0.0.2:9"] {
        assert!(with_url(good).resolve().is_ok(), "{good}");
    }
    assert!(Config::default().resolve().is_ok());
}

#[test]
fn loopback_listen_implies_the_public_url() {
    for (listen, implied) in [
        ("127.0.0.1:9004", "http://127.0.0.1:9004"),
        ("[::1]:9004", "http://[::1]:9004"),
        ("127.0.0.2:80", "http://127.0.0.2"),
    ] {
        let mut c = Config { listen: listen.into(), ..Config::default() };
        c.resolve().unwrap();
        assert_eq!(c.public_url(), implied);
        assert!(c.public_url_implied);
    }
    // An implied URL follows the port bound (port 0); a given one never changes.
    let mut c = Config { listen: "127.0.0.1:0".into(), ..Config::default() };
    c.resolve().unwrap();
    c.bound_to("127.0.0.1:41234".parse().unwrap());
    assert_eq!(c.issuer(), "http://127.0.0.1:41234");
    let mut c = Config { listen: "127.0.0.1:0".into(), ..with_url("https://auth.example.com") };
    c.resolve().unwrap();
    c.bound_to("127.0.0.1:41234".parse().unwrap());
    assert_eq!(c.issuer(), "https://auth.example.com");
    // Off loopback, the public URL must be given.
    let err = Config { listen: "0.0.0.0:8080".into(), ..Config::default() }.resolve().unwrap_err();
    assert!(err.to_string().contains("--public-url https://"), "{err}");
    let mut c = Config { listen: "0.0.0.0:8080".into(), ..with_url("https://auth.example.com") };
    assert!(c.resolve().is_ok());
    assert!(Config { listen: "localhost:8080".into(), ..Config::default() }.resolve().is_err());
    // Served over TLS, the implied URL is https (a browser's Origin and Secure cookies follow
    // the scheme), and an explicit http one is refused.
    let tls = || Config {
        listen: "127.0.0.1:8443".into(),
        tls_cert: Some("c.pem".into()),
        tls_key: Some("k.pem".into()),
        ..Config::default()
    };
    let mut c = tls();
    c.resolve().unwrap();
    assert_eq!(c.issuer(), "https://127.0.0.1:8443");
    let err = Config { public_url: Some("http://127.0.0.1:8443".into()), ..tls() }.resolve().unwrap_err();
    assert!(err.to_string().contains("https public URL"), "{err}");
}

#[test]
fn metrics_settings_are_checked() {
    let c = load_toml("metrics_listen = \"127.0.0.1:9464\"\nmetrics_token = \"0123456789abcdef\"").unwrap();
    assert_eq!(c.metrics_listen.as_deref(), Some("127.0.0.1:9464"));
    assert_eq!(c.metrics_token.as_deref(), Some("0123456789abcdef"));
    let c = Config::default();
    assert_eq!((c.metrics_listen, c.metrics_token), (None, None), "off by default");
    for (toml, why) in [
        ("metrics_listen = \"localhost:9464\"", "is not an address"),
        ("metrics_listen = \"127.0.0.1:8080\"", "must differ from listen"),
        ("metrics_token = \"0123456789abcde\"", "at least 16 characters"),
        ("metrics_token = \"0123456789 abcdef\"", "without spaces"),
    ] {
        let err = format!("{:#}", load_toml(toml).unwrap_err());
        assert!(err.contains(why), "{toml}: {err}");
    }
    // Port 0 on both picks two free ports.
    let mut c =
        Config { listen: "127.0.0.1:0".into(), metrics_listen: Some("127.0.0.1:0".into()), ..Config::default() };
    assert!(c.resolve().is_ok());
}

#[test]
fn hardening_settings_have_defaults_and_bounds_rt_12_dc_10() {
    let c = Config::default();
    assert_eq!(
        (c.refresh_family_ttl, c.registrations_per_minute, c.max_unused_clients, c.unused_client_ttl),
        (90 * 24 * 3600, 60, 1000, 24 * 3600)
    );
    let c = load_toml("refresh_family_ttl = 86400\nregistrations_per_minute = 5\nunused_client_ttl = 600").unwrap();
    assert_eq!((c.refresh_family_ttl, c.registrations_per_minute, c.unused_client_ttl), (86400, 5, 600));
    assert_eq!(c.audit_retention, 0, "the trail is kept unless an operator says otherwise");
    assert_eq!(load_toml("audit_retention = 86400").unwrap().audit_retention, 86400);
    for (toml, why) in [
        ("refresh_family_ttl = 59", "refresh_family_ttl must be at least 60 seconds"),
        ("registrations_per_minute = 0", "must be at least 1"),
        ("max_unused_clients = 0", "must be at least 1"),
        ("unused_client_ttl = 599", "at least 600 seconds"),
        ("audit_retention = 3600", "at least 86400 seconds"),
        ("audit_retention = -1", "at least 86400 seconds"),
    ] {
        let err = format!("{:#}", load_toml(toml).unwrap_err());
        assert!(err.contains(why), "{toml}: {err}");
    }
}

#[test]
fn new_session_limits_are_read_and_checked() {
    let c = load_toml("mcp_new_sessions_burst = 5\nmcp_new_sessions_per_minute = 2").unwrap();
    assert_eq!(c.new_sessions(), mandate_guard::NewSessionLimit { burst: 5, per_minute: 2 });
    assert_eq!(Config::default().new_sessions(), mandate_guard::NewSessionLimit::default());
    let mut c = Config { mcp_new_sessions_per_minute: 0, ..Config::default() };
    assert!(c.resolve().unwrap_err().to_string().contains("at least 1"));
}

#[test]
fn admission_limits_are_read_and_checked() {
    let c = load_toml("request_timeout = 3\nmax_in_flight = 64\nanonymous_authorizations_per_minute = 0").unwrap();
    assert_eq!((c.request_timeout, c.max_in_flight, c.anonymous_authorizations_per_minute), (3, 64, 0));
    assert_eq!(Config::default().anonymous_authorizations_per_minute, 3000);
    assert_eq!((Config::default().request_timeout, Config::default().max_in_flight), (10, 256));
    for (toml, why) in [
        ("request_timeout = 0", "request_timeout must be between 1 and 300"),
        ("request_timeout = 301", "request_timeout must be between 1 and 300"),
        ("max_in_flight = 0", "max_in_flight must be between 1 and 100000"),
        ("anonymous_authorizations_per_minute = 1000001", "between 0 (unbounded) and 1000000"),
    ] {
        let err = format!("{:#}", load_toml(toml).unwrap_err());
        assert!(err.contains(why), "{toml}: {err}");
    }
}

#[test]
fn a_fallback_key_comes_from_one_place() {
    let c = load_toml("fallback_secret_key_file = \"old.key\"").unwrap();
    assert_eq!(c.fallback_secret_key_file, Some(PathBuf::from("old.key")));
    let err = format!("{:#}", load_toml("fallback_secret_key = \"x\"\nfallback_secret_key_file = \"k\"").unwrap_err());
    assert!(err.contains("set either fallback_secret_key"), "{err}");
}

#[test]
fn key_file_sits_next_to_the_sqlite_database() {
    let c = Config { database: "sqlite://data/m.db?mode=rwc".into(), ..Config::default() };
    assert_eq!(c.key_file(), Some(PathBuf::from("data/m.db.key")));
    let c = Config { database: "postgres://h/db".into(), ..Config::default() };
    assert_eq!(c.key_file(), None);
}

#[test]
fn inspector_operators_are_usernames_and_need_the_authorization_server() {
    let c = load_toml("inspector_operators = [\"alice\", \"dev\"]").unwrap();
    assert_eq!(c.inspector_operators, ["alice", "dev"]);
    assert!(load_toml("").unwrap().inspector_operators.is_empty(), "nobody by default: not served");
    for (toml, why) in [
        ("inspector_operators = [\"\"]", "is not a username"),
        ("inspector_operators = [\"a b\"]", "is not a username"),
        ("inspector_operators = [\"a\\u0007\"]", "is not a username"),
        ("inspector_operators = [\"alice\"]\nmcp_only = true\nissuer = \"https://as.example\"", "not with --mcp-only"),
    ] {
        let e = load_toml(toml).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(e.contains(why), "{toml}: {e}");
    }
}
