//! Scopes from tool annotations, with the MCP specification's defaults: `readOnlyHint: true` →
//! `<name>.read`; not read-only with `destructiveHint: false` → `<name>.write`; anything else,
//! a tool without annotations included (the specification presumes it may destroy), →
//! `<name>.destructive`, irreversible (unticked on the consent page). Operator overrides win.

use std::collections::BTreeMap;

use mandate_core::scope::{ResourceDef, ScopeDef};
use mandate_guard::ToolScopes;

use crate::spec::UpstreamSpec;

/// What the gateway needs to know of one upstream tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolInfo {
    pub name: String,
    /// The tool's `title`, else its annotations' `title`.
    pub title: Option<String>,
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
}

/// How people read a tool (consent page, trail): its title, else its name; text an upstream
/// chose that could mislead (control, bidirectional-formatting or invisible characters) is not
/// shown.
pub fn label_of(title: Option<&str>, name: &str) -> String {
    let readable = |t: &&str| !t.trim().is_empty() && mandate_core::text::display_name_problem(t).is_none();
    match title.filter(readable).or(Some(name).filter(readable)) {
        Some(l) => l.to_owned(),
        None => "a tool with an unreadable name".to_owned(),
    }
}

impl ToolInfo {
    /// How people read the tool: see [`label_of`].
    pub fn label(&self) -> String {
        label_of(self.title.as_deref(), &self.name)
    }

    fn class(&self) -> Class {
        match (self.read_only, self.destructive) {
            (Some(true), _) => Class::Read,
            (_, Some(false)) => Class::Write,
            _ => Class::Destructive,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Read,
    Write,
    Destructive,
}

impl Class {
    fn suffix(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Destructive => "destructive",
        }
    }
}

/// Why a mapping cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("resource {resource}: tool_scopes maps {tool} to {scope}, which is not one of its scopes ({known})")]
    UnknownScope { resource: String, tool: String, scope: String, known: String },
    #[error("resource {resource}: default_scopes names {scope}, which is not one of its scopes ({known})")]
    UnknownDefault { resource: String, scope: String, known: String },
    #[error("resource {resource}: the scope {scope} is defined twice (its own scopes cannot reuse a derived name)")]
    Duplicate { resource: String, scope: String },
}

/// The scopes of one upstream and which tool needs which: the catalogue entry people consent
/// to, and the guard's policy.
#[derive(Debug, Clone)]
pub struct ScopeMapping {
    pub resource: ResourceDef,
    pub tools: ToolScopes,
    /// What a tool nobody mapped needs: the `.destructive` scope.
    pub strictest: String,
    /// Where each tool's scope came from, for `mandate resources show`.
    pub sources: BTreeMap<String, Source>,
}

/// Why a tool needs the scope it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Annotations,
    Override,
    /// Seen after start (list changed): the strictest scope until an operator maps it.
    LaterStrictest,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Annotations => "annotations",
            Source::Override => "tool_scopes",
            Source::LaterStrictest => "appeared later: strictest until mapped",
        }
    }
}

fn scope_name(spec: &UpstreamSpec, class: Class) -> String {
    format!("{}.{}", spec.name, class.suffix())
}

