//! `mandate dev` as a developer runs it: a stdio MCP server (here a small bash script whose tools
//! come from tools.json) behind mandate on loopback. The banner names the one URL and the dev
//! sign-in; a token got through the authorization flow works at the resource; saving a file
//! restarts the server, whose new tools are listed with the scopes their annotations give (not
//! the strictest, as for a tool that appears while running); the token survives the restart
//! (the database is .mandate/dev.db); SIGTERM stops everything. Real projects (`mandate new`
//! in Python, TypeScript and Rust) run under `mandate dev` in .ci/new.sh.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use mandate_testkit::McpClient;
use serde_json::json;
use support::{access_token_as, free_port, mode, register_at};

/// A stdio MCP server in bash: initialize, tools/list from tools.json (read on each list), a
/// tools/call that answers "called" with two variables of its environment, ping.
const SERVER: &str = r#"#!/usr/bin/env bash
here="$(dirname "$0")"
while IFS= read -r line; do
  [[ $line =~ \"id\":([0-9]+) ]] || continue
  id="${BASH_REMATCH[1]}"
  case "$line" in
    *'"method":"initialize"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"fixture","version":"1"}}}\n' "$id" ;;
    *'"method":"tools/list"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":%s}}\n' "$id" "$(tr -d '\n' < "$here/tools.json")" ;;
    *'"method":"tools/call"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"called; mark=%s timeout=%s"}]}}\n' "$id" "${DEV_TEST_MARK:-unset}" "${MANDATE_REQUEST_TIMEOUT:-unset}" ;;
    *'"method":"ping"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id" ;;
    *)
      printf '{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"not here"}}\n' "$id" ;;
  esac
done
"#;

const ONE_TOOL: &str = r#"[{"name":"list_notes","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}]"#;
const TWO_TOOLS: &str = r#"[{"name":"list_notes","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}},
{"name":"add_note","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":false,"destructiveHint":false}}]"#;

/// `mandate dev` and what it prints, line by line.
struct Dev {
    child: Child,
    lines: Receiver<String>,
}

impl Dev {
    fn start(dir: &std::path::Path, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .arg("dev")
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            // The developer's environment reaches their server; mandate's own settings do not.
            .env("DEV_TEST_MARK", "42")
            .env("MANDATE_REQUEST_TIMEOUT", "9")
            .env_remove("MANDATE_DATABASE")
            .env_remove("MANDATE_PUBLIC_URL")
            .env_remove("MANDATE_LISTEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Self { child, lines }
    }

    /// The lines up to and including the first that satisfies `last`.
    fn until(&self, last: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let done = last(&l);
                    seen.push(l);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("mandate dev did not print the line awaited; it printed {seen:?}");
    }

    fn terminate(&mut self) -> i32 {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("mandate dev did not stop on SIGTERM within 20 s");
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn value_of<'a>(banner: &'a [String], label: &str) -> &'a str {
    banner
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in {banner:?}"))
        .trim()
}

async fn tools_listed(url: &str, token: &str) -> Vec<String> {
    let mut c = McpClient::new(url, Some(token));
    let init = c.initialize().await;
    assert_eq!(init.status, 200, "{:?}", init.message);
    let listed = c.request("tools/list", json!({})).await;
    let tools = listed.message["result"]["tools"].as_array().unwrap_or_else(|| panic!("{:?}", listed.message));
    tools.iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_saved_file_restarts_the_server_with_its_new_tools_and_the_token_still_works() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.sh"), SERVER).unwrap();
    std::fs::write(dir.path().join("tools.json"), ONE_TOOL).unwrap();
    let port = free_port();
    let mut dev = Dev::start(dir.path(), &["--port", &port.to_string(), "--name", "notes", "--", "bash", "server.sh"]);
    let banner = dev.until(|l| l == "Ctrl-C stops it.");
    let base = format!("http://127.0.0.1:{port}");
    let resource = format!("{base}/mcp/notes");
    assert_eq!(value_of(&banner, "add to your MCP client:"), resource, "{banner:?}");
    assert_eq!(value_of(&banner, "its tools:"), "1 tools", "{banner:?}");
    // The one URL to open: the inspector, served to the dev person.
    assert_eq!(value_of(&banner, "open the inspector:"), format!("{base}/inspector"), "{banner:?}");
    assert_eq!(reqwest::get(format!("{base}/inspector")).await.unwrap().url().path(), "/login");
    let login = value_of(&banner, "sign in as:");
    let password = login.strip_prefix("dev / ").unwrap().split_whitespace().next().unwrap().to_owned();
    // The sign-in is kept for the owner only, and the data directory is never committed.
    let data = dir.path().join(".mandate");
    assert_eq!(std::fs::read_to_string(data.join("dev-login")).unwrap().trim(), password);
    assert_eq!(mode(&data.join("dev-login")) & 0o777, 0o600);
    assert_eq!(mode(&data) & 0o777, 0o700);
    assert_eq!(std::fs::read_to_string(data.join(".gitignore")).unwrap(), "*\n");

    let client = register_at(&base, "dev test agent").await;
    let token = access_token_as(&base, ("dev", &password), &client, &resource, &["notes.read"]).await;
    assert_eq!(tools_listed(&resource, &token).await, ["list_notes"]);

    std::fs::write(dir.path().join("tools.json"), TWO_TOOLS).unwrap();
    let restart = dev.until(|l| l.starts_with("[dev] restarted"));
    assert!(restart.iter().any(|l| l == "[dev] changed: tools.json; restarting"), "{restart:?}");
    assert_eq!(restart.last().unwrap(), &format!("[dev] restarted: {resource} (2 tools)"));
    // The same token (the database and the signing keys are kept), a new session: the new tool
    // is listed, and it needs notes.write, as its annotations say.
    let mut listed = tools_listed(&resource, &token).await;
    listed.sort();
    assert_eq!(listed, ["add_note", "list_notes"]);
    let mut c = McpClient::new(&resource, Some(&token));
    c.initialize().await;
    let refused = c.call("add_note", json!({})).await;
    assert_eq!(refused.status, 403);
    assert!(refused.www_authenticate().contains("error=\"insufficient_scope\""), "{}", refused.www_authenticate());
    assert!(refused.challenge_scopes().contains(&"notes.write".to_owned()), "{:?}", refused.challenge_scopes());
    assert_eq!(c.call("list_notes", json!({})).await.tool_text(), "called; mark=42 timeout=unset");

    // A second start keeps the sign-in.
    assert_eq!(dev.terminate(), 0);
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "the server stopped with mandate dev");
    let dev = Dev::start(dir.path(), &["--port", &port.to_string(), "--name", "notes", "--", "bash", "server.sh"]);
    let again = dev.until(|l| l == "Ctrl-C stops it.");
    assert!(value_of(&again, "sign in as:").starts_with(&format!("dev / {password} ")), "{again:?}");
    assert_eq!(tools_listed(&resource, &token).await.len(), 2);

