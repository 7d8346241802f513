//! The authorization server's grant logic, written against the [`Store`] traits and free of any
//! HTTP or SQL types. The HTTP layer parses requests into [`Params`](crate::params::Params) and
//! renders what these methods return.

mod admin;
mod apps;
mod authorize;
mod cimd;
/// Counters of what the service did, for operators.
pub mod counters;
/// Limits that fetchers of client metadata documents must apply.
pub mod cimd_limits {
    pub use super::cimd::{MAX_CACHE_SECONDS, MAX_DOCUMENT_BYTES, MIN_CACHE_SECONDS};
}
mod clients;
mod introspect;
mod keyman;
mod login;
mod mcp_sessions;
mod metadata;
mod people;
mod pkce_reuse;
mod registration;
mod token;

use std::sync::Arc;

pub use admin::{AdminError, ClientRegistration, KeyInfo};
pub use apps::ConnectedApp;
pub use authorize::{AuthorizeOutcome, ConsentDecision, ConsentView, ScopeLine, Stale, human_duration};
pub use cimd::{ClientDocumentFetcher, FetchError, FetchedDocument, parse_document, validate_document_url};
pub use clients::{BasicCredentials, ClientLookupError};
pub use counters::ServiceCounters;
pub use keyman::{KeyManager, KeyManagerError};
pub use login::LoginError;
pub use login::LoginThrottleKeys;
pub use registration::{MAX_REDIRECT_URIS, RegistrationError, ValidatedRegistration, validate_registration};
pub use token::{RACE_TOLERANCE, TokenResponse};

use crate::clock::{Clock, Randomness, UnixTime};
use crate::keys::{KeyEncryptionKey, KeyError, SigningAlg};
use crate::model::AuditEvent;
use crate::password::{PasswordError, PasswordHasher};
use crate::scope::ResourceCatalog;
use crate::secret::random_id;
use crate::ssrf::FetchPolicy;
use crate::store::Store;

/// Lifetimes and policies; every duration in seconds.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The issuer identifier: the public URL, without a trailing slash.
    pub issuer: String,
    pub access_token_ttl: i64,
    /// A refresh token unused for this long expires (each rotation starts a new period).
    pub refresh_token_idle_ttl: i64,
    /// A refresh-token family ends this long after its grant was first redeemed, however often
    /// it is refreshed (RT-12).
    pub refresh_family_ttl: i64,
    pub code_ttl: i64,
    /// How long a person has to log in and consent.
    pub pending_ttl: i64,
    pub session_ttl: i64,
    /// A rotated refresh token presented again by its client less than this many seconds after
    /// its rotation, while its successor is unused, gets that same successor again (a lost
    /// response, concurrent refreshes). 0: no window; such presentations within
    /// [`RACE_TOLERANCE`] are refused without revoking anything.
    pub refresh_grace: i64,
    pub signing_alg: SigningAlg,
    /// A rotated-in key is published this long before it signs.
    pub key_activation_delay: i64,
    /// What Client ID Metadata Document fetches may reach.
    pub fetch_policy: FetchPolicy,
    /// Dynamic registrations accepted per minute from all addresses together (DC-10).
    pub registrations_per_minute: i64,
    /// Most dynamic clients stored that never got an authorization code (DC-10).
    pub max_unused_clients: i64,
    /// A dynamic client that never got an authorization code is deleted this long after its
    /// registration (DC-10).
    /// Audit events older than this many seconds are deleted; 0 keeps them all.
    pub audit_retention: i64,
    pub unused_client_ttl: i64,
}

