//! `mandate`: the OAuth 2.1 authorization server for MCP, its admin commands, and the agent's side.

mod admin;
mod client;
mod config;
mod demo_upstream;
mod dev;
mod developer;
mod gateway;
mod help;
mod inspect;
mod names;
mod people;
mod providers;
mod scaffold;
mod serve;
mod setup;
mod shutdown;
mod watch;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, FromArgMatches, Parser, Subcommand};
use serde::Serialize;

/// jemalloc, with its background threads, rather than the C library's allocator. glibc keeps what
/// a freed large buffer leaves in its arenas once its mmap threshold has risen (the first free of
/// an mmapped chunk raises it to that chunk's size): every argon2id hash after the first (19 MiB:
/// the demo seed, each sign-in) stayed resident, and memory freed by closed MCP sessions was not
/// given back. jemalloc's background threads return freed pages to the system about ten seconds
/// later (its dirty-page decay), even when the server is idle; and this needs no `unsafe` here
/// (docs/BENCHMARKS.md, "Memory of MCP sessions").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "mandate",
    version,
    about = "Let people hand AI agents a subset of their permissions, see it, and take it back."
)]
struct Cli {
    /// The server flags may also come before the command name (`mandate --database URL users list`).
    #[command(flatten)]
    leading: LeadingFlags,
    #[command(subcommand)]
    command: Command,
}

/// The heading the server flags are listed under in the server and admin commands' help.
const SERVER_FLAGS: &str = "Server options";

/// Declares the flags of the server and admin commands. They are declared twice: on each server
/// and admin command, global within it so that `mandate users list --database X` works, and
/// hidden on `mandate` itself for `mandate --database X users list`. They are never global at
/// the top, since the agent commands do not take them. The two declarations have distinct ids:
/// clap copies a global argument's value to every command up the chain holding its id.
macro_rules! server_flags {
    ($(#[$meta:meta])* $name:ident, global = $global:tt, hide = $hide:tt,
     ids = [$config:literal, $database:literal, $public_url:literal, $secret_key_file:literal]) => {
        $(#[$meta])*
        #[derive(Args, Serialize, Default, Clone)]
        pub struct $name {
            /// A TOML configuration file [env: MANDATE_CONFIG]
            #[arg(id = $config, long = "config", global = $global, hide = $hide, value_name = "FILE", help_heading = SERVER_FLAGS)]
            #[serde(skip)]
            pub config: Option<PathBuf>,
            /// Database URL: sqlite://PATH or postgres://... [env: MANDATE_DATABASE] [default: sqlite://mandate.db]
            #[arg(id = $database, long = "database", global = $global, hide = $hide, value_name = "URL", help_heading = SERVER_FLAGS)]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub database: Option<String>,
            /// The public URL, used as the issuer [env: MANDATE_PUBLIC_URL] [default: http://<listen> when listening on loopback]
            #[arg(id = $public_url, long = "public-url", global = $global, hide = $hide, value_name = "URL", help_heading = SERVER_FLAGS)]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub public_url: Option<String>,
            /// File holding the key-encryption key [env: MANDATE_SECRET_KEY_FILE] [default: <sqlite path>.key]
            #[arg(id = $secret_key_file, long = "secret-key-file", global = $global, hide = $hide, value_name = "FILE", help_heading = SERVER_FLAGS)]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub secret_key_file: Option<PathBuf>,
        }
    };
}

server_flags!(
    /// The flags of the server and admin commands; each overrides the file and the environment.
    ServerFlags,
    global = true,
    hide = false,
    ids = ["config", "database", "public_url", "secret_key_file"]
);
server_flags!(
    /// [`ServerFlags`] given before the command name.
    LeadingFlags,
    global = false,
    hide = true,
    ids = ["leading_config", "leading_database", "leading_public_url", "leading_secret_key_file"]
);

impl LeadingFlags {
    /// The flags given, by name.
    fn given(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for (name, set) in [
            ("--config", self.config.is_some()),
            ("--database", self.database.is_some()),
            ("--public-url", self.public_url.is_some()),
            ("--secret-key-file", self.secret_key_file.is_some()),
        ] {
            if set {
                names.push(name);
            }
        }
        names
    }
}

impl ServerFlags {
    /// Combines the flags given after the command name with those given before it.
    fn with_leading(self, leading: LeadingFlags) -> anyhow::Result<Self> {
        fn one<T>(name: &str, after: Option<T>, before: Option<T>) -> anyhow::Result<Option<T>> {
            match (after, before) {
                (Some(_), Some(_)) => bail!("{name} is given both before and after the command name"),
                (after, before) => Ok(after.or(before)),
            }
        }
        Ok(Self {
            config: one("--config", self.config, leading.config)?,
            database: one("--database", self.database, leading.database)?,
            public_url: one("--public-url", self.public_url, leading.public_url)?,
            secret_key_file: one("--secret-key-file", self.secret_key_file, leading.secret_key_file)?,
        })
    }
}

/// `mandate`'s commands, in the three groups its help lists them in.
#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Server(ServerCommand),
    #[command(flatten)]
    Admin(admin::AdminCommand),
    #[command(flatten)]
    Agent(client::ClientCommand),
    #[command(flatten)]
    Developer(developer::DevCommand),
}

/// Running the server.
#[derive(Subcommand)]
enum ServerCommand {
    /// Run the authorization server (with the MCP endpoint and its demo apps).
    Serve(Box<serve::ServeArgs>),
    /// Apply pending database migrations and report the schema version (serve also migrates).
    Migrate {
        #[command(flatten)]
        server: ServerFlags,
    },
    /// Show a gateway resource's scope mapping: each upstream tool and the scope it needs.
    Resources {
        #[command(subcommand)]
        command: ResourcesCommand,
        #[command(flatten)]
        server: ServerFlags,
    },
    /// Upstream providers (sign-in, connected accounts): what to register at each.
    Providers {
        #[command(subcommand)]
        command: ProvidersCommand,
        #[command(flatten)]
        server: ServerFlags,
    },
}

#[derive(Subcommand)]
enum ProvidersCommand {
    /// Print each provider's redirect URI (to register at the provider exactly), client id and use.
    List,
}

#[derive(Subcommand)]
enum ResourcesCommand {
    /// Read the upstream's tools as `serve` does at start and print which scope each needs, and why.
    Show {
        /// The resource's name in the configuration (`[[resources]] name`).
        name: String,
    },
}

/// Whether log lines may carry colour codes: only on a terminal, and never with `NO_COLOR` set
/// (to anything but the empty string, as <https://no-color.org> asks).
fn colour_logs() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_tracing(filter: &str) {
    // rmcp logs relayed messages (an upstream's log lines, progress text) at info: the server's
    // default shows its warnings only; RUST_LOG can ask for more.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let configured = tracing_subscriber::EnvFilter::new(filter);
        match "rmcp=warn".parse() {
            Ok(cap) if !filter.contains("rmcp") => configured.add_directive(cap),
            _ => configured,
        }
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs())
        .try_init();
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs())
        .try_init();
}

