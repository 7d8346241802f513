//! The inspector (`/inspector`): an operator signed in to mandate connects to any MCP server (the
//! built-in one, a gateway resource, anything else) and watches what an agent meets there: the
//! OAuth flow step by step with each HTTP exchange (secrets masked), the decoded token, the tools
//! with their scopes and a form for each, the JSON-RPC log, and the doctor's report for the URL;
//! with buttons to call a tool, step up, refresh and revoke.
//!
//! The client is `mandate-client` running in the server, so the inspector has no CORS limits and
//! makes the same checks as the CLI; its redirect URI is `/inspector/callback` on mandate's
//! public URL, so an operator of a remote `mandate serve` signs in from their own browser. Each
//! operator has one inspection of their own, in memory. Who may use it: the people named in
//! `inspector_operators`; the server fetches only what the client's URL policy allows (no private
//! addresses; loopback only when mandate itself runs on loopback).

mod inspection;
mod record;
mod routes;
mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use mandate_server::SignedIn;

/// What the inspector needs from the server that mounts it.
#[derive(Clone)]
pub struct InspectorSettings {
    /// Reads the signed-in person (mandate's session cookie).
    pub signed_in: SignedIn,
    /// The usernames that may use the inspector.
    pub operators: Vec<String>,
    /// MCP URLs offered on the page (the built-in endpoint, gateway resources).
    pub suggestions: Vec<String>,
    /// Whether loopback hosts (and plain http to them) may be reached: only when mandate itself
    /// is served on loopback (development).
    pub allow_loopback: bool,
}

/// The shared state of the routes.
#[derive(Clone)]
pub(crate) struct Inspector {
    settings: Arc<InspectorSettings>,
    /// Each operator's inspection, by person id.
    by_operator: Arc<Mutex<HashMap<String, Arc<inspection::Inspection>>>>,
}

/// The inspector's routes: `/inspector`, its assets, its JSON API and its OAuth callback.
pub fn router(settings: InspectorSettings) -> Router {
    routes::routes(Inspector { settings: Arc::new(settings), by_operator: Arc::default() })
}
