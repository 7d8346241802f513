//! Scopes from the tools' annotations, by mandate's rule (its docs/GATEWAY.md): read-only reads;
//! not destructive writes; anything else, a tool without annotations included, destroys. The
//! same table serves `mandate dev` (which reads the annotations from `tools/list`), this server's
//! own guard (`--http`) and the `[[resources]]` entry mandate needs (`--print-resource`).

use mandate_guard::ToolScopes;
use rmcp::model::Tool;

/// The scope a tool needs, under the resource prefix `prefix`.
pub fn scope_of(tool: &Tool, prefix: &str) -> String {
    let a = tool.annotations.as_ref();
    let class = match (a.and_then(|a| a.read_only_hint), a.and_then(|a| a.destructive_hint)) {
        (Some(true), _) => "read",
        (_, Some(false)) => "write",
        _ => "destructive",
    };
    format!("{prefix}.{class}")
}

/// What the guard enforces: each tool's scope, and every scope offered (first: the read scope,
/// what a first login asks for).
pub struct Access {
    pub tools: ToolScopes,
    pub scopes: Vec<String>,
}

pub fn access(tools: &[Tool], prefix: &str) -> Access {
    let policy = ToolScopes::enforced();
    for t in tools {
        policy.set(&t.name, vec![scope_of(t, prefix)]);
    }
    let scopes = ["read", "write", "destructive"].iter().map(|c| format!("{prefix}.{c}")).collect();
    Access { tools: policy, scopes }
}

/// The entry for mandate's configuration file: this resource, its scopes, the tools under each.
pub fn resource_toml(tools: &[Tool], prefix: &str, uri: &str) -> String {
    let mut out = format!(
        "[[resources]]\nuri = {}\nname = {}\ndefault_scopes = [\"{prefix}.read\"]\n",
        toml_string(uri),
        toml_string(prefix)
    );
    for (class, what, irreversible) in [
        ("read", "Read your notes", false),
        ("write", "Add notes", false),
        ("destructive", "Delete notes (cannot be undone)", true),
    ] {
        let scope = format!("{prefix}.{class}");
        let names: Vec<String> =
            tools.iter().filter(|t| scope_of(t, prefix) == scope).map(|t| toml_string(&t.name)).collect();
        out.push_str(&format!(
            "[[resources.scopes]]\nname = {}\ndescription = {}\ntools = [{}]\nirreversible = {irreversible}\n",
            toml_string(&scope),
            toml_string(what),
            names.join(", ")
        ));
    }
    out
}

/// A TOML basic string: quotes and backslashes escaped, control characters as `\uXXXX`.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
