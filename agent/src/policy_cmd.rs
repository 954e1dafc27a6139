//! `policy show` and `policy set`: the backup policy after `offline start`, in staging and in the vault.
//!
//! `policy set` changes sources, exclusions, retention and the upload limit, checks the result (every
//! source exists, every pattern and exclude file is valid, a schedule is complete), records what changed
//! with the time in the policy's change list (shown by `status`), and saves the policy atomically. A source
//! added after seeding is read in full by the next backup (an incremental; its parent is the newest snapshot
//! that shares a source, so the other sources stay incremental).

use crate::exclude::Exclusions;
use crate::forget::KeepArgs;
use crate::policy::{Policy, PolicyChange};
use crate::throttle::{UploadLimit, WorkDays, WorkHours};
use crate::{Config, Exit};
use anyhow::{bail, Context};
use clap::Subcommand;
use seedship_shared::units::{parse_rate, parse_size};
use std::path::{Path, PathBuf};

/// The exclusion options (of `offline start` and `policy set`, where they add to the stored ones).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ExcludeArgs {
    /// Leave out paths matching PATTERN (gitignore-style glob; repeatable).
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// As --exclude, ignoring case.
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexclude: Vec<String>,
    /// Read patterns from FILE, one a line (read again at every backup; repeatable).
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Leave out folders that hold a file named NAME (repeatable).
    #[arg(long = "exclude-if-present", value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
    /// Leave out folders holding a CACHEDIR.TAG file with its signature.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Stay on each source's file system: leave out mount points below it.
    #[arg(long)]
    pub one_file_system: bool,
    /// Leave out files larger than SIZE (bytes, or with K, M, G, T).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub exclude_larger_than: Option<u64>,
}

impl ExcludeArgs {
    /// Adds these options to `ex`; returns one line per change.
    pub fn apply(&self, ex: &mut Exclusions) -> anyhow::Result<Vec<String>> {
        let mut changes = vec![];
        let mut push = |list: &mut Vec<String>, v: &str, what: &str| {
            if !list.iter().any(|x| x == v) {
                list.push(v.to_string());
                changes.push(format!("exclusion added: {what} {v}"));
            }
        };
        for p in &self.exclude {
            push(&mut ex.patterns, p, "--exclude");
        }
        for p in &self.iexclude {
            push(&mut ex.ipatterns, p, "--iexclude");
        }
        for n in &self.exclude_if_present {
            push(&mut ex.if_present, n, "--exclude-if-present");
        }
        for f in &self.exclude_file {
            let abs = std::fs::canonicalize(f).with_context(|| format!("exclude file {}", f.display()))?;
            if !ex.files.contains(&abs) {
                changes.push(format!("exclusion added: --exclude-file {}", abs.display()));
                ex.files.push(abs);
            }
        }
        if self.exclude_caches && !ex.caches {
            ex.caches = true;
            changes.push("exclusion added: --exclude-caches".into());
        }
        if self.one_file_system && !ex.one_file_system {
            ex.one_file_system = true;
            changes.push("exclusion added: --one-file-system".into());
        }
        if let Some(n) = self.exclude_larger_than {
            if ex.larger_than != Some(n) {
                ex.larger_than = Some(n);
                changes.push(format!("exclusion set: --exclude-larger-than {n}"));
            }
        }
        Ok(changes)
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Show the backup policy: sources, exclusions, retention, upload limit, changes.
    Show {
        /// Print the policy as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change the backup policy (sources, exclusions, retention, upload limit).
    Set(Box<PolicySetCmd>),
}

#[derive(Debug, clap::Args)]
pub struct PolicySetCmd {
    /// Add a folder to back up (repeatable); the next backup reads it in full.
    #[arg(long, value_name = "PATH")]
    pub add_source: Vec<PathBuf>,
    /// Stop backing up a folder (repeatable); its data stays in the existing snapshots.
    #[arg(long, value_name = "PATH")]
    pub remove_source: Vec<PathBuf>,
    #[command(flatten)]
    pub exclude: ExcludeArgs,
    /// Remove an --exclude or --iexclude pattern (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub remove_exclude: Vec<String>,
    /// Stop reading an exclude file (repeatable).
    #[arg(long, value_name = "FILE")]
    pub no_exclude_file: Vec<PathBuf>,
    /// Remove an --exclude-if-present name (repeatable).
    #[arg(long, value_name = "NAME")]
    pub no_exclude_if_present: Vec<String>,
    /// Back up cache folders again.
    #[arg(long)]
    pub no_exclude_caches: bool,
    /// Cross file systems again.
    #[arg(long)]
    pub no_one_file_system: bool,
    /// Back up large files again.
    #[arg(long)]
    pub no_exclude_larger_than: bool,
    /// Remove every exclusion.
    #[arg(long)]
    pub clear_excludes: bool,
    /// Retention rules applied after every backup (a count of 0 turns a rule off).
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Remove the --keep-within rule.
    #[arg(long)]
    pub no_keep_within: bool,
    /// Remove every retention rule (keep every snapshot).
    #[arg(long)]
    pub clear_keep: bool,
    /// Limit uploads to the vault to RATE bytes per second at all times (K, M, G suffixes).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit_upload: Option<u64>,
    /// Remove every upload limit and schedule.
    #[arg(long)]
    pub no_limit_upload: bool,
    /// The limit during work hours (needs --work-hours).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit_upload_work: Option<u64>,
    /// The limit outside work hours (needs --work-hours).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit_upload_off: Option<u64>,
    /// Work hours in local time, e.g. 08:00-18:00.
    #[arg(long, value_name = "HH:MM-HH:MM")]
    pub work_hours: Option<WorkHours>,
    /// Work days, e.g. mon-fri (the default) or mon,wed,fri.
    #[arg(long, value_name = "DAYS")]
    pub work_days: Option<WorkDays>,
}

/// `policy show` / `policy set`.
pub fn run(cfg: &Config, c: &PolicyCmd) -> anyhow::Result<Exit> {
    match c {
        PolicyCmd::Show { json } => show(cfg, *json),
        PolicyCmd::Set(s) => set(cfg, s),
    }
}

fn show(cfg: &Config, json: bool) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cfg.state_dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&pol)?);
        return Ok(Exit::Success);
    }
    println!("mode: {:?}", pol.mode);
    println!("sources: {}", pol.sources_line());
    for line in summary(&pol) {
        println!("{line}");
    }
    for ch in &pol.changes {
        println!(
            "changed {}: {}",
            seedship_shared::time::UtcTime::from_unix(ch.time.max(0)).readable(),
            ch.what.join("; ")
        );
    }
    Ok(Exit::Success)
}

