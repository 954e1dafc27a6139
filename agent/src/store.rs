//! Where the repository lives: the staging location (offline mode) or the vault container (online mode).
//!
//! [`open_repo_store`] is the one place that chooses the implementation: the shared [`LocalStore`] for a
//! staging job's `blobs/` directory (a directory is the container, objects are sparse files at their relative
//! path, made durable before a write returns), or an [`AzureStore`] on the vault container wrapped in a
//! [`RetryStore`], authorised with the storage account key the configuration took from `SEEDSHIP_STORAGE_KEY`
//! or the file `SEEDSHIP_STORAGE_KEY_FILE` names ([`StorageKey`], never stored). The vault's traffic goes
//! through a [`MeteredStore`] (bytes sent and received, the upload limit).

use crate::config::StorageKey;
use crate::policy::{Mode, Policy, VaultTarget};
use anyhow::{bail, Context};
use seedship_shared::blob::{
    AzureOptions, AzureStore, BlobStore, LocalStore, Meter, MeteredStore, RetryPolicy, RetryStore,
};
use std::path::Path;
use std::sync::Arc;

pub use crate::config::{STORAGE_KEY_ENV, STORAGE_KEY_FILE_ENV};

/// The store of a staging job folder's `blobs/` directory.
pub fn open_staging_store(dir: &Path) -> Arc<dyn BlobStore> {
    Arc::new(LocalStore::new(dir))
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
    let cred = key.credential(&vault.account)?;
    let opts = AzureOptions::new(&vault.endpoint, &vault.account, container, cred);
    let store = AzureStore::new(opts)
        .with_context(|| format!("cannot open container {container} at {}", vault.endpoint))?;
    let metered = MeteredStore::new(store, meter);
    Ok(Arc::new(RetryStore::new(metered, RetryPolicy::default())))
}

/// The vault container as a plain [`AzureStore`] (no retries, not metered): for the lock's lease.
pub fn open_vault_azure(key: &StorageKey, vault: &VaultTarget) -> anyhow::Result<AzureStore> {
    let cred = key.credential(&vault.account)?;
    let opts = AzureOptions::new(&vault.endpoint, &vault.account, &vault.container, cred);
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