/// Builds the mapping from the upstream's tools; `None` when they could not be read (the
/// upstream was down at start): then every class is offered and each tool gets its scope when
/// it is first listed, the strictest unless overridden.
pub fn derive(spec: &UpstreamSpec, tools: Option<&[ToolInfo]>) -> Result<ScopeMapping, MappingError> {
    let title = &spec.title;
    let mut by_class: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let policy = ToolScopes::enforced();
    let mut sources = BTreeMap::new();
    let mut defs: Vec<ScopeDef> = Vec::new();
    let all_classes = [Class::Read, Class::Write, Class::Destructive];
    for class in all_classes {
        // A class is offered when a tool needs it, when the operator names it (tool_scopes,
        // default_scopes: the configuration is valid whatever the upstream lists today), and
        // always for the strictest class (tools added later need it).
        let name = scope_name(spec, class);
        let named = spec.tool_scopes.values().chain(&spec.default_scopes).any(|s| *s == name);
        let offered = match tools {
            None => true,
            Some(list) => class == Class::Destructive || named || list.iter().any(|t| t.class() == class),
        };
        if offered {
            let description = match class {
                Class::Read => format!("Use {title}'s tools that only read"),
                Class::Write => format!("Use {title}'s tools that change things, without deleting anything"),
                Class::Destructive => {
                    format!(
                        "Use {title}'s tools that may delete or overwrite (cannot be undone), and any tool it adds later"
                    )
                }
            };
            defs.push(ScopeDef {
                name: scope_name(spec, class),
                description,
                tools: Vec::new(),
                irreversible: class == Class::Destructive,
            });
        }
        by_class.insert(class.suffix(), Vec::new());
    }
    for extra in &spec.extra_scopes {
        let derived = [Class::Read, Class::Write, Class::Destructive].map(|c| scope_name(spec, c));
        if derived.contains(&extra.name) || defs.iter().any(|d| d.name == extra.name) {
            return Err(MappingError::Duplicate { resource: spec.name.clone(), scope: extra.name.clone() });
        }
        defs.push(extra.clone());
    }
    let known: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
    for scope in &spec.default_scopes {
        if !known.contains(scope) {
            return Err(MappingError::UnknownDefault {
                resource: spec.name.clone(),
                scope: scope.clone(),
                known: known.join(", "),
            });
        }
    }
    for (tool, scope) in &spec.tool_scopes {
        if !known.contains(scope) {
            return Err(MappingError::UnknownScope {
                resource: spec.name.clone(),
                tool: tool.clone(),
                scope: scope.clone(),
                known: known.join(", "),
            });
        }
    }
    let strictest = scope_name(spec, Class::Destructive);
    for t in tools.unwrap_or_default() {
        let (scope, source) = match spec.tool_scopes.get(&t.name) {
            Some(s) => (s.clone(), Source::Override),
            None => (scope_name(spec, t.class()), Source::Annotations),
        };
        policy.set(&t.name, vec![scope.clone()]);
        sources.insert(t.name.clone(), source);
        if let Some(def) = defs.iter_mut().find(|d| d.name == scope) {
            def.tools.push(t.label());
        }
    }
    // Overrides for tools not listed (yet) apply when they appear.
    for (tool, scope) in &spec.tool_scopes {
        if policy.required(tool).is_none() {
            policy.set(tool, vec![scope.clone()]);
            sources.insert(tool.clone(), Source::Override);
        }
    }
    let default_scopes = match spec.default_scopes.is_empty() {
        false => spec.default_scopes.clone(),
        true => [Class::Read, Class::Write, Class::Destructive]
            .into_iter()
            .map(|c| scope_name(spec, c))
            .find(|n| defs.iter().any(|d| &d.name == n))
            .into_iter()
            .collect(),
    };
    Ok(ScopeMapping {
        resource: ResourceDef { uri: spec.resource.clone(), name: spec.title.clone(), scopes: defs, default_scopes },
        tools: policy,
        strictest,
        sources,
    })
}

impl ScopeMapping {
    /// A tool seen in a `tools/list` result: its scopes, mapping it to the strictest scope if
    /// it is new (an upstream's list changed since start).
    pub fn scopes_for(&mut self, tool: &str) -> Vec<String> {
        if let Some(s) = self.tools.required(tool) {
            return s;
        }
        tracing::warn!(
            resource = %self.resource.uri,
            tool,
            scope = %self.strictest,
            "a tool appeared after start: it needs the strictest scope until an operator maps it (tool_scopes)"
        );
        let s = vec![self.strictest.clone()];
        self.tools.set(tool, s.clone());
        self.sources.insert(tool.to_owned(), Source::LaterStrictest);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Limits, Target};

    fn spec(overrides: &[(&str, &str)]) -> UpstreamSpec {
        UpstreamSpec {
            name: "notes".into(),
            title: "Notes".into(),
            resource: "http://127.0.0.1:8080/mcp/notes".into(),
            target: Target::Http { url: "http://127.0.0.1:3000/mcp".into(), headers: BTreeMap::new() },
            tool_scopes: overrides.iter().map(|(t, s)| ((*t).to_owned(), (*s).to_owned())).collect(),
            extra_scopes: Vec::new(),
            default_scopes: Vec::new(),
            limits: Limits::default(),
            identity: false,
            provider: None,
        }
    }

    fn tool(name: &str, read_only: Option<bool>, destructive: Option<bool>) -> ToolInfo {
        ToolInfo { name: name.into(), title: Some(format!("{name} title")), read_only, destructive }
    }

