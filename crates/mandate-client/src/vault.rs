//! Where the agent's credentials live between runs: one entry per MCP server (its canonical
//! resource URL), bound to the issuer that minted it.
//!
//! Secrets (tokens, a pre-registered client secret) go to the OS keyring when one is available and
//! otherwise into `credentials.json`, mode 0600, in a 0700 directory; the non-secret index (which
//! server, which issuer, which scopes, when it expires) always sits in that file so
//! `mandate connections` can list it without unlocking anything. Writes are atomic (write to a
//! temporary file, fsync, rename) under an exclusive file lock, and a separate per-server lock
//! serialises refreshes across processes so two runs never spend the same refresh token.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oauth2::TokenResponse;
use rmcp::transport::auth::{AuthError, CredentialRefreshGuard, CredentialStore, StoredCredentials};
use serde::{Deserialize, Serialize};

use crate::error::ClientError;

const FILE_NAME: &str = "credentials.json";
const KEYRING_SERVICE: &str = "mandate";

/// Where secrets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretBackend {
    /// The OS keyring (macOS Keychain, Windows Credential Manager, Secret Service).
    Keyring,
    /// The 0600 credentials file.
    File,
    /// Memory only: nothing outlives the process (conformance runs, tests).
    Memory,
}

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// The keyring when one answers, else the file.
    Auto,
    Keyring,
    File,
}

/// The secret half of an entry.
#[derive(Clone, Serialize, Deserialize)]
struct Secrets {
    credentials: StoredCredentials,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

/// The authorization server endpoints an entry's credentials were issued through, recorded at
/// login (CL-07). Stored client credentials and refresh tokens go to these and nowhere else: when
/// rediscovered metadata names other endpoints, even under the same issuer, nothing is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedEndpoints {
    pub token_endpoint: String,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

/// One server's entry in the file.
#[derive(Clone, Serialize, Deserialize)]
struct Entry {
    issuer: Option<String>,
    /// Absent in entries written before endpoints were pinned: such credentials are never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoints: Option<PinnedEndpoints>,
    client_id: String,
    scopes: Vec<String>,
    /// Unix seconds when the access token expires, when the server said.
    expires_at: Option<u64>,
    has_refresh_token: bool,
    secrets_in: SecretBackend,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secrets: Option<Secrets>,
}

#[derive(Default, Serialize, Deserialize)]
struct VaultFile {
    version: u32,
    connections: BTreeMap<String, Entry>,
}

/// What `mandate connections` shows: no secrets.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionSummary {
    pub resource: String,
    pub issuer: Option<String>,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<u64>,
    pub has_refresh_token: bool,
    pub stored_in: SecretBackend,
}

/// The credential store for every server this user has connected to.
pub struct CredentialVault {
    dir: Option<PathBuf>,
    backend: SecretBackend,
    memory: Mutex<VaultFile>,
    memory_secrets: Mutex<BTreeMap<String, Secrets>>,
}

fn io(context: &str, e: std::io::Error) -> ClientError {
    ClientError::Storage(format!("{context}: {e}"))
}

/// The default directory: `$MANDATE_CLIENT_DIR`, else `<config dir>/mandate`.
pub fn default_dir() -> Result<PathBuf, ClientError> {
    if let Some(dir) = std::env::var_os("MANDATE_CLIENT_DIR") {
        return Ok(PathBuf::from(dir));
    }
    dirs::config_dir()
        .map(|d| d.join("mandate"))
        .ok_or_else(|| ClientError::Storage("no configuration directory for this user; set MANDATE_CLIENT_DIR".into()))
}

fn keyring_available() -> bool {
    keyring::Entry::store_status().is_ok()
}

impl CredentialVault {
    /// Opens (creating when absent, mode 0700) the vault in `dir`.
    pub fn open(dir: &Path, choice: BackendChoice) -> Result<Self, ClientError> {
        create_private_dir(dir)?;
        let backend = match choice {
            BackendChoice::File => SecretBackend::File,
            BackendChoice::Keyring if keyring_available() => SecretBackend::Keyring,
            BackendChoice::Keyring => {
                return Err(ClientError::Storage("no OS keyring is available on this machine".into()));
            }
            BackendChoice::Auto if keyring_available() => SecretBackend::Keyring,
            BackendChoice::Auto => SecretBackend::File,
        };
        let vault =
            Self { dir: Some(dir.to_path_buf()), backend, memory: Mutex::default(), memory_secrets: Mutex::default() };
        vault.read_file()?; // refuse a bad file now rather than mid-flow
        Ok(vault)
    }

