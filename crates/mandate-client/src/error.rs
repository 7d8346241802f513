//! What can go wrong on the agent's side, each with a message a person can act on.

/// Every failure of the client library.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A URL the client was asked to open or fetch is not allowed (scheme, host).
    #[error("refused {what} {url}: {reason}")]
    UnsafeUrl { what: &'static str, url: String, reason: String },
    /// A fetch was refused because its host resolves to a private or reserved address.
    #[error("refused to fetch {url}: its host resolves to a private, link-local or reserved address")]
    PrivateAddress { url: String },
    /// Metadata discovery failed or the metadata is not acceptable.
    #[error("discovery failed: {0}")]
    Discovery(String),
    /// No way to obtain a client identity at this authorization server.
    #[error("client registration failed: {0}")]
    Registration(String),
    /// The authorization step failed (the server said no, the person denied, the code did not redeem).
    #[error("authorization failed: {0}")]
    Authorization(String),
    /// The callback's `state` is not the one this login sent.
    #[error("the authorization response's state does not match this login's request; it was discarded")]
    StateMismatch,
    /// The authorization server's endpoints are not those the stored credentials were issued
    /// through (CL-07), or the entry predates pinning: nothing stored was sent.
    #[error("{reason}; the stored credentials were not sent. Log in again: mandate login {server}")]
    EndpointsChanged { reason: String, server: String },
    /// The server wants more scopes and step-up was not allowed (or the person said no).
    #[error(
        "{} needs the scope(s) `{scopes}`, which you have not granted to this agent; run again with --step-up to ask for them",
        .tool.as_deref().unwrap_or("this request")
    )]
    ScopeRefused { scopes: String, tool: Option<String> },
    /// The person declined at the consent page (`access_denied`).
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// A request got no answer in time.
    #[error("timed out: {what} got no answer within {secs} s (raise the limit with --timeout)")]
    Timeout { what: String, secs: u64 },
    /// The step-up limit was reached.
    #[error("still refused after {0} authorization attempts; giving up")]
    TooManyAttempts(u32),
    /// The credential store failed.
    #[error("credential storage: {0}")]
    Storage(String),
    /// A transport failure talking to the server.
    #[error("network: {0}")]
    Network(String),
    /// The MCP exchange failed.
    #[error("MCP: {0}")]
    Mcp(String),
    /// Bad input from the caller.
    #[error("{0}")]
    Usage(String),
}
