//! Reaching the service for one staging job: the publish settings (given, or the path the agent recorded in
//! the job descriptor), the job's subscription in them, and extra trusted CA certificates. diskprep (job
//! creation, `u:`, delete-job) and the agent (completion) connect the same way.

use super::{ApiClientOptions, ApiError, BlockingApiClient};
use crate::publish_settings::{PublishSettings, PublishSettingsError};
use crate::staging::JobDescriptor;
use std::path::PathBuf;

/// How a tool reaches the service.
#[derive(Debug, Clone, Default)]
pub struct ApiAccess {
    /// A publish-settings file given on the command line; without it the path in the job descriptor.
    pub publish_settings: Option<PathBuf>,
    /// Extra trusted CA certificates (`--management-ca`, `SEEDSHIP_MANAGEMENT_CA`).
    pub management_ca: Option<PathBuf>,
}

/// A client for the subscription of one job.
#[derive(Debug)]
pub struct Connection {
    pub client: BlockingApiClient,
    pub subscription: String,
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
    #[error(transparent)]
    PublishSettings(#[from] PublishSettingsError),
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Connects for the job's subscription (sends nothing yet).
pub fn connect(d: &JobDescriptor, access: &ApiAccess) -> Result<Connection, ConnectError> {
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
        client: BlockingApiClient::new(opts)?,
        subscription: sub.id.clone(),
        service_url: sub.service_management_url.clone(),
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
            management_ca: None,
        };
        assert!(matches!(
            connect(&d, &given).unwrap_err(),
            ConnectError::PublishSettings(_)
        ));
    }
}
