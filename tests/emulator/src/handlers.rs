//! The operations: routing a request to List Locations, List Jobs, List Storage Accounts, Put / Get / Update /
//! Delete Job and the operator endpoints, after authenticating the client certificate against the
//! subscription in the URL and checking the common headers. Handlers are plain functions from a [`Request`]
//! to a [`Reply`], so they are tested without a socket.

use crate::conditions::{self, Current};
use crate::odata::{self, Reply};
use crate::request::authenticate;
pub use crate::request::Request;
use crate::state::{AppState, Failure};
use crate::store::{PutRefusal, Store, StoredJob};
use crate::validation::{self, Metadata, Negotiated, Rejection, MAX_ACTIVE_JOBS};
use hyper::{HeaderMap, Method};
use seedship_shared::api::{
    DriveState, Job, JobState, JobSummary, JobUpdate, Location, ODataList, JOB_TYPE, LOCATION_TYPE,
};

/// What a handler needs besides the request.
struct Ctx<'a> {
    state: &'a AppState,
    headers: &'a HeaderMap,
    store: &'a mut Store,
    sub: String,
    base: String,
    neg: Negotiated,
    now: i64,
}

impl Ctx<'_> {
    fn ok(&self, status: u16, body: Option<Vec<u8>>) -> Reply {
        odata::reply(status, Some(&self.neg.version), self.neg.metadata, self.now, body)
    }
}

/// Answers one request.
pub fn handle(state: &AppState, req: &Request) -> Reply {
    // an operator receive reads its drives' headers first: no file I/O while the job store is locked
    let drives = crate::operator::read_received_drives(state, req);
    let mut store = match state.store.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    let now = store.now().unwrap_or(0);
    if let Some(reply) = crate::entra::route(state.entra.as_ref(), &state.public_url, req, now) {
        return reply;
    }
    if crate::arm::is_arm_path(&req.path) {
        return crate::arm::handle(state, &mut store, req, now);
    }
    match route(state, &mut store, req, now, drives) {
        Ok(r) => r,
        Err(Failure::Rejected(rej, version)) => odata::error(&rej, version.as_deref(), now),
        Err(Failure::Store(e)) => {
            // the details (paths, database errors) go to the log, not to the client
            tracing::error!(error = %e, "job store failure");
            let rej = Rejection::new(500, "InternalError", "The server encountered an internal error.");
            odata::error(&rej, None, now)
        }
    }
}

fn not_found(what: String) -> Rejection {
    Rejection::new(404, "ResourceNotFound", what)
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        odata::decode(k, true)
            .eq_ignore_ascii_case(name)
            .then(|| odata::decode(v, true))
    })
}

