//! The agent's side of MCP authorization, on rmcp's client `auth` feature: discovery from the 401,
//! registration (pre-registered, Client ID Metadata Document, RFC 7591), PKCE S256 with `resource`
//! and `iss` checks, a loopback login (browser, printed URL, or headless), credentials stored per
//! server and bound to their issuer, refresh, step-up on `insufficient_scope`, an SSRF guard on
//! every URL, and a stdio bridge.

pub mod bridge;
pub mod callback;
pub mod connection;
pub mod deadline;
pub mod error;
pub mod login;
pub mod net;
mod pinning;
pub mod record;
pub mod session;
pub mod stepup;
pub mod transport;
pub mod vault;

pub use connection::{ConnectOptions, Connection, StepUp};
pub use error::ClientError;
pub use login::LoginMode;
pub use net::NetPolicy;
pub use record::{Direction, ExternalSignIn, HttpExchange, Recorder};
pub use session::McpSession;
pub use vault::{BackendChoice, CredentialVault, PinnedEndpoints};
