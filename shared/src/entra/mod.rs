//! Microsoft Entra ID sign-in: OAuth 2.0 bearer tokens for Resource Manager and for blob storage.
//!
//! Everything that needs a token asks a [`TokenSource`] for one scope (`https://management.azure.com/.default`,
//! `https://storage.azure.com/.default`). The credentials here implement it:
//!
//! - [`ClientCredential`] with a certificate ([`ClientCertificate`]): the client-credentials grant against
//!   `{authority}/{tenant}/oauth2/v2.0/token` with a JWT client assertion signed RS256 by the certificate's key
//!   (header `x5t` and `x5t#S256`; claims `aud` = the token endpoint, `iss` = `sub` = the client id, `jti`,
//!   `nbf`, `exp`);
//! - [`ClientCredential`] with a client secret (read from a file or the environment by the caller, never from
//!   the command line);
//! - [`ManagedIdentity`]: the instance metadata endpoint of an Azure VM (its base URL is configurable, so
//!   the emulator can play it);
//! - [`HandedToken`]: an access token handed over from `az account get-access-token` (a JSON file or stdin).
//!
//! Tokens are cached per scope until [`REFRESH_BEFORE`] before they expire. The HTTP work runs on a small
//! runtime the credential owns, so [`TokenSource::token`] is a plain blocking call that is safe from any
//! thread, including from inside another tokio runtime's blocking sections.
//!
//! Why not Microsoft's `azure_identity` crate: docs/agent.md ("Sign-in") records the evaluation. In short:
//! it is async-only and pre-1.0 with breaking changes to the certificate credential in most releases, it
//! takes certificates as PKCS#12 only, trusting the emulator's private CA needs a hand-written HTTP client
//! for its pipeline, the managed-identity endpoint is not configurable, and it has no credential for a
//! handed-over token. The narrow part written here is one grant, one JWT and one cache.

mod cache;
mod certificate;
mod credential;
mod http;
pub mod jwt;
mod options;

pub use certificate::ClientCertificate;
pub use credential::{ClientCredential, ClientSecret, HandedToken, ManagedIdentity};
#[cfg(feature = "clap")]
pub use options::EntraArgs;
pub use options::{CredentialChoice, EntraOptions, CLIENT_SECRET_ENV};

use std::time::{Duration, SystemTime};

/// The public cloud's authority (the sign-in host).
pub const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The public cloud's Resource Manager endpoint.
pub const PUBLIC_MANAGEMENT: &str = "https://management.azure.com";
/// The scope of blob-storage tokens (role Storage Blob Data Contributor on the account or container).
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// The base URL of the instance metadata service on an Azure VM.
pub const IMDS_BASE: &str = "http://169.254.169.254";
/// A cached token is renewed when it has less than this left.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// A source of OAuth 2.0 bearer tokens (Microsoft Entra ID credentials implement it).
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// A token for `scope` (e.g. `https://management.azure.com/.default`), cached until shortly before expiry.
    fn token(&self, scope: &str) -> Result<AccessToken, EntraError>;
}

/// A bearer token and when it stops being accepted.
#[derive(Clone)]
pub struct AccessToken {
    pub token: zeroize::Zeroizing<String>,
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl AccessToken {
    /// Whether the token has less than `margin` left at `now`.
    pub fn expires_within(&self, margin: Duration, now: SystemTime) -> bool {
        self.expires_at
            .duration_since(now)
            .map_or(true, |left| left < margin)
    }
}

/// A failure to get a token. Messages name the credential or endpoint and what to do; they never contain a
/// secret, a private key, an assertion or a token.
#[derive(Debug, thiserror::Error)]
pub enum EntraError {
    /// A setting is missing or unusable (URL, tenant, client id, scope, combination of options).
    #[error("sign-in setting {what}: {message}")]
    Config { what: &'static str, message: String },
    /// A credential file cannot be read or is not what it should be.
    #[error("{what} {path}: {message}")]
    File {
        what: &'static str,
        path: String,
        message: String,
    },
    /// The token endpoint (or the metadata endpoint) refused: wrong secret, unknown client, bad assertion...
    #[error(
        "{endpoint} refused the sign-in of client {client}: HTTP {status} {code}: {description}{}",
        refusal_hint(code)
    )]
    Refused {
        endpoint: String,
        client: String,
        status: u16,
        code: String,
        description: String,
    },
    /// The endpoint could not be reached or did not answer in time (worth retrying).
    #[error("cannot reach {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    /// The endpoint answered something that is not a token answer.
    #[error("{endpoint} answered HTTP {status} with no usable token: {message}")]
    BadResponse {
        endpoint: String,
        status: u16,
        message: String,
    },
    /// A handed-over token is expired or was issued for another resource.
    #[error("the access token from {source_name} {problem}; get a new one with `az account get-access-token --resource {resource}` and hand it over again")]
    HandedToken {
        source_name: String,
        problem: String,
        resource: String,
    },
}

fn refusal_hint(code: &str) -> &'static str {
    match code {
        "invalid_client" => " (check the client id, the tenant and that the certificate or secret is the one registered for the application)",
        "unauthorized_client" => " (the application is not registered in this tenant, or is disabled)",
        "invalid_scope" | "invalid_resource" => " (check the management or storage endpoint the token is asked for)",
        "invalid_request" => " (check the tenant and the authority URL)",
        _ => "",
    }
}

impl EntraError {
    /// Whether asking again later may succeed (connection failures, timeouts and 5xx answers).
    pub fn is_retryable(&self) -> bool {
        match self {
            EntraError::Transport { .. } => true,
            EntraError::BadResponse { status, .. } => *status >= 500,
            EntraError::Refused { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// The resource (audience) a `.default` scope stands for: `https://storage.azure.com/.default` ->
/// `https://storage.azure.com/`.
pub fn scope_resource(scope: &str) -> &str {
    scope.strip_suffix(".default").unwrap_or(scope)
}

/// The `.default` scope of a resource or endpoint: `https://management.azure.com` ->
/// `https://management.azure.com/.default`.
pub fn default_scope(resource: &str) -> String {
    format!("{}/.default", resource.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_resources() {
        assert_eq!(scope_resource(STORAGE_SCOPE), "https://storage.azure.com/");
        assert_eq!(
            default_scope("https://management.azure.com/"),
            "https://management.azure.com/.default"
        );
        assert_eq!(
            default_scope(PUBLIC_MANAGEMENT),
            "https://management.azure.com/.default"
        );
    }

    #[test]
    fn expiry_margin() {
        let now = SystemTime::now();
        let t = AccessToken {
            token: zeroize::Zeroizing::new("x".into()),
            expires_at: now + Duration::from_secs(200),
        };
        assert!(t.expires_within(REFRESH_BEFORE, now));
        assert!(!t.expires_within(Duration::from_secs(100), now));
        assert!(!format!("{t:?}").contains('x') || !format!("{t:?}").contains("\"x\""));
    }

    #[test]
    fn refusals_name_the_fix_and_retry_rules() {
        let e = EntraError::Refused {
            endpoint: "https://login.example/t/oauth2/v2.0/token".into(),
            client: "c1".into(),
            status: 401,
            code: "invalid_client".into(),
            description: "AADSTS7000215: Invalid client secret provided.".into(),
        };
        let m = e.to_string();
        assert!(
            m.contains("client c1") && m.contains("AADSTS7000215") && m.contains("check the client id"),
            "{m}"
        );
        assert!(!e.is_retryable());
        let t = EntraError::Transport {
            endpoint: "x".into(),
            message: "timed out".into(),
        };
        assert!(t.is_retryable());
    }
}