    #[test]
    fn annotations_give_the_specification_defaults() {
        let tools = [
            tool("list", Some(true), None),
            tool("list_even_if_destructive", Some(true), Some(true)),
            tool("add", Some(false), Some(false)),
            tool("add_without_read_only_hint", None, Some(false)),
            tool("delete", Some(false), Some(true)),
            tool("unannotated", None, None),
            tool("not_read_only", Some(false), None),
        ];
        let m = derive(&spec(&[]), Some(&tools)).unwrap();
        let need = |t: &str| m.tools.required(t).unwrap();
        assert_eq!(need("list"), ["notes.read"]);
        assert_eq!(need("list_even_if_destructive"), ["notes.read"]);
        assert_eq!(need("add"), ["notes.write"]);
        assert_eq!(need("add_without_read_only_hint"), ["notes.write"]);
        assert_eq!(need("delete"), ["notes.destructive"]);
        assert_eq!(need("unannotated"), ["notes.destructive"]);
        assert_eq!(need("not_read_only"), ["notes.destructive"]);
        let names: Vec<&str> = m.resource.scopes.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["notes.read", "notes.write", "notes.destructive"]);
        assert_eq!(m.resource.default_scopes, ["notes.read"]);
        // Only the destructive scope is irreversible; the consent page lists tools by title.
        let d = &m.resource.scopes[2];
        assert!(d.irreversible && !m.resource.scopes[0].irreversible);
        assert_eq!(d.tools, ["delete title", "unannotated title", "not_read_only title"]);
        // A tool the policy never saw is refused by the guard until it is listed.
        assert!(m.tools.required("nobody").is_none());
        assert!(!m.tools.is_empty());
    }

    #[test]
    fn overrides_win_and_must_name_a_scope_of_the_resource() {
        let tools = [tool("purge", None, None), tool("list", Some(true), None)];
        let m = derive(&spec(&[("purge", "notes.read"), ("later", "notes.read")]), Some(&tools)).unwrap();
        assert_eq!(m.tools.required("purge").unwrap(), ["notes.read"]);
        assert_eq!(m.sources["purge"], Source::Override);
        assert_eq!(m.tools.required("later").unwrap(), ["notes.read"]);
        // No tool is destructive now, yet the scope stays: tools added later need it.
        assert!(m.resource.scopes.iter().any(|s| s.name == "notes.destructive"));
        assert!(!m.resource.scopes.iter().any(|s| s.name == "notes.write"));
        let err = derive(&spec(&[("purge", "billing.read")]), Some(&tools)).unwrap_err();
        assert!(err.to_string().contains("not one of its scopes"), "{err}");
    }

    #[test]
    fn what_the_operator_names_is_offered_whatever_the_upstream_lists() {
        let tools = [tool("list", Some(true), None)];
        let mut s = spec(&[("list", "notes.write")]);
        s.default_scopes = vec!["notes.write".into()];
        let m = derive(&s, Some(&tools)).unwrap();
        assert!(m.resource.scopes.iter().any(|d| d.name == "notes.write"), "named by the operator, so offered");
        assert_eq!(m.resource.default_scopes, ["notes.write"]);
        s.default_scopes = vec!["notes.admin".into()];
        assert!(matches!(derive(&s, Some(&tools)), Err(MappingError::UnknownDefault { .. })));
        let mut s = spec(&[]);
        s.extra_scopes = vec![ScopeDef {
            name: "notes.read".into(),
            description: "again".into(),
            tools: Vec::new(),
            irreversible: false,
        }];
        assert!(matches!(derive(&s, Some(&tools)), Err(MappingError::Duplicate { .. })));
    }

    #[test]
    fn upstream_text_that_could_mislead_is_not_shown() {
        assert_eq!(label_of(Some("Send invoice"), "send"), "Send invoice");
        assert_eq!(label_of(Some("Read \u{202e}eciovni"), "read"), "read");
        assert_eq!(label_of(Some(" "), "read"), "read");
        assert_eq!(label_of(None, "evil\u{200b}"), "a tool with an unreadable name");
    }

    #[test]
    fn a_tool_that_appears_later_gets_the_strictest_scope() {
        let mut m = derive(&spec(&[]), Some(&[tool("list", Some(true), None)])).unwrap();
        assert_eq!(m.scopes_for("list"), ["notes.read"]);
        assert_eq!(m.scopes_for("wipe"), ["notes.destructive"]);
        assert_eq!(m.tools.required("wipe").unwrap(), ["notes.destructive"]);
        assert_eq!(m.sources["wipe"], Source::LaterStrictest);
    }

    #[test]
    fn an_upstream_down_at_start_offers_every_class() {
        let m = derive(&spec(&[]), None).unwrap();
        let names: Vec<&str> = m.resource.scopes.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["notes.read", "notes.write", "notes.destructive"]);
        assert!(m.tools.required("anything").is_none());
        assert!(!m.tools.is_empty(), "an empty gateway policy still refuses unknown tools");
    }
}
