//! Developer tools: `mandate doctor` (docs/DOCTOR.md), `mandate dev` and `mandate new`
//! (docs/DEVELOPING.md).

use std::process::ExitCode;

use clap::Subcommand;
use mandate_doctor::{Options, diagnose, render_text};

#[derive(Subcommand)]
pub enum DevCommand {
    /// Write a small MCP server project that runs behind mandate
    ///
    /// Its tools declare the access they need once, in their MCP annotations; it has its own
    /// test, and its README's first command runs it under `mandate dev`.
    New {
        /// The project's name: its directory and its scope prefix (NAME.read).
        name: String,
        /// The language (and MCP SDK) to write it in.
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// Where to write it [default: ./NAME]
        #[arg(long, value_name = "DIR")]
        path: Option<std::path::PathBuf>,
        /// Rust: the mandate source checkout whose crates the project uses [default: the one
        /// this binary was built from]
        #[arg(long, value_name = "DIR")]
        mandate_path: Option<std::path::PathBuf>,
    },
    /// Run your stdio MCP server behind mandate on loopback, restarted when its files change
    ///
    /// One `mandate serve` on 127.0.0.1: the authorization server, and your server behind the
    /// gateway at /mcp/NAME with scopes from its tools' annotations. A person `dev` signs in
    /// (the password is printed, and kept in .mandate/dev-login); the database is
    /// .mandate/dev.db, so grants and tokens survive restarts.
    Dev(crate::dev::DevArgs),
    /// Diagnose any MCP server's authorization as clients meet it
    ///
    /// Each check prints pass, warn or fail, what it saw, and how to fix it. Exit status: 0 when
    /// every check passed, 1 with warnings only, 2 with a failure.
    Doctor {
        /// The MCP server's URL (its Streamable HTTP endpoint, e.g. https://example.com/mcp).
        url: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Accept plain http outside loopback (a server on a private network).
        #[arg(long)]
        allow_http: bool,
        /// The browser origin whose CORS access is checked.
        #[arg(long, value_name = "ORIGIN", default_value = mandate_doctor::DEFAULT_BROWSER_ORIGIN)]
        origin: String,
        /// Also sign in as a client would (you consent in the browser) and check the access
        /// token: iss, aud, scope, lifetime, and that the server accepts it.
        #[arg(long)]
        login: bool,
        /// With --login: the scopes to ask for instead of what the challenge names.
        #[arg(long, value_name = "SCOPES", requires = "login")]
        scope: Option<String>,
        /// With --login: print the authorization URL instead of opening a browser.
        #[arg(long, requires = "login")]
        no_browser: bool,
        /// With --login: seconds to wait for you in the browser.
        #[arg(long, value_name = "SECS", default_value_t = 300, requires = "login")]
        login_timeout: u64,
        /// With --login: a tool whose scope you did not grant. It is called (for real, with no
        /// arguments) and must be refused with 403 insufficient_scope naming its scope.
        #[arg(long, value_name = "TOOL", requires = "login")]
        call_without_scope: Option<String>,
    },
}

pub async fn run(cmd: DevCommand) -> ExitCode {
    match cmd {
        DevCommand::Dev(args) => crate::dev::run(args).await,
        DevCommand::New { name, lang, path, mandate_path } => {
            let dir = path.unwrap_or_else(|| std::path::PathBuf::from(&name));
            match crate::scaffold::create(&name, lang, &dir, mandate_path.as_deref()) {
                Ok(made) => {
                    println!("wrote {} files in {}; next:", made.files.len(), made.dir.display());
                    for step in &made.next {
                        println!("  {step}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        DevCommand::Doctor {
            url,
            json,
            allow_http,
            origin,
            login,
            scope,
            no_browser,
            login_timeout,
            call_without_scope,
        } => {
            let url = match url::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
                _ => {
                    eprintln!("error: {url:?} is not an http(s) URL");
                    return ExitCode::from(2);
                }
            };
            let login = login.then(|| mandate_doctor::Login {
                open_browser: !no_browser,
                scope,
                timeout: std::time::Duration::from_secs(login_timeout.max(1)),
                call_without_scope,
            });
            let report = diagnose(&url, &Options { allow_http, browser_origin: Some(origin), login, http: None }).await;
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                // Text from the server (URLs, issuers) is printed without terminal escapes.
                let text: String = render_text(&report).chars().filter(|c| !c.is_control() || *c == '\n').collect();
                print!("{text}");
            }
            ExitCode::from(u8::try_from(report.exit_code()).unwrap_or(2))
        }
    }
}
