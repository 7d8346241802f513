//! One upstream server at run time: how to reach it (spawn or connect, then `initialize`), its
//! scope mapping as it evolves, its process limits, and its last known health.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use mandate_core::AuthServer;
use process_wrap::tokio::{CommandWrap, KillOnDrop, ProcessGroup};
use rmcp::ServiceExt;
use rmcp::model::{ClientConfig, ErrorCode, ErrorData};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use tokio::io::{AsyncBufReadExt, BufReader};

use mandate_guard::Principal;

use crate::client::{Account, Identity, Resume, UpstreamClient};
use crate::forward::Forwarder;
use crate::processes::{Permit, Processes};
use crate::routes::Routes;
use crate::scopes::ScopeMapping;
use crate::spec::{Isolation, Target, UpstreamSpec};

/// Variables a spawned server keeps from mandate's environment (everything else is cleared:
/// mandate's own secrets never reach it); `env` in the configuration adds to them.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM"];

/// A live connection to the upstream (one `initialize`d MCP session; for stdio, one process).
pub(crate) struct Link {
    pub service: RunningService<RoleClient, Forwarder>,
    pub routes: Arc<Routes>,
    pub pid: Option<u32>,
    /// Its place in the process limits, given back as soon as it is seen closed (a restart
    /// must not be refused because the dead process still counts).
    permit: Mutex<Option<Permit>>,
    /// The upstream's register of live processes (for stopping them all at shutdown).
    children: Children,
    /// An HTTP upstream's client: its session id, the identity it sends.
    pub client: Option<UpstreamClient>,
    pub identity: Option<Arc<Identity>>,
}

/// The process groups of an upstream's live stdio servers.
pub(crate) type Children = Arc<Mutex<std::collections::HashSet<u32>>>;

/// SIGTERM to each group now; SIGKILL to what is left after `grace`.
#[cfg(unix)]
async fn stop_groups(groups: Vec<u32>, grace: std::time::Duration) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let groups: Vec<Pid> = groups.into_iter().filter_map(|p| i32::try_from(p).ok()).map(Pid::from_raw).collect();
    let mut alive: Vec<Pid> = groups.into_iter().filter(|g| killpg(*g, Signal::SIGTERM).is_ok()).collect();
    let step = std::time::Duration::from_millis(100);
    let mut waited = std::time::Duration::ZERO;
    while !alive.is_empty() && waited < grace {
        tokio::time::sleep(step).await;
        waited += step;
        alive.retain(|g| killpg(*g, None).is_ok());
    }
    for g in alive {
        let _ = killpg(g, Signal::SIGKILL);
    }
}

#[cfg(not(unix))]
async fn stop_groups(_groups: Vec<u32>, _grace: std::time::Duration) {}

impl Drop for Link {
    /// A stdio server goes with its connection, its whole process group (an `npx` → `node`
    /// tree) included: SIGTERM now, SIGKILL two seconds later for what is left. A process whose
    /// connection already ended was reaped by rmcp: its id may belong to someone else by now,
    /// so it is not signalled.
    fn drop(&mut self) {
        let Some(pid) = self.pid else { return };
        if self.service.peer().is_transport_closed() {
            forget(&self.children, pid);
            return;
        }
        #[cfg(unix)]
        if let Some(group) = i32::try_from(pid).ok().map(nix::unistd::Pid::from_raw) {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
        }
        // Kept in the register until it is gone: at shutdown `stop_processes` waits for it.
        let children = self.children.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                stop_groups(vec![pid], std::time::Duration::from_secs(2)).await;
                forget(&children, pid);
            });
        }
    }
}

fn forget(children: &Children, pid: u32) {
    if let Ok(mut c) = children.lock() {
        c.remove(&pid);
    }
}

impl Link {
    /// The connection ended: the process exited, the HTTP session failed, or it was closed.
    pub fn is_closed(&self) -> bool {
        let closed = self.service.is_closed() || self.service.peer().is_transport_closed();
        if closed {
            self.release();
        }
        closed
    }

    /// A dead process gives its place in the limits back, and leaves the register of processes
    /// to stop (rmcp reaped it).
    fn release(&self) {
        if let Ok(mut p) = self.permit.lock() {
            p.take();
        }
        if let Some(pid) = self.pid {
            forget(&self.children, pid);
        }
    }
}

/// Watches a stdio process's connection: when it ends (the process died), its place in the
/// limits is given back at once, not when its session next sends a request.
fn watch_exit(link: &Arc<Link>) {
    let weak = Arc::downgrade(link);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let Some(link) = weak.upgrade() else { return };
            if link.is_closed() {
                return;
            }
        }
    });
}

