#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test harness: failing loudly is the point
//! The protected MCP server over real HTTP on loopback: the seed dialogue end to end, and each
//! token-validation rule with its exact status and challenge (RS*, JW*, H* ids in test names).

mod battery;
mod hardening;
mod hostile_tokens;
mod jsonrpc_errors;
mod seed_dialogue;
mod sessions;
mod validation;
