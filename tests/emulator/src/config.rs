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

/// Writes a file; `secret` files get mode 0600.
pub(crate) fn write_file(path: &Path, data: &[u8], secret: bool) -> Result<(), EmulatorError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(io(&tmp))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    std::fs::rename(&tmp, path).map_err(io(path))
}
