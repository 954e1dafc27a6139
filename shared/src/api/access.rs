//! Reaching the service for one staging job, through the API its descriptor chose: for the classic API the
//! publish settings (given, or the path the agent recorded), the job's subscription in them; for Resource
//! Manager the Entra ID application the agent recorded (credential files given again override the recorded
//! ones), the resource group and the storage account's resource id. Extra trusted CA certificates for both.
//! diskprep (job creation, `u:`, delete-job) and the agent (completion) connect the same way.

use super::arm::{ArmClientOptions, ArmError, BlockingArmClient, StorageAccountId};
use super::{ApiClientOptions, ApiError, BlockingApiClient, ImportService};
use crate::entra::{CredentialChoice, EntraError, EntraOptions, PUBLIC_AUTHORITY, PUBLIC_MANAGEMENT};
use crate::publish_settings::{PublishSettings, PublishSettingsError};
use crate::staging::{ArmSettings, JobDescriptor, RecordedCredential, ServiceApi};
use std::path::PathBuf;

/// How a tool reaches the service.
#[derive(Debug, Clone, Default)]
pub struct ApiAccess {
    /// A publish-settings file given on the command line; without it the path in the job descriptor.
    pub publish_settings: Option<PathBuf>,
    /// Extra trusted CA certificates (`--management-ca`, `SEEDSHIP_MANAGEMENT_CA`), for the classic service,
    /// Resource Manager and (unless the sign-in options carry their own) the sign-in host.
    pub management_ca: Option<PathBuf>,
    /// Sign-in options given on the command line (Resource Manager jobs): their credential replaces the
    /// recorded one, their tenant and client id the recorded ones, and a non-default authority or management
    /// endpoint the recorded one.
    pub entra: Option<EntraOptions>,
}

/// A client for the subscription of one job.
#[derive(Debug)]
pub struct Connection {
    pub client: ImportService,
    pub subscription: String,
    /// The classic service management URL or the Resource Manager endpoint.
    pub service_url: String,
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The publish-settings file recorded in the job descriptor cannot be read (moved, another machine).
    #[error(
        "cannot read the publish-settings file recorded for job {job} at `offline start`: {}; give its \
         current path with --publish-settings FILE (or SEEDSHIP_PUBLISH_SETTINGS; diskprep: p:FILE)",
        crate::staging::explain_io(path, error)
    )]
    RecordedSettings {
        job: String,
        path: PathBuf,
        error: std::io::Error,
    },
    /// The Entra ID credential recorded for a Resource Manager job cannot be used (moved file, wrong mode).
    #[error(
        "cannot use the Entra ID credential recorded for job {job} at `offline start`: {source}; give it \
         again with --client-certificate FILE or --client-secret-file FILE"
    )]
    RecordedCredential { job: String, source: Box<EntraError> },
    #[error("Entra ID sign-in: {0}")]
    Entra(Box<EntraError>),
    /// Sign-in options given for a job that uses the classic API.
    #[error(
        "job {job} was started with the classic Import/Export API (publish settings); Entra ID options \
         (--tenant, --client-id, --client-certificate, --client-secret-file) apply to Resource Manager jobs only"
    )]
    NotResourceManager { job: String },
    /// A publish-settings file given for a job that uses Resource Manager.
    #[error(
        "job {job} was started with the Resource Manager API (an Entra ID application); a publish-settings \
         file (--publish-settings, p:) applies to classic jobs only; to replace the recorded credential give \
         --client-certificate FILE or --client-secret-file FILE"
    )]
    NotClassic { job: String },
    #[error("job {job}: {message}")]
    BadSettings { job: String, message: String },
    #[error(transparent)]
    PublishSettings(#[from] PublishSettingsError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Arm(#[from] ArmError),
}

/// Connects for the job's subscription, through the API the descriptor chose (sends nothing yet; credential
/// files are read now).
pub fn connect(d: &JobDescriptor, access: &ApiAccess) -> Result<Connection, ConnectError> {
    match &d.api {
        ServiceApi::Classic if access.entra.is_some() => Err(ConnectError::NotResourceManager {
            job: d.job_name.clone(),
        }),
        ServiceApi::Classic => connect_classic(d, access),
        ServiceApi::ResourceManager(_) if access.publish_settings.is_some() => {
            Err(ConnectError::NotClassic {
                job: d.job_name.clone(),
            })
        }
        ServiceApi::ResourceManager(s) => connect_arm(d, s, access),
    }
}

