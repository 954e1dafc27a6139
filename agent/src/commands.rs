//! One function per subcommand: turn the parsed command line into work and report the outcome.

use crate::backup::{BackupOutcome, WriterOptions};
use crate::policy::{self, Mode, Policy};
use crate::progress::{Counters, Display};
use crate::store::{open_metered_repo_store, open_staging_store};
use crate::{BackupCmd, CheckCmd, Cli, Exit, RestoreCmd, StartCmd};
use anyhow::{bail, Context};
use seedship_shared::blob::Meter;
use seedship_shared::publish_settings::PublishSettings;
use seedship_shared::repo::{CachedStore, RepoOptions, Repository, Snapshot, SnapshotStats, VolumeDigest};
use seedship_shared::staging::{JobDescriptor, JobState, StagedBlob};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

static CANCEL: AtomicBool = AtomicBool::new(false);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `offline start`: validates everything, then creates the repository, descriptor and policy.
pub fn offline_start(cli: &Cli, c: &StartCmd) -> anyhow::Result<Exit> {
    policy::check_job_name(&c.job_name)?;
    policy::check_container_name(&c.container)?;
    policy::check_account_name(&c.storage_account)?;
    let ps = PublishSettings::load(&c.publish_settings)?;
    ps.subscription(&c.subscription)?;
    if cli.state_dir.join(Policy::FILE).exists() {
        bail!(
            "{} already holds a policy (one staging job per agent); use another --state-dir or remove it",
            cli.state_dir.display()
        );
    }
    let mut sources = vec![];
    let mut total = 0u64;
    for s in &c.sources {
        let p = std::fs::canonicalize(s).with_context(|| format!("source {}", s.display()))?;
        if p == Path::new("/") {
            bail!("source /: name the top-level folders to back up instead of the root");
        }
        total += du(&p);
        sources.push(p);
    }
    let staging = std::fs::canonicalize(&c.staging)
        .with_context(|| format!("staging location {}", c.staging.display()))?;
    let probe = staging.join(format!(".seedship-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe")
        .with_context(|| format!("staging location {} is not writable", staging.display()))?;
    let _ = std::fs::remove_file(&probe);
    let free = policy::free_space(&staging)?;
    if free < total {
        bail!(
            "staging location {} has {} MiB free but the sources hold {} MiB; free some space or choose another location",
            staging.display(),
            free >> 20,
            total >> 20
        );
    }
    let job_dir = staging.join(&c.job_name);
    if job_dir.exists() {
        bail!(
            "{} already exists: choose another job name or remove it",
            job_dir.display()
        );
    }
    if c.volume_size_mib == 0 || c.volume_size_mib > 1 << 20 {
        bail!("--volume-size-mib must be 1..=1048576 (1 TiB); page blobs hold at most 8 TiB");
    }
    let pass = policy::passphrase(cli.passphrase_file.as_deref(), true)?;
    seedship_shared::crypto::check_passphrase(&pass)?;
    // everything is valid: write
    let host = seedship_shared::host::hostname();
    std::fs::create_dir_all(&job_dir).with_context(|| format!("cannot create {}", job_dir.display()))?;
    let pol = Policy {
        mode: Mode::Offline,
        sources,
        staging,
        job: c.job_name.clone(),
        source_bytes: total,
        vault: None,
    };
    let store = open_staging_store(&pol.blobs_dir());
    let opts = RepoOptions {
        volume_size: c.volume_size_mib << 20,
        host: host.clone(),
        ..Default::default()
    };
    let repo = Repository::init(store, &pass, &opts)?;
    let desc = JobDescriptor {
        format: 1,
        job_name: c.job_name.clone(),
        subscription: c.subscription.clone(),
        storage_account: c.storage_account.clone(),
        container: c.container.clone(),
        publish_settings: std::fs::canonicalize(&c.publish_settings)?,
        source_host: host,
        repository_id: repo.config().id.clone(),
        state: JobState::Created,
        created: now(),
        blobs: vec![],
    };
    desc.save(&job_dir)?;
    pol.save(&cli.state_dir)?;
    println!(
        "created staging job {} in {} (repository {})",
        c.job_name,
        job_dir.display(),
        repo.config().id
    );
    println!("next: seedship-agent backup");
    Ok(Exit::Success)
}

fn du(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if m.is_dir() {
        std::fs::read_dir(p)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| du(&e.path())).sum())
            .unwrap_or(0)
    } else if m.is_file() {
        use std::os::unix::fs::MetadataExt;
        m.blocks() * 512
    } else {
        0
    }
}

/// Opens the policy's repository. With `cached`, metadata objects and trees are read through the local
/// cache in `<state-dir>/cache/<job>/` (`check` reads the store itself).
fn open_repo(cli: &Cli, pol: &Policy, cached: bool) -> anyhow::Result<Arc<Repository>> {
    open_metered_repo(cli, pol, cached, Arc::new(Meter::new()))
}

