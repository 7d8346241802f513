//! `mandate serve`: bind first, then open the database, print what to open next, serve until
//! SIGTERM or Ctrl-C, and drain (see [`crate::shutdown`]).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::serve::ListenerExt;
use axum_server::tls_rustls::RustlsConfig;
use clap::Args;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use mandate_core::AuthServer;
use mandate_core::demo::{Customer, DemoStore, Invoice, InvoiceStatus, Todo};
use mandate_guard::{JwksKeySource, TokenCheck, Validator};
use mandate_mcp::McpSettings;

use crate::ServerFlags;
use crate::config::Config;
use crate::shutdown::{Drain, Signals};

/// `mandate serve`'s arguments: its own flags, and the server flags.
#[derive(Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub serve: ServeFlags,
    #[command(flatten)]
    pub server: ServerFlags,
    /// Serve this Streamable HTTP MCP server behind mandate, at <public URL>/mcp/<--upstream-name>
    #[arg(long, value_name = "URL", conflicts_with = "command")]
    pub upstream: Option<String>,
    /// The name of the --upstream (or `-- COMMAND`) server: its path and scope prefix
    #[arg(long, value_name = "NAME", default_value = "upstream")]
    pub upstream_name: String,
    /// Serve this stdio MCP server behind mandate (after `--`: the program and its arguments,
    /// run without a shell, one process per MCP session)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Pass this variable of mandate's environment to the stdio server after `--` (repeatable;
    /// it otherwise sees only PATH, HOME, LANG, LC_ALL, TMPDIR, USER, LOGNAME, SHELL and TERM).
    #[arg(long = "upstream-env", value_name = "NAME", requires = "command")]
    pub upstream_env: Vec<String>,
}

impl ServeArgs {
    /// The one-line gateway forms (`--upstream URL`, `-- COMMAND ARGS`) as a `[[resources]]` entry.
    pub fn cli_upstream(&self) -> Option<crate::gateway::ResourceEntry> {
        let mut entry = crate::gateway::ResourceEntry { name: self.upstream_name.clone(), ..Default::default() };
        if let Some(url) = &self.upstream {
            entry.upstream_url = Some(url.clone());
        } else if let Some((program, args)) = self.command.split_first() {
            entry.command = Some(program.clone());
            entry.args = args.to_vec();
            entry.env = self.upstream_env.iter().map(|k| (k.clone(), format!("env:{k}"))).collect();
        } else {
            return None;
        }
        Some(entry)
    }
}

#[derive(Args, Serialize, Default, Clone)]
pub struct ServeFlags {
    /// Address to listen on; port 0 picks a free one [env: MANDATE_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Allow an http public URL on a non-loopback host (testing only) [env: MANDATE_INSECURE_HTTP]
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure_http: bool,
    /// PEM certificate chain for TLS [env: MANDATE_TLS_CERT]
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS [env: MANDATE_TLS_KEY]
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    /// Seed a demo user (its password is printed) and demo data [env: MANDATE_DEMO]
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    demo: bool,
    /// Serve only the MCP endpoint, trusting the authorization server at --issuer [env: MANDATE_MCP_ONLY]
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    mcp_only: bool,
    /// The authorization server to trust with --mcp-only [env: MANDATE_ISSUER]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    /// Where the demo MCP endpoint lives when it runs separately [env: MANDATE_RESOURCE_URL]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_url: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, a listener of its own (e.g.
    /// 127.0.0.1:9464); MANDATE_METRICS_TOKEN puts them behind a bearer token [env:
    /// MANDATE_METRICS_LISTEN]
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<String>,
}

/// The flags of `serve`, merged over the file and environment.
#[derive(Serialize)]
pub struct Overrides<'a> {
    #[serde(flatten)]
    pub common: &'a ServerFlags,
    #[serde(flatten)]
    pub serve: &'a ServeFlags,
}