/// An upstream server as the gateway runs it.
pub struct Upstream {
    pub spec: UpstreamSpec,
    pub(crate) auth: Arc<AuthServer>,
    pub(crate) mapping: Mutex<ScopeMapping>,
    /// Tool name → what people read (its title), for the trail.
    pub(crate) labels: Mutex<HashMap<String, String>>,
    processes: Processes,
    pub(crate) http: reqwest::Client,
    shared: tokio::sync::Mutex<Option<Arc<Link>>>,
    /// The last failure to reach it, for `/readyz` (cleared by a success).
    last_error: Mutex<Option<String>>,
    children: Children,
    /// People's accounts at the upstream's provider (`spec.provider`).
    pub(crate) account: Option<mandate_upstream::UpstreamHandle>,
}

pub(crate) fn gateway_error(message: impl Into<String>) -> ErrorData {
    ErrorData::new(ErrorCode::INTERNAL_ERROR, message.into(), None)
}

impl Upstream {
    pub(crate) fn new(
        spec: UpstreamSpec,
        mapping: ScopeMapping,
        labels: HashMap<String, String>,
        auth: Arc<AuthServer>,
        http: reqwest::Client,
        account: Option<mandate_upstream::UpstreamHandle>,
    ) -> Self {
        let processes = Processes::new(spec.limits.max_processes, spec.limits.max_processes_per_person);
        Self {
            spec,
            auth,
            mapping: Mutex::new(mapping),
            labels: Mutex::new(labels),
            processes,
            http,
            shared: tokio::sync::Mutex::new(None),
            last_error: Mutex::new(None),
            children: Children::default(),
            account,
        }
    }

    /// Stops every process of this upstream (at shutdown): SIGTERM to each process group, and
    /// SIGKILL to what is left after `grace`.
    pub async fn stop_processes(&self, grace: std::time::Duration) {
        let groups: Vec<u32> = self.children.lock().map(|c| c.iter().copied().collect()).unwrap_or_default();
        if !groups.is_empty() {
            tracing::info!(upstream = %self.spec.name, processes = groups.len(), "stopping the upstream's processes");
        }
        stop_groups(groups, grace).await;
    }

    /// What `/readyz` says of this upstream: reachable at the last attempt or not, and how
    /// many processes run. An unreachable upstream does not make the instance unready: the
    /// authorization server and the other resources still serve.
    pub fn health(&self) -> serde_json::Value {
        let kind = match &self.spec.target {
            Target::Http { .. } => "http",
            Target::Stdio { .. } => "stdio",
        };
        // The reason is in the log, not here: `/readyz` answers anyone.
        let mut v = match self.last_error() {
            None => serde_json::json!({"status": "up"}),
            Some(_) => serde_json::json!({"status": "unreachable"}),
        };
        v["transport"] = kind.into();
        if kind == "stdio" {
            v["processes"] = self.processes_running().into();
        }
        v
    }

    /// Stdio processes running now.
    pub fn processes_running(&self) -> usize {
        self.processes.running()
    }

    /// `None` when the last attempt to reach the upstream worked (or none was made yet).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    pub(crate) fn note_failure(&self, error: String) {
        self.note(Err(error));
    }

    fn note(&self, outcome: Result<(), String>) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = outcome.err();
        }
    }

    /// A connection for one downstream session: a new one (a new process for stdio in session
    /// isolation), or the shared process.
    pub(crate) async fn link_for(
        &self,
        info: &ClientConfig,
        caller: &Principal,
        resume: Option<Resume>,
    ) -> Result<Arc<Link>, ErrorData> {
        let shared = matches!(self.spec.target, Target::Stdio { isolation: Isolation::Shared, .. });
        if !shared {
            let link = Arc::new(self.open(info.clone(), Some(caller), Arc::default(), resume).await?);
            if link.pid.is_some() {
                watch_exit(&link);
            }
            return Ok(link);
        }
        let mut slot = self.shared.lock().await;
        if let Some(l) = slot.as_ref().filter(|l| !l.is_closed()) {
            return Ok(l.clone());
        }
        let link = Arc::new(self.open(info.clone(), None, Arc::default(), None).await?);
        watch_exit(&link);
        *slot = Some(link.clone());
        Ok(link)
    }

    /// Spawns or connects, then `initialize`s with `info` (the downstream client's own, so an
    /// upstream sees its capabilities), within the start timeout.
    pub(crate) async fn open(
        &self,
        info: ClientConfig,
        caller: Option<&Principal>,
        routes: Arc<Routes>,
        resume: Option<Resume>,
    ) -> Result<Link, ErrorData> {
        let permit = match &self.spec.target {
            Target::Stdio { .. } => Some(
                self.processes
                    .acquire(caller.map_or("", |c| c.subject.as_str()))
                    .map_err(|e| gateway_error(e.to_string()))?,
            ),
            Target::Http { .. } => None,
        };
        let identity = match (&self.spec.target, self.spec.identity) {
            (Target::Http { url, .. }, true) => {
                // Named from the first request on, `initialize` included.
                let identity = Identity::new(self.auth.clone(), url.clone());
                if let Some(c) = caller {
                    identity.set_caller(c);
                }
                Some(Arc::new(identity))
            }
            _ => None,
        };
        let account = match (&self.account, caller) {
            (Some(handle), Some(c)) => Some(Arc::new(Account::new(handle.clone(), c.subject.clone()))),
            _ => None,
        };
        let parts = Extras { permit, children: self.children.clone(), identity, account, resume };
        let outcome = connect(&self.spec, &self.http, info, routes, parts).await;
        self.note(outcome.as_ref().map(|_| ()).map_err(|e| e.message.to_string()));
        outcome
    }
}