fn route(
    state: &AppState,
    store: &mut Store,
    req: &Request,
    now: i64,
    drives: Option<crate::operator::ReadDrives>,
) -> Result<Reply, Failure> {
    let mut segs: Vec<String> = req
        .path
        .trim_start_matches('/')
        .split('/')
        .map(|s| odata::decode(s, false))
        .collect();
    while segs.len() > 1 && segs.last().is_some_and(|s| s.is_empty()) {
        segs.pop();
    }
    let is = |i: usize, word: &str| segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(word));
    if segs.len() < 3 || !is(1, "services") || !is(2, "importexport") {
        return Err(not_found(format!("No Import/Export resource at {}.", req.path)).into());
    }
    let sub_id = segs[0].clone();
    authenticate(&state.config, &sub_id, req.thumbprint.as_deref())?;
    let rest: Vec<&str> = segs[3..].iter().map(String::as_str).collect();
    let method = match (
        req.method.clone(),
        req.headers.get("x-http-method").and_then(|v| v.to_str().ok()),
    ) {
        (Method::GET, Some(m)) if m.eq_ignore_ascii_case("PUT") => Method::PUT,
        (Method::GET, Some(m)) if m.eq_ignore_ascii_case("PATCH") => Method::PATCH,
        (m, _) => m,
    };
    store.purge_expired(now)?;
    let host = req
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let base = format!("https://{host}/{sub_id}/services/importexport");
    if rest.first().is_some_and(|s| *s == "_operator") {
        crate::operator::authorize(&state.dir, &req.headers)?;
        return crate::operator::handle(state, store, &sub_id, &method, &rest[1..], &req.body, now, drives);
    }
    let format = query_param(req.query.as_deref(), "$format");
    let neg = validation::check_headers(&method, &req.headers, format.as_deref())?;
    let version = Some(neg.version.clone());
    let mut ctx = Ctx {
        state,
        headers: &req.headers,
        store,
        sub: sub_id,
        base,
        neg,
        now,
    };
    let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let read = method == Method::GET || method == Method::HEAD;
    let result = match (
        lower.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
        read,
    ) {
        (["locations"], true) => list_locations(&ctx, query_param(req.query.as_deref(), "originlocation")),
        (["jobs"], true) => list_jobs(&ctx),
        (["storageaccounts"], true) => list_accounts(&ctx),
        (["storageaccounts", _, "jobs", _], _) => {
            let (account, job) = (rest[1], rest[3]);
            match method {
                Method::PUT => put_job(&mut ctx, account, job, &req.body),
                Method::PATCH => update_job(&mut ctx, account, job, &req.body),
                Method::GET | Method::HEAD => get_job(&ctx, account, job),
                Method::DELETE => delete_job(&mut ctx, account, job),
                _ => Err(Rejection::new(
                    405,
                    "MethodNotAllowed",
                    format!("{method} is not supported on a job."),
                )
                .into()),
            }
        }
        (["locations"] | ["jobs"] | ["storageaccounts"], false) => Err(Rejection::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported here; use GET or HEAD."),
        )
        .into()),
        _ => Err(not_found(format!("No Import/Export resource at {}.", req.path)).into()),
    };
    result.map_err(|f| match f {
        Failure::Rejected(r, None) => Failure::Rejected(r, version),
        other => other,
    })
}

/// The entry for one location, with the annotations the metadata level asks for.
fn location_entry(ctx: &Ctx<'_>, loc: &Location) -> Location {
    let mut l = loc.clone();
    let only_self = l
        .alternate_locations
        .as_ref()
        .is_some_and(|a| a.len() == 1 && a[0].eq_ignore_ascii_case(&l.name));
    if only_self {
        l.alternate_locations = None;
    }
    (l.odata_type, l.odata_id, l.odata_edit_link) = match ctx.neg.metadata {
        Metadata::None => (None, None, None),
        m => (
            (m == Metadata::Full).then(|| LOCATION_TYPE.to_string()),
            Some(l.name.clone()),
            Some(format!("{}/locations/{}", ctx.base, odata::encode(&l.name))),
        ),
    };
    l
}

fn list_body<T: serde::Serialize>(ctx: &Ctx<'_>, set: &str, value: Vec<T>) -> Vec<u8> {
    let metadata = (ctx.neg.metadata != Metadata::None).then(|| {
        format!(
            "{}/$metadata#Microsoft.Cis.Services.ImportExport.Public.ImportExportData.{set}",
            ctx.base
        )
    });
    let count = Some(serde_json::Value::String(value.len().to_string()));
    odata::json(&ODataList {
        metadata,
        count,
        value,
    })
}

fn find_location<'a>(ctx: &Ctx<'a>, name: &str) -> Option<&'a Location> {
    ctx.state
        .locations
        .iter()
        .find(|l| l.name.eq_ignore_ascii_case(name))
}

/// List Locations (seed 001): all locations, or the origin followed by its alternates.
fn list_locations(ctx: &Ctx<'_>, origin: Option<String>) -> Result<Reply, Failure> {
    let chosen: Vec<&Location> = match origin {
        None => ctx.state.locations.iter().collect(),
        Some(o) => match find_location(ctx, &o) {
            None => Vec::new(),
            Some(here) => {
                let mut v = vec![here];
                for alt in here.alternate_locations.iter().flatten() {
                    if let Some(a) = find_location(ctx, alt) {
                        if !v.iter().any(|x| x.name == a.name) {
                            v.push(a);
                        }
                    }
                }
                v
            }
        },
    };
    let value: Vec<Location> = chosen.into_iter().map(|l| location_entry(ctx, l)).collect();
    Ok(ctx.ok(200, Some(list_body(ctx, "Locations", value))))
}

