//! One operator's inspection: a `mandate-client` connection to one MCP server, its MCP session,
//! and the actions the page asks for. Each action runs as a task of its own (a sign-in may wait
//! minutes for the operator, and the page navigates away meanwhile); one at a time.

use std::sync::Arc;
use std::time::Duration;

use mandate_client::session::tool_scopes;
use mandate_client::{ClientError, ConnectOptions, Connection, CredentialVault, McpSession, NetPolicy, StepUp};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::record::{BrowserSignIn, Shared};
use crate::view::{CallView, ToolView, View, token_view};

/// How long a sign-in waits for the operator.
const SIGN_IN_WAIT: Duration = Duration::from_secs(600);

/// How long any one request may take (discovery, tokens, MCP).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Inspection {
    conn: Arc<Connection>,
    session: Mutex<Option<McpSession>>,
    pub(crate) view: Shared,
    pub(crate) sign_in: Arc<BrowserSignIn>,
    allow_loopback: bool,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Why an action was not started.
#[derive(Debug)]
pub(crate) enum NotStarted {
    /// Another action is running.
    Busy(String),
}

impl Inspection {
    /// A new inspection of `url`; nothing is sent yet.
    pub(crate) fn new(
        url: &str,
        scope: Option<String>,
        redirect_uri: String,
        allow_loopback: bool,
    ) -> Result<Arc<Self>, ClientError> {
        let view = Shared::default();
        *view.lock() = View::new(url);
        let sign_in = Arc::new(BrowserSignIn::new(redirect_uri, view.clone()));
        let mut opts = ConnectOptions::new(url);
        opts.scope = scope;
        opts.client_name = "mandate inspector".into();
        opts.step_up = StepUp::Never;
        opts.policy = NetPolicy { allow_loopback_http: allow_loopback };
        opts.login_timeout = SIGN_IN_WAIT;
        opts.request_timeout = REQUEST_TIMEOUT;
        opts.recorder = Some(Arc::new(view.clone()));
        opts.external_sign_in = Some(sign_in.clone());
        // A step-up's new grant replaces the one before: revoke it, or it would stay live at the
        // authorization server, forgotten here.
        opts.revoke_replaced = true;
        // Credentials live as long as the inspection, in memory only.
        let conn = Arc::new(Connection::new(opts, Arc::new(CredentialVault::in_memory()))?);
        Ok(Arc::new(Self {
            conn,
            session: Mutex::new(None),
            view,
            sign_in,
            allow_loopback,
            task: std::sync::Mutex::new(None),
        }))
    }

    /// Starts `work` unless another action runs; its error, if any, goes on the page.
    pub(crate) fn start<F>(self: &Arc<Self>, what: &str, work: F) -> Result<(), NotStarted>
    where
        F: Future<Output = Result<(), ClientError>> + Send + 'static,
    {
        {
            let mut view = self.view.lock();
            if let Some(running) = &view.busy {
                return Err(NotStarted::Busy(running.clone()));
            }
            view.busy = Some(what.to_owned());
            view.error = None;
        }
        let me = self.clone();
        let handle = tokio::spawn(async move {
            let outcome = work.await;
            let mut view = me.view.lock();
            view.busy = None;
            view.authorize_url = None;
            if let Err(e) = outcome {
                view.error = Some(e.to_string());
                view.step("Stopped", e.to_string());
            }
        });
        if let Ok(mut slot) = self.task.lock() {
            *slot = Some(handle);
        }
        Ok(())
    }

    /// Stops whatever runs (a new connection replaces this one).
    pub(crate) fn stop(&self) {
        if let Some(handle) = self.task.lock().ok().and_then(|mut t| t.take()) {
            handle.abort();
        }
    }

