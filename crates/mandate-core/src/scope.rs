//! Scopes (RFC 6749 §3.3) and the catalogue of protected resources (RFC 8707) whose scopes a
//! person can grant, each with the plain-language description the consent page shows.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::OAuthError;

/// A set of scope tokens, kept in a stable order, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScopeSet(Vec<String>);

fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

impl ScopeSet {
    /// Parses a space-separated scope string; `invalid_scope` on malformed tokens.
    pub fn parse(s: &str) -> Result<Self, OAuthError> {
        let mut out = ScopeSet::default();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            if !is_scope_token(token) {
                return Err(OAuthError::invalid_scope("scope contains invalid characters"));
            }
            out.insert(token);
        }
        if out.0.len() > 64 {
            return Err(OAuthError::invalid_scope("too many scopes"));
        }
        Ok(out)
    }
    pub fn from_names<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> Self {
        let mut out = ScopeSet::default();
        for i in items {
            out.insert(i.as_ref());
        }
        out
    }
    pub fn insert(&mut self, scope: &str) {
        if !self.contains(scope) {
            self.0.push(scope.to_owned());
        }
    }
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
    pub fn is_subset_of(&self, other: &ScopeSet) -> bool {
        self.iter().all(|s| other.contains(s))
    }
    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        let mut out = self.clone();
        for s in other.iter() {
            out.insert(s);
        }
        out
    }
    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.iter().filter(|s| other.contains(s)).cloned().collect())
    }
    pub fn difference(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.iter().filter(|s| !other.contains(s)).cloned().collect())
    }
}

impl std::fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

/// One scope a resource understands, with its plain-language description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeDef {
    pub name: String,
    pub description: String,
    /// The tools this scope unlocks, shown on the consent page.
    #[serde(default)]
    pub tools: Vec<String>,
    /// It allows actions that cannot be undone: the consent page leaves it unticked until the
    /// person ticks it.
    #[serde(default)]
    pub irreversible: bool,
}

/// A protected resource (an MCP server) this authorization server issues tokens for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDef {
    /// The canonical resource URI (RFC 8707), e.g. `https://mcp.example.com/mcp`.
    pub uri: String,
    pub name: String,
    pub scopes: Vec<ScopeDef>,
    /// Scopes requested when an authorization request names none.
    pub default_scopes: Vec<String>,
}

/// Canonical form of a resource indicator: absolute http(s), no fragment, no user information,
/// lower-case scheme and host, no default port, and no trailing slash on a bare origin.
pub fn canonical_resource(raw: &str) -> Result<String, OAuthError> {
    let invalid = || OAuthError::invalid_target("resource must be an absolute https URI without a fragment");
    if raw.len() > 2000 || raw.contains('#') {
        return Err(invalid());
    }
    let url = Url::parse(raw).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "https" | "http")
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(invalid());
    }
    let s = url.as_str();
    let canonical = if url.path() == "/" && url.query().is_none() { s.trim_end_matches('/') } else { s };
    // Percent-encoding can make the canonical form longer than the input: bound it too, so that
    // canonicalising is idempotent (found by fuzzing).
    if canonical.len() > 2000 {
        return Err(invalid());
    }
    Ok(canonical.to_owned())
}

/// Every resource mandate issues tokens for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceCatalog {
    resources: Vec<ResourceDef>,
}

impl ResourceCatalog {
    /// Builds the catalogue; resource URIs are canonicalised. The first resource is the default.
    pub fn new(resources: Vec<ResourceDef>) -> Result<Self, OAuthError> {
        let mut out = Vec::with_capacity(resources.len());
        for mut r in resources {
            r.uri = canonical_resource(&r.uri)?;
            out.push(r);
        }
        if out.is_empty() {
            return Err(OAuthError::invalid_target("at least one resource must be configured"));
        }
        Ok(Self { resources: out })
    }

    /// The demo catalogue: billing and todos on `<public_url>/mcp`.
    pub fn demo(public_url: &str) -> Result<Self, OAuthError> {
        Self::demo_at(&format!("{}/mcp", public_url.trim_end_matches('/')))
    }

    /// The demo catalogue for an MCP endpoint at `resource`.
    pub fn demo_at(resource: &str) -> Result<Self, OAuthError> {
        let def = |name: &str, description: &str| ScopeDef {
            name: name.to_owned(),
            description: description.to_owned(),
            tools: crate::demo::tools_for_scope(name),
            irreversible: crate::demo::scope_is_irreversible(name),
        };
        Self::new(vec![ResourceDef {
            uri: resource.to_owned(),
            name: "mandate demo apps (billing and todos)".to_owned(),
            scopes: vec![
                def("customers.read", "See your customers and their details"),
                def("customers.write", "Create customers in your name"),
                def("invoices.read", "See your invoices"),
                def("invoices.send", "Send invoices to your customers (cannot be undone)"),
                def("todos.read", "See your to-do list"),
                def("todos.write", "Add, complete and delete your to-dos"),
            ],
            default_scopes: vec!["customers.read".to_owned(), "invoices.read".to_owned(), "todos.read".to_owned()],
        }])
    }

