//! Operator endpoints, under `/<subscription>/services/importexport/_operator/` and authenticated like the API
//! (docs/emulator.md): the emulator's movable clock, and setting a job's state as the data centre would (the
//! later "receive drives" step builds on this). Not part of the classic API; no `x-ms-version` needed.

use crate::handlers::Failure;
use crate::odata::{self, Reply};
use crate::store::Store;
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

/// Answers an operator request; `rest` is the path after `_operator`.
pub(crate) fn handle(
    store: &mut Store,
    sub: &str,
    method: &Method,
    rest: &[&str],
    body: &[u8],
    now: i64,
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
        (["storageaccounts", account, "jobs", name, "state"], &Method::POST) => {
            let change: StateChange = serde_json::from_slice(body).map_err(bad_body)?;
            let Some(mut job) = store.get(sub, name)?.filter(|j| j.account == *account) else {
                return Err(Rejection::new(
                    404,
                    "ResourceNotFound",
                    format!("Job '{name}' does not exist in storage account '{account}'."),
                )
                .into());
            };
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
