//! Starting every target and getting it ready to measure: its process (pinned), its client
//! registration, its signed-in sessions, refresh families and MCP sessions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::Value;

use crate::oauth::{self, AuthServer, Jar, SignIn};
use crate::proc::Launch;
use crate::{Endpoint, Run, twin};

/// What every server start needs.
pub struct Ctx {
    pub mandate: PathBuf,
    pub node: PathBuf,
    pub pin: Option<usize>,
    pub logs: PathBuf,
    pub work: PathBuf,
    /// The PostgreSQL server's admin URL, and whether it was asked for (else: found).
    pub postgres: Option<(String, bool)>,
}

fn ready_json(line: &str) -> anyhow::Result<Option<Value>> {
    Ok(serde_json::from_str::<Value>(line).ok().filter(|v| v["ready"] == Value::Bool(true)))
}

fn text(v: &Value, key: &str) -> anyhow::Result<String> {
    v[key].as_str().map(str::to_owned).with_context(|| format!("no {key} in {v}"))
}

impl Run {
    /// Starts a server that prints one JSON line when ready; returns its index and that line.
    async fn start_json(
        &mut self,
        c: &Ctx,
        name: &str,
        program: &Path,
        args: Vec<String>,
    ) -> anyhow::Result<(usize, Value)> {
        let peers = crate::workspace_root().join("bench/peers");
        let launch = Launch {
            name,
            program,
            args,
            env: Vec::new(),
            remove_env: vec!["NODE_OPTIONS".into(), "RUST_LOG".into()],
            cwd: Some(&peers),
            pin: c.pin,
            log_dir: &c.logs,
        };
        let (mut server, lines) = launch.spawn()?;
        let ready = server.wait_ready(lines, Duration::from_secs(60), ready_json).await?;
        ensure!(
            ready["pid"].as_u64() == Some(u64::from(server.pid)),
            "{name}: its pid is not the one started: {ready}"
        );
        self.servers.push(server);
        Ok((self.servers.len() - 1, ready))
    }

    async fn node_peer(&mut self, c: &Ctx, script: &str) -> anyhow::Result<(usize, Value)> {
        let path = crate::workspace_root().join("bench/peers").join(script);
        let args = vec![path.display().to_string(), "--port".into(), "0".into()];
        let (s, ready) = self.start_json(c, script.trim_end_matches(".mjs"), &c.node, args).await?;
        let mut shown = ready.clone();
        if let Some(o) = shown.as_object_mut() {
            o.remove("ready");
            o.remove("pid");
        }
        self.notes.push(format!("{script}: {shown}"));
        Ok((s, ready))
    }

    /// `mandate serve --demo` on `database`; returns the server, its base URL and the demo
    /// person's password.
    async fn mandate_serve(
        &mut self,
        c: &Ctx,
        name: &str,
        database: &str,
        dir: &Path,
    ) -> anyhow::Result<(usize, String, String)> {
        std::fs::create_dir_all(dir)?;
        let kek = mandate_core::keys::KeyEncryptionKey::generate(&mandate_core::clock::OsRandom).to_base64url();
        // --demo's Example Accounts keeps its SQLite file in the temporary directory when the
        // database is PostgreSQL: this run's, removed at the end.
        // Every authorization comes from loopback here; each names an address of its own
        // (`X-Forwarded-For`, oauth.rs) so the per-address limit on /authorize is not what is
        // measured.
        let mut env = vec![("TMPDIR", dir.display().to_string()), ("MANDATE_TRUST_FORWARDED_FOR", "true".to_owned())];
        if database.starts_with("postgres") {
            env.push(("MANDATE_SECRET_KEY", kek));
        }
        let launch = Launch {
            name,
            program: &c.mandate,
            args: ["serve", "--demo", "--listen", "127.0.0.1:0", "--database", database].map(String::from).to_vec(),
            env,
            remove_env: std::env::vars()
                .map(|(k, _)| k)
                .filter(|k| k.starts_with("MANDATE_") || k == "RUST_LOG")
                .collect(),
            cwd: Some(dir),
            pin: c.pin,
            log_dir: &c.logs,
        };
        let (mut server, lines) = launch.spawn()?;
        let (mut base, mut password) = (None, None);
        let (base, password) = server
            .wait_ready(lines, Duration::from_secs(60), |l| {
                if let Some(b) = l.strip_prefix("mandate is serving ") {
                    base = Some(b.trim().to_owned());
                }
                if let Some(p) = l.trim_start().strip_prefix("demo user: demo / password: ") {
                    password = Some(p.trim().to_owned());
                }
                Ok(base.clone().zip(password.clone()))
            })
            .await?;
        self.servers.push(server);
        Ok((self.servers.len() - 1, base, password))
    }