/// [`open_repo`] with the vault's traffic counted (and uploads limited) by `meter`.
pub(crate) fn open_metered_repo(
    cli: &Cli,
    pol: &Policy,
    cached: bool,
    meter: Arc<Meter>,
) -> anyhow::Result<Arc<Repository>> {
    let pass = policy::passphrase(cli.passphrase_file.as_deref(), false)?;
    let mut store = open_metered_repo_store(pol, meter)?;
    let dir = cli.state_dir.join("cache").join(&pol.job);
    if cached {
        store = Arc::new(CachedStore::new(store, &dir));
    }
    let mut repo = Repository::open(store, &pass).map_err(|e| crate::online::explain(e, pol))?;
    if cached {
        repo = repo.with_tree_cache(&dir);
    }
    Ok(Arc::new(repo))
}

/// The newest snapshot of the policy's sources (an incremental's parent).
fn parent_snapshot(repo: &Repository, pol: &Policy) -> anyhow::Result<Option<(String, Snapshot)>> {
    let paths: Vec<String> = pol
        .sources
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    Ok(repo
        .snapshots()?
        .into_iter()
        .rev()
        .find(|(_, s)| s.paths == paths))
}

/// Runs the backup pipeline into an open repository: removes what an interrupted run left unwritten,
/// finds the parent snapshot, shows progress, and prints the warnings.
pub(crate) fn run_pipeline(
    cli: &Cli,
    pol: &Policy,
    repo: &Arc<Repository>,
    host: &str,
    wopts: WriterOptions,
    meter: Option<Arc<Meter>>,
) -> anyhow::Result<BackupOutcome> {
    for object in repo.remove_incomplete()? {
        eprintln!("removed {object}: an earlier, interrupted backup created it but never wrote it");
    }
    let parent = parent_snapshot(repo, pol)?;
    let _ = ctrlc::set_handler(|| CANCEL.store(true, Ordering::SeqCst));
    // Blob buffers (up to 8 MiB) are allocated in reader threads and freed in the writer: a fixed mmap
    // threshold returns them to the system at once instead of letting glibc's per-thread heaps grow.
    // SAFETY: mallopt only tunes the allocator; called before the pipeline threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    let counters = Counters {
        meter,
        ..Counters::default()
    };
    let out = {
        // the first run reads about what `offline start` measured; later runs only changed files (unknown)
        let estimate = if parent.is_none() { pol.source_bytes } else { 0 };
        let _display = Display::start(&counters, estimate, cli.quiet);
        crate::backup::run(
            repo.clone(),
            &pol.sources,
            parent,
            host,
            &CANCEL,
            &counters,
            wopts,
        )?
    };
    for p in &out.problems {
        eprintln!("warning: {p}");
    }
    Ok(out)
}

/// The line a finished backup prints about its snapshot.
pub(crate) fn snapshot_line(snap: &str, s: &SnapshotStats) -> String {
    format!(
        "snapshot {} saved: {} files ({} unchanged), {} dirs, {} MiB read, {} new blobs, {} MiB stored",
        &snap[..16],
        s.files,
        s.files_unchanged,
        s.dirs,
        s.bytes_read >> 20,
        s.blobs_new,
        s.bytes_stored >> 20
    )
}

/// `backup`.
pub fn backup(cli: &Cli, c: &BackupCmd) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cli.state_dir)?;
    if pol.mode == Mode::Online {
        return crate::online::backup(cli, c, &pol);
    }
    let job_dir = pol.job_dir();
    let mut desc = JobDescriptor::load(&job_dir)?;
    if pol.mode == Mode::Offline && desc.state == JobState::BackupComplete && !c.another_snapshot {
        // the initial backup is staged: complete the import job once it is finished, then back up online
        return match crate::complete::run(cli, c, &pol, &desc)? {
            crate::complete::Outcome::Waiting => Ok(Exit::Waiting),
            crate::complete::Outcome::Refused => Ok(Exit::Failure),
            crate::complete::Outcome::Completed => backup(cli, c),
        };
    }
    let repo = open_repo(cli, &pol, true)?;
    let out = run_pipeline(
        cli,
        &pol,
        &repo,
        &desc.source_host,
        WriterOptions::staging(),
        None,
    )?;
    let Some(snap) = out.snapshot else {
        println!(
            "interrupted: {} new blobs are stored and indexed; run `seedship-agent backup` again to continue",
            out.stats.blobs_new
        );
        return Ok(Exit::Interrupted);
    };
    desc.blobs = staged_blobs(&repo, &desc.blobs, &out.volumes)?;
    desc.state = JobState::BackupComplete;
    desc.save(&job_dir)?;
    let s = &out.stats;
    println!("{}", snapshot_line(&snap, s));
    Ok(backup_exit(s.errors))
}

