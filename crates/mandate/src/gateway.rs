//! The gateway's configuration: `[[resources]]` entries that name an upstream (`upstream_url`, or
//! `command` + `args` + `env`) become [`UpstreamSpec`]s served at `<public_url>/mcp/<name>`; the
//! others are plain catalogue entries (an MCP server elsewhere that validates mandate's tokens).
//! Also `mandate resources show NAME`: the scope mapping the upstream's tools get.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use mandate_core::scope::{ResourceDef, ScopeDef};
use mandate_gateway::{Isolation, Limits, Target, UpstreamSpec};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// One `[[resources]]` entry as written in the configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceEntry {
    /// The resource URL (plain entries); a gateway entry's is `<public_url>/mcp/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Plain entries: what people read. Gateway entries: the short name (path segment and scope
    /// prefix), lower-case letters, digits, `-` and `_`.
    pub name: String,
    /// Gateway entries: what people read (default: the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Plain entries: every scope. Gateway entries: scopes besides the derived ones.
    #[serde(default)]
    pub scopes: Vec<ScopeDef>,
    #[serde(default)]
    pub default_scopes: Vec<String>,
    /// A Streamable HTTP upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_url: Option<String>,
    /// Headers sent to an HTTP upstream; a value `env:NAME` is read from the environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstream_headers: BTreeMap<String, String>,
    /// Send an HTTP upstream a short-lived JWT signed by mandate naming the person and the agent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub upstream_identity: bool,
    /// An HTTP upstream that acts with each person's own account at this `[[providers]]` entry
    /// (their upstream token is the bearer credential; docs/UPSTREAM.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// A stdio upstream: the program (no shell), its arguments and environment (`env:NAME`
    /// values read from mandate's environment; nothing else of it is passed but PATH, HOME,
    /// LANG, LC_ALL, TMPDIR, USER, LOGNAME, SHELL and TERM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// `session` (default: a process per MCP session) or `shared`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    /// Tool → scope, winning over the annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool_scopes: BTreeMap<String, String>,
    /// Seconds; see [`Limits`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_processes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_processes_per_person: Option<usize>,
}

impl ResourceEntry {
    fn is_gateway(&self) -> bool {
        self.upstream_url.is_some() || self.command.is_some()
    }

    /// The gateway-only settings this (plain) entry sets, by name.
    fn gateway_keys_set(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        for (key, set) in [
            ("title", self.title.is_some()),
            ("upstream_headers", !self.upstream_headers.is_empty()),
            ("upstream_identity", self.upstream_identity),
            ("provider", self.provider.is_some()),
            ("args", !self.args.is_empty()),
            ("env", !self.env.is_empty()),
            ("isolation", self.isolation.is_some()),
            ("tool_scopes", !self.tool_scopes.is_empty()),
            ("request_timeout", self.request_timeout.is_some()),
            ("start_timeout", self.start_timeout.is_some()),
            ("max_processes", self.max_processes.is_some()),
            ("max_processes_per_person", self.max_processes_per_person.is_some()),
        ] {
            if set {
                keys.push(key);
            }
        }
        keys
    }
}

/// `env:NAME` → the variable's value; anything else as written.
fn from_env(what: &str, value: &str) -> anyhow::Result<String> {
    match value.strip_prefix("env:") {
        Some(var) => {
            std::env::var(var).with_context(|| format!("{what} reads {var} from the environment, which is not set"))
        }
        None => Ok(value.to_owned()),
    }
}

