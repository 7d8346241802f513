//! What an operator configures for one upstream MCP server.

use std::collections::BTreeMap;
use std::time::Duration;

/// How mandate reaches the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Streamable HTTP server; `headers` are sent with every request (static credentials).
    Http { url: String, headers: BTreeMap<String, String> },
    /// A program speaking MCP on stdin/stdout, spawned without a shell.
    Stdio { command: String, args: Vec<String>, env: BTreeMap<String, String>, isolation: Isolation },
}

/// Which MCP sessions share a stdio process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// One process per MCP session (the default): nothing one person's session leaves in the
    /// process reaches another's.
    #[default]
    Session,
    /// One process for every session: only for servers that keep no per-client state.
    Shared,
}

/// One upstream MCP server served behind mandate at `resource`.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// The short name: the path segment (`/mcp/<name>`) and the scope prefix (`<name>.read`).
    pub name: String,
    /// What people read (consent page, activity).
    pub title: String,
    /// The canonical resource URL, `<public url>/mcp/<name>`.
    pub resource: String,
    pub target: Target,
    /// Tool → scope overrides; they win over what the annotations say.
    pub tool_scopes: BTreeMap<String, String>,
    /// Scopes of the operator's own, besides the derived ones (usable in `tool_scopes`).
    pub extra_scopes: Vec<mandate_core::scope::ScopeDef>,
    /// What a first login asks for (the 401 challenge); by default `<name>.read` when offered.
    pub default_scopes: Vec<String>,
    pub limits: Limits,
    /// Send an HTTP upstream a short-lived JWT signed by mandate naming the person and the agent
    /// (`Authorization: Bearer`), never the agent's own token.
    pub identity: bool,
    /// An HTTP upstream that acts with each person's own account at this provider: their
    /// upstream token (from the vault) is its bearer credential (docs/UPSTREAM.md).
    pub provider: Option<String>,
}

/// Time and process bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Spawning (or connecting) and `initialize`: generous, `npx -y` may download first.
    pub start_timeout: Duration,
    /// One request forwarded upstream.
    pub request_timeout: Duration,
    /// Stdio processes of this upstream alive at once.
    pub max_processes: usize,
    /// Stdio processes of this upstream one person may hold at once.
    pub max_processes_per_person: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            start_timeout: Duration::from_secs(90),
            request_timeout: Duration::from_secs(60),
            max_processes: 64,
            max_processes_per_person: 8,
        }
    }
}

/// Is `name` usable as a path segment and scope prefix? Lower-case ASCII letters, digits, `-`
/// and `_`, starting with a letter, at most 40 characters.
pub fn valid_name(name: &str) -> bool {
    name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
