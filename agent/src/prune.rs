//! `prune`, `unlock` and `key`: giving space back and managing passphrases, under the writer lock.
//!
//! Prune plans first ([`seedship_shared::repo::prune::plan`]: which blobs no snapshot references, which
//! packs are wholly dead, which are repacked), prints the plan, and with `--dry-run` stops there. Executing
//! it follows the crash-safe order of the library. In staging the job descriptor's digests of the objects
//! prune changes are dropped before it writes and computed again at the end, so the descriptor never names
//! bytes that are no longer there.
//!
//! Test hook: `SEEDSHIP_TEST_KILL_AT=STEP` makes `prune` kill itself with SIGKILL when it reaches STEP
//! (`repacked`, `recorded`, `indexed`, `index-deleted`, `old-index-deleted`, `cleared`, `volume-deleted`,
//! `done`); the crash tests use it. It is read once, into [`Config::kill_at`].

use crate::pipeline::{leaf_cache_path, load_leaf_cache, open_metered_repo, save_leaf_cache, staged_blobs};
use crate::policy::{self, Mode, Policy};
use crate::{Config, Exit, KeyCmd, PruneCmd};
use anyhow::bail;
use seedship_shared::blob::Meter;
use seedship_shared::repo::prune::{self, PruneOptions, PrunePlan, PruneStats};
use seedship_shared::repo::{volume_name, Repository};
use seedship_shared::staging::JobDescriptor;
use seedship_shared::units::human;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Parses `--max-unused`: a percentage (`10%` or `10`), 0..=100.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches('%');
    match t.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v / 100.0),
        _ => Err(format!(
            "invalid share {s:?}: give a percentage from 0 to 100, e.g. 10%"
        )),
    }
}

fn plan_lines(p: &PrunePlan) -> Vec<String> {
    vec![
        format!(
            "{} snapshots reference {} blobs ({}); {} blobs ({}) are referenced by none",
            p.snapshots,
            p.live_blobs,
            human(p.live_bytes),
            p.dead_blobs,
            human(p.dead_bytes)
        ),
        format!(
            "{} packs: {} without a live blob (cleared), {} to repack ({} to upload); unused share {:.1}% -> {:.1}%",
            p.packs,
            p.packs_dead,
            p.packs_repack,
            human(p.repack_bytes),
            p.unused_share * 100.0,
            p.unused_share_after * 100.0
        ),
    ]
}

fn stats_line(s: &PruneStats) -> String {
    format!(
        "freed {} blobs, {} packs; cleared {} ({} bytes); repacked {} packs, uploaded {} ({} bytes, {} of them \
         shared pages rewritten); deleted {} volumes; wrote {} index objects, deleted {}",
        s.blobs_freed,
        s.packs_freed,
        human(s.bytes_cleared),
        s.bytes_cleared,
        s.packs_repacked,
        human(s.bytes_repacked + s.bytes_rewritten),
        s.bytes_repacked + s.bytes_rewritten,
        s.bytes_rewritten,
        s.volumes_deleted,
        s.index_written,
        s.index_deleted
    )
}

/// How much one prune may repack (options of `prune` and `forget --prune`).
#[derive(Debug, Clone, clap::Args)]
pub struct PruneArgs {
    /// Repack partly used packs only while unused space is more than this share of the space in use
    /// (percent).
    #[arg(long, default_value = "10%", value_parser = parse_percent)]
    pub max_unused: f64,
    /// Upload at most SIZE of repacked blobs in this run (K, M, G, T suffixes).
    #[arg(long, value_name = "SIZE", value_parser = seedship_shared::units::parse_size)]
    pub max_repack: Option<u64>,
}

impl PruneArgs {
    /// The library's options: these limits, and the snapshots to count as gone (`forget --dry-run --prune`).
    pub fn options(&self, without: Vec<String>) -> PruneOptions {
        PruneOptions {
            max_unused: self.max_unused,
            max_repack: self.max_repack,
            without,
        }
    }
}

