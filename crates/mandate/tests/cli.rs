//! The `mandate` binary: admin commands work on a fresh database, and bad input gets a clear
//! error and a non-zero exit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let db = format!("sqlite://{}", self.dir.path().join("m.db").display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(args)
            .env("MANDATE_DATABASE", db)
            .env_remove("MANDATE_SECRET_KEY")
            .env_remove("MANDATE_PUBLIC_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }
}

#[test]
fn admin_commands_round_trip() {
    let e = Env::new();
    assert!(
        e.ok(&["users", "add", "john", "--password-stdin"], Some("finance operator 1\n")).contains("added user john")
    );
    assert!(e.ok(&["users", "list"], None).contains("john"));
    let out = e.ok(
        &[
            "clients",
            "add",
            "--name",
            "Claude",
            "--redirect-uri",
            "https://claude.ai/api/mcp/auth_callback",
            "--confidential",
        ],
        None,
    );
    let id = out.lines().find_map(|l| l.strip_prefix("client_id: ")).unwrap().to_owned();
    assert!(out.contains("client_secret: mcs_"));
    assert!(!e.ok(&["clients", "list"], None).contains("mcs_"), "secrets are never listed");
    assert!(e.ok(&["keys", "list"], None).contains("active"));
    assert!(e.ok(&["keys", "rotate"], None).contains("published key"));
    assert!(e.ok(&["keys", "list"], None).contains("next"));
    assert!(e.ok(&["grants", "list"], None).starts_with("ID"));
    let audit = e.ok(&["audit", "--json"], None);
    assert!(audit.lines().count() >= 3, "{audit}");
    assert!(audit.contains("\"kind\":\"client.registered\""));
    assert!(e.ok(&["audit", "--user", "john", "--since", "1h"], None).contains("user.created"));
    assert!(e.ok(&["clients", "remove", &id], None).contains("removed"));
    // The key-encryption key was created next to the database, readable only by its owner.
    let key = e.dir.path().join("m.db.key");
    assert!(key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let e = Env::new();
    assert!(e.fails(&["users", "add", "bad name!", "--password-stdin"], Some("long enough pw\n")).contains("username"));
    assert!(e.fails(&["users", "add", "john", "--password-stdin"], Some("short\n")).contains("password"));
    e.ok(&["users", "add", "john", "--password-stdin"], Some("long enough pw\n"));
    assert!(
        e.fails(&["users", "add", "john", "--password-stdin"], Some("long enough pw\n")).contains("already exists")
    );
    assert!(
        e.fails(&["clients", "add", "--name", "x", "--redirect-uri", "javascript:alert(1)"], None).contains("scheme")
    );
    assert!(
        e.fails(&["clients", "add", "--name", "x", "--redirect-uri", "http://app.example.com/cb"], None)
            .contains("loopback")
    );
    assert!(e.fails(&["clients", "remove", "nope"], None).contains("no client"));
    assert!(e.fails(&["grants", "revoke", "nope"], None).contains("no active grant"));
    assert!(e.fails(&["audit", "--since", "yesterday"], None).contains("--since"));
    assert!(e.fails(&["audit", "--user", "nobody"], None).contains("no user"));
    assert!(e.fails(&["serve", "--public-url", "http://auth.example.com"], None).contains("https"));
    assert!(e.fails(&["serve", "--public-url", "https://auth.example.com/base"], None).contains("origin"));
    assert!(e.fails(&["serve", "--tls-cert", "c.pem"], None).contains("--tls-key"));
    assert!(e.fails(&["users", "list", "--database", "mysql://x"], None).contains("unsupported database"));
    assert!(e.fails(&["users", "list", "--config", "/nonexistent.toml"], None).contains("does not exist"));
    assert!(e.fails(&["frobnicate"], None).contains("unrecognized subcommand"));
    assert!(e.fails(&["serve", "--demo", "--public-url", "https://auth.example.com"], None).contains("loopback"));
    assert!(e.fails(&["serve", "--public-url", "http://127.0.0.1.nip.io"], None).contains("non-loopback"));
    assert!(
        e.fails(&["serve", "--public-url", "https://Auth.Example.com"], None)
            .contains("did you mean https://auth.example.com")
    );
}

#[test]
fn the_key_file_is_guarded() {
    let e = Env::new();
    e.ok(&["keys", "list"], None);
    let key = e.dir.path().join("m.db.key");
    // Readable by others: refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(e.fails(&["keys", "list"], None).contains("chmod 600"));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Lost while the database holds keys: refused, and no new key file hides the loss.
    std::fs::remove_file(&key).unwrap();
    assert!(e.fails(&["keys", "list"], None).contains("restore it from backup"));
    assert!(!key.exists());
}

#[test]
fn precedence_is_file_then_environment_then_flags() {
    let e = Env::new();
    let cfg = e.dir.path().join("mandate.toml");
    std::fs::write(&cfg, "public_url = \"http://auth.example.com\"\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    // From the file: refused (http off loopback)...
    assert!(e.fails(&["--config", cfg, "keys", "list"], None).contains("non-loopback"));
    // ...the flag wins over the file.
    e.ok(&["--config", cfg, "--public-url", "https://auth.example.com", "keys", "list"], None);
    // Unknown keys in the file are errors, not silently ignored.
    std::fs::write(e.dir.path().join("typo.toml"), "pubic_url = \"x\"\n").unwrap();
    assert!(
        e.fails(&["--config", e.dir.path().join("typo.toml").to_str().unwrap(), "keys", "list"], None)
            .contains("pubic_url")
    );
}

#[test]
fn every_command_has_help() {
    let e = Env::new();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["users", "add", "--help"],
        vec!["clients", "add", "--help"],
        vec!["grants", "revoke", "--help"],
        vec!["audit", "--help"],
        vec!["keys", "rotate", "--help"],
    ] {
        assert!(e.ok(&args, None).contains("Usage"), "{args:?}");
    }
}

#[test]
fn migrate_applies_then_reports_up_to_date() {
    let env = Env::new();
    let first = env.ok(&["migrate"], None);
    assert!(first.starts_with("applied ") && first.contains("schema now at version"), "{first}");
    let again = env.ok(&["migrate"], None);
    assert!(again.starts_with("schema is up to date at version"), "{again}");
    let out = env.run(&["migrate", "--database", "mysql://x"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported database URL"));
}