    /// A vault that keeps everything in memory.
    pub fn in_memory() -> Self {
        Self { dir: None, backend: SecretBackend::Memory, memory: Mutex::default(), memory_secrets: Mutex::default() }
    }

    pub fn backend(&self) -> SecretBackend {
        self.backend
    }

    fn path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(FILE_NAME))
    }

    fn read_file(&self) -> Result<VaultFile, ClientError> {
        let Some(path) = self.path() else {
            let m = self.memory.lock().map_err(|_| ClientError::Storage("vault lock poisoned".into()))?;
            return Ok(VaultFile { version: m.version, connections: m.connections.clone() });
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(VaultFile { version: 1, ..Default::default() });
            }
            Err(e) => return Err(io("reading the credentials file", e)),
        };
        check_private_file(&path)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Storage(format!("{} is not a valid credentials file: {e}", path.display())))
    }

    fn write_file(&self, file: &VaultFile) -> Result<(), ClientError> {
        let Some(path) = self.path() else {
            let mut m = self.memory.lock().map_err(|_| ClientError::Storage("vault lock poisoned".into()))?;
            m.connections = file.connections.clone();
            return Ok(());
        };
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(file).map_err(|e| ClientError::Storage(e.to_string()))?;
        // A leftover temporary file (a crash, or planted with loose permissions) is replaced, never
        // reused: the new one is created fresh with mode 0600.
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing a stale temporary file", e)),
        }
        let mut f = private_file(&tmp)?;
        f.write_all(&body).map_err(|e| io("writing the credentials file", e))?;
        f.sync_all().map_err(|e| io("writing the credentials file", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("replacing the credentials file", e))
    }

    /// Runs `edit` on the file under the exclusive write lock.
    fn modify<T>(&self, edit: impl FnOnce(&mut VaultFile) -> Result<T, ClientError>) -> Result<T, ClientError> {
        let _lock = match &self.dir {
            Some(dir) => Some(lock_file(&dir.join("credentials.lock"))?),
            None => None,
        };
        let mut file = self.read_file()?;
        file.version = 1;
        let out = edit(&mut file)?;
        self.write_file(&file)?;
        Ok(out)
    }

    fn get_secrets(&self, resource: &str, entry: &Entry) -> Result<Option<Secrets>, ClientError> {
        match entry.secrets_in {
            SecretBackend::File => Ok(entry.secrets.clone()),
            SecretBackend::Memory => Ok(self
                .memory_secrets
                .lock()
                .map_err(|_| ClientError::Storage("vault lock poisoned".into()))?
                .get(resource)
                .cloned()),
            SecretBackend::Keyring => {
                let item = keyring::Entry::new(KEYRING_SERVICE, resource)
                    .map_err(|e| ClientError::Storage(format!("keyring: {e}")))?;
                match item.get_password() {
                    Ok(json) => serde_json::from_str(&json).map(Some).map_err(|e| ClientError::Storage(e.to_string())),
                    Err(keyring::Error::NoEntry) => Ok(None),
                    Err(e) => Err(ClientError::Storage(format!("keyring: {e}"))),
                }
            }
        }
    }

    fn put_secrets(&self, resource: &str, secrets: Secrets, entry: &mut Entry) -> Result<(), ClientError> {
        entry.secrets_in = self.backend;
        entry.secrets = None;
        match self.backend {
            SecretBackend::File => entry.secrets = Some(secrets),
            SecretBackend::Memory => {
                self.memory_secrets
                    .lock()
                    .map_err(|_| ClientError::Storage("vault lock poisoned".into()))?
                    .insert(resource.to_owned(), secrets);
            }
            SecretBackend::Keyring => {
                let json = serde_json::to_string(&secrets).map_err(|e| ClientError::Storage(e.to_string()))?;
                keyring::Entry::new(KEYRING_SERVICE, resource)
                    .and_then(|e| e.set_password(&json))
                    .map_err(|e| ClientError::Storage(format!("keyring: {e}")))?;
            }
        }
        Ok(())
    }

    /// The stored credentials and client secret for a server.
    pub fn load(&self, resource: &str) -> Result<Option<(StoredCredentials, Option<String>)>, ClientError> {
        let file = self.read_file()?;
        let Some(entry) = file.connections.get(resource) else { return Ok(None) };
        Ok(self.get_secrets(resource, entry)?.map(|s| (s.credentials, s.client_secret)))
    }

    /// Saves credentials; `client_secret: None` keeps the stored one.
    pub fn save(
        &self,
        resource: &str,
        credentials: StoredCredentials,
        client_secret: Option<Option<String>>,
    ) -> Result<(), ClientError> {
        self.modify(|file| {
            let previous_entry = file.connections.get(resource);
            // A refresh keeps the pin; credentials of another client or issuer have none until
            // their login pins them.
            let endpoints = previous_entry
                .filter(|e| e.client_id == credentials.client_id && e.issuer == credentials.issuer)
                .and_then(|e| e.endpoints.clone());
            let previous = match previous_entry {
                Some(e) => self.get_secrets(resource, e)?,
                None => None,
            };
            let client_secret = match client_secret {
                Some(s) => s,
                None => {
                    previous.filter(|p| p.credentials.client_id == credentials.client_id).and_then(|p| p.client_secret)
                }
            };
            let token = credentials.token_response.as_ref();
            let expires_at = token
                .and_then(|t| t.expires_in())
                .map(|d| d.as_secs())
                .zip(credentials.token_received_at)
                .map(|(e, at)| at.saturating_add(e));
            let mut entry = Entry {
                issuer: credentials.issuer.clone(),
                endpoints,
                client_id: credentials.client_id.clone(),
                scopes: credentials.granted_scopes.clone(),
                expires_at,
                has_refresh_token: token.is_some_and(|t| t.refresh_token().is_some()),
                secrets_in: self.backend,
                secrets: None,
            };
            self.put_secrets(resource, Secrets { credentials, client_secret }, &mut entry)?;
            file.connections.insert(resource.to_owned(), entry);
            Ok(())
        })
    }

    /// Records the client secret of the stored client (read-modify-write under the lock, so a
    /// refresh saved by another process in between is kept).
    pub fn set_client_secret(&self, resource: &str, client_secret: Option<String>) -> Result<(), ClientError> {
        self.modify(|file| {
            let Some(mut entry) = file.connections.get(resource).cloned() else { return Ok(()) };
            let Some(mut secrets) = self.get_secrets(resource, &entry)? else { return Ok(()) };
            secrets.client_secret = client_secret;
            self.put_secrets(resource, secrets, &mut entry)?;
            file.connections.insert(resource.to_owned(), entry);
            Ok(())
        })
    }

    /// Pins the endpoints the stored credentials were just issued through.
    pub fn set_endpoints(&self, resource: &str, endpoints: PinnedEndpoints) -> Result<(), ClientError> {
        self.modify(|file| {
            if let Some(entry) = file.connections.get_mut(resource) {
                entry.endpoints = Some(endpoints);
            }
            Ok(())
        })
    }

    /// The endpoints pinned for a server's stored credentials (`None`: nothing stored, or stored
    /// before pinning).
    pub fn endpoints(&self, resource: &str) -> Result<Option<PinnedEndpoints>, ClientError> {
        Ok(self.read_file()?.connections.get(resource).and_then(|e| e.endpoints.clone()))
    }

    /// Forgets a server; true when something was stored.
    pub fn remove(&self, resource: &str) -> Result<bool, ClientError> {
        self.modify(|file| {
            let Some(entry) = file.connections.remove(resource) else { return Ok(false) };
            match entry.secrets_in {
                SecretBackend::Keyring => {
                    if let Ok(item) = keyring::Entry::new(KEYRING_SERVICE, resource) {
                        match item.delete_credential() {
                            Ok(()) | Err(keyring::Error::NoEntry) => {}
                            Err(e) => return Err(ClientError::Storage(format!("keyring: {e}"))),
                        }
                    }
                }
                SecretBackend::Memory => {
                    if let Ok(mut m) = self.memory_secrets.lock() {
                        m.remove(resource);
                    }
                }
                SecretBackend::File => {}
            }
            Ok(true)
        })
    }

    /// Every stored connection, without secrets.
    pub fn list(&self) -> Result<Vec<ConnectionSummary>, ClientError> {
        Ok(self
            .read_file()?
            .connections
            .into_iter()
            .map(|(resource, e)| ConnectionSummary {
                resource,
                issuer: e.issuer,
                client_id: e.client_id,
                scopes: e.scopes,
                expires_at: e.expires_at,
                has_refresh_token: e.has_refresh_token,
                stored_in: e.secrets_in,
            })
            .collect())
    }

    /// Holds the per-server refresh lock (blocks until other processes release it).
    pub fn refresh_lock(&self, resource: &str) -> Result<Option<File>, ClientError> {
        let Some(dir) = &self.dir else { return Ok(None) };
        let locks = dir.join("locks");
        create_private_dir(&locks)?;
        let name = mandate_core::secret::SecretHash::of(resource).0;
        lock_file(&locks.join(format!("{name}.lock"))).map(Some)
    }
}

