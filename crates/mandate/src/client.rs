//! The agent-side subcommands: `login`, `tools`, `call`, `logout`, `connections`, `bridge`, and the
//! hidden `conformance-client` that the MCP conformance suite drives.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use mandate_client::session::tool_scopes;
use mandate_client::vault::default_dir;
use mandate_client::{
    BackendChoice, ClientError, ConnectOptions, Connection, CredentialVault, LoginMode, McpSession, NetPolicy, StepUp,
};

/// The agent-side commands.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Log in to an MCP server (discovery, registration, consent in the browser) and store the tokens.
    Login {
        url: String,
        #[command(flatten)]
        flags: ClientFlags,
    },
    /// List a server's tools with the scopes each needs.
    Tools {
        url: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        flags: ClientFlags,
    },
    /// Call one tool and print its result.
    Call {
        url: String,
        tool: String,
        /// The tool's arguments, a JSON object.
        #[arg(long, value_name = "JSON")]
        args: Option<String>,
        /// When the server needs more scopes, ask for them without prompting.
        #[arg(long)]
        step_up: bool,
        #[command(flatten)]
        flags: ClientFlags,
    },
    /// Revoke the stored tokens for a server and forget them.
    Logout {
        url: String,
        #[command(flatten)]
        flags: ClientFlags,
    },
    /// What is stored: servers, issuers, scopes, expiry (never a secret).
    Connections {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreFlags,
    },
    /// A stdio ↔ Streamable HTTP proxy for hosts that speak only stdio.
    Bridge {
        url: String,
        #[command(flatten)]
        flags: ClientFlags,
    },
    /// The client as the MCP conformance suite runs it (headless, loopback, memory-only storage).
    #[command(hide = true)]
    ConformanceClient { url: String },
}

#[derive(Args, Clone)]
pub struct StoreFlags {
    /// Where secrets go [env: MANDATE_CREDENTIAL_STORE] [default: auto = the OS keyring when available, else a 0600 file]
    #[arg(long, value_enum, env = "MANDATE_CREDENTIAL_STORE", default_value = "auto")]
    credential_store: StoreChoice,
    /// The directory of the credentials file [env: MANDATE_CLIENT_DIR] [default: <config dir>/mandate]
    #[arg(long, value_name = "DIR", env = "MANDATE_CLIENT_DIR")]
    client_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum StoreChoice {
    Auto,
    Keyring,
    File,
}

#[derive(Args, Clone)]
pub struct ClientFlags {
    /// Scopes to ask for (space-separated) instead of the server's challenge or metadata.
    #[arg(long, value_name = "S")]
    scope: Option<String>,
    /// A client registered in advance at this server's authorization server (remembered for
    /// this server, bound to that issuer).
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// Read that client's secret from the first line of stdin.
    #[arg(long, requires = "client_id")]
    client_secret_stdin: bool,
    /// This client's metadata document (CIMD), an https URL, used where the server supports it.
    #[arg(long, value_name = "URL")]
    client_metadata_url: Option<String>,
    /// Print the authorization URL instead of opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// Follow the authorization URL without a browser (only for servers that need no person).
    #[arg(long, conflicts_with = "no_browser")]
    headless: bool,
    /// Allow plain http and loopback addresses (local development only).
    #[arg(long)]
    allow_loopback_http: bool,
    /// Seconds to wait for the browser login.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    login_timeout: u64,
    /// Seconds any one request (MCP, discovery, registration, token) may go unanswered; time
    /// spent waiting for you in the browser is not counted.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    #[command(flatten)]
    store: StoreFlags,
}

fn open_vault(store: &StoreFlags) -> Result<Arc<CredentialVault>, ClientError> {
    let dir = match &store.client_dir {
        Some(d) => d.clone(),
        None => default_dir()?,
    };
    let choice = match store.credential_store {
        StoreChoice::Auto => BackendChoice::Auto,
        StoreChoice::Keyring => BackendChoice::Keyring,
        StoreChoice::File => BackendChoice::File,
    };
    Ok(Arc::new(CredentialVault::open(&dir, choice)?))
}

fn options(url: &str, flags: &ClientFlags, step_up: StepUp) -> Result<ConnectOptions, ClientError> {
    let mut o = ConnectOptions::new(url);
    o.scope = flags.scope.clone();
    o.client_id = flags.client_id.clone();
    if flags.client_secret_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| ClientError::Usage(format!("reading the secret: {e}")))?;
        let secret = line.trim_end_matches(['\r', '\n']).to_owned();
        if secret.is_empty() {
            return Err(ClientError::Usage("--client-secret-stdin read an empty line".into()));
        }
        o.client_secret = Some(secret);
    }
    o.client_metadata_url = flags.client_metadata_url.clone();
    o.login = if flags.headless {
        LoginMode::Headless
    } else if flags.no_browser {
        LoginMode::NoBrowser
    } else {
        LoginMode::Browser
    };
    o.policy = NetPolicy { allow_loopback_http: flags.allow_loopback_http };
    o.login_timeout = Duration::from_secs(flags.login_timeout.max(1));
    o.request_timeout = Duration::from_secs(flags.timeout);
    o.step_up = step_up;
    Ok(o)
}

