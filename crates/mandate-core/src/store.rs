//! The narrow storage traits the grant logic is written against. `mandate-store` implements
//! them over SQL; each method that must be atomic says so.

use async_trait::async_trait;

use crate::clock::UnixTime;
use crate::error::StoreResult;
use crate::model::*;
use crate::secret::SecretHash;

#[async_trait]
pub trait UserStore: Send + Sync {
    /// `StoreError::Conflict` when the username is taken.
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>>;
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Replaces a user's password hash; false when the user does not exist.
    async fn set_password(&self, user_id: &str, password_hash: &str) -> StoreResult<bool>;
}

#[async_trait]
pub trait ClientStore: Send + Sync {
    async fn insert_client(&self, client: &Client) -> StoreResult<()>;
    /// Inserts or replaces (metadata-document clients, refreshed from their URL).
    async fn upsert_client(&self, client: &Client) -> StoreResult<()>;
    async fn client_by_id(&self, id: &str) -> StoreResult<Option<Client>>;
    async fn list_clients(&self) -> StoreResult<Vec<Client>>;
    /// Dynamic (RFC 7591) clients: how many were registered at or after `since`, and how many
    /// stored ones never got an authorization code (DC-10).
    async fn dynamic_registrations(&self, since: UnixTime) -> StoreResult<(i64, i64)>;
    /// Removes a client and revokes every grant it holds, atomically. False when unknown.
    async fn remove_client(&self, id: &str, now: UnixTime) -> StoreResult<bool>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn insert_session(&self, session: &Session) -> StoreResult<()>;
    /// The session, if it exists and has not expired at `now`.
    async fn session(&self, hash: &SecretHash, now: UnixTime) -> StoreResult<Option<Session>>;
    async fn delete_session(&self, hash: &SecretHash) -> StoreResult<()>;
}

#[async_trait]
pub trait AuthorizationRequestStore: Send + Sync {
    async fn insert_pending(&self, pending: &PendingAuthorization) -> StoreResult<()>;
    /// How many requests of this client created at or after `since` carried this PKCE challenge
    /// (PK-12; counted up to 1000).
    async fn challenge_uses(&self, client_id: &str, code_challenge: &str, since: UnixTime) -> StoreResult<i64>;
    async fn pending(&self, id: &str) -> StoreResult<Option<PendingAuthorization>>;
    /// Binds the request to the person viewing it; false if another person already holds it.
    async fn bind_pending(&self, id: &str, user_id: &str) -> StoreResult<bool>;
    /// Marks the request used; true for exactly one caller.
    async fn consume_pending(&self, id: &str, now: UnixTime) -> StoreResult<bool>;
}

#[async_trait]
pub trait ConsentStore: Send + Sync {
    async fn consent(
        &self,
        user_id: &str,
        client_id: &str,
        redirect_host: &str,
        resource: &str,
    ) -> StoreResult<Option<Consent>>;
}

