//! `mandate serve --tls-cert --tls-key`: TLS with rustls, the https issuer, HSTS and `__Host-`
//! cookies; SIGTERM shuts it down gracefully too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serves_https_with_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let issuer = format!("https://localhost:{port}");
    let mut server = Proc(
        Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--public-url", &issuer])
            .arg("--tls-cert")
            .arg(&cert_path)
            .arg("--tls-key")
            .arg(&key_path)
            .env("MANDATE_DATABASE", format!("sqlite://{}", dir.path().join("m.db").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let metadata = loop {
        match http.get(format!("{issuer}/.well-known/oauth-authorization-server")).send().await {
            Ok(r) => break r,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("no TLS answer: {e}"),
        }
    };
    assert!(metadata.headers()["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
    let v: serde_json::Value = metadata.json().await.unwrap();
    assert_eq!(v["issuer"], issuer);
    assert_eq!(v["token_endpoint"], format!("{issuer}/token"));
    let login = http.get(format!("{issuer}/login")).send().await.unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-mandate_login="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");

    // SIGTERM, with the client's kept-alive connection open: new connections are refused, the
    // idle one does not hold the process, and it exits 0.
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(5), "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    drop(http);
}
