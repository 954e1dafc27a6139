//! Receives started by the operator endpoint (`POST _operator/storageaccounts/<account>/jobs/<job>/receive`):
//! the drives are checked and the job marked Received while the request waits, then [`Receipt::import`]
//! runs on a thread of its own with its own connection to the job store, so Get Job shows the job and its
//! drives moving on. One receive per job at a time; [`Receiving`] remembers the last one of each job
//! (running or not, the drives, the final state or the error) for `GET .../receive`. Stopping `serve` waits
//! for the running imports ([`Receiving::wait_all`]).

use super::receive::{Receipt, ReceiveError};
use super::ContainerStores;
use crate::store::Store;
use seedship_shared::api::JobState;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The last receive of a job, as `GET _operator/storageaccounts/<account>/jobs/<job>/receive` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReceiveStatus {
    pub job: String,
    /// Whether the import is still running.
    pub running: bool,
    /// The drive ids received, in the order given.
    pub drive_ids: Vec<String>,
    /// The job's state when the import ended (`Completed` or `Closed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_state: Option<JobState>,
    /// Why the import stopped before the job finished (the job store or a copy log could not be written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The receives of one emulator, keyed by subscription and job name.
#[derive(Debug, Default, Clone)]
pub struct Receiving {
    jobs: Arc<Mutex<HashMap<(String, String), ReceiveStatus>>>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Receiving {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), ReceiveStatus>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a receive of this job is running.
    pub fn is_running(&self, subscription: &str, job: &str) -> bool {
        self.status(subscription, job).is_some_and(|s| s.running)
    }

    /// The last receive of this job since the emulator started.
    pub fn status(&self, subscription: &str, job: &str) -> Option<ReceiveStatus> {
        self.lock()
            .get(&(subscription.to_owned(), job.to_owned()))
            .cloned()
    }

    /// Imports a checked, marked `receipt` on a new thread that opens the job store at `database`.
    pub fn start(
        &self,
        subscription: &str,
        receipt: Receipt,
        database: PathBuf,
        stores: Box<dyn ContainerStores>,
    ) -> Result<ReceiveStatus, ReceiveError> {
        let job = receipt.job_name().to_owned();
        let key = (subscription.to_owned(), job.clone());
        let status = ReceiveStatus {
            job: job.clone(),
            running: true,
            drive_ids: receipt.drives().iter().map(|(_, id)| id.clone()).collect(),
            final_state: None,
            error: None,
        };
        {
            let mut jobs = self.lock();
            if jobs.get(&key).is_some_and(|s| s.running) {
                return Err(ReceiveError::Busy { job });
            }
            jobs.insert(key.clone(), status.clone());
        }
        let me = self.clone();
        let finish_key = key.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("receive {job}"))
            .spawn(move || {
                let run = || {
                    let store = Store::open(&database).map_err(|e| e.to_string())?;
                    receipt.import(&store, stores.as_ref()).map_err(|e| e.to_string())
                };
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
                    .unwrap_or_else(|_| Err("the import thread panicked".to_owned()));
                match &result {
                    Ok(out) => tracing::info!(job = %out.job, state = %out.state, "drives imported"),
                    Err(e) => {
                        tracing::error!(job = %finish_key.1, error = %e, "import of received drives failed")
                    }
                }
                me.finish(&finish_key, result.map(|o| o.state));
            });
        match spawned {
            Ok(handle) => {
                let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
                threads.retain(|t| !t.is_finished());
                threads.push(handle);
                Ok(status)
            }
            Err(source) => {
                self.finish(&key, Err(source.to_string()));
                Err(ReceiveError::Spawn { job, source })
            }
        }
    }

    /// How many imports are running.
    pub fn running(&self) -> usize {
        self.lock().values().filter(|s| s.running).count()
    }

    /// Waits for every import started so far to end (blocking), so stopping `serve` never leaves a job
    /// half-imported.
    pub fn wait_all(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            // The thread catches the import's panics; a join error leaves nothing more to do.
            let _ = t.join();
        }
    }

    fn finish(&self, key: &(String, String), result: Result<JobState, String>) {
        if let Some(s) = self.lock().get_mut(key) {
            s.running = false;
            match result {
                Ok(state) => s.final_state = Some(state),
                Err(e) => s.error = Some(e),
            }
        }
    }
}
