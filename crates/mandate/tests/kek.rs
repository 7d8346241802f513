//! Issue 13: `mandate keys rotate-kek` re-seals every value sealed under the key-encryption key
//! (signing keys, connected accounts' tokens, provider requests' secrets) under a new one, in one
//! transaction; a server given the new key reads them, the old key alone no longer does. Runs on
//! SQLite (the key file next to the database), and on PostgreSQL (`MANDATE_SECRET_KEY`) when
//! `MANDATE_TEST_POSTGRES_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mandate_core::clock::OsRandom;
use mandate_core::keys::{KeyEncryptionKey, aad};
use mandate_testkit::{TestDatabase, postgres_admin_url};
use reqwest::StatusCode;

const TOKENS: &[u8] = br#"{"access":"upstream-access-token","refresh":"upstream-refresh-token"}"#;

struct Env {
    dir: tempfile::TempDir,
    db: TestDatabase,
    /// How the old key is configured: the key file next to a SQLite database, or
    /// `MANDATE_SECRET_KEY` for PostgreSQL.
    old_env: Vec<(&'static str, String)>,
}

impl Env {
    fn new(db: TestDatabase) -> Self {
        let old_env = match &db {
            TestDatabase::Sqlite { .. } => Vec::new(),
            TestDatabase::Postgres { .. } => {
                vec![("MANDATE_SECRET_KEY", KeyEncryptionKey::generate(&OsRandom).to_base64url())]
            }
        };
        Self { dir: tempfile::tempdir().unwrap(), db, old_env }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The old key, as configured.
    fn old_key(&self) -> KeyEncryptionKey {
        match self.old_env.first() {
            Some((_, k)) => KeyEncryptionKey::from_base64url(k).unwrap(),
            None => {
                let TestDatabase::Sqlite { url, .. } = &self.db else { unreachable!() };
                let file = format!("{}.key", url.trim_start_matches("sqlite://"));
                KeyEncryptionKey::from_base64url(&std::fs::read_to_string(file).unwrap()).unwrap()
            }
        }
    }

    /// `mandate <args>` on the database, with `env` (or the old key's configuration when `None`).
    fn run(&self, args: &[&str], env: Option<&[(&str, &str)]>, stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mandate"));
        cmd.args(args)
            .env("MANDATE_DATABASE", self.db.url())
            .env_remove("MANDATE_SECRET_KEY")
            .env_remove("MANDATE_SECRET_KEY_FILE")
            .env_remove("MANDATE_FALLBACK_SECRET_KEY")
            .env_remove("MANDATE_FALLBACK_SECRET_KEY_FILE")
            .env_remove("MANDATE_CONFIG")
            .env_remove("RUST_LOG")
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match env {
            Some(env) => {
                for (k, v) in env {
                    cmd.env(k, v);
                }
            }
            None => {
                for (k, v) in &self.old_env {
                    cmd.env(k, v);
                }
            }
        }
        let mut child = cmd.spawn().unwrap();
        if let Some(s) = stdin {
            writeln!(child.stdin.take().unwrap(), "{s}").unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], env: Option<&[(&str, &str)]>) -> String {
        let out = self.run(args, env, None);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str], env: Option<&[(&str, &str)]>) -> String {
        let out = self.run(args, env, None);
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    async fn pool(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(self.db.url()).await.unwrap()
    }

    /// Adds alice; returns her id.
    fn alice(&self) -> String {
        let out = self.run(&["users", "add", "alice", "--password-stdin"], None, Some("a long enough password"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = String::from_utf8(out.stdout).unwrap();
        out.trim().rsplit_once('(').unwrap().1.trim_end_matches(')').to_owned()
    }

    /// A connected account of alice's and a provider request in flight, sealed under `kek` as the
    /// vault and the flows seal them.
    async fn seal_upstream(&self, alice: &str, provider: &str, kek: &KeyEncryptionKey) {
        let pool = self.pool().await;
        let sealed = kek.seal(&OsRandom, TOKENS, &aad::upstream_account(alice, provider)).unwrap();
        sqlx::query(
            "INSERT INTO upstream_accounts (user_id, provider, subject, sealed_tokens, scope, access_expires_at, version, \
             refreshing_until, connected, connected_at, refreshed_at) VALUES ($1, $2, NULL, $3, NULL, NULL, 1, NULL, 1, 0, 0)",
        )
        .bind(alice)
        .bind(provider)
        .bind(sealed)
        .execute(&pool)
        .await
        .unwrap();
        let state = format!("state-{provider}");
        let sealed = kek.seal(&OsRandom, b"verifier", &aad::provider_flow(&state)).unwrap();
        sqlx::query(
            "INSERT INTO provider_flows (state_hash, provider, purpose, user_id, browser_hash, sealed_secrets, return_to, \
             created_at, expires_at) VALUES ($1, $2, 'connect', $3, 'b', $4, NULL, 0, 9999999999)",
        )
        .bind(&state)
        .bind(provider)
        .bind(alice)
        .bind(sealed)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }

    /// The connected account's sealed tokens.
    async fn sealed_tokens(&self, alice: &str, provider: &str) -> Vec<u8> {
        let pool = self.pool().await;
        let v: Vec<u8> =
            sqlx::query_scalar("SELECT sealed_tokens FROM upstream_accounts WHERE user_id = $1 AND provider = $2")
                .bind(alice)
                .bind(provider)
                .fetch_one(&pool)
                .await
                .unwrap();
        pool.close().await;
        v
    }
}

fn write_key(path: &Path, key: &KeyEncryptionKey) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).unwrap();
    f.write_all(key.to_base64url().as_bytes()).unwrap();
}

/// `mandate serve` with `env`; true when it is ready (its signing keys decrypted).
async fn serves(db: &str, env: &[(&str, &str)]) -> bool {
    let (_server, banner) = support::serve(db, &["--listen", "127.0.0.1:0"], env);
    let Some(base) = banner.iter().find_map(|l| l.strip_prefix("mandate is serving ")) else {
        return false;
    };
    support::wait_ready(base).await;
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap().status() == StatusCode::OK;
    let jwks: serde_json::Value = reqwest::get(format!("{base}/jwks.json")).await.unwrap().json().await.unwrap();
    ready && jwks["keys"].as_array().is_some_and(|k| k.len() == 2)
}

async fn rotate_with_a_new_key_file(db: TestDatabase) {
    let e = Env::new(db);
    let alice = e.alice();
    e.ok(&["keys", "rotate"], None);
    let old = e.old_key();
    e.seal_upstream(&alice, "github", &old).await;

    let out = e.ok(&["keys", "rotate-kek", "--new-key-file", "new.key"], None);
    let new_file = e.path("new.key");
    assert!(out.contains(&format!("created a new key-encryption key in {}", new_file.display())), "{out}");
    assert!(out.contains("re-sealed 2 signing key(s), 1 connected account(s) and 1 provider request(s)"), "{out}");
    assert!(out.contains(&format!("secret_key_file = {:?}", new_file.display().to_string())), "{out}");
    assert_eq!(support::mode(&new_file) & 0o777, 0o600);
    let new = KeyEncryptionKey::from_base64url(&std::fs::read_to_string(&new_file).unwrap()).unwrap();

    // The connected account's tokens open with the new key, and no longer with the old one.
    let sealed = e.sealed_tokens(&alice, "github").await;
    assert_eq!(new.open(&sealed, &aad::upstream_account(&alice, "github")).unwrap(), TOKENS);
    assert!(old.open(&sealed, &aad::upstream_account(&alice, "github")).is_err());

    // The old key alone: refused, clearly.
    let err = e.fails(&["keys", "list"], None);
    assert!(err.contains("could not be decrypted"), "{err}");
    // The new key: the admin commands and a server read every signing key.
    let new_path = new_file.to_str().unwrap();
    assert!(e.ok(&["keys", "list"], Some(&[("MANDATE_SECRET_KEY_FILE", new_path)])).contains("active"));
    assert!(serves(e.db.url(), &[("MANDATE_SECRET_KEY_FILE", new_path)]).await, "a server with the new key serves");
    let audit = e.ok(&["audit", "--json"], Some(&[("MANDATE_SECRET_KEY_FILE", new_path)]));
    assert!(audit.contains("\"kind\":\"key.kek_rotated\""), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_kek_with_a_new_key_file_sqlite() {
    rotate_with_a_new_key_file(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_kek_with_a_new_key_file_postgres() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!("MANDATE_TEST_POSTGRES_URL not set: the PostgreSQL rotate-kek test is skipped");
        return;
    };
    rotate_with_a_new_key_file(TestDatabase::postgres(&admin).await).await;
}

/// The rolling procedure: every instance gets the new key as its key and the old one as the
/// fallback; a running server reads both before and after the rotation; afterwards the new key
/// alone suffices. A value sealed under neither stops a rotation with nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_kek_to_the_configured_key_while_a_server_runs() {
    let e = Env::new(TestDatabase::sqlite());
    let alice = e.alice();
    let old = e.old_key();
    e.seal_upstream(&alice, "github", &old).await;
    let err = e.fails(&["keys", "rotate-kek"], None);
    assert!(err.contains("nothing to rotate from"), "{err}");

    let new = KeyEncryptionKey::generate(&OsRandom);
    write_key(&e.path("new.key"), &new);
    let TestDatabase::Sqlite { url, .. } = &e.db else { unreachable!() };
    let (new_path, old_path) =
        (e.path("new.key"), PathBuf::from(format!("{}.key", url.trim_start_matches("sqlite://"))));
    let both = [
        ("MANDATE_SECRET_KEY_FILE", new_path.to_str().unwrap()),
        ("MANDATE_FALLBACK_SECRET_KEY_FILE", old_path.to_str().unwrap()),
    ];
    // A server with both keys runs through the rotation.
    let (_server, banner) = support::serve(e.db.url(), &["--listen", "127.0.0.1:0"], &both);
    let base = banner.iter().find_map(|l| l.strip_prefix("mandate is serving ")).expect("serving").to_owned();
    support::wait_ready(&base).await;
    let out = e.ok(&["keys", "rotate-kek"], Some(&both));
    assert!(out.contains("re-sealed 1 signing key(s), 1 connected account(s) and 1 provider request(s)"), "{out}");
    assert!(out.contains("remove fallback_secret_key_file"), "{out}");
    // /readyz reloads the signing keys: the running server opens what is now under the new key.
    assert_eq!(reqwest::get(format!("{base}/readyz")).await.unwrap().status(), StatusCode::OK);
    let only_new = [("MANDATE_SECRET_KEY_FILE", new_path.to_str().unwrap())];
    assert!(e.ok(&["keys", "list"], Some(&only_new)).contains("active"));
    let sealed = e.sealed_tokens(&alice, "github").await;
    assert_eq!(new.open(&sealed, &aad::upstream_account(&alice, "github")).unwrap(), TOKENS);

    // A connected account sealed under a key nobody configured: the rotation stops, nothing changes.
    e.seal_upstream(&alice, "gitlab", &KeyEncryptionKey::generate(&OsRandom)).await;
    let out = e.run(&["keys", "rotate-kek", "--new-key-file", "third.key"], Some(&only_new), None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("the gitlab account connected by person") && err.contains("nothing was changed"), "{err}");
    assert!(e.ok(&["keys", "list"], Some(&only_new)).contains("active"), "still under the new key");
    assert_eq!(e.sealed_tokens(&alice, "github").await, sealed, "untouched");
}
