//! What the kill -9 tests share (durability.rs, durability_flows.rs): the `mandate` binary on a
//! database, its administration commands, and `mandate serve` (re)started on a fixed port.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Proc, serve, wait_ready};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "a long enough password";
pub const REDIRECT: &str = "http://127.0.0.1:5000/cb";
pub const SCOPES: &[&str] = &["customers.read"];
/// Seconds: the maximum, so a rotation committed but not answered at the kill is answered again
/// as a lost response after the restart (see durability.rs).
pub const REFRESH_GRACE: &str = "300";

/// The `mandate` binary on `db` with the key-encryption key `kek`.
pub fn mandate(db: &str, kek: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mandate"));
    c.env("MANDATE_DATABASE", db).env("MANDATE_SECRET_KEY", kek).env("RUST_LOG", "warn");
    c
}

/// Runs an administration command to completion, `stdin` (a line) on its standard input; its
/// stdout.
pub fn admin(db: &str, kek: &str, base: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = mandate(db, kek)
        .args(args)
        .args(["--public-url", base])
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(line) = stdin {
        writeln!(child.stdin.take().unwrap(), "{line}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "mandate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `mandate serve` on `127.0.0.1:port`, ready. The port may still be held for a moment by the
/// process just killed: starting is retried until it binds.
pub async fn start(db: &str, kek: &str, port: u16) -> Proc {
    let base = format!("http://127.0.0.1:{port}");
    // Behind a "proxy": the flow workers name addresses of their own, so the per-address
    // registration limit does not stop a load that is all from loopback.
    let env = [
        ("MANDATE_SECRET_KEY", kek),
        ("MANDATE_REFRESH_GRACE", REFRESH_GRACE),
        ("MANDATE_TRUST_FORWARDED_FOR", "true"),
        // Registrations are part of the load here, well past the production default.
        ("MANDATE_REGISTRATIONS_PER_MINUTE", "100000"),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (proc, banner) = serve(db, &["--listen", &format!("127.0.0.1:{port}")], &env);
        if banner.iter().any(|l| l.strip_prefix("mandate is serving ") == Some(base.as_str())) {
            wait_ready(&base).await;
            return proc;
        }
        assert!(Instant::now() < deadline, "mandate serve did not start on {base}: {banner:?}");
        drop(proc);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registers a resource server that serves `base`'s MCP endpoint (it may introspect its
/// tokens); (client_id, client_secret).
pub fn resource_server(db: &str, kek: &str, base: &str) -> (String, String) {
    let resource = format!("{base}/mcp");
    let out = admin(
        db,
        kek,
        base,
        &[
            "clients",
            "add",
            "--name",
            "Resource server",
            "--redirect-uri",
            "https://rs.example/cb",
            "--confidential",
            "--resource",
            resource.as_str(),
        ],
        None,
    );
    let field = |name: &str| {
        out.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_else(|| panic!("no {name} in {out}")).trim().to_owned()
    };
    (field("client_id:"), field("client_secret:"))
}
