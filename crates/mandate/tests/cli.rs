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

    fn db(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("m.db").display())
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_env(args, stdin, &[])
    }

    fn run_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mandate"));
        cmd.args(args)
            .env("MANDATE_DATABASE", self.db())
            .env_remove("MANDATE_SECRET_KEY")
            .env_remove("MANDATE_PUBLIC_URL")
            .env_remove("MANDATE_CONFIG")
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
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

/// Issue 12: the metrics settings are checked before anything is served, and `serve --help`
/// names the flag.
#[test]
fn metrics_settings_are_checked() {
    let e = Env::new();
    let err = e.fails(&["serve", "--metrics-listen", "localhost:9464"], None);
    assert!(err.contains("metrics_listen \"localhost:9464\" is not an address"), "{err}");
    let err = e.fails(&["serve", "--listen", "127.0.0.1:9464", "--metrics-listen", "127.0.0.1:9464"], None);
    assert!(err.contains("metrics_listen must differ from listen"), "{err}");
    for short in ["short", "sixteen chars 16"] {
        let out = e.run_env(&["serve"], None, &[("MANDATE_METRICS_TOKEN", short)]);
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("metrics_token must be at least 16 characters, without spaces"), "{err}");
        assert!(!err.contains(short), "the token is not repeated: {err}");
    }
    assert!(!e.dir.path().join("m.db").exists(), "refused before the database is created");
    let help = e.ok(&["serve", "--help"], None);
    assert!(help.contains("--metrics-listen <ADDR>"), "{help}");
    assert!(help.contains("MANDATE_METRICS_TOKEN"), "{help}");
}

#[test]
fn the_key_file_is_guarded() {
    let e = Env::new();
    e.ok(&["keys", "rotate"], None);
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
    e.ok(&["--config", cfg, "--public-url", "https://auth.example.com", "keys", "rotate"], None);
    // Unknown keys in the file are errors, not silently ignored.
    std::fs::write(e.dir.path().join("typo.toml"), "pubic_url = \"x\"\n").unwrap();
    assert!(
        e.fails(&["--config", e.dir.path().join("typo.toml").to_str().unwrap(), "keys", "list"], None)
            .contains("pubic_url")
    );
}

/// The commands that only read refuse to create a database: they name the absolute path they
/// looked at and how to point elsewhere, and create nothing (no database, no key file).
#[test]
fn read_only_admin_commands_never_create_a_database() {
    let e = Env::new();
    let empty = || std::fs::read_dir(e.dir.path()).unwrap().count() == 0;
    for (args, path) in [
        (vec!["users", "list"], e.dir.path().join("m.db")),
        (vec!["clients", "list"], e.dir.path().join("m.db")),
        (vec!["grants", "list"], e.dir.path().join("m.db")),
        (vec!["audit"], e.dir.path().join("m.db")),
        (vec!["audit", "--json"], e.dir.path().join("m.db")),
        (vec!["keys", "list"], e.dir.path().join("m.db")),
        // A relative path is shown resolved against the working directory.
        (vec!["users", "list", "--database", "sqlite://elsewhere/rel.db"], e.dir.path().join("elsewhere/rel.db")),
        (vec!["--database", "sqlite:rel.db?mode=rwc", "keys", "list"], e.dir.path().join("rel.db")),
    ] {
        let err = e.fails(&args, None);
        assert!(err.contains(&format!("no database at {}:", path.display())), "{args:?}: {err}");
        assert!(err.contains("only reads"), "{err}");
        for hint in ["--database", "MANDATE_DATABASE", "--config"] {
            assert!(err.contains(hint), "{args:?}: no {hint} in {err}");
        }
        assert!(empty(), "{args:?} created {:?}", std::fs::read_dir(e.dir.path()).unwrap().collect::<Vec<_>>());
    }
    // Issue 13: nor do those that only change what exists.
    for args in [
        vec!["users", "disable", "alice"],
        vec!["users", "enable", "alice"],
        vec!["users", "remove", "alice"],
        vec!["users", "passwd", "alice", "--password-stdin"],
        vec!["keys", "rotate-kek", "--new-key-file", "new.key"],
    ] {
        let err = e.fails(&args, Some("a long enough password\n"));
        assert!(err.contains("only changes what exists, so it does not create one"), "{args:?}: {err}");
        assert!(empty(), "{args:?} created {:?}", std::fs::read_dir(e.dir.path()).unwrap().collect::<Vec<_>>());
    }
    // A command that writes still creates one, and says where.
    let out = e.run(&["keys", "rotate"], None);
    assert!(out.status.success());
    let note = String::from_utf8(out.stderr).unwrap();
    assert!(
        note.contains(&format!("note: created a new database at {}", e.dir.path().join("m.db").display())),
        "{note}"
    );
    assert!(e.ok(&["users", "list"], None).starts_with("ID"));
}