    /// Every target, in the order of the tables.
    pub async fn start_targets(&mut self, c: &Ctx) -> anyhow::Result<()> {
        let url = format!("sqlite://{}", c.work.join("sqlite/mandate.db").display());
        let (s, base, password) = self.mandate_serve(c, "mandate (SQLite)", &url, &c.work.join("sqlite")).await?;
        let mut mandates = vec![("mandate (SQLite)", s, base, password, None)];
        if let Some((admin, asked)) = &c.postgres {
            match create_database(admin).await {
                Ok((name, url)) => {
                    self.pg_database = Some((admin.clone(), name.clone()));
                    let (s, base, password) =
                        self.mandate_serve(c, "mandate (PostgreSQL)", &url, &c.work.join("postgres")).await?;
                    mandates.push(("mandate (PostgreSQL)", s, base, password, Some(name)));
                }
                Err(e) if !asked => println!("PostgreSQL variant skipped: {e:#}"),
                Err(e) => return Err(e),
            }
        }
        for (label, s, base, password, db) in mandates {
            let sign_in = SignIn::MandateForms { user: "demo".into(), password };
            let resource = Some(format!("{base}/mcp"));
            let auth = AuthServer::discover(oauth::client()?, &base, None, "customers.read", resource, sign_in).await?;
            let probe = self.probe(s, db);
            let (auth, jar) = self.add_oauth(label, s, probe.clone(), auth, true).await?;
            if self.wants("tools_call") {
                let (code, verifier) = auth.authorize(&jar).await?;
                let token = auth.redeem(&code, &verifier).await?.access;
                let url = format!("{base}/mcp");
                let (server, mandate) = (format!("{label} serve"), true);
                self.add_mcp(Endpoint {
                    label: &format!("{label}, /mcp"),
                    server: s,
                    probe,
                    url: &url,
                    token: Some(&token),
                    auth: (server, true),
                    mandate,
                })
                .await?;
            }
        }
        let (s, ready) = self.node_peer(c, "ts-sdk-as.mjs").await?;
        let base = text(&ready, "base")?;
        let auth =
            AuthServer::discover(oauth::client()?, &base, None, "mcp:tools", Some(format!("{base}/mcp")), SignIn::None)
                .await?;
        self.add_oauth("TS SDK demo AS", s, self.probe(s, None), auth, false).await?;
        let (s, ready) = self.node_peer(c, "oidc-provider.mjs").await?;
        let (base, client, resource) = (text(&ready, "base")?, text(&ready, "client_id")?, text(&ready, "resource")?);
        let auth =
            AuthServer::discover(oauth::client()?, &base, Some(client), "mcp:tools", Some(resource), SignIn::OidcDev)
                .await?;
        self.add_oauth("oidc-provider", s, self.probe(s, None), auth, false).await?;
        if self.wants("tools_call") {
            self.start_mcp_twins(c).await?;
        }
        Ok(())
    }

    /// mandate's MCP endpoint with its auth-off twin (this binary, `--serve-twin`), and the TS
    /// SDK's requireBearerAuth server with its own.
    async fn start_mcp_twins(&mut self, c: &Ctx) -> anyhow::Result<()> {
        let me = std::env::current_exe()?;
        let (s, ready) = self.start_json(c, "mandate twin", &me, vec!["--serve-twin".into()]).await?;
        let base = text(&ready, "base")?;
        let sign_in = SignIn::MandateForms { user: twin::USER.into(), password: text(&ready, "password")? };
        let auth =
            AuthServer::discover(oauth::client()?, &base, None, "customers.read", Some(format!("{base}/mcp")), sign_in)
                .await?;
        let (code, verifier) = auth.sign_in(&mut Jar::default(), twin::USER).await?;
        let token = auth.redeem(&code, &verifier).await?.access;
        let probe = self.probe(s, None);
        let (on, off) = (format!("{base}/mcp"), format!("{base}/mcp-open"));
        let server = "mandate twin".to_owned();
        self.add_mcp(Endpoint {
            label: "mandate twin, /mcp",
            server: s,
            probe: probe.clone(),
            url: &on,
            token: Some(&token),
            auth: (server.clone(), true),
            mandate: true,
        })
        .await?;
        self.add_mcp(Endpoint {
            label: "mandate twin, /mcp-open",
            server: s,
            probe,
            url: &off,
            token: None,
            auth: (server, false),
            mandate: true,
        })
        .await?;

        let (s, ready) = self.node_peer(c, "ts-sdk-rs.mjs").await?;
        let (base, resource) = (text(&ready, "base")?, text(&ready, "resource")?);
        let auth =
            AuthServer::discover(oauth::client()?, &base, None, "mcp:tools", Some(resource), SignIn::None).await?;
        let (code, verifier) = auth.sign_in(&mut Jar::default(), "bench").await?;
        let token = auth.redeem(&code, &verifier).await?.access;
        let probe = self.probe(s, None);
        let (on, off) = (text(&ready, "mcp")?, text(&ready, "mcp_open")?);
        let server = "TS SDK".to_owned();
        self.add_mcp(Endpoint {
            label: "TS SDK requireBearerAuth, /mcp",
            server: s,
            probe: probe.clone(),
            url: &on,
            token: Some(&token),
            auth: (server.clone(), true),
            mandate: false,
        })
        .await?;
        self.add_mcp(Endpoint {
            label: "TS SDK, /mcp-open",
            server: s,
            probe,
            url: &off,
            token: None,
            auth: (server, false),
            mandate: false,
        })
        .await
    }
}

pub fn user_name() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map_or_else(|| "postgres".to_owned(), |s| s.trim().to_owned())
    })
}

/// A fresh database on the PostgreSQL server at `admin`: (name, URL).
async fn create_database(admin: &str) -> anyhow::Result<(String, String)> {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let id = mandate_core::secret::random_id(&mandate_core::clock::OsRandom).to_lowercase().replace(['-', '_'], "");
    let name = format!("mandatepeers{id}");
    let mut conn = sqlx::AnyConnection::connect(admin).await.context("connecting to PostgreSQL")?;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.context("CREATE DATABASE")?;
    Ok((name.clone(), mandate_store::url_with_database(admin, &name)))
}

pub async fn drop_database(admin: &str, name: &str) {
    use sqlx::{Connection, Executor};
    if let Ok(mut conn) = sqlx::AnyConnection::connect(admin).await {
        let _ = conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await;
    }
}
