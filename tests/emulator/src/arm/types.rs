//! What the Resource Manager endpoints share: the job record kept beside a classic job, the request context,
//! the failure type and the answer helpers. A leaf below the router ([`super`]), the job operations
//! ([`super::jobs`]) and the views ([`super::view`]), so none of them imports another in a cycle.

use crate::odata::{self, Reply};
use crate::request::Request;
use crate::state::AppState;
use crate::store::{Store, StoreError};
use crate::validation::Rejection;
use seedship_shared::api::arm::{location_short_name, ErrorInfo, ErrorResponse, JobDetails};
use seedship_shared::api::Location;
use serde::{Deserialize, Serialize};

/// The resource group jobs made through the classic API appear in.
pub const CLASSIC_RESOURCE_GROUP: &str = "classic-importexport";

/// Largest `$top`.
pub(super) const MAX_TOP: usize = 100;

/// What Resource Manager knows of a job beyond the classic job: kept as JSON in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ArmRecord {
    pub(super) resource_group: String,
    /// The location's display name.
    pub(super) location: String,
    #[serde(default)]
    pub(super) tags: Option<serde_json::Map<String, serde_json::Value>>,
    /// The properties as sent (BitLocker keys included), with later updates applied.
    pub(super) details: JobDetails,
    /// Who created the job (the token's subject).
    pub(super) created_by: String,
}

/// A Resource Manager error answer.
pub fn error(status: u16, code: &str, message: impl Into<String>, now: i64) -> Reply {
    let body = ErrorResponse {
        error: ErrorInfo {
            code: code.to_string(),
            message: message.into(),
            target: None,
            details: Vec::new(),
        },
    };
    json(status, &body, now)
}

pub(super) fn json<T: Serialize>(status: u16, body: &T, now: i64) -> Reply {
    let mut r = base_reply(status, now);
    r.headers
        .push(("Content-Type", "application/json; charset=utf-8".into()));
    r.body = serde_json::to_vec(body).unwrap_or_default();
    r
}

pub(super) fn base_reply(status: u16, now: i64) -> Reply {
    let id = odata::request_id();
    Reply {
        status,
        headers: vec![
            ("Cache-Control", "no-cache".into()),
            ("Server", odata::SERVER.into()),
            ("x-ms-request-id", id.clone()),
            ("x-ms-correlation-request-id", id),
            ("Date", odata::http_date(now)),
        ],
        body: Vec::new(),
    }
}

pub(super) enum Failure {
    Rejected(Rejection),
    Auth(crate::entra::AuthError),
    Store(StoreError),
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        Failure::Rejected(r)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

pub(super) fn bad(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection::new(400, code, message)
}

pub(super) fn not_found(message: impl Into<String>) -> Rejection {
    Rejection::new(404, "ResourceNotFound", message)
}

/// What a handler needs besides the request.
pub(super) struct Ctx<'a> {
    pub(super) state: &'a AppState,
    pub(super) store: &'a mut Store,
    pub(super) req: &'a Request,
    pub(super) subject: String,
    pub(super) now: i64,
}

pub(super) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        odata::decode(k, true)
            .eq_ignore_ascii_case(name)
            .then(|| odata::decode(v, true))
    })
}

/// A location by display name (`West US`) or short name (`westus`).
pub(super) fn find_location<'a>(ctx: &Ctx<'a>, name: &str) -> Option<&'a Location> {
    let short = location_short_name(name);
    ctx.state
        .locations
        .iter()
        .find(|l| l.name.eq_ignore_ascii_case(name) || location_short_name(&l.name) == short)
}