/// The entries' gateway upstreams, checked.
pub fn upstreams(config: &Config) -> anyhow::Result<Vec<UpstreamSpec>> {
    let issuer = config.issuer();
    let mut out: Vec<UpstreamSpec> = Vec::new();
    if config.mcp_only && config.resources.iter().flatten().any(ResourceEntry::is_gateway) {
        bail!(
            "gateway resources (upstream_url or command, --upstream, -- COMMAND) are served with the authorization server, not with --mcp-only"
        );
    }
    for e in config.resources.iter().flatten().filter(|e| e.is_gateway()) {
        let at = format!("[[resources]] {:?}", e.name);
        if !mandate_gateway::valid_name(&e.name) {
            bail!(
                "{at}: name must be 1 to 40 lower-case letters, digits, '-' or '_', starting with a letter (it is the path /mcp/<name> and the scope prefix); put what people read in title"
            );
        }
        if out.iter().any(|u| u.name == e.name) {
            bail!("{at}: two resources have this name");
        }
        if e.uri.is_some() {
            bail!("{at}: a gateway resource is served at <public_url>/mcp/{}; leave uri out", e.name);
        }
        let target = match (&e.upstream_url, &e.command) {
            (Some(_), Some(_)) => bail!("{at}: set upstream_url or command, not both"),
            (Some(url), None) => {
                let u = url::Url::parse(url).with_context(|| format!("{at}: upstream_url {url:?} is not a URL"))?;
                if !matches!(u.scheme(), "http" | "https") {
                    bail!("{at}: upstream_url must be http or https");
                }
                if !u.username().is_empty() || u.password().is_some() {
                    bail!(
                        "{at}: upstream_url must not hold credentials; send them with upstream_headers (\"env:VARIABLE\")"
                    );
                }
                // mandate's own resources would accept the identity tokens minted for it.
                if url::Url::parse(&issuer).is_ok_and(|i| i.origin() == u.origin()) {
                    bail!("{at}: upstream_url {url} is on mandate's own origin; an upstream must be another server");
                }
                for key in ["args", "env", "isolation", "max_processes", "max_processes_per_person"] {
                    if e.gateway_keys_set().contains(&key) {
                        bail!("{at}: {key} is for a stdio upstream (command), not upstream_url");
                    }
                }
                let mut headers = BTreeMap::new();
                for (k, v) in &e.upstream_headers {
                    let lower = k.to_ascii_lowercase();
                    if ["accept", "mcp-session-id", "mcp-protocol-version", "last-event-id", "content-type", "host"]
                        .contains(&lower.as_str())
                    {
                        bail!("{at}: upstream_headers cannot set {k}: the MCP transport sets it");
                    }
                    if lower == "authorization" && e.provider.is_some() {
                        bail!(
                            "{at}: provider sends each person's own token as the Authorization header; drop Authorization from upstream_headers"
                        );
                    }
                    if lower == "authorization" && e.upstream_identity {
                        bail!(
                            "{at}: upstream_identity sends its own Authorization header; drop Authorization from upstream_headers"
                        );
                    }
                    if (lower == "authorization" || lower == "cookie") && !v.starts_with("env:") {
                        bail!("{at}: upstream_headers {k:?} holds a credential: give it as \"env:VARIABLE\"");
                    }
                    if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                        bail!("{at}: upstream_headers {k:?} is not a valid header name");
                    }
                    let value = from_env(&format!("{at}: upstream_headers {k:?}"), v)?;
                    if reqwest::header::HeaderValue::from_str(&value).is_err() {
                        bail!("{at}: the value of upstream_headers {k:?} is not a valid header value");
                    }
                    headers.insert(k.clone(), value);
                }
                Target::Http { url: url.clone(), headers }
            }
            (None, Some(command)) => {
                if !e.upstream_headers.is_empty() {
                    bail!("{at}: upstream_headers is for an HTTP upstream (upstream_url)");
                }
                if e.upstream_identity {
                    bail!(
                        "{at}: upstream_identity is for an HTTP upstream (upstream_url): a stdio server has no request headers to carry it"
                    );
                }
                if e.provider.is_some() {
                    bail!(
                        "{at}: provider is for an HTTP upstream (upstream_url): a person's token travels as its bearer credential"
                    );
                }
                if command.trim().is_empty() {
                    bail!("{at}: command is empty");
                }
                let isolation = match e.isolation.as_deref() {
                    None | Some("session") => Isolation::Session,
                    Some("shared") => Isolation::Shared,
                    Some(other) => bail!("{at}: isolation is \"session\" or \"shared\", not {other:?}"),
                };
                let mut env = BTreeMap::new();
                for (k, v) in &e.env {
                    env.insert(k.clone(), from_env(&format!("{at}: env {k:?}"), v)?);
                }
                Target::Stdio { command: command.clone(), args: e.args.clone(), env, isolation }
            }
            (None, None) => unreachable!("filtered to gateway entries"),
        };
        let mut limits = Limits::default();
        let secs = |what: &str, v: Option<u64>, default: Duration| -> anyhow::Result<Duration> {
            match v {
                None => Ok(default),
                Some(s) if (1..=3600).contains(&s) => Ok(Duration::from_secs(s)),
                Some(_) => bail!("{at}: {what} must be 1 to 3600 seconds"),
            }
        };
        limits.request_timeout = secs("request_timeout", e.request_timeout, limits.request_timeout)?;
        limits.start_timeout = secs("start_timeout", e.start_timeout, limits.start_timeout)?;
        if let Some(n) = e.max_processes {
            limits.max_processes = n;
        }
        if let Some(n) = e.max_processes_per_person {
            limits.max_processes_per_person = n;
        }
        if limits.max_processes == 0 || limits.max_processes_per_person == 0 {
            bail!("{at}: max_processes and max_processes_per_person must be at least 1");
        }
        if let Some(p) = &e.provider {
            if e.upstream_identity {
                bail!("{at}: set provider or upstream_identity, not both: each is the upstream's bearer credential");
            }
            if !config.providers.iter().flatten().any(|x| &x.name == p) {
                bail!("{at}: provider {p:?} is not a [[providers]] entry");
            }
        }
        let title = e.title.clone().unwrap_or_else(|| e.name.clone());
        if mandate_core::text::display_name_problem(&title).is_some() {
            bail!(
                "{at}: title must be 1 to 200 characters without control, bidirectional-formatting or invisible characters"
            );
        }
        out.push(UpstreamSpec {
            name: e.name.clone(),
            title,
            resource: format!("{issuer}/mcp/{}", e.name),
            target,
            tool_scopes: e.tool_scopes.clone(),
            extra_scopes: e.scopes.clone(),
            default_scopes: e.default_scopes.clone(),
            limits,
            identity: e.upstream_identity,
            provider: e.provider.clone(),
        });
        // tool_scopes, default_scopes and extra scopes are checked now, not when the upstream answers.
        if let Some(spec) = out.last() {
            mandate_gateway::derive(spec, None)?;
        }
    }
    Ok(out)
}

