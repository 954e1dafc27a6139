//! The sign-in options: [`EntraOptions`], the typed configuration the work uses, and (with the `clap`
//! feature) [`EntraArgs`], the command-line options the agent and diskprep flatten into their commands.
//! The client secret's value is never a command-line argument: it comes from `--client-secret-file` or from
//! the environment variable [`CLIENT_SECRET_ENV`], read once when the arguments become options.

use super::credential::{ClientCredential, ClientSecret, HandedToken, ManagedIdentity};
use super::{default_scope, ClientCertificate, EntraError, TokenSource, PUBLIC_AUTHORITY, PUBLIC_MANAGEMENT};
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The environment variable holding a client secret's value (instead of `--client-secret-file`).
pub const CLIENT_SECRET_ENV: &str = "SEEDSHIP_CLIENT_SECRET";

/// Which credential proves who we are.
#[derive(Clone)]
pub enum CredentialChoice {
    /// An application's certificate: PEM with the key in the same file or in `key`.
    Certificate { cert: PathBuf, key: Option<PathBuf> },
    /// An application's secret, read from this file (mode 0600) when the credential is built.
    SecretFile(PathBuf),
    /// An application's secret taken from the environment.
    Secret(Zeroizing<String>),
    /// The VM's managed identity at `endpoint` (normally [`super::IMDS_BASE`]); `client_id` picks a user-assigned one.
    ManagedIdentity {
        endpoint: String,
        client_id: Option<String>,
    },
    /// A token handed over from `az account get-access-token` (a file, or `-` for stdin).
    TokenFile(PathBuf),
}

impl std::fmt::Debug for CredentialChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialChoice::Certificate { cert, key } => f
                .debug_struct("Certificate")
                .field("cert", cert)
                .field("key", key)
                .finish(),
            CredentialChoice::SecretFile(p) => f.debug_tuple("SecretFile").field(p).finish(),
            CredentialChoice::Secret(_) => f.write_str("Secret(<redacted>)"),
            CredentialChoice::ManagedIdentity { endpoint, client_id } => f
                .debug_struct("ManagedIdentity")
                .field("endpoint", endpoint)
                .field("client_id", client_id)
                .finish(),
            CredentialChoice::TokenFile(p) => f.debug_tuple("TokenFile").field(p).finish(),
        }
    }
}

/// Everything needed to sign in.
#[derive(Debug, Clone)]
pub struct EntraOptions {
    /// The directory (tenant) id or domain; needed by application credentials.
    pub tenant: Option<String>,
    /// The application (client) id; needed by application credentials, optional for a managed identity.
    pub client_id: Option<String>,
    /// The sign-in host, [`PUBLIC_AUTHORITY`] unless a sovereign cloud or the emulator.
    pub authority: String,
    /// The Resource Manager endpoint, [`PUBLIC_MANAGEMENT`] unless a sovereign cloud or the emulator.
    pub management_endpoint: String,
    /// The audience (resource id) of Resource Manager tokens when it is not the management endpoint itself
    /// (Azure Stack Hub; the emulator, which takes tokens for `https://management.azure.com/`).
    pub management_audience: Option<String>,
    pub credential: CredentialChoice,
    /// Extra trusted CA certificates (PEM) for the authority's TLS certificate (the emulator's `ca.pem`).
    pub ca_pem: Option<Vec<u8>>,
}

impl EntraOptions {
    /// Options for the public cloud.
    pub fn new(credential: CredentialChoice) -> EntraOptions {
        EntraOptions {
            tenant: None,
            client_id: None,
            authority: PUBLIC_AUTHORITY.to_owned(),
            management_endpoint: PUBLIC_MANAGEMENT.to_owned(),
            management_audience: None,
            credential,
            ca_pem: None,
        }
    }

    /// The scope of Resource Manager tokens: `{management_audience or management_endpoint}/.default`.
    pub fn management_scope(&self) -> String {
        default_scope(
            self.management_audience
                .as_deref()
                .unwrap_or(&self.management_endpoint),
        )
    }

    fn app(&self) -> Result<(&str, &str), EntraError> {
        let tenant = self.tenant.as_deref().ok_or(EntraError::Config {
            what: "tenant",
            message: "an application credential needs the directory (tenant) id; give --tenant".into(),
        })?;
        let client = self.client_id.as_deref().ok_or(EntraError::Config {
            what: "client id",
            message: "an application credential needs the application (client) id; give --client-id".into(),
        })?;
        Ok((tenant, client))
    }

