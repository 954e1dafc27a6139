//! `forget`: removes the snapshots no keep rule keeps, in staging or in the vault, and the same after every
//! backup when the policy stores rules.
//!
//! The decision is the pure [`crate::retention::plan`]; this module gathers the candidates (with the guard for
//! the snapshots the import job seeds), prints the plan (text or `--json`), and unless `--dry-run` deletes the
//! `snapshots/<id>` objects of the removed ones, one at a time (a kill leaves the rest for the rerun). Only
//! snapshot objects are removed: the data they alone referenced stays in the volumes until a prune.

use crate::policy::{Mode, Policy};
use crate::retention::{self, Candidate, KeepRules, RetentionPlan, Within};
use crate::{Config, Exit};
use anyhow::{bail, Context};
use jiff::tz::TimeZone;
use seedship_shared::blob::Meter;
use seedship_shared::repo::{Repository, Snapshot};
use seedship_shared::staging::{JobDescriptor, JobState};
use std::collections::HashSet;
use std::sync::Arc;

/// The keep rules as options (of `forget` and `policy set`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeepArgs {
    /// Keep the newest N snapshots.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one (local time).
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one (local time).
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one (local time).
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one (local time).
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one (local time).
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot taken within DURATION of the newest one (e.g. 1y6m, 30d, 12h).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<Within>,
}

impl KeepArgs {
    /// The rules given (0 counts kept as given: they turn a stored rule off).
    pub fn rules(&self) -> KeepRules {
        KeepRules {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
        }
    }
}

/// `forget`.
#[derive(Debug, clap::Args)]
pub struct ForgetCmd {
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Show what would be kept and removed, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the listing as JSON.
    #[arg(long)]
    pub json: bool,
    /// Then prune: give back the space of the data only the removed snapshots referenced (as `prune` does,
    /// under the same writer lock).
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub limits: crate::prune::PruneArgs,
}

/// The host's time zone (`TZ`, else /etc/localtime), UTC when neither names one.
pub fn host_time_zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

fn zone_name(tz: &TimeZone) -> String {
    tz.iana_name().unwrap_or("local").to_string()
}

/// The snapshot that must stay whatever the rules say: while the policy is offline and the staging job is
/// complete (its drives may be prepared; completion has not finished), the newest snapshot the job
/// descriptor lists is the one the import job seeds. Older listed snapshots may go: the descriptor is
/// rewritten without them, and an import that still carries them holds a superset of what it lists.
fn seeded(pol: &Policy, snaps: &[(String, Snapshot)]) -> anyhow::Result<Option<(String, String)>> {
    if pol.mode != Mode::Offline {
        return Ok(None);
    }
    let desc = JobDescriptor::load(&pol.job_dir())?;
    if desc.state != JobState::BackupComplete {
        return Ok(None);
    }
    let listed: HashSet<&str> = desc
        .blobs
        .iter()
        .filter_map(|b| b.name.strip_prefix("snapshots/"))
        .collect();
    Ok(snaps
        .iter()
        .rev()
        .find(|(id, _)| listed.contains(id.as_str()))
        .map(|(id, _)| {
            (
                id.clone(),
                format!(
                    "seeded by import job {} (completion has not finished)",
                    desc.job_name
                ),
            )
        }))
}

/// Plans retention of the repository's snapshots.
pub fn plan(
    repo: &Repository,
    pol: &Policy,
    rules: &KeepRules,
    tz: &TimeZone,
) -> anyhow::Result<RetentionPlan> {
    let snaps = repo.snapshots()?;
    let guard = seeded(pol, &snaps)?;
    let cands: Vec<Candidate> = snaps
        .into_iter()
        .map(|(id, s)| Candidate {
            protected: guard
                .as_ref()
                .filter(|(g, _)| *g == id)
                .map(|(_, why)| why.clone()),
            id,
            time: s.time,
            time_nsec: s.time_nsec,
            host: s.host,
            paths: s.paths,
        })
        .collect();
    Ok(retention::plan(&cands, rules, tz))
}

/// Deletes the snapshot objects the plan removes; returns how many. In staging, the job descriptor's blob
/// list drops them first (a kill in between leaves objects the descriptor no longer lists, which the next
/// forget removes).
pub fn execute(repo: &Repository, pol: &Policy, plan: &RetentionPlan) -> anyhow::Result<usize> {
    let removed: HashSet<String> = plan
        .removed()
        .iter()
        .map(|id| format!("snapshots/{id}"))
        .collect();
    if removed.is_empty() {
        return Ok(0);
    }
    if pol.mode == Mode::Offline {
        let mut desc = JobDescriptor::load(&pol.job_dir())?;
        let n = desc.blobs.len();
        desc.blobs.retain(|b| !removed.contains(&b.name));
        if desc.blobs.len() != n {
            desc.save(&pol.job_dir())?;
        }
    }
    for name in &removed {
        repo.store()
            .delete(name)
            .with_context(|| format!("cannot remove {name}; rerun `seedship-agent forget` to finish"))?;
    }
    Ok(removed.len())
}

