//! Where the repository lives: the staging location (offline mode) or the vault container (online mode).
//!
//! [`open_repo_store`] is the one place that chooses the implementation: the shared [`LocalStore`] for a
//! staging job's `blobs/` directory (a directory is the container, objects are sparse files at their relative
//! path, made durable before a write returns), or an [`AzureStore`] on the vault container wrapped in a
//! [`RetryStore`]. The vault's traffic goes through a [`MeteredStore`] (bytes sent and received, the upload
//! limit).
//!
//! How vault requests are authorised ([`vault_credential`]): with the storage account key when one is in the
//! environment (`SEEDSHIP_STORAGE_KEY_FILE` or `SEEDSHIP_STORAGE_KEY`, never stored); otherwise, for a job
//! started with an Entra ID application (Resource Manager), with bearer tokens for
//! `https://storage.azure.com/.default` from that application's recorded credential (certificate, secret file,
//! `SEEDSHIP_CLIENT_SECRET`, managed identity or handed-over token), so no account key is needed on disk. The
//! application needs the role Storage Blob Data Contributor on the storage account. One token source serves
//! the whole run; it keeps its token until shortly before it expires.

use crate::config::StorageKey;
use crate::policy::{Mode, Policy, VaultTarget};
use anyhow::{bail, Context};
use seedship_shared::blob::{
    AzureOptions, AzureStore, BlobError, BlobStore, Credential, LocalStore, Meter, MeteredStore, RetryPolicy,
    RetryStore,
};
use seedship_shared::entra::{CredentialChoice, TokenSource, CLIENT_SECRET_ENV, STORAGE_SCOPE};
use seedship_shared::staging::{ArmSettings, RecordedCredential};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub use crate::config::{STORAGE_KEY_ENV, STORAGE_KEY_FILE_ENV};

/// The store of a staging job folder's `blobs/` directory.
pub fn open_staging_store(dir: &Path) -> Arc<dyn BlobStore> {
    Arc::new(LocalStore::new(dir))
}

/// The environment variable naming a PEM file of extra CA certificates trusted for the blob endpoint (a
/// TLS-intercepting proxy; Azurite over HTTPS in tests).
pub const BLOB_CA_ENV: &str = "SEEDSHIP_BLOB_CA";

/// How the vault of account `account` is authorised: the storage account key when the environment has one,
/// else bearer tokens from the Entra ID application `entra` of a Resource Manager job.
pub fn vault_credential(
    key: &StorageKey,
    account: &str,
    entra: Option<&ArmSettings>,
) -> anyhow::Result<Credential> {
    if let Some(key) = key.given()? {
        return Ok(key);
    }
    let Some(app) = entra else {
        bail!(
            "no key for storage account {account}: set {STORAGE_KEY_FILE_ENV} to a file holding it, or \
             {STORAGE_KEY_ENV} (in /etc/seedship/agent.env for scheduled backups). A job started with an Entra \
             ID application (Resource Manager) needs no key: its application signs in to the storage account"
        );
    };
    Ok(Credential::Bearer(storage_tokens(app)?))
}

/// The token sources made in this run, by application (tenant, client id, authority): every container and
/// the lock share one, so one token serves the run until shortly before it expires.
type TokenCache = Vec<((String, String, String), Arc<dyn TokenSource>)>;
static TOKEN_SOURCES: Mutex<TokenCache> = Mutex::new(Vec::new());