/// The plain entries as catalogue entries (`None`: there are none, the demo apps are served).
pub fn plain_resources(config: &Config) -> anyhow::Result<Option<Vec<ResourceDef>>> {
    let plain: Vec<&ResourceEntry> = config.resources.iter().flatten().filter(|e| !e.is_gateway()).collect();
    if plain.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for e in plain {
        let at = format!("[[resources]] {:?}", e.name);
        if let Some(key) = e.gateway_keys_set().first() {
            bail!("{at}: {key} is for a gateway resource (one with upstream_url or command)");
        }
        let uri = e
            .uri
            .clone()
            .with_context(|| format!("{at}: uri is missing (or give upstream_url or command to serve an upstream)"))?;
        out.push(ResourceDef {
            uri,
            name: e.name.clone(),
            scopes: e.scopes.clone(),
            default_scopes: e.default_scopes.clone(),
        });
    }
    Ok(Some(out))
}

/// `mandate resources show NAME`: reads the upstream's tools as `serve` does at start and prints
/// which scope each needs, and why.
pub async fn show(config: &Config, name: &str) -> anyhow::Result<()> {
    let specs = upstreams(config)?;
    let Some(spec) = specs.iter().find(|s| s.name == name) else {
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "no gateway resource named {name:?} in the configuration{}",
            if known.is_empty() { String::new() } else { format!(" (there are: {})", known.join(", ")) }
        );
    };
    let http = mandate_gateway::http_client()?;
    let found = mandate_gateway::discover(spec, &http).await?;
    println!("{} ({})", spec.title, spec.resource);
    if let Some(e) = &found.error {
        println!("  its tools could not be read: {e}");
        println!("  every tool then needs {} until it is listed, unless tool_scopes maps it", found.mapping.strictest);
    }
    println!();
    println!("{:<32} {:<28} FROM", "TOOL", "SCOPE");
    for (tool, scopes) in found.mapping.tools.entries() {
        let from = found.mapping.sources.get(&tool).map_or("", |s| s.as_str());
        println!("{tool:<32} {:<28} {from}", scopes.join(" "));
    }
    println!();
    println!("scopes people are asked for:");
    for s in &found.mapping.resource.scopes {
        let mark = if s.irreversible { " (unticked until chosen)" } else { "" };
        println!("  {:<28} {}{mark}", s.name, s.description);
    }
    println!("a tool that appears later needs {} until tool_scopes maps it", found.mapping.strictest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::load_toml as load;

    fn error(toml: &str) -> String {
        format!("{:#}", load(toml).expect_err("refused"))
    }

    #[test]
    fn unknown_keys_are_errors_inside_resources_and_their_scopes() {
        let e = error("[[resources]]\nname = \"notes\"\ncommand = \"notes-server\"\nupstream = \"typo\"\n");
        assert!(e.contains("unknown field: found `upstream`") && e.contains("resources.0.upstream"), "{e}");
        let e = error(
            "[[resources]]\nuri = \"https://mcp.example.com/mcp\"\nname = \"Notes\"\n\
             [[resources.scopes]]\nname = \"notes.read\"\ndescription = \"Read\"\nirreversable = true\n",
        );
        assert!(e.contains("found `irreversable`") && e.contains("resources.0.scopes.0.irreversable"), "{e}");
    }

    #[test]
    fn a_gateway_entry_becomes_an_upstream_at_its_own_path() {
        let c = load(
            "public_url = \"https://auth.example.com\"\n\
             [[resources]]\nname = \"notes\"\ntitle = \"Notes\"\ncommand = \"notes-server\"\nargs = [\"--stdio\"]\n\
             [[resources]]\nname = \"tickets\"\nupstream_url = \"http://127.0.0.1:3000/mcp\"\nrequest_timeout = 5\n",
        )
        .unwrap();
        let ups = upstreams(&c).unwrap();
        assert_eq!(ups.len(), 2);
        assert_eq!(ups[0].resource, "https://auth.example.com/mcp/notes");
        assert!(
            matches!(&ups[0].target, Target::Stdio { command, isolation: Isolation::Session, .. } if command == "notes-server")
        );
        assert_eq!(ups[1].title, "tickets", "the title defaults to the name");
        assert_eq!(ups[1].limits.request_timeout, Duration::from_secs(5));
        // Gateway entries alone keep the demo apps.
        assert!(plain_resources(&c).unwrap().is_none());
    }

    #[test]
    fn each_bad_gateway_entry_is_refused_with_its_reason() {
        let cases = [
            ("name = \"Notes App\"\ncommand = \"x\"", "name must be"),
            ("name = \"notes\"\ncommand = \"x\"\nupstream_url = \"http://127.0.0.1:1/mcp\"", "not both"),
            ("name = \"notes\"\ncommand = \"x\"\nuri = \"https://a.example/mcp\"", "leave uri out"),
            ("name = \"notes\"\ncommand = \"x\"\nisolation = \"per-user\"", "isolation is"),
            ("name = \"notes\"\nupstream_url = \"ftp://h/mcp\"", "http or https"),
            (
                "name = \"notes\"\nupstream_url = \"http://127.0.0.1:1/mcp\"\nargs = [\"a\"]",
                "args is for a stdio upstream",
            ),
            (
                "name = \"notes\"\ncommand = \"x\"\nupstream_headers = { A = \"b\" }",
                "upstream_headers is for an HTTP upstream",
            ),
            (
                "name = \"notes\"\nupstream_url = \"http://127.0.0.1:1/mcp\"\nupstream_headers = { Authorization = \"Bearer s3cret\" }",
                "give it as \"env:VARIABLE\"",
            ),
            (
                "name = \"notes\"\nupstream_url = \"http://127.0.0.1:1/mcp\"\nupstream_headers = { X-Key = \"env:MANDATE_TEST_SURELY_UNSET\" }",
                "MANDATE_TEST_SURELY_UNSET",
            ),
            ("name = \"notes\"\ncommand = \"x\"\nrequest_timeout = 0", "request_timeout must be"),
            (
                "name = \"notes\"\ncommand = \"x\"\nupstream_identity = true",
                "upstream_identity is for an HTTP upstream",
            ),
            (
                "name = \"notes\"\nupstream_url = \"http://127.0.0.1:1/mcp\"\nupstream_identity = true\nupstream_headers = { Authorization = \"env:PATH\" }",
                "drop Authorization",
            ),
            (
                "name = \"notes\"\nupstream_url = \"http://127.0.0.1:1/mcp\"\nupstream_headers = { Mcp-Session-Id = \"x\" }",
                "the MCP transport sets it",
            ),
            ("name = \"notes\"\ncommand = \"x\"\nmax_processes = 0", "at least 1"),
            ("name = \"notes\"\nupstream_url = \"http://u:p@127.0.0.1:1/mcp\"", "must not hold credentials"),
            ("name = \"notes\"\nupstream_url = \"http://127.0.0.1:8080/mcp\"", "on mandate's own origin"),
            (
                "name = \"notes\"\ncommand = \"x\"\ndefault_scopes = [\"notes.admin\"]",
                "default_scopes names notes.admin",
            ),
            (
                "name = \"notes\"\nupstream_url = \"http://127.0.0.1:1/mcp\"\nupstream_headers = { \"X Key\" = \"v\" }",
                "not a valid header name",
            ),
            ("name = \"notes\"\ncommand = \"x\"\ntool_scopes = { purge = \"billing.read\" }", "not one of its scopes"),
            ("uri = \"https://a.example/mcp\"\nname = \"A\"\nargs = [\"x\"]", "args is for a gateway resource"),
            ("name = \"A\"", "uri is missing"),
        ];
        for (entry, why) in cases {
            let toml = format!("[[resources]]\n{entry}\n");
            let e = match load(&toml) {
                // tool_scopes is checked against the derived scopes, at derivation.
                Ok(c) => upstreams(&c)
                    .and_then(|u| Ok(mandate_gateway::derive(&u[0], None)?))
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}"))
                    .expect_err(why),
                Err(e) => format!("{e:#}"),
            };
            assert!(e.contains(why), "{entry}: {e}");
        }
        let twice = "[[resources]]\nname = \"n\"\ncommand = \"x\"\n[[resources]]\nname = \"n\"\ncommand = \"y\"\n";
        assert!(error(twice).contains("two resources have this name"));
        let mcp_only =
            "mcp_only = true\nissuer = \"https://auth.example.com\"\n[[resources]]\nname = \"n\"\ncommand = \"x\"\n";
        assert!(error(mcp_only).contains("not with --mcp-only"));
    }
}
