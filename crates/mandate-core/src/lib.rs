//! mandate-core: OAuth 2.1 protocol and grant logic for MCP authorization, with no web framework
//! and no SQL. Storage is reached through the traits in [`store`]; time and randomness through
//! [`clock`].

pub mod clock;
pub mod demo;
pub mod error;
pub mod json;
pub mod keys;
pub mod model;
pub mod params;
pub mod password;
pub mod pkce;
pub mod redirect;
pub mod scope;
pub mod secret;
pub mod service;
pub mod ssrf;
pub mod store;
pub mod successor;
pub mod text;
pub mod tokens;

pub use error::{ErrorCode, OAuthError, StoreError};
pub use service::{AuthServer, Dependencies, Settings};