    /// Builds the credential. Files are read now, so a wrong path or mode is reported before any work.
    pub fn token_source(&self) -> Result<Arc<dyn TokenSource>, EntraError> {
        let ca = self.ca_pem.as_deref();
        let app = |secret: ClientSecret| -> Result<Arc<dyn TokenSource>, EntraError> {
            let (tenant, client) = self.app()?;
            Ok(Arc::new(ClientCredential::new(
                &self.authority,
                tenant,
                client,
                secret,
                ca,
            )?))
        };
        match &self.credential {
            CredentialChoice::Certificate { cert, key } => app(ClientSecret::Certificate(Box::new(
                ClientCertificate::load(cert, key.as_deref())?,
            ))),
            CredentialChoice::SecretFile(path) => {
                let bytes = super::certificate::read_private_file("client secret file", path)?;
                let text = std::str::from_utf8(&bytes).map_err(|_| EntraError::File {
                    what: "client secret file",
                    path: path.display().to_string(),
                    message: "is not UTF-8 text; put only the secret's value in it".into(),
                })?;
                app(ClientSecret::Secret(Zeroizing::new(text.trim().to_owned())))
            }
            CredentialChoice::Secret(s) => app(ClientSecret::Secret(s.clone())),
            CredentialChoice::ManagedIdentity { endpoint, client_id } => Ok(Arc::new(ManagedIdentity::new(
                endpoint,
                client_id.as_deref().or(self.client_id.as_deref()),
                ca,
            )?)),
            CredentialChoice::TokenFile(path) => Ok(Arc::new(HandedToken::load(path)?)),
        }
    }
}

/// The sign-in options of a command (flatten into a clap command with `#[command(flatten)]`).
#[cfg(feature = "clap")]
#[derive(Debug, Clone, Default, clap::Args)]
#[group(skip)]
pub struct EntraArgs {
    /// Microsoft Entra ID directory (tenant) id or domain of the application.
    #[arg(long, env = "SEEDSHIP_TENANT", value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Application (client) id of the Entra ID application (or of a user-assigned managed identity).
    #[arg(long, env = "SEEDSHIP_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,
    /// Sign in with the application's certificate: a PEM file with the certificate and, unless
    /// --client-certificate-key is given, its RSA private key (mode 0600).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["client_secret_file", "managed_identity", "access_token_file"])]
    pub client_certificate: Option<PathBuf>,
    /// The private key (PEM, mode 0600) of --client-certificate when it is in a separate file.
    #[arg(long, value_name = "FILE", requires = "client_certificate")]
    pub client_certificate_key: Option<PathBuf>,
    /// Sign in with the application's client secret, read from FILE (mode 0600). The secret may also come
    /// from the environment variable SEEDSHIP_CLIENT_SECRET; never give it on the command line.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["managed_identity", "access_token_file"])]
    pub client_secret_file: Option<PathBuf>,
    /// Sign in with the managed identity of the Azure VM this runs on.
    #[arg(long, conflicts_with = "access_token_file")]
    pub managed_identity: bool,
    /// Base URL of the instance metadata service for --managed-identity.
    #[arg(long, value_name = "URL", default_value = super::IMDS_BASE, requires = "managed_identity")]
    pub managed_identity_endpoint: String,
    /// Use an access token from `az account get-access-token --resource ...` (its JSON; `-` reads stdin).
    #[arg(long, value_name = "FILE")]
    pub access_token_file: Option<PathBuf>,
    /// Sign-in host (sovereign clouds, the emulator).
    #[arg(long, value_name = "URL", env = "SEEDSHIP_AUTHORITY", default_value = PUBLIC_AUTHORITY)]
    pub authority: String,
    /// Resource Manager endpoint (sovereign clouds, the emulator).
    #[arg(long, value_name = "URL", env = "SEEDSHIP_MANAGEMENT_ENDPOINT", default_value = PUBLIC_MANAGEMENT)]
    pub management_endpoint: String,
    /// Audience of Resource Manager tokens when it differs from --management-endpoint (Azure Stack Hub, the
    /// emulator: `https://management.azure.com/`).
    #[arg(long, value_name = "URL", env = "SEEDSHIP_MANAGEMENT_AUDIENCE")]
    pub management_audience: Option<String>,
    /// Extra trusted CA certificates (PEM) for the sign-in host, e.g. the emulator's ca.pem.
    #[arg(long, value_name = "FILE", env = "SEEDSHIP_AUTHORITY_CA")]
    pub authority_ca: Option<PathBuf>,
}

#[cfg(feature = "clap")]
impl EntraArgs {
    /// Whether a credential was chosen with a flag (--client-certificate, --client-secret-file,
    /// --managed-identity, --access-token-file); the environment (SEEDSHIP_TENANT, SEEDSHIP_CLIENT_ID,
    /// SEEDSHIP_CLIENT_SECRET) never counts.
    pub fn credential_flag_given(&self) -> bool {
        self.client_certificate.is_some()
            || self.client_secret_file.is_some()
            || self.managed_identity
            || self.access_token_file.is_some()
    }

    /// [`EntraArgs::into_options`] for a command on a job of the classic API (`classic`): there the Entra ID
    /// environment (SEEDSHIP_TENANT, SEEDSHIP_CLIENT_ID, SEEDSHIP_CLIENT_SECRET, set for other jobs or
    /// machines) is ignored and only a credential flag counts, so that the caller can refuse it by name.
    pub fn into_options_for(self, classic: bool) -> Result<Option<EntraOptions>, EntraError> {
        if classic && !self.credential_flag_given() {
            return Ok(None);
        }
        self.into_options()
    }

