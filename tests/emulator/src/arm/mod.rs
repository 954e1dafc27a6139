//! The Resource Manager endpoints of `Microsoft.ImportExport` (api-version 2021-01-01), served beside the
//! classic API from the same job store.
//!
//! A request passes, in order: the bearer token (an Entra ID token of the emulator's own token endpoint for
//! the management audience, checked by [`crate::entra::validate_bearer`], 401), the caller's role assignment
//! ([`crate::entra::authorize`]: Reader, Contributor or Owner to read, Contributor or Owner to change, 403), the
//! `api-version` (400), the subscription (404), then the operation. A job made here is stored as a classic job (so Get Job,
//! List Jobs and the data centre's `receive` see it) plus a Resource Manager record (resource group, location,
//! the properties as sent) in the same transaction; a job made through the classic API is shown here under
//! [`CLASSIC_RESOURCE_GROUP`]. Answers use Resource Manager's shapes: `JobResponse`, `{"value":[..]}` lists with
//! `nextLink` paging, and `{"error":{"code","message"}}` errors. Export jobs are refused with
//! `ExportJobsNotSupported`. docs/emulator.md lists the endpoints and statuses.

use crate::entra::register::MANAGEMENT_AUDIENCE;
use crate::odata::{self, Reply};
use crate::request::Request;
use crate::state::AppState;
use crate::store::Store;
use crate::validation::Rejection;
use hyper::Method;
use jobs::{create_job, delete_job, get_job, list_jobs, list_keys, update_job};
use seedship_shared::api::arm::{
    location_id, ArmLocation, LocationProperties, LocationsResponse, ARM_API_VERSION, LOCATION_RESOURCE_TYPE,
};
use seedship_shared::api::Location;

mod jobs;
mod types;
mod view;

use types::{bad, find_location, json, not_found, query_param, Ctx, Failure};
pub use types::{error, CLASSIC_RESOURCE_GROUP};

/// The roles that may read jobs and locations.
const READ_ROLES: [&str; 3] = ["Reader", "Contributor", "Owner"];
/// The roles that may create, change and delete jobs (and list BitLocker keys).
const WRITE_ROLES: [&str; 2] = ["Contributor", "Owner"];

/// Whether a path belongs to Resource Manager rather than the classic API.
pub fn is_arm_path(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    first.eq_ignore_ascii_case("subscriptions") || first.eq_ignore_ascii_case("providers")
}

/// Answers one Resource Manager request.
pub fn handle(state: &AppState, store: &mut Store, req: &Request, now: i64) -> Reply {
    match route(state, store, req, now) {
        Ok(r) => r,
        Err(Failure::Rejected(rej)) => error(rej.status, rej.code, rej.message, now),
        Err(Failure::Auth(a)) => {
            let code = a.code();
            let mut r = error(a.status(), code, a.to_string(), now);
            if a.status() == 401 {
                r.headers.push((
                    "WWW-Authenticate",
                    format!(
                    "Bearer authorization_uri=\"{}\", error=\"invalid_token\", error_description=\"{code}\"",
                    state.public_url
                ),
                ));
            }
            r
        }
        Err(Failure::Store(e)) => {
            tracing::error!(error = %e, "job store failure");
            error(500, "InternalServerError", e.to_string(), now)
        }
    }
}