/// Log lines carry no colour codes when stderr is not a terminal; on a terminal they do,
/// unless `NO_COLOR` is set.
#[test]
fn logs_carry_no_colour_codes_off_a_terminal() {
    let e = Env::new();
    let out =
        e.run_env(&["users", "add", "john", "--password-stdin"], Some("long enough pw\n"), &[("RUST_LOG", "info")]);
    assert!(out.status.success());
    let logs = String::from_utf8(out.stderr).unwrap();
    assert!(logs.contains("created a new key-encryption key"), "a log line was written: {logs}");
    assert!(!logs.contains('\u{1b}'), "{logs:?}");
    // On a terminal (`script` gives the command one).
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("no `script` on this machine: the terminal half is skipped");
        return;
    }
    // A fresh database each time: creating its key file is logged at info.
    let on_terminal = |no_color: &str, name: &str| {
        let line = format!(
            "{} keys rotate --database sqlite://{}",
            env!("CARGO_BIN_EXE_mandate"),
            e.dir.path().join(name).display()
        );
        let out = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", no_color)
            .env_remove("MANDATE_PUBLIC_URL")
            .env_remove("MANDATE_DATABASE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stdout).unwrap()
    };
    // An empty NO_COLOR does not count (no-color.org).
    let coloured = on_terminal("", "tty1.db");
    assert!(coloured.contains("\u{1b}["), "colour on a terminal: {coloured:?}");
    let plain = on_terminal("1", "tty2.db");
    assert!(plain.contains("INFO") && !plain.contains("\u{1b}["), "NO_COLOR honoured: {plain:?}");
}

/// `mandate --help` lists the commands in four groups (server, admin, agent, developer tools).
#[test]
fn help_groups_the_commands() {
    let e = Env::new();
    let help = e.ok(&["--help"], None);
    let sections: Vec<(&str, Vec<&str>)> = help
        .split("\n\n")
        .filter_map(|block| {
            let (heading, rest) = block.split_once(":\n")?;
            Some((heading, rest.lines().map(|l| l.split_whitespace().next().unwrap()).collect()))
        })
        .collect();
    let names: Vec<&str> = sections.iter().map(|(h, _)| *h).collect();
    assert_eq!(
        names,
        [
            "Server commands",
            "Admin commands (on the server's database)",
            "Agent commands (connect to any MCP server)",
            "Developer tools",
            "Options"
        ],
        "{help}"
    );
    assert_eq!(sections[0].1, ["serve", "migrate", "resources", "providers"]);
    assert_eq!(sections[1].1, ["users", "clients", "grants", "audit", "keys"]);
    assert_eq!(sections[2].1, ["login", "tools", "call", "logout", "connections", "bridge"]);
    assert_eq!(sections[3].1, ["new", "dev", "doctor"]);
    // `mandate help` says the same.
    assert_eq!(e.ok(&["help"], None), help);
}