/// What a connection holds besides the transport.
#[derive(Default)]
pub(crate) struct Extras {
    pub permit: Option<Permit>,
    pub children: Children,
    pub identity: Option<Arc<Identity>>,
    /// The person's account at the upstream's provider.
    pub account: Option<Arc<Account>>,
    pub resume: Option<Resume>,
}

/// Spawns or connects to the upstream of `spec`, then `initialize`s with `info`, within the
/// start timeout.
pub(crate) async fn connect(
    spec: &UpstreamSpec,
    http: &reqwest::Client,
    info: ClientConfig,
    routes: Arc<Routes>,
    extras: Extras,
) -> Result<Link, ErrorData> {
    let Extras { permit, children, identity, account, resume } = extras;
    let name = &spec.name;
    let forwarder = Forwarder { routes: routes.clone(), info };
    let within = spec.limits.start_timeout;
    let late = || gateway_error(format!("the {name} server did not start within {} s", within.as_secs()));
    match &spec.target {
        Target::Stdio { command, args, env, .. } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args).env_clear();
            for key in INHERITED_ENV {
                if let Some(v) = std::env::var_os(key) {
                    cmd.env(key, v);
                }
            }
            cmd.envs(env);
            let mut wrap = CommandWrap::from(cmd);
            // Its own process group, killed as one: `npx` → `sh` → `node` trees leave nothing.
            wrap.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
            let (child, stderr) = TokioChildProcess::builder(wrap).stderr(Stdio::piped()).spawn().map_err(|e| {
                tracing::error!(upstream = %name, %command, error = %e, "cannot start the upstream server");
                gateway_error(format!("the {name} server could not be started"))
            })?;
            let pid = child.id();
            if let Some(stderr) = stderr {
                let upstream = name.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::info!(upstream = %upstream, pid, "{line}");
                    }
                });
            }
            tracing::info!(upstream = %name, pid, "started the upstream server");
            let service =
                tokio::time::timeout(within, forwarder.serve(child)).await.map_err(|_| late())?.map_err(|e| {
                    tracing::warn!(upstream = %name, error = %e, "the upstream server failed to initialize");
                    gateway_error(format!("the {name} server did not initialize"))
                })?;
            if let (Some(p), Ok(mut c)) = (pid, children.lock()) {
                c.insert(p);
            }
            Ok(Link { service, routes, pid, permit: Mutex::new(permit), children, client: None, identity: None })
        }
        Target::Http { url, headers } => {
            let mut custom = HashMap::new();
            for (k, v) in headers {
                let (Ok(k), Ok(v)) = (http::HeaderName::try_from(k.as_str()), http::HeaderValue::try_from(v.as_str()))
                else {
                    return Err(gateway_error(format!("the {name} upstream header {k} is not a valid header")));
                };
                custom.insert(k, v);
            }
            let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(custom);
            // An upstream that forgot the session must not be given a new one silently: the
            // relay reports the loss to the client first.
            config.reinit_on_expired_session = false;
            let client = UpstreamClient::new(http.clone(), identity.clone(), account, resume);
            let transport = StreamableHttpClientTransport::with_client(client.clone(), config);
            let service =
                tokio::time::timeout(within, forwarder.serve(transport)).await.map_err(|_| late())?.map_err(|e| {
                    tracing::warn!(upstream = %name, %url, error = %e, "the upstream server is unreachable");
                    gateway_error(format!("the {name} server is unreachable"))
                })?;
            Ok(Link {
                service,
                routes,
                pid: None,
                permit: Mutex::new(permit),
                children,
                client: Some(client),
                identity,
            })
        }
    }
}
