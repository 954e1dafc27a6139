//! The emulator's directory: what `init` writes and `serve` reads. `emulator.json` holds the subscriptions
//! with the thumbprints of their management certificates and the storage account for the later import step;
//! `locations.json` the locations table; the certificates and keys are PEM files beside them.

use seedship_shared::api::Location;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A failure of the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}; run `seedship-emulator init --dir` again")]
    Config { path: PathBuf, reason: String },
    #[error("{dir} already holds an emulator (emulator.json); choose another --dir or remove it")]
    AlreadyInitialised { dir: PathBuf },
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
}

pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> EmulatorError + '_ {
    move |source| EmulatorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The files of an emulator directory.
#[derive(Debug, Clone)]
pub struct EmulatorDir {
    pub dir: PathBuf,
}

impl EmulatorDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmulatorDir { dir: dir.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("emulator.json")
    }
    pub fn locations(&self) -> PathBuf {
        self.dir.join("locations.json")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server-key.pem")
    }
    /// The management certificate with its key, PKCS#12 with an empty password (also inside the publish settings).
    pub fn management_pfx(&self) -> PathBuf {
        self.dir.join("management.pfx")
    }
    pub fn publish_settings(&self) -> PathBuf {
        self.dir.join("emulator.publishsettings")
    }
    pub fn database(&self) -> PathBuf {
        self.dir.join("jobs.sqlite")
    }
    /// The operator credential (mode 0600): the `_operator` endpoints want it in the
    /// `x-seedship-operator-token` header, besides a subscription's certificate.
    pub fn operator_token(&self) -> PathBuf {
        self.dir.join("operator.token")
    }
    /// Where drives arrive for the operator's `receive` endpoint: it takes file names of regular files here.
    pub fn inbox(&self) -> PathBuf {
        self.dir.join("inbox")
    }
    /// The Entra ID token-signing key (PKCS#8 PEM, 0600) and its certificate.
    pub fn entra_signing_key(&self) -> PathBuf {
        self.dir.join("entra-signing-key.pem")
    }
    pub fn entra_signing_cert(&self) -> PathBuf {
        self.dir.join("entra-signing-cert.pem")
    }
    /// The registered application's certificate, its key (0600) and its client secret (0600).
    pub fn entra_app_cert(&self) -> PathBuf {
        self.dir.join("entra-app-cert.pem")
    }
    pub fn entra_app_key(&self) -> PathBuf {
        self.dir.join("entra-app-key.pem")
    }
    pub fn entra_app_secret(&self) -> PathBuf {
        self.dir.join("entra-app-secret")
    }
    /// `entra-app.json`: where a client finds the tenant, client id, credentials and endpoints.
    pub fn entra_app(&self) -> PathBuf {
        self.dir.join("entra-app.json")
    }
    /// Written by `serve`: the `https://127.0.0.1:PORT` it listens on.
    pub fn url_file(&self) -> PathBuf {
        self.dir.join("url")
    }
}

/// A subscription the emulator serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubscriptionConfig {
    pub id: String,
    pub name: String,
    /// SHA-1 thumbprints (uppercase hex) of the registered management certificates.
    pub management_certificates: Vec<String>,
}

/// The storage account jobs import into (used by the data-centre import step).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StorageAccountConfig {
    pub name: String,
    pub endpoint: String,
    pub key: String,
}

impl std::fmt::Debug for StorageAccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageAccountConfig")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// `emulator.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EmulatorConfig {
    pub subscriptions: Vec<SubscriptionConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account: Option<StorageAccountConfig>,
    /// A fixed ServiceManagementUrl given to `init --url`; without it `serve` writes the URL it listens on
    /// into the publish-settings file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// The port `serve` listens on when `--listen` is not given (`init --listen-port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    /// The Entra ID tenant, application registration and managed identity (`init` creates them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entra: Option<crate::entra::settings::EntraConfig>,
}

impl EmulatorConfig {
    /// Reads `emulator.json`.
    pub fn load(dir: &EmulatorDir) -> Result<Self, EmulatorError> {
        read_json(&dir.config())
    }

    /// The subscription with this id (case-insensitive), if served.
    pub fn subscription(&self, id: &str) -> Option<&SubscriptionConfig> {
        self.subscriptions.iter().find(|s| s.id.eq_ignore_ascii_case(id))
    }
}

/// Reads the locations table.
pub fn load_locations(dir: &EmulatorDir) -> Result<Vec<Location>, EmulatorError> {
    read_json(&dir.locations())
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EmulatorError> {
    let text = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&text).map_err(|e| EmulatorError::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes a file through `<name>.tmp` and a rename; `secret` files get mode 0600. The temporary file is created
/// with its final mode in the same call that makes it (`O_CREAT | O_EXCL`), so a secret is never readable by
/// others even for a moment, and a leftover or planted `.tmp` (a symlink elsewhere) is removed, never followed.
pub(crate) fn write_file(path: &Path, data: &[u8], secret: bool) -> Result<(), EmulatorError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp)(e)),
        _ => {}
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(&tmp).map_err(io(&tmp))?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Creates the emulator's folder (and missing parents) private to its owner: mode 0700, set on the folder
/// even when it already existed, since it holds keys and the management certificate.
pub(crate) fn make_private_dir(dir: &Path) -> Result<(), EmulatorError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        b.mode(0o700);
        b.create(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))
    }
    #[cfg(not(unix))]
    b.create(dir).map_err(io(dir))
}

/// A random GUID-shaped id (version 4), for subscription ids, tenants and application ids.
pub fn random_guid() -> Result<String, EmulatorError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| EmulatorError::Certificate(e.to_string()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_planted_tmp_symlink_is_not_followed_and_secrets_are_0600() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let key = d.path().join("server.key");
        std::os::unix::fs::symlink(&victim, key.with_extension("tmp")).unwrap();
        write_file(&key, b"SECRET", true).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(std::fs::read(&key).unwrap(), b"SECRET");
        assert_eq!(mode(&key), 0o600);
        write_file(&d.path().join("locations.json"), b"[]", false).unwrap();
        assert_eq!(mode(&d.path().join("locations.json")) & 0o600, 0o600);
    }

    #[test]
    fn the_emulator_folder_is_private() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("a/emu");
        make_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }
}