fn connect_classic(d: &JobDescriptor, access: &ApiAccess) -> Result<Connection, ConnectError> {
    let path = access
        .publish_settings
        .clone()
        .unwrap_or_else(|| d.publish_settings.clone());
    let settings = match (&access.publish_settings, PublishSettings::load(&path)) {
        (_, Ok(s)) => s,
        (None, Err(PublishSettingsError::Read { path, source })) => {
            return Err(ConnectError::RecordedSettings {
                job: d.job_name.clone(),
                path,
                error: source,
            })
        }
        (_, Err(e)) => return Err(e.into()),
    };
    let sub = settings.subscription(&d.subscription)?;
    let mut opts = ApiClientOptions::from_subscription(sub)?;
    if let Some(ca) = &access.management_ca {
        opts = opts.with_management_ca_file(ca)?;
    }
    Ok(Connection {
        client: ImportService::Classic(BlockingApiClient::new(opts)?),
        subscription: sub.id.clone(),
        service_url: sub.service_management_url.clone(),
    })
}

/// The sign-in options recorded for a job.
pub fn recorded_options(s: &ArmSettings) -> EntraOptions {
    let credential = match &s.credential {
        RecordedCredential::Certificate { certificate, key } => CredentialChoice::Certificate {
            cert: certificate.clone(),
            key: key.clone(),
        },
        RecordedCredential::SecretFile { path } => CredentialChoice::SecretFile(path.clone()),
        // the binary reads the environment and hands the secret over as given options
        RecordedCredential::SecretFromEnvironment => CredentialChoice::Secret(Default::default()),
        RecordedCredential::ManagedIdentity { endpoint } => CredentialChoice::ManagedIdentity {
            endpoint: endpoint.clone(),
            client_id: None,
        },
        RecordedCredential::TokenFile { path } => CredentialChoice::TokenFile(path.clone()),
    };
    let mut o = EntraOptions::new(credential);
    o.tenant = s.tenant.clone();
    o.client_id = s.client_id.clone();
    o.authority = s.authority.clone();
    o.management_endpoint = s.management_endpoint.clone();
    o.management_audience = s.management_audience.clone();
    o
}

/// What is recorded in the descriptor for these options: paths and sources, never a secret.
pub fn recorded_credential(c: &CredentialChoice) -> RecordedCredential {
    match c {
        CredentialChoice::Certificate { cert, key } => RecordedCredential::Certificate {
            certificate: cert.clone(),
            key: key.clone(),
        },
        CredentialChoice::SecretFile(p) => RecordedCredential::SecretFile { path: p.clone() },
        CredentialChoice::Secret(_) => RecordedCredential::SecretFromEnvironment,
        CredentialChoice::ManagedIdentity { endpoint, .. } => RecordedCredential::ManagedIdentity {
            endpoint: endpoint.clone(),
        },
        CredentialChoice::TokenFile(p) => RecordedCredential::TokenFile { path: p.clone() },
    }
}

/// The recorded options with the given ones laid over them.
fn merged(recorded: EntraOptions, given: Option<&EntraOptions>) -> (EntraOptions, bool) {
    let Some(g) = given else {
        return (recorded, false);
    };
    let mut o = recorded;
    o.credential = g.credential.clone();
    o.tenant = g.tenant.clone().or(o.tenant);
    o.client_id = g.client_id.clone().or(o.client_id);
    if g.authority != PUBLIC_AUTHORITY {
        o.authority = g.authority.clone();
    }
    if g.management_endpoint != PUBLIC_MANAGEMENT {
        o.management_endpoint = g.management_endpoint.clone();
    }
    if g.management_audience.is_some() {
        o.management_audience = g.management_audience.clone();
    }
    if g.ca_pem.is_some() {
        o.ca_pem = g.ca_pem.clone();
    }
    (o, true)
}

