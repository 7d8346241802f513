//! Per-tool scopes: which scopes each tool needs, checked before the call reaches the MCP
//! server so that a missing scope is an HTTP 403 step-up challenge (MCP RS10, RS11).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::principal::Principal;

/// Tool name → the scopes it needs (all of them). Clones share one map, so a server whose tools
/// change at run time (a gateway learning an upstream's new tools) updates the guard's policy.
#[derive(Debug, Clone, Default)]
pub struct ToolScopes {
    map: Arc<RwLock<BTreeMap<String, Vec<String>>>>,
    /// A policy even while empty: a tool it does not name is refused (fail closed).
    enforced: bool,
}

impl ToolScopes {
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy that refuses every tool it does not name, even while it names none yet.
    pub fn enforced() -> Self {
        Self { enforced: true, ..Self::default() }
    }

    pub fn with(self, tool: &str, scopes: &[&str]) -> Self {
        self.set(tool, scopes.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// Sets (or replaces) the scopes `tool` needs, for every clone of this policy.
    pub fn set(&self, tool: &str, scopes: Vec<String>) {
        if let Ok(mut m) = self.map.write() {
            m.insert(tool.to_owned(), scopes);
        }
    }

    /// The scopes `tool` needs; `None` for a tool not listed.
    pub fn required(&self, tool: &str) -> Option<Vec<String>> {
        self.map.read().ok()?.get(tool).cloned()
    }

    /// Every tool and its scopes, in name order.
    pub fn entries(&self) -> Vec<(String, Vec<String>)> {
        self.map.read().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
    }

    /// No policy at all: authentication is the whole check.
    pub fn is_empty(&self) -> bool {
        !self.enforced && self.map.read().map(|m| m.is_empty()).unwrap_or(false)
    }
}

/// What the guard decided about a tool call before it reached the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolDecision {
    /// The token holds every scope the tool needs; the call proceeds.
    Allowed,
    /// The token lacks these scopes; the caller got a 403 step-up challenge.
    Refused { missing: Vec<String> },
}

/// Records tool-call decisions (allowed and refused) for the audit trail.
#[async_trait]
pub trait ToolCallAudit: Send + Sync {
    async fn tool_call(&self, principal: &Principal, tool: &str, decision: &ToolDecision);
}