#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Creates a (not yet active) grant and its authorization code, atomically.
    async fn insert_grant_with_code(
        &self,
        grant: &Grant,
        code: &AuthorizationCode,
        consent: Option<&Consent>,
    ) -> StoreResult<()>;
    async fn code(&self, hash: &SecretHash) -> StoreResult<Option<AuthorizationCode>>;
    /// Marks the code used; true for exactly one caller.
    async fn consume_code(&self, hash: &SecretHash, now: UnixTime) -> StoreResult<bool>;
    /// Activates the grant and stores its first refresh token, atomically; false when the
    /// grant was revoked (a replayed code got there first) or is already active.
    async fn activate_grant(&self, grant_id: &str, refresh: Option<&RefreshToken>, now: UnixTime) -> StoreResult<bool>;
    /// Spends the code, activates its grant and stores the first refresh token in one
    /// transaction, so a failure in between leaves the code redeemable. The audit event `audit`
    /// makes of the outcome is written in that same transaction (a store may ask `audit` for
    /// more than one outcome's event before it knows which one happened).
    async fn redeem_code(
        &self,
        code: &SecretHash,
        grant_id: &str,
        refresh: Option<&RefreshToken>,
        now: UnixTime,
        audit: AuditEach<crate::model::Redemption>,
    ) -> StoreResult<crate::model::Redemption>;
    async fn grant(&self, id: &str) -> StoreResult<Option<Grant>>;
    /// Active grants, newest first, optionally of one user.
    async fn list_grants(&self, user_id: Option<&str>) -> StoreResult<Vec<Grant>>;
    /// Revokes a grant and every refresh token of its family; true when it was live.
    async fn revoke_grant(&self, id: &str, now: UnixTime) -> StoreResult<bool>;
    /// Revokes every grant a person gave a client, forgets the consent; returns how many.
    async fn revoke_user_client(&self, user_id: &str, client_id: &str, now: UnixTime) -> StoreResult<u64>;
    async fn refresh_token(&self, hash: &SecretHash) -> StoreResult<Option<RefreshToken>>;
    /// What a refresh request needs, in one read: the token, its grant, and whether the grant's
    /// person exists and is enabled.
    async fn refresh_context(&self, hash: &SecretHash) -> StoreResult<Option<RefreshContext>>;
    /// Rotates a refresh token exactly once (see [`RotateOutcome`]), atomically: the caller that
    /// wins marks `presented` rotated, stores `next` and keeps `sealed` (the successor sealed
    /// under the presented token) on the presented token's row, clearing any older sealed
    /// successor of the family. A presentation that loses is judged by `window`; a retry gets the
    /// stored sealed successor back and nothing is inserted. Does not touch `last_used_at`. The
    /// audit event `audit` makes of the outcome is written in the same transaction (as for
    /// `redeem_code`, `audit` may be asked for more than one outcome).
    async fn rotate_refresh(
        &self,
        presented: &SecretHash,
        next: &RefreshToken,
        sealed: Option<&str>,
        now: UnixTime,
        window: RetryWindow,
        audit: AuditEach<RotateOutcome>,
    ) -> StoreResult<RotateOutcome>;
    /// Records a revoked access token until it would have expired anyway.
    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> StoreResult<()>;
    async fn access_token_revoked(&self, jti: &str) -> StoreResult<bool>;
    /// One lookup for a resource server: is the grant (when given) gone or revoked, or the token
    /// (when given) revoked?
    async fn access_revoked(&self, grant_id: Option<&str>, jti: Option<&str>) -> StoreResult<bool>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn insert_key(&self, key: &StoredSigningKey) -> StoreResult<()>;
    /// Every key, oldest first.
    async fn list_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Several events in one transaction (all or none).
    async fn append_all(&self, events: &[AuditEvent]) -> StoreResult<()>;
    /// The newest events matching the filter (at most `limit`), oldest first.
    async fn events(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEvent>>;
    /// For each client that called a tool for this person: when it last did, successfully (the
    /// "last used" of the connected-apps page; a refused call is not a use).
    async fn last_tool_calls(&self, user_id: &str) -> StoreResult<Vec<(String, UnixTime)>>;
    /// Every client that appears in this person's trail.
    async fn clients_in_trail(&self, user_id: &str) -> StoreResult<Vec<String>>;
}

/// Failed attempts per throttle key: a sign-in per (account, address) and per account, a client
/// secret per client. The key is opaque to the store.
#[async_trait]
pub trait LoginThrottleStore: Send + Sync {
    /// Counts a failed attempt (a new window starts when the first failure is older than
    /// `window_start`); returns the failures in the current window. Atomic.
    async fn record_login_failure(&self, username: &str, now: UnixTime, window_start: UnixTime) -> StoreResult<i64>;
    async fn lock_login(&self, username: &str, until: UnixTime) -> StoreResult<()>;
    async fn login_locked_until(&self, username: &str) -> StoreResult<Option<UnixTime>>;
    async fn clear_login_failures(&self, username: &str) -> StoreResult<()>;
}