    /// The options, or `None` when no credential was chosen (neither a flag nor SEEDSHIP_CLIENT_SECRET).
    /// Reads SEEDSHIP_CLIENT_SECRET and the CA file here, at the top, so the work never reads either.
    pub fn into_options(self) -> Result<Option<EntraOptions>, EntraError> {
        let env_secret = std::env::var(CLIENT_SECRET_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty())
            .map(Zeroizing::new);
        let credential = if let Some(cert) = self.client_certificate {
            CredentialChoice::Certificate {
                cert,
                key: self.client_certificate_key,
            }
        } else if let Some(p) = self.client_secret_file {
            CredentialChoice::SecretFile(p)
        } else if self.managed_identity {
            CredentialChoice::ManagedIdentity {
                endpoint: self.managed_identity_endpoint,
                client_id: None,
            }
        } else if let Some(p) = self.access_token_file {
            CredentialChoice::TokenFile(p)
        } else if let Some(s) = env_secret {
            CredentialChoice::Secret(s)
        } else if self.tenant.is_some() || self.client_id.is_some() {
            return Err(EntraError::Config {
                what: "credential",
                message: format!(
                    "--tenant/--client-id need a credential: --client-certificate FILE, --client-secret-file FILE \
                     (or {CLIENT_SECRET_ENV}), --managed-identity or --access-token-file FILE"
                ),
            });
        } else {
            return Ok(None);
        };
        let ca_pem = match &self.authority_ca {
            Some(p) => Some(std::fs::read(p).map_err(|e| EntraError::File {
                what: "authority CA certificate",
                path: p.display().to_string(),
                message: e.to_string(),
            })?),
            None => None,
        };
        Ok(Some(EntraOptions {
            tenant: self.tenant,
            client_id: self.client_id,
            authority: self.authority,
            management_endpoint: self.management_endpoint,
            management_audience: self.management_audience,
            credential,
            ca_pem,
        }))
    }
}

#[cfg(all(test, feature = "clap"))]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        entra: EntraArgs,
    }

    fn parse(args: &[&str]) -> Result<Cmd, clap::Error> {
        Cmd::try_parse_from(std::iter::once("cmd").chain(args.iter().copied()))
    }

    #[test]
    fn a_classic_job_ignores_tenant_and_client_id_and_refuses_only_a_credential_flag() {
        let c = parse(&["--tenant", "t", "--client-id", "c"]).unwrap();
        assert!(!c.entra.credential_flag_given());
        assert!(c.entra.into_options_for(true).unwrap().is_none());
        let c = parse(&["--client-secret-file", "s"]).unwrap();
        assert!(c.entra.credential_flag_given());
        assert!(c.entra.into_options_for(true).unwrap().is_some());
    }

    #[test]
    fn one_credential_and_the_options_it_makes() {
        let c = parse(&[
            "--tenant",
            "t",
            "--client-id",
            "c",
            "--client-certificate",
            "a.pem",
        ])
        .unwrap();
        let o = c.entra.into_options().unwrap().unwrap();
        assert!(
            matches!(o.credential, CredentialChoice::Certificate { ref cert, key: None } if cert.as_os_str() == "a.pem")
        );
        assert_eq!(o.authority, PUBLIC_AUTHORITY);
        assert_eq!(o.management_scope(), "https://management.azure.com/.default");
        assert!(parse(&["--client-certificate", "a", "--client-secret-file", "b"]).is_err());
        assert!(parse(&["--managed-identity", "--access-token-file", "t"]).is_err());
        assert!(
            parse(&["--client-certificate-key", "k"]).is_err(),
            "a key needs its certificate"
        );
        let mi = parse(&[
            "--managed-identity",
            "--management-audience",
            "https://management.azure.com/",
        ])
        .unwrap();
        let o = mi.entra.into_options().unwrap().unwrap();
        assert!(
            matches!(o.credential, CredentialChoice::ManagedIdentity { ref endpoint, .. } if endpoint == super::super::IMDS_BASE)
        );
        // nothing chosen: no sign-in (the caller uses the classic API or an account key)
        if std::env::var_os(CLIENT_SECRET_ENV).is_none() && std::env::var_os("SEEDSHIP_TENANT").is_none() {
            assert!(parse(&[]).unwrap().entra.into_options().unwrap().is_none());
            let e = parse(&["--tenant", "t"])
                .unwrap()
                .entra
                .into_options()
                .unwrap_err()
                .to_string();
            assert!(e.contains("--client-certificate FILE"), "{e}");
        }
        let missing = EntraOptions::new(CredentialChoice::Secret(Zeroizing::new("s".into())));
        assert!(missing
            .token_source()
            .unwrap_err()
            .to_string()
            .contains("--tenant"));
    }
}