fn route(state: &AppState, store: &mut Store, req: &Request, now: i64) -> Result<Reply, Failure> {
    let header = req.headers.get("authorization").and_then(|v| v.to_str().ok());
    let Some(authority) = state.entra.as_ref() else {
        return Err(Rejection::new(
            401,
            "AuthenticationFailed",
            "This emulator has no Microsoft Entra ID tenant, so no token can be accepted; its directory predates Entra ID support: run `seedship-emulator init` on a new directory.",
        )
        .into());
    };
    let claims =
        crate::entra::validate_bearer(authority, header, MANAGEMENT_AUDIENCE, now).map_err(Failure::Auth)?;
    let roles: &[&str] = if req.method == Method::GET {
        &READ_ROLES
    } else {
        &WRITE_ROLES
    };
    crate::entra::authorize(authority, &claims, roles).map_err(Failure::Auth)?;
    match query_param(req.query.as_deref(), "api-version") {
        None => {
            return Err(bad(
                "MissingApiVersionParameter",
                format!("The api-version query parameter (?api-version=) is required for all requests; use {ARM_API_VERSION}."),
            )
            .into())
        }
        Some(v) if v != ARM_API_VERSION => {
            return Err(bad(
                "InvalidApiVersionParameter",
                format!("The api-version '{v}' is invalid. The supported version for resource type 'Microsoft.ImportExport' is '{ARM_API_VERSION}'."),
            )
            .into())
        }
        Some(_) => {}
    }
    let segs: Vec<String> = req
        .path
        .trim_matches('/')
        .split('/')
        .map(|s| odata::decode(s, false))
        .collect();
    let seg: Vec<&str> = segs.iter().map(String::as_str).collect();
    let w = |i: usize, word: &str| seg.get(i).is_some_and(|s| s.eq_ignore_ascii_case(word));
    let provider_at = |i: usize| w(i, "providers") && w(i + 1, "Microsoft.ImportExport");
    let mut ctx = Ctx {
        state,
        store,
        req,
        subject: claims.app_id,
        now,
    };
    let get = req.method == Method::GET;
    // /providers/Microsoft.ImportExport/locations[/{name}]
    if provider_at(0) && w(2, "locations") {
        return match (seg.len(), get) {
            (3, true) => list_locations(&ctx),
            (4, true) => get_location(&ctx, seg[3]),
            (3 | 4, false) => Err(method_not_allowed(&req.method)),
            _ => Err(no_resource(&req.path)),
        };
    }
    if !w(0, "subscriptions") || seg.len() < 2 {
        return Err(no_resource(&req.path));
    }
    let sub = seg[1];
    if ctx.state.config.subscription(sub).is_none() {
        return Err(Rejection::new(
            404,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        )
        .into());
    }
    // /subscriptions/{sub}/providers/Microsoft.ImportExport/jobs
    if provider_at(2) && w(4, "jobs") && seg.len() == 5 {
        return if get {
            list_jobs(&mut ctx, sub, None)
        } else {
            Err(method_not_allowed(&req.method))
        };
    }
    if !(w(2, "resourceGroups") && seg.len() >= 7 && provider_at(4) && w(6, "jobs")) {
        return Err(no_resource(&req.path));
    }
    let rg = seg[3];
    match (&seg[7..], &req.method) {
        ([], &Method::GET) => list_jobs(&mut ctx, sub, Some(rg)),
        ([name], &Method::PUT) => create_job(&mut ctx, sub, rg, name),
        ([name], &Method::GET) => get_job(&mut ctx, sub, rg, name),
        ([name], &Method::PATCH) => update_job(&mut ctx, sub, rg, name),
        ([name], &Method::DELETE) => delete_job(&mut ctx, sub, rg, name),
        ([name, action], &Method::POST) if action.eq_ignore_ascii_case("listBitLockerKeys") => {
            list_keys(&mut ctx, sub, rg, name)
        }
        ([] | [_], m) => Err(method_not_allowed(m)),
        ([_, action], m) if action.eq_ignore_ascii_case("listBitLockerKeys") => Err(method_not_allowed(m)),
        _ => Err(no_resource(&req.path)),
    }
}

fn method_not_allowed(m: &Method) -> Failure {
    Rejection::new(
        405,
        "MethodNotAllowed",
        format!("The method {m} is not allowed on this resource."),
    )
    .into()
}

fn no_resource(path: &str) -> Failure {
    Rejection::new(
        404,
        "InvalidResourceType",
        format!("No Microsoft.ImportExport resource at '{path}'."),
    )
    .into()
}

// ---- locations ----

fn arm_location(all: &[Location], loc: &Location) -> ArmLocation {
    let alternates = match &loc.alternate_locations {
        None => vec![location_id(&loc.name)],
        Some(alts) => alts
            .iter()
            .map(|a| {
                let name = all
                    .iter()
                    .find(|l| l.name.eq_ignore_ascii_case(a))
                    .map_or(a.as_str(), |l| &l.name);
                location_id(name)
            })
            .collect(),
    };
    ArmLocation {
        properties: Some(LocationProperties {
            recipient_name: Some(loc.recipient_name.clone()),
            street_address1: Some(loc.street_address1.clone()),
            street_address2: Some(loc.street_address2.clone()),
            city: Some(loc.city.clone()),
            state_or_province: Some(loc.state_or_province.clone()),
            postal_code: Some(loc.postal_code.clone()),
            country_or_region: Some(loc.country_or_region.clone()),
            // the emulator's locations table has no phone numbers
            phone: Some(String::new()),
            additional_shipping_information: Some(String::new()),
            supported_carriers: Some(loc.supported_carriers.clone()),
            alternate_locations: Some(alternates),
        }),
        id: Some(location_id(&loc.name)),
        name: Some(loc.name.clone()),
        resource_type: Some(LOCATION_RESOURCE_TYPE.into()),
    }
}

fn list_locations(ctx: &Ctx<'_>) -> Result<Reply, Failure> {
    let all = &ctx.state.locations;
    let value = all.iter().map(|l| arm_location(all, l)).collect();
    Ok(json(200, &LocationsResponse { value }, ctx.now))
}

fn get_location(ctx: &Ctx<'_>, name: &str) -> Result<Reply, Failure> {
    let loc = find_location(ctx, name).ok_or_else(|| {
        not_found(format!(
            "Location '{name}' is not an Import/Export location; see Locations_List."
        ))
    })?;
    Ok(json(200, &arm_location(&ctx.state.locations, loc), ctx.now))
}
