//! Operator endpoints, under `/<subscription>/services/importexport/_operator/` and authenticated like the API
//! (docs/emulator.md): the emulator's movable clock, setting a job's state as the data centre would, and
//! receiving a job's drives (`.../receive`: the same [`Receipt`] as `seedship-emulator receive`, imported in
//! the background, docs/datacentre.md). Not part of the classic API; no `x-ms-version` needed.

use crate::datacentre::receive::job_stores;
use crate::datacentre::{Receipt, ReceiveError};
use crate::odata::{self, Reply};
use crate::state::{AppState, Failure};
use crate::store::{Store, StoredJob};
use crate::validation::{Metadata, Rejection};
use hyper::Method;
use seedship_shared::api::{DriveState, JobState};
use serde::{Deserialize, Serialize};

/// `POST _operator/clock` body: move the clock by `AdvanceSeconds`, or set the offset from the system clock.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClockChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advance_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_seconds: Option<i64>,
}

/// The clock as the operator endpoint reports it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClockState {
    pub now: String,
    pub now_unix: i64,
    pub offset_seconds: i64,
}

/// `POST _operator/storageaccounts/<account>/jobs/<job>/state` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateChange {
    pub state: JobState,
}

/// `POST _operator/storageaccounts/<account>/jobs/<job>/receive` body: the drives that arrived, as file names
/// of drive images in the emulator's `inbox` folder (regular files only).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ReceiveRequest {
    pub drives: Vec<std::path::PathBuf>,
}

/// The header carrying the operator credential (`operator.token` in the emulator's folder).
pub const OPERATOR_TOKEN_HEADER: &str = "x-seedship-operator-token";

/// Admits an operator request only with the emulator's own operator credential: a subscription's management
/// certificate proves a customer, not the data centre, so it is not enough for the `_operator` endpoints.
pub(crate) fn authorize(dir: &crate::config::EmulatorDir, headers: &hyper::HeaderMap) -> Result<(), Failure> {
    let forbidden = |why: &str| -> Failure {
        Rejection::new(
            403,
            "ForbiddenError",
            format!("The operator endpoints need the emulator's operator credential: {why}."),
        )
        .into()
    };
    let Ok(expected) = std::fs::read_to_string(dir.operator_token()) else {
        return Err(forbidden(
            "this emulator folder has no operator.token (made by `seedship-emulator init`)",
        ));
    };
    let given = headers
        .get(OPERATOR_TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let expected = expected.trim().as_bytes();
    // compared without an early exit, so the time taken says nothing about how much matched
    let same = given.len() == expected.len()
        && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if expected.is_empty() || !same {
        return Err(forbidden(&format!(
            "header {OPERATOR_TOKEN_HEADER} is missing or does not match operator.token"
        )));
    }
    Ok(())
}

fn bad_body(e: serde_json::Error) -> Failure {
    Rejection::new(
        400,
        "InvalidRequestBody",
        format!("The operator request body is not valid: {e}."),
    )
    .into()
}

fn ok(now: i64, status: u16, body: Option<Vec<u8>>) -> Reply {
    odata::reply(status, None, Metadata::Minimal, now, body)
}

/// The drives of an operator receive, read before the job store is locked: (path in the inbox, LUKS2 label).
pub(crate) type ReadDrives = Result<Vec<(std::path::PathBuf, String)>, ReceiveError>;

/// For an authorised `POST .../receive`, reads the named drives' labels from the inbox (see
/// [`crate::datacentre::receive::inbox_labels`]); `None` for any other request.
pub(crate) fn read_received_drives(state: &AppState, req: &crate::request::Request) -> Option<ReadDrives> {
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let is_receive = req.method == Method::POST
        && segs.len() == 9
        && segs[3] == "_operator"
        && segs[4] == "storageaccounts"
        && segs[6] == "jobs"
        && segs[8] == "receive";
    if !is_receive {
        return None;
    }
    crate::request::authenticate(&state.config, segs[0], req.thumbprint.as_deref()).ok()?;
    authorize(&state.dir, &req.headers).ok()?;
    let request: ReceiveRequest = serde_json::from_slice(&req.body).ok()?;
    Some(crate::datacentre::receive::inbox_labels(
        &state.dir.inbox(),
        &request.drives,
    ))
}

/// Answers an operator request; `rest` is the path after `_operator`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn handle(
    state: &AppState,
    store: &mut Store,
    sub: &str,
    method: &Method,
    rest: &[&str],
    body: &[u8],
    now: i64,
    drives: Option<ReadDrives>,
) -> Result<Reply, Failure> {
    match (rest, method) {
        (["clock"], &Method::GET) => clock(store),
        (["clock"], &Method::POST) => {
            let change: ClockChange = serde_json::from_slice(body).map_err(bad_body)?;
            let offset = store.clock_offset()?;
            let new = match (change.advance_seconds, change.offset_seconds) {
                (Some(a), None) => offset.saturating_add(a),
                (None, Some(o)) => o,
                _ => {
                    return Err(Rejection::new(
                        400,
                        "InvalidRequestBody",
                        "Give exactly one of AdvanceSeconds and OffsetSeconds.",
                    )
                    .into())
                }
            };
            store.set_clock_offset(new)?;
            store.purge_expired(store.now()?)?;
            clock(store)
        }
        (["storageaccounts", account, "jobs", name, "receive"], &Method::POST) => {
            let _: ReceiveRequest = serde_json::from_slice(body).map_err(bad_body)?;
            let drives = drives
                .ok_or_else(|| Rejection::new(400, "InvalidRequestBody", "Unexpected receive request."))?;
            receive(state, store, sub, account, name, drives, now)
        }
        (["storageaccounts", account, "jobs", name, "receive"], &Method::GET) => {
            find_job(store, sub, account, name)?;
            match state.receiving.status(sub, name) {
                Some(status) => Ok(ok(now, 200, Some(odata::json(&status)))),
                None => Err(Rejection::new(
                    404,
                    "ResourceNotFound",
                    format!("No drives were received for job '{name}' since the emulator started."),
                )
                .into()),
            }
        }
        (["storageaccounts", account, "jobs", name, "state"], &Method::POST) => {
            let change: StateChange = serde_json::from_slice(body).map_err(bad_body)?;
            let mut job = find_job(store, sub, account, name)?;
            job.state = change.state;
            job.finished = change.state.is_finished().then_some(now);
            let drive_state = match change.state {
                JobState::Received => Some(DriveState::Received),
                JobState::Transferring => Some(DriveState::Transferring),
                JobState::Packaging | JobState::Completed | JobState::Closed => Some(DriveState::Completed),
                _ => None,
            };
            if let Some(ds) = drive_state {
                for d in job.job.drive_list.iter_mut().flatten() {
                    d.state = Some(ds);
                }
            }
            store.save(&job)?;
            Ok(ok(now, 204, None))
        }
        _ => Err(Rejection::new(
            404,
            "ResourceNotFound",
            format!("No operator endpoint _operator/{}.", rest.join("/")),
        )
        .into()),
    }
}