/// The storage token source of application `app`: its recorded credential, the client secret from
/// `SEEDSHIP_CLIENT_SECRET` when that is how it was given, and the sign-in host's CA from
/// `SEEDSHIP_AUTHORITY_CA` or `SEEDSHIP_MANAGEMENT_CA`.
fn storage_tokens(app: &ArmSettings) -> anyhow::Result<Arc<dyn TokenSource>> {
    let id = (
        app.tenant.clone().unwrap_or_default(),
        app.client_id.clone().unwrap_or_default(),
        app.authority.clone(),
    );
    let mut cache = TOKEN_SOURCES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, source)) = cache.iter().find(|(k, _)| *k == id) {
        return Ok(source.clone());
    }
    let mut opts = seedship_shared::api::recorded_options(app);
    if app.credential == RecordedCredential::SecretFromEnvironment {
        let secret = std::env::var(CLIENT_SECRET_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty())
            .with_context(|| {
                format!(
                    "the client secret of application {} was given through {CLIENT_SECRET_ENV} at `offline \
                     start` and is not set now: set it (in /etc/seedship/agent.env for scheduled backups) to \
                     sign in to the vault, or give the storage account key in {STORAGE_KEY_FILE_ENV}",
                    id.1
                )
            })?;
        opts.credential = CredentialChoice::Secret(zeroize::Zeroizing::new(secret.trim().to_owned()));
    }
    for var in ["SEEDSHIP_AUTHORITY_CA", "SEEDSHIP_MANAGEMENT_CA"] {
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            let pem = std::fs::read(&p)
                .with_context(|| format!("{var}: cannot read {}", Path::new(&p).display()))?;
            opts.ca_pem = Some(pem);
            break;
        }
    }
    let source = opts.token_source().with_context(|| {
        format!(
            "the Entra ID credential recorded at `offline start` for application {} (tenant {}) is not usable \
             to sign in to the vault",
            id.1, id.0
        )
    })?;
    cache.push((id, source.clone()));
    Ok(source)
}

/// What to do when the vault refused a request with `e` (401/403, or the sign-in failed), naming the
/// application, the scope and the role when the vault is signed in to with Entra ID; `None` for other errors.
pub fn refusal_advice(key: &StorageKey, e: &BlobError, vault: &VaultTarget) -> Option<String> {
    let entra = vault.entra.as_ref().filter(|_| !key.is_given());
    let refused = matches!(e.http_status(), Some(401 | 403));
    let sign_in = matches!(e, BlobError::SignIn { .. });
    let app_name = |app: &ArmSettings| {
        format!(
            "application {} (tenant {})",
            app.client_id.as_deref().unwrap_or("?"),
            app.tenant.as_deref().unwrap_or("?")
        )
    };
    match entra {
        Some(app) if refused => Some(format!(
            "container {} of storage account {} at {} refused the Entra ID token of {} for scope \
             {STORAGE_SCOPE}: grant the application the role Storage Blob Data Contributor on storage account \
             {} (role assignments can take a few minutes to apply), or give the storage account key in \
             {STORAGE_KEY_FILE_ENV}",
            vault.container,
            vault.account,
            vault.endpoint,
            app_name(app),
            vault.account
        )),
        Some(app) if sign_in => Some(format!(
            "cannot sign in to the vault (storage account {}) as {} for scope {STORAGE_SCOPE}: check the \
             credential recorded at `offline start` (the cause follows)",
            vault.account,
            app_name(app)
        )),
        None if refused => Some(format!(
            "the vault (container {} of storage account {} at {}) refused the storage account key: check {} \
             (the key of account {}, as the portal shows it)",
            vault.container, vault.account, vault.endpoint, STORAGE_KEY_ENV, vault.account
        )),
        _ => None,
    }
}

/// Blob options for `container` of `account` at `endpoint`, trusting the CA certificates of
/// `SEEDSHIP_BLOB_CA` when set.
pub fn azure_options(
    endpoint: &str,
    account: &str,
    container: &str,
    credential: Credential,
) -> anyhow::Result<AzureOptions> {
    let mut opts = AzureOptions::new(endpoint, account, container, credential);
    if let Some(p) = std::env::var_os(BLOB_CA_ENV).filter(|p| !p.is_empty()) {
        let pem = std::fs::read(&p)
            .with_context(|| format!("{BLOB_CA_ENV}: cannot read {}", Path::new(&p).display()))?;
        opts.extra_ca_pem = Some(pem);
    }
    Ok(opts)
}

/// A container of the vault's storage account, with retries.
pub fn open_container(
    key: &StorageKey,
    vault: &VaultTarget,
    container: &str,
) -> anyhow::Result<Arc<dyn BlobStore>> {
    open_metered_container(key, vault, container, Arc::new(Meter::new()))
}