/// The descriptor's blob list: every object, with digests from the pack writer or computed.
fn staged_blobs(
    repo: &Repository,
    old: &[StagedBlob],
    fresh: &[VolumeDigest],
) -> anyhow::Result<Vec<StagedBlob>> {
    let store = repo.store();
    let mut out = vec![];
    for o in store.list("")? {
        let blob = if let Some(v) = fresh.iter().find(|v| v.name == o.name && v.len == o.len) {
            StagedBlob {
                name: o.name,
                len: o.len,
                blake3: v.blake3.clone(),
            }
        } else if let Some(b) = old.iter().find(|b| b.name == o.name && b.len == o.len) {
            // objects are immutable and volumes append-only: same name and length, same bytes
            b.clone()
        } else {
            let (len, h) = crate::check::blob_digest(&**store, &o.name)?;
            StagedBlob {
                name: o.name,
                len,
                blake3: h,
            }
        };
        out.push(blob);
    }
    Ok(out)
}

/// `snapshots`.
pub fn snapshots(cli: &Cli) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cli.state_dir)?;
    let repo = open_repo(cli, &pol, true)?;
    println!(
        "{:<16}  {:<23}  {:<12}  {:>8}  {:>10}  paths",
        "id", "time", "host", "files", "MiB"
    );
    for (id, s) in repo.snapshots()? {
        println!(
            "{:<16}  {:<23}  {:<12}  {:>8}  {:>10}  {}{}",
            &id[..16],
            crate::online::utc(s.time.max(0) as u64),
            s.host,
            s.stats.files,
            s.stats.bytes >> 20,
            s.paths.join(" "),
            if s.partial { "  (partial)" } else { "" }
        );
    }
    Ok(Exit::Success)
}

/// `restore`.
pub fn restore(cli: &Cli, c: &RestoreCmd) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cli.state_dir)?;
    let repo = open_repo(cli, &pol, true)?;
    let (id, snap) = repo.find_snapshot(&c.snapshot)?;
    let st = crate::restore::restore(&repo, &snap.tree, &c.target, &c.includes, c.numeric_owner)?;
    for w in &st.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "restored snapshot {} into {}: {} files, {} dirs, {} other, {} MiB",
        &id[..16],
        c.target.display(),
        st.files,
        st.dirs,
        st.other,
        st.bytes >> 20
    );
    Ok(if st.warnings.is_empty() {
        Exit::Success
    } else {
        Exit::Partial
    })
}

/// `check`.
pub fn check(cli: &Cli, c: &CheckCmd) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cli.state_dir)?;
    let repo = open_repo(cli, &pol, false)?;
    // in the vault there is no job descriptor to compare with: the repository's own index and digests are
    // the reference (see docs/agent.md)
    let job_dir: Option<PathBuf> = (pol.mode == Mode::Offline).then(|| pol.job_dir());
    let rep = crate::check::check(&repo, c.read_data, job_dir.as_deref());
    for p in &rep.problems {
        eprintln!("error: {p}");
    }
    println!(
        "checked {} snapshots, {} trees{}: {} problem(s)",
        rep.snapshots,
        rep.trees,
        if c.read_data {
            format!(", {} blobs read", rep.blobs_read)
        } else {
            String::new()
        },
        rep.problems.len()
    );
    Ok(if rep.problems.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// `status`.
pub fn status(cli: &Cli) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cli.state_dir)?;
    if pol.mode == Mode::Online {
        return crate::online::status(cli, &pol);
    }
    println!("mode: {:?}", pol.mode);
    println!("sources: {}", pol.sources_line());
    println!("staging job: {}", pol.job_dir().display());
    let desc = JobDescriptor::load(&pol.job_dir())?;
    let total: u64 = desc.blobs.iter().map(|b| b.len).sum();
    let state = match (&pol.vault, desc.state) {
        (Some(v), _) if pol.mode == Mode::Online => format!(
            "import job {} completed: imported into vault container {} at {} (since {}); backups go to the vault",
            desc.job_name, v.container, v.endpoint, v.since
        ),
        (_, JobState::Created) => "created: initial backup not complete (run `seedship-agent backup`)".to_string(),
        (_, JobState::BackupComplete) if crate::complete::record_path(&cli.state_dir, &pol.job).exists() => format!(
            "initial backup complete, import job {} verified, copying into the vault was interrupted (run `seedship-agent backup` to continue)",
            desc.job_name
        ),
        (_, JobState::BackupComplete) => format!(
            "initial backup complete, waiting for import job {} (`seedship-agent backup` checks it and completes the import)",
            desc.job_name
        ),
    };
    println!("state: {state}");
    println!("blobs: {} ({} MiB)", desc.blobs.len(), total >> 20);
    println!(
        "target: storage account {}, container {}",
        desc.storage_account, desc.container
    );
    Ok(Exit::Success)
}

/// The exit code of a finished backup: partial (3) when some files could not be backed up, said on stdout.
pub(crate) fn backup_exit(errors: u64) -> Exit {
    if errors > 0 {
        println!("{errors} file(s) could not be backed up completely (see the warnings)");
        return Exit::Partial;
    }
    Exit::Success
}