/// `prune`.
pub fn prune(cfg: &Config, c: &PruneCmd) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cfg.state_dir)?;
    let _lock = crate::lock::acquire(&cfg.storage_key, &pol, "prune")?;
    let meter = Arc::new(Meter::new());
    let repo = open_metered_repo(cfg, &pol, true, meter.clone())?;
    let report = run(
        &pol,
        &repo,
        &meter,
        c.limits.options(Vec::new()),
        c.dry_run,
        !c.json,
        cfg,
    )?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(Exit::Success)
}

/// Plans and (unless `dry_run`) executes a prune of an open repository whose writer lock the caller holds;
/// prints the plan and what was freed when `print`, and returns the same as the JSON object `--json`
/// prints.
pub(crate) fn run(
    pol: &Policy,
    repo: &Arc<Repository>,
    meter: &Meter,
    opts: PruneOptions,
    dry_run: bool,
    print: bool,
    cfg: &Config,
) -> anyhow::Result<serde_json::Value> {
    let kill_at = cfg.kill_at.as_deref();
    let started = std::time::Instant::now();
    let plan = prune::plan(repo, &opts)?;
    if print {
        for l in plan_lines(&plan) {
            println!("{l}");
        }
        if !plan.pending_objects.is_empty() {
            println!(
                "finishing an interrupted prune ({} recorded)",
                human(plan.pending_bytes)
            );
        }
    }
    let mut stats = PruneStats::default();
    if dry_run || plan.is_empty() {
        if print {
            println!(
                "{}",
                if plan.is_empty() {
                    "nothing to prune"
                } else {
                    "dry run: nothing was changed"
                }
            );
        }
    } else {
        let mut step = |s: &str| {
            if kill_at == Some(s) {
                // SAFETY: sends SIGKILL to this process (the crash tests' hook).
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        };
        let desc = staging_descriptor_before(pol)?;
        stats = prune::execute(repo, &plan, &mut step)?;
        if let Some(old) = desc {
            staging_descriptor_after(cfg, pol, repo, &plan, old)?;
        }
    }
    let m = meter.stats();
    let out = serde_json::json!({
            "dry_run": dry_run,
            "snapshots": plan.snapshots,
            "live_blobs": plan.live_blobs,
            "live_bytes": plan.live_bytes,
            "dead_blobs": plan.dead_blobs,
            "dead_bytes": plan.dead_bytes,
            "packs": plan.packs,
            "packs_dead": plan.packs_dead,
            "packs_to_repack": plan.packs_repack,
            "repack_bytes": plan.repack_bytes,
            "unused_share": plan.unused_share,
            "unused_share_after": plan.unused_share_after,
            "freed": stats,
            "bytes_sent": m.bytes_sent,
            "seconds": started.elapsed().as_secs_f64(),
    });
    if print && !(dry_run || plan.is_empty()) {
        println!("{}", stats_line(&stats));
        if pol.mode == Mode::Online {
            println!(
                "sent {} bytes to the vault ({}) in {:.1} s",
                m.bytes_sent,
                human(m.bytes_sent),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(out)
}

/// In staging with a finished initial backup: drops the descriptor's entries prune may change (volumes,
/// index and prune objects) before anything is written; returns the old descriptor.
fn staging_descriptor_before(pol: &Policy) -> anyhow::Result<Option<JobDescriptor>> {
    if pol.mode != Mode::Offline {
        return Ok(None);
    }
    let dir = pol.job_dir();
    let desc = JobDescriptor::load(&dir)?;
    if desc.blobs.is_empty() {
        return Ok(None);
    }
    let mut trimmed = desc.clone();
    let present: BTreeSet<String> = crate::store::open_staging_store(&pol.blobs_dir())
        .list("")?
        .into_iter()
        .map(|o| o.name)
        .collect();
    trimmed
        .blobs
        .retain(|b| !changed_by_prune(&b.name) && present.contains(&b.name));
    trimmed.save(&dir)?;
    Ok(Some(desc))
}

fn changed_by_prune(name: &str) -> bool {
    ["data/", "index/", "prune/"].iter().any(|p| name.starts_with(p))
}

/// Lists every object with its digest again: unchanged volumes keep theirs; in changed ones only the leaves
/// holding a cleared range, or past the old end where repacked blobs went, are read and hashed again.
fn staging_descriptor_after(
    cfg: &Config,
    pol: &Policy,
    repo: &seedship_shared::repo::Repository,
    plan: &PrunePlan,
    old: JobDescriptor,
) -> anyhow::Result<()> {
    let mut changed: BTreeMap<String, Vec<std::ops::Range<u64>>> = BTreeMap::new();
    for &(v, start, end) in &plan.clear {
        changed.entry(volume_name(v)).or_default().push(start..end);
    }
    if !plan.repack.is_empty() {
        // the repacked blobs went to the newest volume(s), past their old ends
        let first_new = plan.repack.iter().map(|e| e.volume).max().unwrap_or(0);
        for &v in repo.volume_ends().keys().filter(|&&v| v >= first_new) {
            changed.entry(volume_name(v)).or_default();
        }
    }
    let leaf_path = leaf_cache_path(cfg, pol);
    let mut leaves = load_leaf_cache(&leaf_path);
    let mut desc = old;
    desc.blobs = staged_blobs(repo, &desc.blobs, &[], &changed, &mut leaves)?;
    desc.save(&pol.job_dir())?;
    save_leaf_cache(&leaf_path, &leaves);
    Ok(())
}

/// `unlock`.
pub fn unlock(cfg: &Config) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cfg.state_dir)?;
    println!("{}", crate::lock::unlock(&cfg.storage_key, &pol)?);
    Ok(Exit::Success)
}

/// `key list|add|remove|passwd`.
pub fn key(cfg: &Config, c: &KeyCmd) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cfg.state_dir)?;
    let repo = open_metered_repo(cfg, &pol, false, Arc::new(Meter::new()))?;
    let host = seedship_shared::host::hostname();
    let new_pass = |file: &Option<std::path::PathBuf>| -> anyhow::Result<zeroize::Zeroizing<String>> {
        if file.is_none() && cfg.passphrase.in_env() {
            bail!("give the new passphrase with --new-passphrase-file FILE or at the prompt (SEEDSHIP_PASSPHRASE holds the current one)");
        }
        let p = match file {
            Some(f) => crate::config::read_passphrase_file(f)?,
            None => policy::new_passphrase()?,
        };
        seedship_shared::crypto::check_passphrase(&p)?;
        Ok(p)
    };
    match c {
        KeyCmd::List => {
            println!("{:<40}  {:<20}  {:<12}", "key", "created", "host");
            for (name, kf) in repo.keys()? {
                println!(
                    "{:<40}  {:<20}  {:<12}{}",
                    name,
                    seedship_shared::time::UtcTime::from_unix(kf.created.max(0)).readable(),
                    kf.host,
                    if name == repo.key_name() {
                        "  (this passphrase)"
                    } else {
                        ""
                    }
                );
            }
        }
        KeyCmd::Add(a) => {
            let p = new_pass(&a.new_passphrase_file)?;
            let name = repo.add_key(&p, Default::default(), &host)?;
            println!("added {name}");
        }
        KeyCmd::Remove(r) => {
            let name = key_name(&r.key);
            if name == repo.key_name() {
                bail!(
                    "{name} is the key of the passphrase in use: open with another passphrase to remove it, or \
                     use `seedship-agent key passwd` to change it"
                );
            }
            repo.remove_key(&name)?;
            println!("removed {name}");
        }
        KeyCmd::Passwd(a) => {
            let p = new_pass(&a.new_passphrase_file)?;
            // the new key object first: a crash in between leaves both passphrases working
            let name = repo.add_key(&p, Default::default(), &host)?;
            repo.remove_key(repo.key_name())?;
            println!(
                "changed the passphrase: {} replaced by {name}; update the passphrase file or SEEDSHIP_PASSPHRASE \
                 of scheduled backups",
                repo.key_name()
            );
        }
    }
    Ok(Exit::Success)
}

/// `keys/<id>` from an id or a full name.
fn key_name(k: &str) -> String {
    if k.starts_with("keys/") {
        k.to_owned()
    } else {
        format!("keys/{k}")
    }
}