fn connect_arm(d: &JobDescriptor, s: &ArmSettings, access: &ApiAccess) -> Result<Connection, ConnectError> {
    let bad = |message: String| ConnectError::BadSettings {
        job: d.job_name.clone(),
        message,
    };
    let account = StorageAccountId::parse(&s.storage_account_id).map_err(bad)?;
    let ca_pem = match &access.management_ca {
        Some(p) => Some(std::fs::read(p).map_err(|e| {
            bad(format!(
                "the management CA certificate (--management-ca) {}: {e}",
                p.display()
            ))
        })?),
        None => None,
    };
    if s.credential == RecordedCredential::SecretFromEnvironment && access.entra.is_none() {
        return Err(bad(format!(
            "the client secret was given through {} at `offline start` and is not set now; set it \
             (or give --client-secret-file FILE)",
            crate::entra::CLIENT_SECRET_ENV
        )));
    }
    let (mut opts, given) = merged(recorded_options(s), access.entra.as_ref());
    if opts.ca_pem.is_none() {
        opts.ca_pem = ca_pem.clone();
    }
    let tokens = opts.token_source().map_err(|source| match given {
        true => ConnectError::Entra(Box::new(source)),
        false => ConnectError::RecordedCredential {
            job: d.job_name.clone(),
            source: Box::new(source),
        },
    })?;
    let mut arm = ArmClientOptions::new(
        &opts.management_endpoint,
        &d.subscription,
        &s.resource_group,
        tokens,
    );
    arm.scope = opts.management_scope();
    arm.ca_pem = ca_pem;
    Ok(Connection {
        client: ImportService::ResourceManager {
            client: BlockingArmClient::new(arm)?,
            account,
        },
        subscription: d.subscription.clone(),
        service_url: opts.management_endpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_file_that_is_gone_names_the_job_and_path() {
        let d = JobDescriptor {
            format: 1,
            job_name: "job1".into(),
            subscription: "s".into(),
            storage_account: "acct1".into(),
            container: "seed".into(),
            publish_settings: "/nonexistent/x.publishsettings".into(),
            api: Default::default(),
            source_host: "h".into(),
            repository_id: "r".into(),
            state: crate::staging::JobState::BackupComplete,
            created: 0,
            blobs: vec![],
        };
        let e = connect(&d, &ApiAccess::default()).unwrap_err();
        assert!(matches!(e, ConnectError::RecordedSettings { .. }), "{e:?}");
        let m = e.to_string();
        assert!(
            m.contains("job1")
                && m.contains("/nonexistent/x.publishsettings does not exist")
                && m.contains("--publish-settings FILE")
                && !m.contains("os error"),
            "{m}"
        );
        // a file given explicitly that is missing is an ordinary publish-settings error
        let given = ApiAccess {
            publish_settings: Some("/nonexistent/y".into()),
            ..Default::default()
        };
        assert!(matches!(
            connect(&d, &given).unwrap_err(),
            ConnectError::PublishSettings(_)
        ));
    }

    fn arm_descriptor(cert: &str) -> JobDescriptor {
        JobDescriptor {
            format: 1,
            job_name: "armjob".into(),
            subscription: "sub".into(),
            storage_account: "acct".into(),
            container: "seed".into(),
            publish_settings: PathBuf::new(),
            api: ServiceApi::ResourceManager(Box::new(ArmSettings {
                tenant: Some("t".into()),
                client_id: Some("c".into()),
                credential: RecordedCredential::Certificate {
                    certificate: cert.into(),
                    key: None,
                },
                resource_group: "rg".into(),
                storage_account_id: StorageAccountId::new("sub", "rg", "acct").to_string(),
                authority: "https://login.example".into(),
                management_endpoint: "https://management.example".into(),
                management_audience: None,
            })),
            source_host: "h".into(),
            repository_id: "r".into(),
            state: crate::staging::JobState::BackupComplete,
            created: 0,
            blobs: vec![],
        }
    }

    #[test]
    fn a_recorded_credential_that_is_gone_names_the_job_file_and_options() {
        let d = arm_descriptor("/nonexistent/app.pem");
        let e = connect(&d, &ApiAccess::default()).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, ConnectError::RecordedCredential { .. }), "{e:?}");
        assert!(
            m.contains("armjob")
                && m.contains("/nonexistent/app.pem")
                && m.contains("--client-certificate FILE"),
            "{m}"
        );
        // a credential given now replaces the recorded one (here a file that is gone too: named as given)
        let mut given = EntraOptions::new(CredentialChoice::SecretFile("/nonexistent/secret".into()));
        given.tenant = None;
        let access = ApiAccess {
            entra: Some(given),
            ..Default::default()
        };
        let m = connect(&d, &access).unwrap_err().to_string();
        assert!(m.contains("/nonexistent/secret") && !m.contains("app.pem"), "{m}");
        // a publish-settings file for a Resource Manager job is refused by name
        let ps = ApiAccess {
            publish_settings: Some("/x.publishsettings".into()),
            ..Default::default()
        };
        let m = connect(&d, &ps).unwrap_err().to_string();
        assert!(
            m.contains("Resource Manager") && m.contains("--client-certificate FILE"),
            "{m}"
        );
        // Entra ID options for a classic job are refused
        let classic = JobDescriptor {
            api: ServiceApi::Classic,
            ..d
        };
        let e = connect(&classic, &access).unwrap_err();
        assert!(matches!(e, ConnectError::NotResourceManager { .. }), "{e:?}");
    }

    #[test]
    fn overrides_keep_recorded_endpoints_unless_given() {
        let d = arm_descriptor("/a.pem");
        let ServiceApi::ResourceManager(s) = &d.api else {
            unreachable!()
        };
        let given = EntraOptions::new(CredentialChoice::SecretFile("/s".into()));
        let (o, was_given) = merged(recorded_options(s), Some(&given));
        assert!(was_given);
        assert_eq!(o.authority, "https://login.example");
        assert_eq!(o.management_endpoint, "https://management.example");
        assert_eq!(o.tenant.as_deref(), Some("t"));
        assert!(matches!(o.credential, CredentialChoice::SecretFile(_)));
    }
}