pub async fn run(mut config: Config) -> anyhow::Result<()> {
    // Nothing is created and nothing printed until the address is ours.
    let listener = bind(&config.listen)?;
    let addr = listener.local_addr().context("reading the address bound")?;
    let metrics_listener = config.metrics_listen.as_deref().map(bind).transpose()?;
    config.bound_to(addr);
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            Some(RustlsConfig::from_pem_file(cert, key).await.context("loading the TLS certificate and key")?)
        }
        _ => None,
    };
    let mut signals = Signals::install().context("listening for SIGTERM and SIGINT")?;
    let drain = Drain::default();

    // Opening the database can wait (a PostgreSQL migration lock held by another instance): a
    // signal meanwhile stops the start instead of being ignored.
    let setup = async {
        // Each upstream's tools are read first: their scopes are part of the catalogue.
        let http = mandate_gateway::http_client().context("building the HTTP client for upstreams")?;
        let mut upstreams = crate::gateway::upstreams(&config)?;
        // --demo without providers of the operator's: a second, local OAuth server to connect
        // an account at, and a gateway resource whose tools act with that account.
        let example = if config.demo
            && !config.mcp_only
            && config.providers.is_none()
            && !upstreams.iter().any(|u| u.name == crate::demo_upstream::NAME)
        {
            Some(crate::demo_upstream::start(&config).await?)
        } else {
            None
        };
        if let Some(e) = &example {
            upstreams.push(e.resource.clone());
        }
        let mut reading = tokio::task::JoinSet::new();
        for (i, spec) in upstreams.iter().cloned().enumerate() {
            let http = http.clone();
            reading.spawn(async move { (i, mandate_gateway::discover(&spec, &http).await) });
        }
        let mut found: Vec<Option<mandate_gateway::Discovered>> = upstreams.iter().map(|_| None).collect();
        while let Some(done) = reading.join_next().await {
            let (i, d) = done.context("reading an upstream's tools")?;
            found[i] = Some(d?);
        }
        let mut gateways = Vec::new();
        for d in found.iter().flatten() {
            gateways.push(d.mapping.resource.clone());
        }
        let (auth, store) = crate::setup::build_with_store(&config, gateways).await?;
        // Revocations made by other processes on this database (PostgreSQL LISTEN/NOTIFY).
        let listening = auth.clone();
        store.listen_for_revocations(move |_event| listening.note_revocation_elsewhere());
        let closing = store.clone();
        let demo: Arc<dyn DemoStore> = Arc::new(store);
        spawn_janitor(auth.clone());
        let issuer = auth.settings.issuer.clone();
        let (app, next, served) = if config.mcp_only {
            let app = mcp_only_router(&config, auth.clone(), demo, drain.streams()).await?;
            let served: Vec<Arc<mandate_gateway::Upstream>> = Vec::new();
            let trusted = config.issuer.clone().unwrap_or_default();
            let next = vec![
                line("MCP endpoint, to add to an MCP client", &format!("{issuer}/mcp")),
                line("tokens from", &trusted),
            ];
            (app, next, served)
        } else {
            let password = if config.demo { Some(seed_demo(&auth, demo.as_ref()).await?) } else { None };
            let mut provider_specs = crate::providers::specs(&config)?;
            if let Some(e) = &example {
                provider_specs.push(e.provider.clone());
            }
            let federation = if provider_specs.is_empty() {
                None
            } else {
                let http =
                    mandate_upstream::Upstreams::http_client().context("building the HTTP client for providers")?;
                Some(mandate_server::Federation {
                    upstreams: Arc::new(mandate_upstream::Upstreams::new(auth.clone(), provider_specs, http)),
                    password_login: config.password_login,
                    resource_providers: upstreams
                        .iter()
                        .filter_map(|u| Some((u.resource.clone(), u.provider.clone()?)))
                        .collect(),
                })
            };
            let limits = mandate_server::RateLimits {
                trust_forwarded_for: config.trust_forwarded_for,
                max_in_flight: config.max_in_flight,
                anonymous_authorizations_per_minute: config.anonymous_authorizations_per_minute,
                request_timeout: Duration::from_secs(config.request_timeout),
                ..Default::default()
            };
            let resource = auth.resources.resolve(None).map_err(|e| anyhow!(e.description.to_string()))?;
            let mut inspectable = vec![resource.uri.clone()];
            let local_mcp = format!("{issuer}/mcp");
            let (app, mcp_line) = if resource.uri == local_mcp {
                let settings = McpSettings::in_process(&auth, resource, config.mcp_allowed_origins.clone())
                    .with_new_sessions(config.new_sessions())
                    .with_shutdown(drain.streams());
                let mcp = mandate_mcp::router(settings, auth.clone(), demo.clone());
                let app = mandate_server::router_with(auth.clone(), Some(demo), limits, federation.clone()).merge(mcp);
                (app, line("MCP endpoint, to add to an MCP client", &local_mcp))
            } else {
                // The MCP server runs elsewhere: serving /mcp here would accept its tokens.
                tracing::info!(resource = %resource.uri, "no MCP endpoint here: the resource is served by another process");
                (
                    mandate_server::router_with(auth.clone(), None, limits, federation.clone()),
                    line("MCP endpoint, served elsewhere", &resource.uri),
                )
            };
            let mut app = app;
            let mut gateway_lines = Vec::new();
            let mut served = Vec::new();
            for (spec, d) in upstreams.into_iter().zip(found) {
                let Some(d) = d else { continue };
                let def =
                    auth.resources.resolve(Some(&spec.resource)).map_err(|e| anyhow!(e.description.to_string()))?;
                let settings = McpSettings::in_process(&auth, def, config.mcp_allowed_origins.clone())
                    .with_new_sessions(config.new_sessions())
                    .with_shutdown(drain.streams());
                let what = match &d.error {
                    None if spec.provider.is_some() => "tools read with each person's account".to_owned(),
                    None => format!("{} tools", d.labels.len()),
                    Some(_) => "tools not read yet: upstream unreachable".to_owned(),
                };
                gateway_lines.push(line(&format!("{} ({what})", spec.title), &spec.resource));
                inspectable.push(spec.resource.clone());
                let account = match (&spec.provider, &federation) {
                    (Some(p), Some(f)) => Some(f.upstreams.handle(p).map_err(|e| anyhow!(e.to_string()))?),
                    (Some(p), None) => bail!("[[resources]] {:?}: provider {p:?} is not configured", spec.name),
                    (None, _) => None,
                };
                let (upstream, router) = mandate_gateway::serve(spec, d, auth.clone(), http.clone(), settings, account);
                served.push(upstream);
                app = app.merge(router);
            }
            let mut next = vec![mcp_line];
            next.extend(gateway_lines);
            if let Some(inspector) = crate::inspect::router(&config, &auth, inspectable) {
                app = app.merge(inspector);
                next.push(line("inspector, for operators", &format!("{issuer}/inspector")));
            }
            next.extend([
                line("what agents may do for you", &format!("{issuer}/account/apps")),
                line("what they did", &format!("{issuer}/account/activity")),
            ]);
            if let Some(e) = &example {
                next.extend(e.lines.iter().map(|l| format!("  {l}")));
            }
            match password {
                Some(p) => next.push(format!("demo user: demo / password: {p}")),
                None if auth.list_users().await?.is_empty()
                    && federation.as_ref().is_none_or(|f| f.upstreams.sign_in_providers().next().is_none()) =>
                {
                    next.push("nobody can sign in yet: add a person with `mandate users add NAME`".to_owned());
                }
                None => {}
            }
            (app, next, served)
        };
        anyhow::Ok((auth, closing, issuer, app, next, served))
    };
    let (auth, closing, issuer, app, mut next, served) = tokio::select! {
        ready = setup => ready?,
        signal = signals.next() => bail!("{signal} received while starting: stopped before serving"),
    };
    let detail: Option<mandate_server::ReadinessDetail> = (!served.is_empty()).then(|| {
        let upstreams = served.clone();
        let f: mandate_server::ReadinessDetail = Arc::new(move || {
            let mut m = serde_json::Map::new();
            for u in &upstreams {
                m.insert(u.spec.name.clone(), u.health());
            }
            serde_json::Value::Object(m)
        });
        f
    });
    let mut app = app.merge(mandate_server::health_routes_with(auth.clone(), detail));
    // Metrics, when asked for: every route recorded; `/metrics` on a listener of its own, or on
    // this one behind the bearer token.
    let metrics = (config.metrics_listen.is_some() || config.metrics_token.is_some())
        .then(|| mandate_server::Metrics::new(auth.clone(), Some(database_gauges(closing.clone()))));
    let token = config.metrics_token.as_deref();
    let mut metrics_server = None;
    if let Some(m) = &metrics {
        match metrics_listener {
            Some(l) => {
                let at = l.local_addr().context("reading the metrics address bound")?;
                next.push(line("metrics, for Prometheus", &format!("http://{at}/metrics")));
                tracing::info!(%at, bearer_token = token.is_some(), "metrics on a listener of their own");
                metrics_server = Some(serve_metrics(l, m.endpoint(token)));
            }
            None => {
                next.push(line("metrics, with the bearer token", &format!("{issuer}/metrics")));
                app = app.merge(m.endpoint(token));
            }
        }
        app = m.record(app);
    }
    // Request-head limits and keep-alive after unread bodies, for every route (issue 13).
    let app = drain.track(mandate_server::harden(app));
    tracing::info!(public_url = %issuer, %addr, database = %crate::setup::redact(&config.database), mcp_only = config.mcp_only, "mandate is serving");
    let only = if config.mcp_only { " (the MCP endpoint only)" } else { "" };
    next.insert(0, format!("mandate is serving {issuer}{only}"));
    next.push("Ctrl-C stops it (requests in flight finish first).".to_owned());
    say(&next);
    let limit = Duration::from_secs(config.shutdown_timeout);
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let drained = serve(listener, tls, app, &mut signals, &drain, limit).await?;
    if let Some((stop, task)) = metrics_server {
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    // The upstreams' processes end with the server, their process groups included.
    for u in &served {
        u.stop_processes(Duration::from_secs(2)).await;
    }
    if drained == Drained::Cleanly {
        // Background tasks (the janitor, LISTEN) may hold a connection: they get a moment.
        if tokio::time::timeout(Duration::from_secs(2), closing.close()).await.is_err() {
            tracing::warn!("the database connections did not close within 2 s");
        }
    }
    Ok(())
}

