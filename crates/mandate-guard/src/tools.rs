//! Per-tool scopes: which scopes each tool needs, checked before the call reaches the MCP
//! server so that a missing scope is an HTTP 403 step-up challenge (MCP RS10, RS11).

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::principal::Principal;

/// Tool name → the scopes it needs (all of them).
#[derive(Debug, Clone, Default)]
pub struct ToolScopes(BTreeMap<String, Vec<String>>);

impl ToolScopes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, tool: &str, scopes: &[&str]) -> Self {
        self.0.insert(tool.to_owned(), scopes.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// The scopes `tool` needs; `None` for a tool not listed.
    pub fn required(&self, tool: &str) -> Option<&[String]> {
        self.0.get(tool).map(Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