    // The database deleted (to start afresh): the person is added again with the kept password.
    let mut dev = dev;
    assert_eq!(dev.terminate(), 0);
    for f in std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().path()) {
        if f.file_name().unwrap().to_string_lossy().starts_with("dev.db") {
            std::fs::remove_file(f).unwrap();
        }
    }
    let dev = Dev::start(dir.path(), &["--port", &port.to_string(), "--name", "notes", "--", "bash", "server.sh"]);
    dev.until(|l| l == "Ctrl-C stops it.");
    let client = register_at(&base, "dev test agent").await;
    let fresh = access_token_as(&base, ("dev", &password), &client, &resource, &["notes.read"]).await;
    assert_eq!(tools_listed(&resource, &fresh).await.len(), 2);
}

#[tokio::test]
async fn a_server_that_cannot_start_is_reported_and_a_fix_restarts_it() {
    let dir = tempfile::tempdir().unwrap();
    // Not an MCP server yet: it exits at once.
    std::fs::write(dir.path().join("server.sh"), "exit 3\n").unwrap();
    std::fs::write(dir.path().join("tools.json"), ONE_TOOL).unwrap();
    let port = free_port();
    let mut dev = Dev::start(dir.path(), &["--port", &port.to_string(), "--name", "notes", "--", "bash", "server.sh"]);
    let banner = dev.until(|l| l == "Ctrl-C stops it.");
    let tools = value_of(&banner, "its tools:");
    assert!(tools.contains("could not be read"), "{banner:?}");
    std::fs::write(dir.path().join("server.sh"), SERVER).unwrap();
    let restart = dev.until(|l| l.starts_with("[dev] restarted"));
    assert!(restart.last().unwrap().ends_with("/mcp/notes (1 tools)"), "{restart:?}");
    assert_eq!(dev.terminate(), 0);
}

#[test]
fn without_a_command_or_with_a_bad_name_it_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mandate")).arg("dev").current_dir(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<COMMAND>"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["dev", "--name", "Bad Name", "--", "true"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--name \"Bad Name\""));
    assert!(!dir.path().join(".mandate").exists(), "nothing is written for a bad name");
}