/// A container of the vault's storage account, with retries, its traffic counted (and uploads limited) by
/// `meter`. The meter sits below the retries, so a retried request is counted and throttled again.
pub fn open_metered_container(
    key: &StorageKey,
    vault: &VaultTarget,
    container: &str,
    meter: Arc<Meter>,
) -> anyhow::Result<Arc<dyn BlobStore>> {
    let cred = vault_credential(key, &vault.account, vault.entra.as_ref())?;
    let opts = azure_options(&vault.endpoint, &vault.account, container, cred)?;
    let store = AzureStore::new(opts)
        .with_context(|| format!("cannot open container {container} at {}", vault.endpoint))?;
    let metered = MeteredStore::new(store, meter);
    Ok(Arc::new(RetryStore::new(metered, RetryPolicy::default())))
}

/// The vault container as a plain [`AzureStore`] (no retries, not metered): for the lock's lease.
pub fn open_vault_azure(key: &StorageKey, vault: &VaultTarget) -> anyhow::Result<AzureStore> {
    let cred = vault_credential(key, &vault.account, vault.entra.as_ref())?;
    let opts = azure_options(&vault.endpoint, &vault.account, &vault.container, cred)?;
    AzureStore::new(opts)
        .with_context(|| format!("cannot open container {} at {}", vault.container, vault.endpoint))
}

/// The store the policy's repository lives in: staging while offline, the vault once online.
pub fn open_repo_store(key: &StorageKey, pol: &Policy) -> anyhow::Result<Arc<dyn BlobStore>> {
    open_metered_repo_store(key, pol, Arc::new(Meter::new()))
}

/// [`open_repo_store`] with the vault's traffic counted by `meter` (staging is not metered).
pub fn open_metered_repo_store(
    key: &StorageKey,
    pol: &Policy,
    meter: Arc<Meter>,
) -> anyhow::Result<Arc<dyn BlobStore>> {
    match (pol.mode, &pol.vault) {
        (Mode::Offline, _) => {
            let dir = pol.job_dir();
            if let Err(e) = std::fs::metadata(&dir) {
                bail!(
                    "staging job folder (recorded by `offline start`): {}",
                    seedship_shared::staging::explain_io(&dir, &e)
                );
            }
            Ok(open_staging_store(&pol.blobs_dir()))
        }
        (Mode::Online, Some(v)) => open_metered_container(key, v, &v.container, meter),
        (Mode::Online, None) => bail!(
            "the policy is online but names no vault; restore policy.json from a backup of the state directory"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seedship_shared::staging::ArmSettings;

    #[test]
    fn a_refused_token_names_the_application_the_scope_and_the_role() {
        let no_key = StorageKey::default();
        let app = ArmSettings {
            tenant: Some("tenant-1".into()),
            client_id: Some("app-1".into()),
            credential: RecordedCredential::Certificate {
                certificate: "/etc/seedship/app.pem".into(),
                key: None,
            },
            resource_group: "rg".into(),
            storage_account_id:
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct1".into(),
            authority: "https://login.microsoftonline.com".into(),
            management_endpoint: "https://management.azure.com".into(),
            management_audience: None,
        };
        let vault = VaultTarget {
            endpoint: "https://acct1.blob.core.windows.net".into(),
            account: "acct1".into(),
            container: "seed-vault".into(),
            since: 0,
            import_container: None,
            entra: Some(app),
        };
        let refused = BlobError::Http {
            store: "vault".into(),
            operation: "Get Blob Properties",
            name: "lock".into(),
            status: 403,
            code: Some("AuthorizationPermissionMismatch".into()),
            message: "no".into(),
        };
        let m = refusal_advice(&no_key, &refused, &vault).unwrap();
        assert!(
            m.contains("application app-1 (tenant tenant-1)")
                && m.contains(STORAGE_SCOPE)
                && m.contains("Storage Blob Data Contributor on storage account acct1"),
            "{m}"
        );
        let other = BlobError::NotFound {
            store: "vault".into(),
            name: "x".into(),
        };
        assert!(refusal_advice(&no_key, &other, &vault).is_none());
        let classic = VaultTarget { entra: None, ..vault };
        let m = refusal_advice(&no_key, &refused, &classic).unwrap();
        assert!(m.contains("refused the storage account key"), "{m}");
    }
}