/// How a drain ended.
#[derive(PartialEq, Eq)]
enum Drained {
    Cleanly,
    /// Past the bound, or on a second signal: connections were cut.
    Cut,
}

/// Binds `listen` (already checked to be an address).
fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = listen.parse().with_context(|| format!("--listen {listen:?} is not an address"))?;
    let bound = (|| {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        // Rebinding right after a restart (TIME_WAIT) is fine on Unix; on Windows the same option
        // would let two servers share a port.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(1024)
    })();
    bound.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => "address already in use (is another server running there?)".to_owned(),
            std::io::ErrorKind::AddrNotAvailable => "no such address on this machine".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            _ => e.to_string(),
        };
        anyhow!("cannot listen on {addr}: {why}")
    })
}

/// One "what to open next" line.
fn line(what: &str, url: &str) -> String {
    format!("  {:<38} {url}", format!("{what}:"))
}

/// Prints to stdout; a closed stdout does not stop the server.
fn say(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", lines.join("\n"));
    let _ = out.flush();
}

/// Serves until the first signal, then drains: no new connections, the requests in flight
/// finish, then the MCP event streams end; at most `limit`, or until a second signal.
async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<RustlsConfig>,
    app: IntoMakeServiceWithConnectInfo<axum::Router, SocketAddr>,
    signals: &mut Signals,
    drain: &Drain,
    limit: Duration,
) -> anyhow::Result<Drained> {
    let stop = CancellationToken::new();
    let server = async {
        match tls {
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let (graceful, stopped) = (handle.clone(), stop.clone());
                tokio::spawn(async move {
                    stopped.cancelled().await;
                    graceful.graceful_shutdown(None);
                });
                axum_server::from_tcp_rustls(listener.into_std()?, tls)?.handle(handle).serve(app).await
            }
            None => {
                // No Nagle: streamed (SSE) MCP responses are several small writes, and delayed
                // ACKs would add ~40 ms to every one of them.
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned()).await
            }
        }
    };
    let mut server = std::pin::pin!(server);
    let signal = tokio::select! {
        served = &mut server => return served.context("serving").map(|()| Drained::Cleanly),
        signal = signals.next() => signal,
    };
    tracing::info!(
        signal,
        "shutting down: no new connections; requests in flight get up to {} s to finish",
        limit.as_secs()
    );
    stop.cancel();
    // The server future closes the listener and then waits for the connections to end; the
    // MCP streams end once the requests in flight have finished.
    let drained = async { tokio::join!(server, drain.finish_requests()).0 };
    Ok(tokio::select! {
        served = drained => {
            served.context("serving")?;
            tracing::info!("shut down: every request finished");
            Drained::Cleanly
        }
        () = tokio::time::sleep(limit) => {
            tracing::warn!("requests still in flight after {} s (shutdown_timeout): exiting anyway", limit.as_secs());
            Drained::Cut
        }
        signal = signals.next() => {
            tracing::warn!(signal, "second signal: exiting now");
            Drained::Cut
        }
    })
}