/// `mandate providers list` prints what to register at each provider, exactly; a secret in the
/// file, or an unset secret variable, is refused before anything is printed.
#[test]
fn providers_list_prints_the_redirect_uri_to_register() {
    let e = Env::new();
    let config = e.dir.path().join("mandate.toml");
    let entry = "public_url = \"https://auth.example.com\"\n[[providers]]\nname = \"idp\"\ntitle = \"Example ID\"\n\
                 issuer = \"https://id.example.com\"\nclient_id = \"mandate\"\nsign_in = true\n";
    std::fs::write(&config, format!("{entry}client_secret_env = \"MANDATE_TEST_IDP_SECRET\"\n")).unwrap();
    let out = e.run_env(
        &["providers", "list", "--config", config.to_str().unwrap()],
        None,
        &[("MANDATE_TEST_IDP_SECRET", "s")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("redirect URI to register: https://auth.example.com/upstream/idp/callback"), "{printed}");
    assert!(printed.contains("used for:                 sign-in, connected accounts"), "{printed}");
    assert!(!printed.contains("\ns\n"), "the secret is not printed");
    // The variable unset: refused, naming it.
    let err = e.fails(&["providers", "list", "--config", config.to_str().unwrap()], None);
    assert!(err.contains("MANDATE_TEST_IDP_SECRET, which is not set"), "{err}");
    std::fs::write(&config, format!("{entry}client_secret = \"x\"\n")).unwrap();
    let err = e.fails(&["providers", "list", "--config", config.to_str().unwrap()], None);
    assert!(err.contains("does not belong in the configuration file"), "{err}");
    // None configured.
    assert!(e.ok(&["providers", "list"], None).contains("No providers are configured"));
}

const SERVER_FLAGS: [&str; 4] = ["--config", "--database", "--public-url", "--secret-key-file"];

/// The agent commands' help shows no server flags; the server and admin commands' help does.
#[test]
fn agent_commands_do_not_show_server_flags() {
    let e = Env::new();
    for cmd in ["login", "tools", "call", "logout", "connections", "bridge"] {
        let help = e.ok(&[cmd, "--help"], None);
        for flag in SERVER_FLAGS {
            assert!(!help.contains(flag), "`mandate {cmd} --help` shows {flag}:\n{help}");
        }
    }
    for cmd in [
        vec!["serve"],
        vec!["migrate"],
        vec!["users", "list"],
        vec!["users", "add"],
        vec!["clients", "add"],
        vec!["grants", "revoke"],
        vec!["audit"],
        vec!["keys", "rotate"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let help = e.ok(&args, None);
        for flag in SERVER_FLAGS {
            assert!(help.contains(flag), "`mandate {cmd:?} --help` lacks {flag}:\n{help}");
        }
    }
}

/// The server flags work before the command name, after it, and between a command and its
/// subcommand; given twice, or to an agent command, they are refused.
#[test]
fn server_flags_go_before_or_after_the_command() {
    let e = Env::new();
    let other = e.dir.path().join("other.db");
    let other = format!("sqlite://{}", other.display());
    e.ok(&["users", "add", "zoe", "--password-stdin", "--database", &other], Some("long enough pw\n"));
    for args in [
        vec!["--database", other.as_str(), "users", "list"],
        vec!["users", "--database", other.as_str(), "list"],
        vec!["users", "list", "--database", other.as_str()],
    ] {
        assert!(e.ok(&args, None).contains("zoe"), "{args:?}");
    }
    assert!(!e.ok(&["keys", "rotate"], None).is_empty());
    assert!(!e.ok(&["users", "list"], None).contains("zoe"), "the default database is another one");
    let err = e.fails(&["--database", other.as_str(), "users", "list", "--database", other.as_str()], None);
    assert!(err.contains("--database is given both before and after the command name"), "{err}");
    let out = e.run(&["--database", other.as_str(), "connections"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("`mandate connections` does not read --database"), "{err}");
    // After an agent command they are unknown arguments.
    let err = e.fails(&["connections", "--database", other.as_str()], None);
    assert!(err.contains("unexpected argument '--database'"), "{err}");
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
        vec!["keys", "rotate-kek", "--help"],
        vec!["users", "disable", "--help"],
        vec!["users", "enable", "--help"],
        vec!["users", "remove", "--help"],
        vec!["users", "passwd", "--help"],
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