#[async_trait]
pub trait MaintenanceStore: Send + Sync {
    /// Deletes what can no longer be used: expired sessions, pending requests, codes, refresh
    /// tokens, never-activated grants and access-token revocations; clears the sealed successor of
    /// every token rotated at or before `sealed_until` (its grace window has passed). Returns the
    /// rows deleted or cleared. Never touches the audit trail.
    async fn purge_expired(&self, now: UnixTime, sealed_until: UnixTime) -> StoreResult<u64>;
    /// Deletes dynamic (RFC 7591) clients registered before `registered_before` that never got
    /// an authorization code (no grant, no code, ever); a client once used is never deleted.
    /// Returns how many (DC-10).
    async fn purge_unused_clients(&self, registered_before: UnixTime) -> StoreResult<u64>;
    /// Deletes audit events recorded before `before` (the operator's `audit_retention`), at most
    /// `limit` of them, oldest first, in batches; returns how many.
    async fn purge_audit(&self, before: UnixTime, limit: u64) -> StoreResult<u64>;
    /// Answers when the database does (readiness).
    async fn ping(&self) -> StoreResult<()>;
    /// Tells other processes on this database that something was revoked.
    async fn announce_revocation(&self) -> StoreResult<()>;
}

/// MCP sessions shared by every instance (the resource server's view).
#[async_trait]
pub trait McpSessionStore: Send + Sync {
    /// Records the session's initialize parameters (JSON), creating the row if needed.
    async fn save_mcp_session_state(&self, id: &str, state: &str, now: UnixTime) -> StoreResult<()>;
    /// The session's initialize parameters, when it is known and was used since `fresh_after`.
    async fn mcp_session_state(&self, id: &str, fresh_after: UnixTime) -> StoreResult<Option<String>>;
    /// Binds the session to `owner` (once: an owned session keeps its owner) and keeps at most
    /// `keep` sessions for that owner, dropping the least recently used; returns the ids dropped.
    async fn bind_mcp_session(&self, id: &str, owner: &str, now: UnixTime, keep: i64) -> StoreResult<Vec<String>>;
    /// The session's owner when it was used since `fresh_after`; marks it used at `now`.
    async fn touch_mcp_session(&self, id: &str, now: UnixTime, fresh_after: UnixTime) -> StoreResult<Option<String>>;
    async fn delete_mcp_session(&self, id: &str) -> StoreResult<()>;
}