fn lock_file(path: &Path) -> Result<File, ClientError> {
    let f = private_file_keep(path)?;
    f.lock().map_err(|e| io("locking the credentials file", e))?;
    Ok(f)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), ClientError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io("creating the credentials directory", e))?;
    }
    let mode = std::fs::metadata(dir).map_err(|e| io("reading the credentials directory", e))?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("restricting the credentials directory", e))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), ClientError> {
    std::fs::create_dir_all(dir).map_err(|e| io("creating the credentials directory", e))
}

#[cfg(unix)]
fn check_private_file(path: &Path) -> Result<(), ClientError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map_err(|e| io("reading the credentials file", e))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(ClientError::Storage(format!(
            "{} is readable by other users (mode {:o}); run `chmod 600` on it or remove it",
            path.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_file(_path: &Path) -> Result<(), ClientError> {
    Ok(())
}

fn open_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Creates a new 0600 file; fails if one exists.
fn private_file(path: &Path) -> Result<File, ClientError> {
    open_options().write(true).create_new(true).open(path).map_err(|e| io("creating a private file", e))
}

/// Opens or creates a 0600 file without truncating it (lock files).
fn private_file_keep(path: &Path) -> Result<File, ClientError> {
    open_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io("opening a lock file", e))
}

/// rmcp's view of one server's entry.
pub(crate) struct ScopedStore {
    pub vault: Arc<CredentialVault>,
    pub resource: String,
}

fn store_err(e: ClientError) -> AuthError {
    AuthError::CredentialStoreError(e.to_string())
}

#[async_trait::async_trait]
impl CredentialStore for ScopedStore {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        Ok(self.vault.load(&self.resource).map_err(store_err)?.map(|(c, _)| c))
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        self.vault.save(&self.resource, credentials, None).map_err(store_err)
    }

    async fn clear(&self) -> Result<(), AuthError> {
        self.vault.remove(&self.resource).map(|_| ()).map_err(store_err)
    }

    async fn acquire_refresh_guard(&self) -> Result<Option<CredentialRefreshGuard>, AuthError> {
        let vault = self.vault.clone();
        let resource = self.resource.clone();
        let lock = tokio::task::spawn_blocking(move || vault.refresh_lock(&resource))
            .await
            .map_err(|e| AuthError::CredentialStoreError(e.to_string()))?
            .map_err(store_err)?;
        Ok(lock.map(CredentialRefreshGuard::new))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn creds(client: &str, issuer: &str) -> StoredCredentials {
        StoredCredentials::new(client.into(), None, vec!["read".into()], Some(1)).with_issuer(Some(issuer.into()))
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private_and_secrets_survive_reopen_c21() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        let vault = CredentialVault::open(&path, BackendChoice::File).unwrap();
        vault.save("https://mcp.example/mcp", creds("c1", "https://as"), Some(Some("s3cret".into()))).unwrap();
        let file = path.join(FILE_NAME);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        // A save without a secret keeps the stored one for the same client, drops it for another.
        vault.save("https://mcp.example/mcp", creds("c1", "https://as"), None).unwrap();
        let reopened = CredentialVault::open(&path, BackendChoice::File).unwrap();
        let (c, secret) = reopened.load("https://mcp.example/mcp").unwrap().unwrap();
        assert_eq!((c.client_id.as_str(), secret.as_deref()), ("c1", Some("s3cret")));
        reopened.save("https://mcp.example/mcp", creds("c2", "https://as"), None).unwrap();
        assert_eq!(reopened.load("https://mcp.example/mcp").unwrap().unwrap().1, None);
        let list = reopened.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].issuer.as_deref(), Some("https://as"));
        assert!(reopened.remove("https://mcp.example/mcp").unwrap());
        assert!(!reopened.remove("https://mcp.example/mcp").unwrap());
        assert!(reopened.list().unwrap().is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn a_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let vault = CredentialVault::open(dir.path(), BackendChoice::File).unwrap();
        vault.save("https://a/mcp", creds("c", "https://as"), None).unwrap();
        let file = dir.path().join(FILE_NAME);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CredentialVault::open(dir.path(), BackendChoice::File).err().unwrap();
        assert!(err.to_string().contains("readable by other users"), "{err}");
    }

    #[test]
    fn a_corrupt_file_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        let _ = private_file(&file).unwrap();
        std::fs::write(&file, b"{not json").unwrap();
        let err = CredentialVault::open(dir.path(), BackendChoice::File).err().unwrap();
        assert!(err.to_string().contains("not a valid credentials file"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"{not json");
    }

    #[test]
    fn endpoints_are_pinned_kept_on_refresh_and_dropped_for_another_client_cl_07() {
        let dir = tempfile::tempdir().unwrap();
        let vault = CredentialVault::open(dir.path(), BackendChoice::File).unwrap();
        let r = "https://mcp.example/mcp";
        let pin = PinnedEndpoints { token_endpoint: "https://as/token".into(), revocation_endpoint: None };
        vault.save(r, creds("c1", "https://as"), None).unwrap();
        assert_eq!(vault.endpoints(r).unwrap(), None);
        vault.set_endpoints(r, pin.clone()).unwrap();
        vault.save(r, creds("c1", "https://as"), None).unwrap(); // a refresh
        let reopened = CredentialVault::open(dir.path(), BackendChoice::File).unwrap();
        assert_eq!(reopened.endpoints(r).unwrap(), Some(pin));
        reopened.save(r, creds("c2", "https://as"), None).unwrap(); // another client: not pinned yet
        assert_eq!(reopened.endpoints(r).unwrap(), None);
    }

    #[test]
    fn an_entry_written_before_pinning_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        drop(private_file(&file).unwrap());
        let old = serde_json::json!({"version": 1, "connections": {"https://a/mcp": {"issuer": "https://as",
            "client_id": "c", "scopes": [], "expires_at": null, "has_refresh_token": false, "secrets_in": "file",
            "secrets": {"credentials": {"client_id": "c", "granted_scopes": [], "token_received_at": null}}}}});
        std::fs::write(&file, old.to_string()).unwrap();
        let vault = CredentialVault::open(dir.path(), BackendChoice::File).unwrap();
        assert_eq!(vault.load("https://a/mcp").unwrap().unwrap().0.client_id, "c");
        assert_eq!(vault.endpoints("https://a/mcp").unwrap(), None);
    }

    #[test]
    fn memory_vault_keeps_nothing_on_disk() {
        let vault = CredentialVault::in_memory();
        vault.save("https://a/mcp", creds("c", "https://as"), Some(Some("x".into()))).unwrap();
        assert_eq!(vault.load("https://a/mcp").unwrap().unwrap().1.as_deref(), Some("x"));
        assert_eq!(vault.backend(), SecretBackend::Memory);
    }
}