/// `forget`.
pub fn forget(cfg: &Config, c: &ForgetCmd) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cfg.state_dir)?;
    let rules = pol.keep.overridden_by(&c.keep.rules());
    if rules.is_empty() {
        bail!(
            "no keep rule: give --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, \
             --keep-yearly or --keep-within, or store rules with `seedship-agent policy set --keep-daily N ...`"
        );
    }
    // a dry run only reads; anything that writes holds the writer lock (no backup or prune meanwhile)
    let _lock = if c.dry_run {
        None
    } else {
        Some(crate::lock::acquire(
            &cfg.storage_key,
            &pol,
            if c.prune { "forget --prune" } else { "forget" },
        )?)
    };
    let meter = Arc::new(Meter::new());
    let repo = crate::pipeline::open_metered_repo(cfg, &pol, true, meter.clone())?;
    let tz = host_time_zone();
    let plan = plan(&repo, &pol, &rules, &tz)?;
    let removed = if c.dry_run {
        0
    } else {
        execute(&repo, &pol, &plan)?
    };
    if !c.json {
        print_plan(&plan, &tz);
        let kept = plan.kept();
        if c.dry_run {
            println!(
                "dry run: would remove {} snapshot(s) and keep {kept}; nothing was changed",
                plan.removed().len()
            );
        } else {
            println!("removed {removed} snapshot(s), kept {kept}");
            if removed > 0 && !c.prune {
                println!("the data only they referenced stays in the repository until it is pruned");
            }
        }
    }
    // a dry run plans the prune as if the snapshots were gone (they are not removed yet)
    let pruned = if c.prune {
        let without = if c.dry_run {
            plan.removed().into_iter().map(str::to_owned).collect()
        } else {
            Vec::new()
        };
        let (dry, print) = (c.dry_run, !c.json);
        Some(crate::prune::run(
            &pol,
            &repo,
            &meter,
            c.limits.options(without),
            dry,
            print,
            cfg,
        )?)
    } else {
        None
    };
    if c.json {
        let mut out = plan_json(&plan, &tz, c.dry_run);
        if let Some(p) = pruned {
            out["prune"] = p;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(Exit::Success)
}

/// Applies the policy's stored rules after a successful backup (nothing when there are none).
pub fn after_backup(repo: &Repository, pol: &Policy) -> anyhow::Result<()> {
    if pol.keep.is_empty() {
        return Ok(());
    }
    let tz = host_time_zone();
    let plan = plan(repo, pol, &pol.keep, &tz)?;
    let removed = execute(repo, pol, &plan).context(
        "the snapshot is saved, but applying the policy's retention failed; run `seedship-agent forget`",
    )?;
    println!(
        "retention ({}): removed {removed} snapshot(s), kept {}",
        plan.rules,
        plan.kept()
    );
    Ok(())
}

fn local_time(tz: &TimeZone, secs: i64) -> String {
    retention::local(tz, secs)
        .strftime("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

fn print_plan(plan: &RetentionPlan, tz: &TimeZone) {
    println!("rules: {} (time zone {})", plan.rules, zone_name(tz));
    for g in &plan.groups {
        let kept = g.snapshots.iter().filter(|d| d.keep).count();
        println!(
            "host {}, paths {}: {} snapshot(s), keep {kept}, remove {}",
            g.host,
            g.paths.join(" "),
            g.snapshots.len(),
            g.snapshots.len() - kept
        );
        for d in &g.snapshots {
            println!(
                "  {:<6}  {}  {}  {}",
                if d.keep { "keep" } else { "remove" },
                &d.id[..d.id.len().min(16)],
                local_time(tz, d.time),
                d.reasons.join(", ")
            );
        }
    }
}

fn plan_json(plan: &RetentionPlan, tz: &TimeZone, dry_run: bool) -> serde_json::Value {
    let groups: Vec<serde_json::Value> = plan
        .groups
        .iter()
        .map(|g| {
            let snaps: Vec<serde_json::Value> = g
                .snapshots
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "id": d.id,
                        "time": d.time,
                        "local_time": local_time(tz, d.time),
                        "keep": d.keep,
                        "reasons": d.reasons,
                    })
                })
                .collect();
            serde_json::json!({"host": g.host, "paths": g.paths, "snapshots": snaps})
        })
        .collect();
    serde_json::json!({
        "dry_run": dry_run,
        "rules": plan.rules,
        "time_zone": zone_name(tz),
        "kept": plan.kept(),
        "removed": plan.removed(),
        "groups": groups,
    })
}
