//! `mandate`: the OAuth 2.1 authorization server for MCP, and its admin commands.

mod admin;
mod client;
mod config;
mod serve;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "mandate",
    version,
    about = "Let people hand AI agents a subset of their permissions, see it, and take it back."
)]
struct Cli {
    /// A TOML configuration file (also MANDATE_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    common: CommonFlags,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command understands; each overrides the file and the environment.
#[derive(Args, Serialize, Default)]
struct CommonFlags {
    /// Database URL: sqlite://PATH (created on start) or postgres://... [env: MANDATE_DATABASE]
    #[arg(long, global = true, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<String>,
    /// The public URL, used as the issuer [env: MANDATE_PUBLIC_URL] [default: http://127.0.0.1:8080]
    #[arg(long, global = true, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    public_url: Option<String>,
    /// File holding the key-encryption key [env: MANDATE_SECRET_KEY_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_key_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the authorization server.
    Serve(serve::ServeFlags),
    /// Apply pending database migrations and report the schema version (serve also migrates).
    Migrate,
    /// Manage people who can sign in.
    #[command(subcommand)]
    Users(admin::UsersCommand),
    /// Manage pre-registered clients.
    #[command(subcommand)]
    Clients(admin::ClientsCommand),
    /// List and revoke grants.
    #[command(subcommand)]
    Grants(admin::GrantsCommand),
    /// Print the audit trail.
    Audit(admin::AuditFlags),
    /// List and rotate signing keys.
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    #[command(flatten)]
    Client(client::ClientCommand),
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// The client commands log errors only by default; rmcp is capped at `info` whatever `RUST_LOG`
/// says, since its debug output includes authorization codes and token-response fields.
fn init_client_tracing() {
    let filter = match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(f) => match "rmcp=info".parse() {
            Ok(cap) => f.add_directive(cap),
            Err(_) => f,
        },
        // Our own errors are printed as messages; rmcp's would repeat them.
        Err(_) => tracing_subscriber::EnvFilter::new("error,rmcp=off"),
    };
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(flags) => {
            let overrides = serve::Overrides { common: &cli.common, serve: &flags };
            let config = config::load(cli.config.as_deref(), &overrides)?;
            init_tracing(&config.log);
            serve::run(config).await
        }
        Command::Migrate => {
            let config = config::load(cli.config.as_deref(), &cli.common)?;
            init_tracing("warn");
            setup::migrate(&config).await
        }
        other => {
            let config = config::load(cli.config.as_deref(), &cli.common)?;
            init_tracing(if std::env::var_os("RUST_LOG").is_some() { "info" } else { "warn" });
            admin::run(other, &config).await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Client(cmd) = cli.command {
        init_client_tracing();
        return runtime.block_on(client::run(cmd));
    }
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
