//! The `Entra` section of `emulator.json`: plain data, below both the emulator's configuration and the
//! Entra ID endpoints that read it.

use serde::{Deserialize, Serialize};

/// The `Entra` section of `emulator.json`: the tenant and its registrations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EntraConfig {
    pub tenant: String,
    pub applications: Vec<AppRegistration>,
    /// The VM's system-assigned managed identity.
    pub managed_identity: ManagedIdentityConfig,
}

/// An application registration with its credentials and role assignments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AppRegistration {
    pub client_id: String,
    /// The service principal's object id.
    pub object_id: String,
    pub display_name: String,
    /// Registered certificates: PEM files in the emulator directory.
    pub certificates: Vec<String>,
    /// SHA-256 (lowercase hex) of each registered client secret; the secrets themselves are not kept.
    pub secret_sha256: Vec<String>,
    /// Role assignments of the service principal (e.g. `Contributor`, `Storage Blob Data Contributor`).
    pub roles: Vec<String>,
}

/// The managed identity the metadata endpoint hands tokens for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManagedIdentityConfig {
    pub client_id: String,
    pub object_id: String,
    pub roles: Vec<String>,
}