impl Settings {
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            access_token_ttl: 3600,
            refresh_token_idle_ttl: 30 * 24 * 3600,
            refresh_family_ttl: 90 * 24 * 3600,
            code_ttl: 60,
            pending_ttl: 600,
            session_ttl: 12 * 3600,
            refresh_grace: 10,
            signing_alg: SigningAlg::Es256,
            key_activation_delay: 600,
            fetch_policy: FetchPolicy::default(),
            registrations_per_minute: 60,
            max_unused_clients: 1000,
            unused_client_ttl: 24 * 3600,
            audit_retention: 0,
        }
    }
    /// True when the issuer is served over https (cookies get `Secure` and `__Host-`).
    pub fn is_https(&self) -> bool {
        self.issuer.starts_with("https://")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Store(#[from] crate::error::StoreError),
}

/// The authorization server: every protocol operation, over injected storage, time and randomness.
pub struct AuthServer {
    pub settings: Settings,
    pub resources: ResourceCatalog,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Randomness>,
    passwords: PasswordHasher,
    keys: KeyManager,
    documents: Arc<dyn ClientDocumentFetcher>,
    /// Bumped by every revocation made through this process, so that resource servers in the
    /// same process can cache "still live" answers and drop them the moment anything is revoked.
    revocation_epoch: std::sync::atomic::AtomicU64,
    /// Woken on every change of `revocation_epoch` (open event streams re-check their grant).
    revocation_signal: tokio::sync::Notify,
    /// The audit writer: events arriving together are written in one transaction.
    audit_queue: std::sync::OnceLock<tokio::sync::mpsc::Sender<(AuditEvent, tokio::sync::oneshot::Sender<()>)>>,
    /// What this process did, for operators (`/metrics`).
    counters: ServiceCounters,
}

/// What an [`AuthServer`] is built from.
pub struct Dependencies {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub rng: Arc<dyn Randomness>,
    pub kek: KeyEncryptionKey,
    pub documents: Arc<dyn ClientDocumentFetcher>,
}

impl AuthServer {
    /// Builds the server and makes sure a signing key exists.
    pub async fn new(settings: Settings, resources: ResourceCatalog, deps: Dependencies) -> Result<Self, SetupError> {
        let passwords = PasswordHasher::new(deps.rng.clone())?;
        let keys = KeyManager::new(deps.store.clone(), deps.kek, deps.rng.clone(), settings.access_token_ttl);
        let server = Self {
            settings,
            resources,
            store: deps.store,
            clock: deps.clock,
            rng: deps.rng,
            passwords,
            keys,
            documents: deps.documents,
            revocation_epoch: std::sync::atomic::AtomicU64::new(0),
            revocation_signal: tokio::sync::Notify::new(),
            audit_queue: std::sync::OnceLock::new(),
            counters: ServiceCounters::default(),
        };
        server.keys.ensure_signing_key(server.settings.signing_alg, server.now()).await?;
        Ok(server)
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The injected clock (resource servers in this process validate tokens against it).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// A fresh random secret (demo passwords).
    pub fn new_secret(&self) -> String {
        crate::secret::random_token(self.rng.as_ref())
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn keys(&self) -> &KeyManager {
        &self.keys
    }

    /// What this process did so far (token answers, refresh outcomes, live MCP sessions).
    pub fn counters(&self) -> &ServiceCounters {
        &self.counters
    }

    /// True when the grant behind an access token was revoked, or the token itself was
    /// (a resource server sharing this database refuses it at once).
    pub async fn access_revoked(&self, grant_id: Option<&str>, jti: Option<&str>) -> Result<bool, crate::OAuthError> {
        Ok(self.store.access_revoked(grant_id, jti).await?)
    }

    /// The current revocation epoch (see the field's documentation).
    pub fn revocation_epoch(&self) -> u64 {
        self.revocation_epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records that something was revoked through this process, and tells the other processes
    /// sharing the database (PostgreSQL `NOTIFY`; nothing to do on SQLite).
    pub(crate) async fn note_revocation(&self) {
        self.revocation_epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.revocation_signal.notify_waiters();
        if let Err(e) = self.store.announce_revocation().await {
            tracing::warn!(error = %e, "could not announce a revocation; other instances see it within a second");
        }
    }

    /// Another process revoked something (a notification arrived, or the listener reconnected):
    /// drop every cached "still live" answer.
    pub fn note_revocation_elsewhere(&self) {
        self.revocation_epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.revocation_signal.notify_waiters();
    }

    /// Resolves at the next revocation this process hears of (made here, or announced by
    /// another process on PostgreSQL). Revocations by another process on SQLite are not
    /// announced: callers also re-check on a timer.
    pub async fn revocation_changed(&self) {
        self.revocation_signal.notified().await;
    }

    /// Seals a secret at rest under the key-encryption key, bound to `context` (which must be
    /// given again to open it): upstream tokens, flow secrets.
    pub fn seal_secret(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, KeyError> {
        self.keys.kek().seal(self.rng.as_ref(), plaintext, context)
    }

    /// Opens what [`AuthServer::seal_secret`] sealed with the same `context`.
    pub fn open_secret(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, KeyError> {
        self.keys.kek().open(sealed, context)
    }

    /// The injected randomness (fresh secrets elsewhere in the workspace).
    pub fn randomness(&self) -> &dyn Randomness {
        self.rng.as_ref()
    }

    /// A random identifier from the injected randomness.
    pub fn new_id(&self) -> String {
        random_id(self.rng.as_ref())
    }

    /// The event `draft` describes, as recorded now (for a write that stores its own record in
    /// its transaction; see [`crate::model::AuditOf`]).
    pub(crate) fn audit_record(&self, event: AuditDraft<'_>) -> AuditEvent {
        AuditEvent {
            id: random_id(self.rng.as_ref()),
            at: self.now(),
            kind: event.kind.to_owned(),
            outcome: event.outcome.to_owned(),
            user_id: event.user.map(str::to_owned),
            client_id: event.client.map(str::to_owned),
            grant_id: event.grant.map(str::to_owned),
            detail: event.detail,
        }
    }

    /// Records an audit event. A failure to record is logged, never hidden from operators.
    pub async fn audit(&self, event: AuditDraft<'_>) {
        let record = self.audit_record(event);
        // Group commit: the event joins those queued meanwhile, one transaction writes them all,
        // and each caller goes on once its event is written (as with a write of its own).
        let queue = self.audit_queue.get_or_init(|| spawn_audit_writer(self.store.clone()));
        let (written, wait) = tokio::sync::oneshot::channel();
        match queue.send((record, written)).await {
            Ok(()) => {
                let _ = wait.await;
            }
            Err(tokio::sync::mpsc::error::SendError((record, _))) => {
                if let Err(e) = self.store.append(&record).await {
                    tracing::error!(error = %e, kind = %record.kind, "could not record audit event");
                }
            }
        }
    }
}

/// Most events one audit transaction writes.
const AUDIT_BATCH: usize = 256;

/// The task that writes queued audit events: whatever is queued when it is free, in one
/// transaction; then it tells each caller.
fn spawn_audit_writer(
    store: Arc<dyn Store>,
) -> tokio::sync::mpsc::Sender<(AuditEvent, tokio::sync::oneshot::Sender<()>)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(AuditEvent, tokio::sync::oneshot::Sender<()>)>(4 * AUDIT_BATCH);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < AUDIT_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let (events, waiting): (Vec<AuditEvent>, Vec<_>) = batch.into_iter().unzip();
            if let Err(e) = store.append_all(&events).await {
                // One bad event must not take the others with it: each is tried alone.
                tracing::warn!(error = %e, events = events.len(), "an audit batch failed; writing its events one by one");
                for event in &events {
                    if let Err(e) = store.append(event).await {
                        tracing::error!(error = %e, kind = %event.kind, "could not record audit event");
                    }
                }
            }
            for w in waiting {
                let _ = w.send(());
            }
        }
    });
    tx
}

/// An audit event about to be recorded.
#[derive(Default)]
pub struct AuditDraft<'a> {
    pub kind: &'a str,
    pub outcome: &'a str,
    pub user: Option<&'a str>,
    pub client: Option<&'a str>,
    pub grant: Option<&'a str>,
    pub detail: Option<String>,
}