fn list_jobs(ctx: &Ctx<'_>) -> Result<Reply, Failure> {
    let jobs = ctx.store.list(&ctx.sub)?;
    let value: Vec<JobSummary> = jobs
        .iter()
        .map(|j| JobSummary {
            odata_id: (ctx.neg.metadata != Metadata::None).then(|| j.name.clone()),
            odata_edit_link: (ctx.neg.metadata != Metadata::None)
                .then(|| format!("{}/jobs/{}", ctx.base, j.name)),
            name: j.name.clone(),
            job_type: j
                .job
                .properties
                .job_type
                .unwrap_or(seedship_shared::api::JobType::Import),
            state: j.state,
            storage_account_name: j.account.clone(),
        })
        .collect();
    Ok(ctx.ok(200, Some(list_body(ctx, "Jobs", value))))
}

fn list_accounts(ctx: &Ctx<'_>) -> Result<Reply, Failure> {
    let mut names: Vec<String> = ctx.store.list(&ctx.sub)?.into_iter().map(|j| j.account).collect();
    names.sort();
    names.dedup();
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Account {
        name: String,
    }
    let value: Vec<Account> = names.into_iter().map(|name| Account { name }).collect();
    Ok(ctx.ok(200, Some(list_body(ctx, "StorageAccounts", value))))
}

fn job_headers(ctx: &Ctx<'_>, mut r: Reply, name: &str, updated: i64) -> Reply {
    r.headers
        .push(("DataServiceId", format!("{}/jobs/{}", ctx.base, name)));
    r.headers.push(("ETag", odata::etag(updated)));
    r.headers.push(("Last-Modified", odata::http_date(updated)));
    r
}

fn put_job(ctx: &mut Ctx<'_>, account: &str, name: &str, body: &[u8]) -> Result<Reply, Failure> {
    validation::account_name(account)?;
    validation::job_name(name)?;
    let mut job: Job = serde_json::from_slice(body).map_err(|e| {
        Rejection::new(
            400,
            "InvalidRequestBody",
            format!("The Put Job body is not a valid job: {e}."),
        )
    })?;
    let location = validation::new_job(&job, name, account, &ctx.neg.version, &ctx.state.locations)?.clone();
    let mut drives = job.drives().to_vec();
    job.properties.drive_list = None;
    for d in &mut drives {
        d.state = Some(DriveState::Specified);
    }
    job.drive_list = Some(drives);
    job.name = name.to_string();
    (job.odata_type, job.odata_id, job.odata_edit_link) = (None, None, None);
    job.properties.storage_account_name = Some(account.to_string());
    job.properties.location = Some(location.name.clone());
    job.properties.state = None;
    // a name in use by a job past Creating is refused whatever the conditional headers say
    let existing = ctx.store.get(&ctx.sub, name)?;
    if let Some(e) = existing
        .as_ref()
        .filter(|e| e.state != JobState::Creating || e.account != account)
    {
        return Err(name_taken(name, e.state, &e.account));
    }
    conditions::check(ctx.headers, existing.map(|e| Current { updated: e.updated }))?;
    let stored = StoredJob {
        subscription: ctx.sub.clone(),
        name: name.to_string(),
        account: account.to_string(),
        state: JobState::Creating,
        job,
        created: ctx.now,
        updated: ctx.now,
        finished: None,
    };
    match ctx.store.put(&stored, MAX_ACTIVE_JOBS)? {
        Ok(_) => Ok(job_headers(ctx, ctx.ok(201, None), name, ctx.now)),
        Err(PutRefusal::NameTaken { state, account: other }) => Err(name_taken(name, state, &other)),
        Err(PutRefusal::TooManyActive(n)) => Err(Rejection::new(
            409,
            "TooManyActiveJobs",
            format!("The subscription has {n} active jobs; at most {MAX_ACTIVE_JOBS} are allowed. Complete or delete one first."),
        )
        .into()),
    }
}