/// The lines `status` and `policy show` print about exclusions, retention and the upload limit.
pub fn summary(pol: &Policy) -> Vec<String> {
    let ex = pol.exclude.describe();
    vec![
        format!(
            "exclusions: {}",
            if ex.is_empty() {
                "none".into()
            } else {
                ex.join(" ")
            }
        ),
        format!("retention after each backup: {}", pol.keep.describe()),
        format!("upload limit: {}", pol.upload.describe()),
    ]
}

/// The last change made with `policy set`, for `status`.
pub fn last_change(pol: &Policy) -> Option<String> {
    pol.changes.last().map(|c| {
        format!(
            "policy changed {}: {}",
            seedship_shared::time::UtcTime::from_unix(c.time.max(0)).readable(),
            c.what.join("; ")
        )
    })
}

fn set(cfg: &Config, c: &PolicySetCmd) -> anyhow::Result<Exit> {
    let mut pol = Policy::load(&cfg.state_dir)?;
    let mut what = vec![];
    sources(&mut pol, c, &mut what)?;
    exclusions(&mut pol.exclude, c, &mut what)?;
    pol.exclude.validate()?;
    let before = pol.keep.describe();
    if c.clear_keep {
        pol.keep = Default::default();
    }
    pol.keep = pol.keep.overridden_by(&c.keep.rules());
    if c.no_keep_within {
        pol.keep.within = None;
    }
    if pol.keep.describe() != before {
        what.push(format!("retention: {before} -> {}", pol.keep.describe()));
    }
    upload(&mut pol.upload, c, &mut what)?;
    if what.is_empty() {
        bail!("nothing to change: give an option (see `seedship-agent policy set --help`)");
    }
    pol.changes.push(PolicyChange {
        time: jiff::Timestamp::now().as_second(),
        what: what.clone(),
    });
    pol.save(&cfg.state_dir)?;
    for w in &what {
        println!("{w}");
    }
    println!("policy saved; the next backup applies it");
    Ok(Exit::Success)
}