fn clock(store: &Store) -> Result<Reply, Failure> {
    let now = store.now()?;
    let state = ClockState {
        now: odata::iso8601(now),
        now_unix: now,
        offset_seconds: store.clock_offset()?,
    };
    Ok(ok(now, 200, Some(odata::json(&state))))
}

fn find_job(store: &Store, sub: &str, account: &str, name: &str) -> Result<StoredJob, Failure> {
    match store.get(sub, name)?.filter(|j| j.account == account) {
        Some(job) => Ok(job),
        None => Err(Rejection::new(
            404,
            "ResourceNotFound",
            format!("Job '{name}' does not exist in storage account '{account}'."),
        )
        .into()),
    }
}

/// Checks the drives, marks the job and drives Received, and starts the import in the background.
fn receive(
    state: &AppState,
    store: &Store,
    sub: &str,
    account: &str,
    name: &str,
    drives: ReadDrives,
    now: i64,
) -> Result<Reply, Failure> {
    let job = find_job(store, sub, account, name)?;
    if state.receiving.is_running(sub, name) {
        return Err(refusal(ReceiveError::Busy { job: name.into() }));
    }
    let (emulator_account, stores) = job_stores(&state.dir.dir, &state.config, &job, now).map_err(refusal)?;
    let mut receipt = Receipt::check_labels(job, &emulator_account, drives).map_err(refusal)?;
    receipt.mark_received(store)?;
    let status = state
        .receiving
        .start(sub, receipt, state.dir.database(), stores)
        .map_err(refusal)?;
    Ok(ok(now, 202, Some(odata::json(&status))))
}

/// The answer to a receive the emulator refuses: the error's message with a status and code.
fn refusal(e: ReceiveError) -> Failure {
    let (status, code) = match &e {
        ReceiveError::WrongState { .. } => (409, "InvalidJobState"),
        ReceiveError::Busy { .. } => (409, "ReceiveInProgress"),
        ReceiveError::NotImport { .. }
        | ReceiveError::WrongAccount { .. }
        | ReceiveError::WrongKey { .. }
        | ReceiveError::BadSas { .. } => (409, "InvalidJob"),
        ReceiveError::NoStorageAccount { .. } => (409, "NoStorageAccount"),
        ReceiveError::DriveNotFound { .. } | ReceiveError::NotInInbox { .. } => (400, "DriveNotFound"),
        ReceiveError::Unreadable { .. } => (400, "DriveNotReadable"),
        ReceiveError::UnknownDrive { .. } | ReceiveError::RepeatedDrive { .. } => (400, "DriveNotInJob"),
        ReceiveError::NoDrive => (400, "InvalidRequestBody"),
        ReceiveError::NoSuchJob { .. } => (404, "ResourceNotFound"),
        ReceiveError::Config(_)
        | ReceiveError::Store(_)
        | ReceiveError::Import(_)
        | ReceiveError::Spawn { .. } => (500, "InternalError"),
    };
    if status == 500 {
        // configuration, store and thread failures name server paths: logged, not sent
        tracing::error!(error = %e, "operator receive failed");
        return Rejection::new(status, code, "The server encountered an internal error.").into();
    }
    Rejection::new(status, code, e.to_string()).into()
}