    /// Connects: the MCP `initialize` (signing in when the server says 401), then `tools/list`.
    pub(crate) async fn connect(self: Arc<Self>) -> Result<(), ClientError> {
        self.view.lock().phase = "connecting";
        let session = McpSession::open(&self.conn).await;
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                self.view.lock().phase = "failed";
                return Err(e);
            }
        };
        let tools = session.list_tools().await?;
        *self.session.lock().await = Some(session);
        self.show_token().await;
        let mut view = self.view.lock();
        view.tools = tools
            .iter()
            .map(|t| ToolView {
                name: t.name.to_string(),
                description: t.description.as_deref().map(str::to_owned),
                scopes: tool_scopes(t),
                granted: false,
                input_schema: Value::Object((*t.input_schema).clone()),
                annotations: t.annotations.as_ref().and_then(|a| serde_json::to_value(a).ok()),
            })
            .collect();
        view.regrant();
        view.phase = "connected";
        let n = view.tools.len();
        view.step("Connected", format!("the MCP session is open; {n} tools listed"));
        Ok(())
    }

    /// Calls a tool; a refusal for scope is shown with the scopes it needs (step-up is the
    /// operator's choice, not automatic).
    pub(crate) async fn call(
        self: Arc<Self>,
        tool: String,
        arguments: serde_json::Map<String, Value>,
    ) -> Result<(), ClientError> {
        let guard = self.session.lock().await;
        let Some(session) = guard.as_ref() else {
            return Err(ClientError::Usage("not connected: connect first".into()));
        };
        let outcome = session.call(&tool, Some(arguments)).await;
        drop(guard);
        let call = match outcome {
            Ok(result) => {
                let failed = result.is_error.unwrap_or(false);
                CallView {
                    tool,
                    outcome: if failed { "tool-error" } else { "ok" },
                    result: serde_json::to_value(&result).ok(),
                    needs: None,
                    message: None,
                }
            }
            Err(ClientError::ScopeRefused { scopes, .. }) => CallView {
                message: Some(format!(
                    "the server refused with 403 insufficient_scope: {tool} needs `{scopes}`, which this token does not carry"
                )),
                tool,
                outcome: "refused",
                result: None,
                needs: Some(scopes),
            },
            Err(e) => CallView { tool, outcome: "failed", result: None, needs: None, message: Some(e.to_string()) },
        };
        self.show_token().await;
        self.view.lock().last_call = Some(call);
        Ok(())
    }

    /// A new authorization for the held scopes and `more` (the person consents again).
    pub(crate) async fn step_up(self: Arc<Self>, more: Vec<String>) -> Result<(), ClientError> {
        let mut scopes = self.conn.granted_scopes()?;
        for s in more {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        self.view.lock().step("Step-up", format!("a new authorization asking for `{}`", scopes.join(" ")));
        self.conn.reauthorize(scopes).await?;
        self.show_token().await;
        Ok(())
    }

    /// Refreshes the access token now.
    pub(crate) async fn refresh(self: Arc<Self>) -> Result<(), ClientError> {
        self.conn.refresh_now().await?;
        self.show_token().await;
        Ok(())
    }

    /// Ends the MCP session, revokes the tokens at the authorization server and forgets them.
    pub(crate) async fn revoke(self: Arc<Self>) -> Result<(), ClientError> {
        if let Some(session) = self.session.lock().await.take() {
            session.close().await;
        }
        let had = self.conn.logout().await?;
        let mut view = self.view.lock();
        view.token = None;
        view.regrant();
        view.phase = "revoked";
        view.step(
            "Revoked",
            if had {
                "the refresh and access tokens were sent to the revocation endpoint and forgotten here"
            } else {
                "there were no tokens to revoke"
            },
        );
        Ok(())
    }

    /// The doctor's report for the URL, fetched with the same URL policy as the client.
    pub(crate) async fn doctor(self: Arc<Self>) -> Result<(), ClientError> {
        let url = self.conn.server().clone();
        let policy = NetPolicy { allow_loopback_http: self.allow_loopback };
        let http = mandate_client::net::guarded_reqwest(policy, None, Duration::from_secs(10))?;
        let options = mandate_doctor::Options { http: Some(http), ..Default::default() };
        let report = mandate_doctor::diagnose(&url, &options).await;
        let worst = report.worst();
        let mut view = self.view.lock();
        view.doctor = serde_json::to_value(&report).ok();
        view.step("Doctor", format!("{} checks; the worst: {worst:?}", report.checks.len()));
        Ok(())
    }

    /// Shows the token the client holds now.
    async fn show_token(&self) {
        let token = self.conn.access_token().await.ok().flatten();
        let granted = self.conn.granted_scopes().unwrap_or_default();
        let mut view = self.view.lock();
        view.token = token.map(|t| token_view(&t, granted));
        view.regrant();
    }
}