/// The database pool and write queue, read at each scrape.
fn database_gauges(store: mandate_store::SqlStore) -> mandate_server::DatabaseGauges {
    Arc::new(move || {
        let pool = store.pool();
        mandate_server::DatabaseStats {
            connections: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max_connections: pool.options().get_max_connections(),
            write_queue: u64::try_from(store.write_queue_depth()).unwrap_or(u64::MAX),
        }
    })
}

/// `/metrics` on a listener of its own (plain HTTP), until the token returned is cancelled.
fn serve_metrics(
    listener: tokio::net::TcpListener,
    router: axum::Router,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stopped.cancelled_owned()).await {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    });
    (stop, task)
}

fn spawn_janitor(auth: Arc<AuthServer>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            every.tick().await;
            match auth.purge_expired().await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired sessions, codes and tokens"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging expired state failed"),
            }
        }
    });
}

/// `--mcp-only`: the MCP endpoint alone, validating tokens against the issuer's published keys.
async fn mcp_only_router(
    config: &Config,
    auth: Arc<AuthServer>,
    demo: Arc<dyn DemoStore>,
    shutdown: CancellationToken,
) -> anyhow::Result<axum::Router> {
    let issuer = config.issuer.clone().context("--mcp-only needs --issuer")?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    // RFC 8414 §3: the well-known segment goes between the origin and the issuer's path; then
    // the OpenID Connect form, appended.
    let parsed = url::Url::parse(&issuer).context("--issuer")?;
    let origin = parsed.origin().ascii_serialization();
    let path = parsed.path().trim_end_matches('/');
    let candidates = [
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}/.well-known/openid-configuration{path}"),
        format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')),
    ];
    let mut metadata: Option<(String, serde_json::Value)> = None;
    for url in &candidates {
        let got = async { http.get(url).send().await?.error_for_status()?.json::<serde_json::Value>().await }.await;
        if let Ok(v) = got {
            metadata = Some((url.clone(), v));
            break;
        }
    }
    let (metadata_url, metadata) = metadata.with_context(|| {
        format!("no authorization server metadata found for {issuer} (tried {})", candidates.join(", "))
    })?;
    if metadata["issuer"].as_str() != Some(issuer.as_str()) {
        bail!("the metadata at {metadata_url} names issuer {:?}, not {issuer:?}", metadata["issuer"]);
    }
    let jwks_uri = metadata["jwks_uri"].as_str().context("the issuer publishes no jwks_uri")?;
    let resource = format!("{}/mcp", auth.settings.issuer);
    let (scopes_supported, challenge_scopes) =
        auth.resources.resolve(None).map(mandate_mcp::published_scopes).unwrap_or_default();
    Ok(mandate_mcp::router(
        McpSettings {
            resource: resource.clone(),
            issuer: issuer.clone(),
            scopes_supported,
            challenge_scopes,
            check: TokenCheck::Jwt(Validator::new(
                issuer,
                resource,
                Arc::new(JwksKeySource::new(jwks_uri)?),
                auth.clock(),
            )),
            extra_origins: config.mcp_allowed_origins.clone(),
            revocation: None,
            shared_sessions: true,
            new_sessions: config.new_sessions(),
            shutdown,
        },
        auth,
        demo,
    ))
}

/// `--demo`: a demo user with a fresh password (returned, to be printed), and some billing and
/// todo data.
pub(crate) async fn seed_demo(auth: &AuthServer, demo: &dyn DemoStore) -> anyhow::Result<String> {
    let password = auth.new_secret();
    let user = auth.set_or_create_user("demo", password.clone()).await?;
    if demo.customers(&user.id).await?.is_empty() {
        let now = auth.now();
        for (name, email) in [("Acme Corp", "billing@acme.example"), ("Globex", "ap@globex.example")] {
            let c = Customer { id: auth.new_id(), name: name.into(), email: Some(email.into()), created_at: now };
            demo.insert_customer(&user.id, &c).await?;
            let i = Invoice {
                id: auth.new_id(),
                customer_id: c.id.clone(),
                amount_cents: 125_000,
                currency: "EUR".into(),
                status: InvoiceStatus::Draft,
                created_at: now,
                sent_at: None,
            };
            demo.insert_invoice(&user.id, &i).await?;
        }
        for title in ["Chase the Globex payment", "Prepare the quarterly report"] {
            demo.insert_todo(&user.id, &Todo { id: auth.new_id(), title: title.into(), done: false, created_at: now })
                .await?;
        }
    }
    Ok(password)
}
