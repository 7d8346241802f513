//! Developer tools: `mandate doctor` (docs/DOCTOR.md).

use std::process::ExitCode;

use clap::Subcommand;
use mandate_doctor::{Options, diagnose, render_text};

#[derive(Subcommand)]
pub enum DevCommand {
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
    },
}

pub async fn run(cmd: DevCommand) -> ExitCode {
    match cmd {
        DevCommand::Doctor { url, json, allow_http, origin } => {
            let url = match url::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
                _ => {
                    eprintln!("error: {url:?} is not an http(s) URL");
                    return ExitCode::from(2);
                }
            };
            let report = diagnose(&url, &Options { allow_http, browser_origin: Some(origin) }).await;
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