fn connect(url: &str, flags: &ClientFlags, step_up: StepUp) -> Result<Arc<Connection>, ClientError> {
    let vault = open_vault(&flags.store)?;
    Ok(Arc::new(Connection::new(options(url, flags, step_up)?, vault)?))
}

/// Exit status: 0 done, 1 failed, 2 bad input, 3 refused for lack of scope (including a person
/// who declined at the consent page).
fn exit_for(e: &ClientError) -> ExitCode {
    match e {
        ClientError::ScopeRefused { .. } | ClientError::AccessDenied(_) => ExitCode::from(3),
        ClientError::Usage(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

pub async fn run(cmd: ClientCommand) -> ExitCode {
    match execute(cmd).await {
        Ok(code) => code,
        Err(e) => {
            // Messages can carry text from a server (URLs, registration errors): no terminal escapes.
            let text: String = e.to_string().chars().filter(|c| !c.is_control() || *c == '\n').collect();
            eprintln!("error: {text}");
            exit_for(&e)
        }
    }
}

async fn execute(cmd: ClientCommand) -> Result<ExitCode, ClientError> {
    match cmd {
        ClientCommand::Login { url, flags } => {
            let conn = connect(&url, &flags, StepUp::Never)?;
            conn.login().await?;
            let vault = open_vault(&flags.store)?;
            let entry = vault.list()?.into_iter().find(|c| c.resource == conn.resource());
            match entry {
                Some(c) => println!(
                    "Connected to {} (issuer {}) with scopes: {}",
                    c.resource,
                    c.issuer.as_deref().unwrap_or("unknown"),
                    if c.scopes.is_empty() { "(none)".to_owned() } else { c.scopes.join(" ") }
                ),
                None => println!("Connected to {}", conn.resource()),
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Tools { url, json, flags } => {
            let conn = connect(&url, &flags, StepUp::Never)?;
            let session = McpSession::open(&conn).await?;
            let tools = session.list_tools().await;
            session.close().await;
            let tools = tools?;
            // What the credentials held for this server allow (after any login the listing needed).
            let held = conn.granted_scopes()?;
            let missing = |t: &rmcp::model::Tool| -> Vec<String> {
                tool_scopes(t).into_iter().filter(|s| !held.contains(s)).collect()
            };
            if json {
                let list: Vec<_> = tools
                    .iter()
                    .map(|t| {
                        let missing = missing(t);
                        serde_json::json!({"name": t.name, "description": t.description, "scopes": tool_scopes(t),
                                           "allowed": missing.is_empty(), "missing": missing})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
            } else {
                for t in &tools {
                    let scopes = tool_scopes(t);
                    let scopes = if scopes.is_empty() { "-".to_owned() } else { scopes.join(" ") };
                    let missing = missing(t);
                    let access =
                        if missing.is_empty() { "✓".to_owned() } else { format!("needs {}", missing.join(" ")) };
                    let line = format!(
                        "{:<22} {:<32} {:<26} {}",
                        t.name,
                        scopes,
                        access,
                        t.description.as_deref().unwrap_or("")
                    );
                    println!("{}", printable(&line));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Call { url, tool, args, step_up, flags } => {
            let arguments = match args {
                None => None,
                Some(raw) => match serde_json::from_str::<serde_json::Value>(&raw) {
                    Ok(serde_json::Value::Object(m)) => Some(m),
                    Ok(_) => return Err(ClientError::Usage("--args must be a JSON object".into())),
                    Err(e) => return Err(ClientError::Usage(format!("--args is not valid JSON: {e}"))),
                },
            };
            let policy = if step_up {
                StepUp::Auto
            } else if std::io::stdin().is_terminal() {
                StepUp::Ask
            } else {
                StepUp::Never
            };
            let conn = connect(&url, &flags, policy)?;
            let session = McpSession::open(&conn).await?;
            let result = session.call(&tool, arguments).await;
            session.close().await;
            let result = result?;
            print_result(&result, std::io::stdout().is_terminal());
            Ok(if result.is_error == Some(true) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        ClientCommand::Logout { url, flags } => {
            let conn = connect(&url, &flags, StepUp::Never)?;
            if conn.logout().await? {
                println!("Logged out of {}", conn.resource());
            } else {
                println!("Nothing stored for {}", conn.resource());
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Connections { json, store } => {
            let vault = open_vault(&store)?;
            let list = vault.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
            } else if list.is_empty() {
                println!("No stored connections.");
            } else {
                for c in list {
                    let expires = c.expires_at.map(|t| mandate_core::clock::format_utc(t as i64)).unwrap_or("-".into());
                    println!(
                        "{}\n  issuer: {}\n  client: {}\n  scopes: {}\n  access token expires: {}\n  refresh token: {}\n  stored in: {:?}",
                        c.resource,
                        c.issuer.as_deref().unwrap_or("-"),
                        c.client_id,
                        c.scopes.join(" "),
                        expires,
                        if c.has_refresh_token { "yes" } else { "no" },
                        c.stored_in
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Bridge { url, flags } => {
            if flags.client_secret_stdin {
                return Err(ClientError::Usage(
                    "bridge: stdin carries the protocol; run `mandate login URL --client-id ID --client-secret-stdin` first"
                        .into(),
                ));
            }
            let conn = connect(&url, &flags, StepUp::Auto)?;
            mandate_client::bridge::run(conn, tokio::io::stdin(), tokio::io::stdout()).await?;
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::ConformanceClient { url } => conformance(&url).await,
    }
}

/// Prints a tool's result. Structured content is pretty-printed. Text content goes out exactly
/// as the server sent it when stdout is not a terminal (scripts parse it); on a terminal, text
/// that is JSON is pretty-printed and other text loses its control characters (no escape
/// sequences from a server reach the terminal).
fn print_result(result: &rmcp::model::CallToolResult, terminal: bool) {
    if let Some(s) = &result.structured_content {
        println!("{}", serde_json::to_string_pretty(s).unwrap_or_default());
        return;
    }
    for c in &result.content {
        match c.as_text() {
            Some(t) if terminal => println!("{}", for_terminal(&t.text)),
            Some(t) => println!("{}", t.text),
            None => println!("{}", serde_json::to_string(c).unwrap_or_default()),
        }
    }
}

fn for_terminal(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => {
            serde_json::to_string_pretty(&v).unwrap_or_else(|_| printable(text))
        }
        _ => printable(text),
    }
}

/// Text for a terminal: control characters removed, except line breaks and tabs.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control() || matches!(c, '\n' | '\t')).collect()
}

/// The contract of `conformance client --command`: the server URL as the only argument,
/// pre-registered credentials in `MCP_CONFORMANCE_CONTEXT`, a mock authorization server that
/// redirects straight back.
async fn conformance(url: &str) -> Result<ExitCode, ClientError> {
    let mut o = ConnectOptions::new(url);
    o.login = LoginMode::Headless;
    o.step_up = StepUp::Auto;
    o.policy = NetPolicy { allow_loopback_http: true };
    o.client_metadata_url = Some("https://conformance-test.local/client-metadata.json".into());
    o.client_name = "mandate conformance client".into();
    if let Ok(ctx) = std::env::var("MCP_CONFORMANCE_CONTEXT")
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&ctx)
    {
        o.client_id = v.get("client_id").and_then(|x| x.as_str()).map(str::to_owned);
        o.client_secret = v.get("client_secret").and_then(|x| x.as_str()).map(str::to_owned);
    }
    let conn = Arc::new(Connection::new(o, Arc::new(CredentialVault::in_memory()))?);
    let session = McpSession::open(&conn).await?;
    let outcome = async {
        let tools = session.list_tools().await?;
        if tools.iter().any(|t| t.name == "test-tool") {
            session.call("test-tool", Some(serde_json::Map::new())).await?;
        }
        Ok::<_, ClientError>(())
    }
    .await;
    session.close().await;
    outcome.map(|_| ExitCode::SUCCESS)
}