fn name_taken(name: &str, state: JobState, account: &str) -> Failure {
    Rejection::new(
        409,
        "JobAlreadyExists",
        format!("Job '{name}' already exists (storage account '{account}', state {state}); a job name can be reused only after that job is deleted."),
    )
    .into()
}

fn load(ctx: &Ctx<'_>, account: &str, name: &str) -> Result<StoredJob, Failure> {
    match ctx.store.get(&ctx.sub, name)? {
        Some(j) if j.account == account => {
            conditions::check(ctx.headers, Some(Current { updated: j.updated }))?;
            Ok(j)
        }
        _ => Err(not_found(format!(
            "Job '{name}' does not exist in storage account '{account}'."
        ))
        .into()),
    }
}

/// The job as Get Job shows it: secrets removed, state and the shipping address filled in.
fn render_job(ctx: &Ctx<'_>, sj: &StoredJob) -> Job {
    let mut j = sj.job.clone();
    j.properties.storage_account_key = None;
    j.properties.container_sas = None;
    for d in j.drive_list.iter_mut().flatten() {
        d.bit_locker_key = None;
    }
    j.properties.state = Some(sj.state);
    j.properties.cancel_requested.get_or_insert(false);
    j.properties.percent_complete.get_or_insert(0);
    j.properties
        .import_export_states_path
        .get_or_insert_with(|| "waimportexport".into());
    j.properties.enable_verbose_log.get_or_insert(false);
    j.properties.backup_drive_manifest.get_or_insert(false);
    j.properties.shipping_information = j
        .properties
        .location
        .as_deref()
        .and_then(|l| find_location(ctx, l))
        .map(|l| {
            let mut l = l.clone();
            l.alternate_locations = None;
            l
        });
    if ctx.neg.metadata != Metadata::None {
        j.odata_type = (ctx.neg.metadata == Metadata::Full).then(|| JOB_TYPE.to_string());
        j.odata_id = Some(sj.name.clone());
        j.odata_edit_link = Some(format!("{}/jobs/{}", ctx.base, sj.name));
    }
    j
}

fn get_job(ctx: &Ctx<'_>, account: &str, name: &str) -> Result<Reply, Failure> {
    let sj = load(ctx, account, name)?;
    let body = odata::json(&render_job(ctx, &sj));
    Ok(job_headers(ctx, ctx.ok(200, Some(body)), name, sj.updated))
}

fn update_job(ctx: &mut Ctx<'_>, account: &str, name: &str, body: &[u8]) -> Result<Reply, Failure> {
    let mut sj = load(ctx, account, name)?;
    let u: JobUpdate = serde_json::from_slice(body).map_err(|e| {
        Rejection::new(
            400,
            "InvalidRequestBody",
            format!("The Update Job Properties body is not valid: {e}."),
        )
    })?;
    let p = &mut sj.job.properties;
    validation::update(
        &u,
        sj.state,
        p.return_address.is_some(),
        p.delivery_package.is_some(),
    )?;
    let n = u.properties;
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = n.$f { p.$f = Some(v); } )* };
    }
    set!(
        friendly_name,
        description,
        metadata,
        cancel_requested,
        return_address,
        return_shipping,
        delivery_package,
        enable_verbose_log,
        backup_drive_manifest
    );
    if n.state == Some(JobState::Shipping) {
        sj.state = JobState::Shipping;
    }
    sj.updated = ctx.now;
    ctx.store.save(&sj)?;
    Ok(job_headers(ctx, ctx.ok(204, None), name, ctx.now))
}

fn delete_job(ctx: &mut Ctx<'_>, account: &str, name: &str) -> Result<Reply, Failure> {
    let sj = load(ctx, account, name)?;
    validation::delete(sj.state)?;
    ctx.store.delete(&ctx.sub, name)?;
    Ok(ctx.ok(200, None))
}