/// Accounts at upstream providers: sign-in identities, connected accounts (the vault's rows) and
/// the provider authorization requests in flight.
#[async_trait]
pub trait UpstreamStore: Send + Sync {
    async fn insert_provider_flow(&self, flow: &ProviderFlow) -> StoreResult<()>;
    /// Removes and returns the flow, if it has not expired: exactly one caller gets it.
    async fn take_provider_flow(&self, state_hash: &SecretHash, now: UnixTime) -> StoreResult<Option<ProviderFlow>>;
    /// The person a provider's subject signs in as.
    async fn identity_user(&self, provider: &str, subject: &str) -> StoreResult<Option<String>>;
    /// `StoreError::Conflict` when the subject is linked already (to anyone).
    async fn link_identity(&self, identity: &FederatedIdentity) -> StoreResult<()>;
    async fn identities_of(&self, user_id: &str) -> StoreResult<Vec<FederatedIdentity>>;
    /// Creates a person and links the identity to them, in one transaction (`Conflict` when the
    /// username or the identity is taken).
    async fn insert_user_with_identity(&self, user: &User, identity: &FederatedIdentity) -> StoreResult<()>;
    async fn upstream_account(&self, user_id: &str, provider: &str) -> StoreResult<Option<UpstreamAccount>>;
    async fn upstream_accounts(&self, user_id: &str) -> StoreResult<Vec<UpstreamAccount>>;
    /// Stores a new connection (replacing any earlier one): a new row starts at the account's
    /// `version` (the caller picks one no earlier row had); a replaced row's version moves one
    /// past its own. Either way a refresh begun over the old tokens cannot land on the new ones.
    async fn save_upstream_account(&self, account: &UpstreamAccount) -> StoreResult<()>;
    /// Takes the refresh lease until `until`, if the account is connected, still at `version`
    /// and nobody holds an unexpired lease: true for exactly one caller, on every instance.
    async fn claim_upstream_refresh(
        &self,
        user_id: &str,
        provider: &str,
        version: i64,
        now: UnixTime,
        until: UnixTime,
    ) -> StoreResult<bool>;
    /// Stores refreshed tokens over `version` (bumping it) and releases the lease; `scope`, when
    /// the provider said, replaces the granted scope. False when the row moved on meanwhile
    /// (disconnected, reconnected).
    #[allow(clippy::too_many_arguments)]
    async fn finish_upstream_refresh(
        &self,
        user_id: &str,
        provider: &str,
        version: i64,
        sealed_tokens: &[u8],
        access_expires_at: Option<UnixTime>,
        scope: Option<&str>,
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// Releases the lease after a failed refresh; `disconnect` marks the account disconnected
    /// (the provider refused the refresh token).
    async fn abandon_upstream_refresh(
        &self,
        user_id: &str,
        provider: &str,
        version: i64,
        disconnect: bool,
    ) -> StoreResult<()>;
    /// Deletes the account; true when there was one.
    async fn delete_upstream_account(&self, user_id: &str, provider: &str) -> StoreResult<bool>;
}

/// The end of a person's access: disabling, removing, a new password. Each is one transaction,
/// which also writes the audit event `audit` makes of the outcome.
#[async_trait]
pub trait PeopleStore: Send + Sync {
    /// Marks the person disabled and revokes everything that lets them or their agents in: every
    /// grant with its refresh tokens (resource servers then refuse the grants' access tokens),
    /// their consents, their browser sessions, and the MCP sessions `mcp_owner` owns. `None` when
    /// there is no such person.
    async fn disable_user(
        &self,
        user_id: &str,
        mcp_owner: &str,
        now: UnixTime,
        audit: AuditOf<PersonRevocation>,
    ) -> StoreResult<Option<PersonRevocation>>;
    /// Clears the disabled mark; nothing revoked comes back. False when there is no such person.
    async fn enable_user(&self, user_id: &str, audit: AuditOf<bool>) -> StoreResult<bool>;
    /// Deletes the person and what is theirs: grants with their codes and refresh tokens,
    /// pending requests, consents, browser and MCP sessions, identities, connected accounts,
    /// provider requests, sign-in failure counts under `throttle`, and the demo apps' rows. The
    /// audit trail is kept. `None` when there is no such person.
    async fn remove_user(
        &self,
        user_id: &str,
        throttle: &crate::service::LoginThrottleKeys,
        mcp_owner: &str,
        audit: AuditOf<PersonRevocation>,
    ) -> StoreResult<Option<PersonRevocation>>;
    /// Replaces the password hash and ends the person's browser sessions; with `revoke_grants`,
    /// also revokes grants and MCP sessions as [`PeopleStore::disable_user`] does (RT-11 (b)).
    /// `None` when there is no such person.
    async fn change_password(
        &self,
        user_id: &str,
        password_hash: &str,
        revoke_grants: bool,
        mcp_owner: &str,
        now: UnixTime,
        audit: AuditOf<PersonRevocation>,
    ) -> StoreResult<Option<PersonRevocation>>;
}

/// Every value sealed under the key-encryption key.
#[async_trait]
pub trait SealedStore: Send + Sync {
    /// Replaces every sealed value (signing keys, connected accounts' tokens, provider requests'
    /// secrets) with what `reseal` makes of it, in one transaction: an error from `reseal` or the
    /// database leaves every value as it was.
    async fn reseal_all(&self, reseal: Reseal, audit: AuditOf<ResealCount>) -> StoreResult<ResealCount>;
}

/// Everything the authorization server needs from storage.
pub trait Store:
    UserStore
    + ClientStore
    + SessionStore
    + AuthorizationRequestStore
    + McpSessionStore
    + ConsentStore
    + GrantStore
    + KeyStore
    + AuditStore
    + LoginThrottleStore
    + MaintenanceStore
    + UpstreamStore
    + PeopleStore
    + SealedStore
{
}

impl<T> Store for T where
    T: UserStore
        + ClientStore
        + SessionStore
        + AuthorizationRequestStore
        + McpSessionStore
        + ConsentStore
        + GrantStore
        + KeyStore
        + AuditStore
        + LoginThrottleStore
        + MaintenanceStore
        + UpstreamStore
        + PeopleStore
        + SealedStore
{
}