fn sources(pol: &mut Policy, c: &PolicySetCmd, what: &mut Vec<String>) -> anyhow::Result<()> {
    for s in &c.add_source {
        let p = std::fs::canonicalize(s).with_context(|| format!("source {}", s.display()))?;
        if p == Path::new("/") {
            bail!("source /: name the top-level folders to back up instead of the root");
        }
        if !p.is_dir() {
            bail!("source {}: not a folder", p.display());
        }
        if let Some(o) = pol.sources.iter().find(|o| p.starts_with(o) || o.starts_with(&p)) {
            bail!(
                "source {} overlaps source {}: remove one first (--remove-source)",
                p.display(),
                o.display()
            );
        }
        what.push(format!("source added: {}", p.display()));
        pol.sources.push(p);
    }
    for s in &c.remove_source {
        let p = std::fs::canonicalize(s).unwrap_or_else(|_| s.clone());
        let Some(i) = pol.sources.iter().position(|o| *o == p || o == s) else {
            bail!(
                "{} is not a source; the sources are: {}",
                s.display(),
                pol.sources_line()
            );
        };
        let gone = pol.sources.remove(i);
        what.push(format!("source removed: {}", gone.display()));
    }
    if pol.sources.is_empty() {
        bail!("that would leave no source: add one with --add-source first");
    }
    Ok(())
}

fn exclusions(ex: &mut Exclusions, c: &PolicySetCmd, what: &mut Vec<String>) -> anyhow::Result<()> {
    if c.clear_excludes && !ex.is_empty() {
        *ex = Exclusions::default();
        what.push("exclusions cleared".into());
    }
    for p in &c.remove_exclude {
        let n = ex.patterns.len() + ex.ipatterns.len();
        ex.patterns.retain(|x| x != p);
        ex.ipatterns.retain(|x| x != p);
        if n == ex.patterns.len() + ex.ipatterns.len() {
            bail!("{p:?} is not an exclude pattern of the policy (see `seedship-agent policy show`)");
        }
        what.push(format!("exclusion removed: {p}"));
    }
    for f in &c.no_exclude_file {
        let abs = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
        let n = ex.files.len();
        ex.files.retain(|x| *x != abs && x != f);
        if n == ex.files.len() {
            bail!("{} is not an exclude file of the policy", f.display());
        }
        what.push(format!("exclusion removed: --exclude-file {}", f.display()));
    }
    for name in &c.no_exclude_if_present {
        let n = ex.if_present.len();
        ex.if_present.retain(|x| x != name);
        if n == ex.if_present.len() {
            bail!("{name:?} is not an --exclude-if-present name of the policy");
        }
        what.push(format!("exclusion removed: --exclude-if-present {name}"));
    }
    for (flag, on, name) in [
        (c.no_exclude_caches, &mut ex.caches, "--exclude-caches"),
        (c.no_one_file_system, &mut ex.one_file_system, "--one-file-system"),
    ] {
        if flag && *on {
            *on = false;
            what.push(format!("exclusion removed: {name}"));
        }
    }
    if c.no_exclude_larger_than && ex.larger_than.take().is_some() {
        what.push("exclusion removed: --exclude-larger-than".into());
    }
    what.extend(c.exclude.apply(ex)?);
    Ok(())
}

fn upload(u: &mut UploadLimit, c: &PolicySetCmd, what: &mut Vec<String>) -> anyhow::Result<()> {
    let before = u.describe();
    if c.no_limit_upload {
        *u = UploadLimit::default();
    }
    if let Some(r) = c.limit_upload {
        u.rate = Some(r);
    }
    if c.limit_upload_work.is_some() {
        u.work = c.limit_upload_work;
    }
    if c.limit_upload_off.is_some() {
        u.off = c.limit_upload_off;
    }
    if c.work_hours.is_some() {
        u.work_hours = c.work_hours;
    }
    if c.work_days.is_some() {
        u.work_days = c.work_days;
    }
    u.validate().map_err(anyhow::Error::msg)?;
    if u.describe() != before {
        what.push(format!("upload limit: {before} -> {}", u.describe()));
    }
    Ok(())
}
