//! `delete-job`: deletes the import job, and with it the personal data the service keeps (return address,
//! carrier account), where the service allows it: in `Creating` (nothing shipped yet) and `Completed`. In any
//! other state it deletes nothing and says why and what to do. After a deletion the local shipping details
//! (`diskprep/shipping.json`) are removed too and the record notes the deletion, so a rerun of preparation
//! does not create the job again. This module prints nothing.

use crate::job::create::{find_job, Connection, JobRecord};
use crate::job::ship::{details_path, ShipError};
use seedship_shared::api::JobState;
use std::path::Path;

/// What `delete-job` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Deleted; the state it was in.
    Deleted(JobState),
    /// The service no longer knows the job (deleted earlier, or expired).
    Gone,
    /// Not deleted: the state forbids it.
    Refused(JobState),
}

/// Why a job in `state` cannot be deleted, and what to do.
pub fn refusal_advice(state: JobState) -> &'static str {
    match state {
        JobState::Shipping | JobState::Received | JobState::Transferring | JobState::Packaging => {
            "the drives are on their way to or in the data centre; the job can be deleted once it is Completed \
             (run `seedship-diskprep u:` to follow it)"
        }
        JobState::Closed => {
            "the job finished with errors; the service deletes it 90 days after it closed, or ask Azure support"
        }
        JobState::Faulted => "the job needs the data centre's attention; ask Azure support, then try again",
        JobState::Creating | JobState::Completed => "",
    }
}

/// Deletes the recorded job if its state allows it.
pub fn delete_job(
    conn: &Connection,
    job_dir: &Path,
    record: &mut JobRecord,
) -> Result<DeleteOutcome, ShipError> {
    let account = record.storage_account.clone();
    let name = record.job_name.clone();
    let outcome = match find_job(conn, &account, &name)? {
        None => DeleteOutcome::Gone,
        Some(job) => {
            let state = job.properties.state.unwrap_or(JobState::Creating);
            if !matches!(state, JobState::Creating | JobState::Completed) {
                return Ok(DeleteOutcome::Refused(state));
            }
            conn.client.delete_job(&account, &name)?;
            DeleteOutcome::Deleted(state)
        }
    };
    let details = details_path(job_dir);
    match std::fs::remove_file(&details) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(crate::job::create::JobError::Io {
                path: details,
                source,
            }
            .into())
        }
    }
    record.deleted = Some(seedship_shared::time::now_unix());
    record.save(job_dir)?;
    Ok(outcome)
}