    pub fn resources(&self) -> &[ResourceDef] {
        &self.resources
    }

    /// Resolves the `resource` parameter: absent means the default resource; unknown is
    /// `invalid_target`.
    pub fn resolve(&self, requested: Option<&str>) -> Result<&ResourceDef, OAuthError> {
        let Some(raw) = requested else {
            return self.resources.first().ok_or_else(|| OAuthError::invalid_target("no resource configured"));
        };
        let canonical = canonical_resource(raw)?;
        self.resources.iter().find(|r| r.uri == canonical).ok_or_else(|| {
            OAuthError::invalid_target("the requested resource is not served by this authorization server")
        })
    }

    /// Every scope name any resource understands, in catalogue order.
    pub fn all_scopes(&self) -> ScopeSet {
        ScopeSet::from_names(self.resources.iter().flat_map(|r| r.scopes.iter().map(|s| &s.name)))
    }

    /// The tools a scope unlocks, if any resource lists them.
    pub fn tools_of(&self, scope: &str) -> &[String] {
        self.resources
            .iter()
            .flat_map(|r| r.scopes.iter())
            .find(|s| s.name == scope)
            .map(|s| s.tools.as_slice())
            .unwrap_or(&[])
    }

    /// True when a resource marks the scope irreversible.
    pub fn is_irreversible(&self, scope: &str) -> bool {
        self.resources.iter().flat_map(|r| r.scopes.iter()).any(|s| s.name == scope && s.irreversible)
    }

    /// The description of a scope, if any resource defines it.
    pub fn describe(&self, scope: &str) -> Option<&str> {
        self.resources.iter().flat_map(|r| r.scopes.iter()).find(|s| s.name == scope).map(|s| s.description.as_str())
    }
}

impl ResourceDef {
    pub fn scope_set(&self) -> ScopeSet {
        ScopeSet::from_names(self.scopes.iter().map(|s| &s.name))
    }
    pub fn default_scope_set(&self) -> ScopeSet {
        ScopeSet::from_names(&self.default_scopes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parsing() {
        let s = ScopeSet::parse("a b  a c").ok().unwrap_or_default();
        assert_eq!(s.to_string(), "a b c");
        assert!(ScopeSet::parse("a\"b").is_err());
        assert!(ScopeSet::parse("caf\u{e9}").is_err());
    }

    #[test]
    fn resource_canonicalisation_as12() {
        assert_eq!(
            canonical_resource("HTTPS://MCP.Example.com/mcp").ok().as_deref(),
            Some("https://mcp.example.com/mcp")
        );
        assert_eq!(canonical_resource("https://host/").ok().as_deref(), Some("https://host"));
        assert_eq!(canonical_resource("https://host:443/mcp").ok().as_deref(), Some("https://host/mcp"));
        for bad in ["https://host/mcp#x", "/mcp", "urn:x", "https://u:p@host/mcp", "ftp://h/x"] {
            assert!(canonical_resource(bad).is_err(), "{bad}");
        }
    }

    /// A 1999-byte URI of `é`s is three times longer once percent-encoded: refused, where its
    /// canonical form used to be accepted and then refused when canonicalised again (fuzz target
    /// `scope`).
    #[test]
    fn canonicalisation_is_idempotent_even_when_encoding_lengthens() {
        let raw = format!("https://host/{}", "\u{e9}".repeat(993));
        assert!(raw.len() <= 2000);
        assert!(canonical_resource(&raw).is_err());
        let ok = format!("https://host/{}", "a".repeat(1900));
        let c = canonical_resource(&ok).ok();
        assert_eq!(c.as_deref().map(canonical_resource).and_then(Result::ok), c);
    }

    #[test]
    fn catalogue_resolution() {
        let cat = ResourceCatalog::demo("http://127.0.0.1:8080").ok();
        let cat = cat.as_ref();
        assert_eq!(cat.and_then(|c| c.resolve(None).ok()).map(|r| r.uri.as_str()), Some("http://127.0.0.1:8080/mcp"));
        let err = cat.map(|c| c.resolve(Some("https://unknown.test/")).map(|_| ()));
        assert_eq!(err.and_then(|e| e.err()).map(|e| e.code), Some(crate::error::ErrorCode::InvalidTarget));
    }
}