async fn run(leading: LeadingFlags, command: ServerOrAdmin) -> anyhow::Result<()> {
    match command {
        ServerOrAdmin::Server(ServerCommand::Serve(args)) => {
            let server = args.server.clone().with_leading(leading)?;
            let overrides = serve::Overrides { common: &server, serve: &args.serve };
            let mut config = config::load(server.config.as_deref(), &overrides)?;
            if let Some(entry) = args.cli_upstream() {
                config.resources.get_or_insert_with(Vec::new).push(entry);
                gateway::upstreams(&config)?;
            }
            init_tracing(&config.log);
            serve::run(config).await
        }
        ServerOrAdmin::Server(ServerCommand::Migrate { server }) => {
            let server = server.with_leading(leading)?;
            let config = config::load(server.config.as_deref(), &server)?;
            init_tracing("warn");
            setup::migrate(&config).await
        }
        ServerOrAdmin::Server(ServerCommand::Resources { command: ResourcesCommand::Show { name }, server }) => {
            let server = server.with_leading(leading)?;
            let config = config::load(server.config.as_deref(), &server)?;
            init_tracing("warn");
            gateway::show(&config, &name).await
        }
        ServerOrAdmin::Server(ServerCommand::Providers { command: ProvidersCommand::List, server }) => {
            let server = server.with_leading(leading)?;
            let config = config::load(server.config.as_deref(), &server)?;
            providers::list(&config)
        }
        ServerOrAdmin::Admin(command) => {
            let server = command.server_flags().clone().with_leading(leading)?;
            let config = config::load(server.config.as_deref(), &server)?;
            init_tracing(if std::env::var_os("RUST_LOG").is_some() { "info" } else { "warn" });
            admin::run(command, &config).await
        }
    }
}

enum ServerOrAdmin {
    Server(ServerCommand),
    Admin(admin::AdminCommand),
}

/// Runs an agent or developer command: they read no server flags (those before the command).
fn standalone(
    leading: &LeadingFlags,
    matches: &clap::ArgMatches,
    runtime: tokio::runtime::Runtime,
    command: impl std::future::Future<Output = ExitCode>,
) -> ExitCode {
    let given = leading.given();
    if !given.is_empty() {
        eprintln!(
            "error: `mandate {}` does not read {}: only the server and admin commands do",
            matches.subcommand_name().unwrap_or_default(),
            given.join(", ")
        );
        return ExitCode::from(2);
    }
    init_client_tracing();
    let code = runtime.block_on(command);
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

fn main() -> ExitCode {
    let matches = help::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = match cli.command {
        Command::Agent(cmd) => return standalone(&cli.leading, &matches, runtime, client::run(cmd)),
        Command::Developer(cmd) => return standalone(&cli.leading, &matches, runtime, developer::run(cmd)),
        Command::Server(c) => ServerOrAdmin::Server(c),
        Command::Admin(c) => ServerOrAdmin::Admin(c),
    };
    let result = runtime.block_on(run(cli.leading, command));
    // Work still running on the blocking pool (a password hash) gets a moment, not forever.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
