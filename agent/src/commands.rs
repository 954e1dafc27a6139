//! One function per subcommand: turn the parsed command line into work and report the outcome.

use crate::pipeline::{
    backup_exit, known_leaves, leaf_cache_path, load_leaf_cache, open_repo, run_pipeline, save_leaf_cache,
    snapshot_line, staged_blobs, start_walk,
};
use crate::policy::{self, Mode, Policy};
use crate::report::{
    self, BackupSummary, CheckJson, ImportJob, ImportJobState, SnapshotEntry, SnapshotsReport, StatusReport,
};
use crate::store::open_staging_store;
use crate::{BackupCmd, CheckCmd, Config, Exit, RestoreCmd, StartCmd};
use anyhow::{bail, Context};
use seedship_shared::api::arm::StorageAccountId;
use seedship_shared::entra::CredentialChoice;
use seedship_shared::publish_settings::PublishSettings;
use seedship_shared::repo::{RepoOptions, Repository};
use seedship_shared::staging::{ArmSettings, ServiceApi};
use seedship_shared::staging::{JobDescriptor, JobState};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The Import/Export service an `offline start` records: which API, the subscription and storage account,
/// and how to sign in (paths only).
struct StartService {
    api: ServiceApi,
    subscription: String,
    storage_account: String,
    publish_settings: PathBuf,
}

/// Checks the service options of `offline start`: the publish-settings file and its subscription (classic),
/// or the Entra ID application, its credential files and the storage account (Resource Manager). Nothing is
/// sent to the service.
fn start_service(c: &StartCmd) -> anyhow::Result<StartService> {
    // with --publish-settings, an Entra ID environment (SEEDSHIP_TENANT, SEEDSHIP_CLIENT_SECRET) is ignored
    let entra = c.entra.clone().into_options_for(c.publish_settings.is_some())?;
    match (&c.publish_settings, entra) {
        (Some(_), Some(_)) => bail!(
            "give either --publish-settings FILE (classic API) or an Entra ID application (--tenant, \
             --client-id, --client-certificate FILE or --client-secret-file FILE: Resource Manager), not both"
        ),
        (None, None) => bail!(
            "say how to reach the Import/Export service: --publish-settings FILE (classic API), or an Entra ID \
             application with --tenant, --client-id and --client-certificate FILE or --client-secret-file FILE \
             (Resource Manager, with --resource-group and --storage-account, or --storage-account-id)"
        ),
        (Some(ps_path), None) => {
            let sub = c.subscription.clone().context("--subscription is required with --publish-settings")?;
            let account = c.storage_account.clone().context("--storage-account is required with --publish-settings")?;
            PublishSettings::load(ps_path)?.subscription(&sub)?;
            Ok(StartService {
                api: ServiceApi::Classic,
                subscription: sub,
                storage_account: account,
                publish_settings: std::fs::canonicalize(ps_path)?,
            })
        }
        (None, Some(mut opts)) => {
            let id = match (&c.storage_account_id, &c.storage_account) {
                (Some(id), _) => StorageAccountId::parse(id).map_err(|e| anyhow::anyhow!("--storage-account-id: {e}"))?,
                (None, Some(name)) => {
                    let sub = c.subscription.clone().context("--subscription is required with --storage-account")?;
                    let group = c.resource_group.clone().context(
                        "--resource-group is required with --storage-account for Resource Manager (or give \
                         --storage-account-id)",
                    )?;
                    StorageAccountId::new(&sub, &group, name)
                }
                (None, None) => bail!("give the storage account with --storage-account NAME or --storage-account-id ID"),
            };
            if let Some(sub) = c.subscription.as_deref().filter(|s| *s != id.subscription) {
                bail!("--subscription {sub} is not the subscription of --storage-account-id ({})", id.subscription);
            }
            opts.credential = absolute(opts.credential)?;
            opts.token_source().context("the Entra ID credential of --client-certificate / --client-secret-file is not usable")?;
            let settings = ArmSettings {
                tenant: opts.tenant.clone(),
                client_id: opts.client_id.clone(),
                credential: seedship_shared::api::recorded_credential(&opts.credential),
                resource_group: c.resource_group.clone().unwrap_or_else(|| id.resource_group.clone()),
                storage_account_id: id.to_string(),
                authority: opts.authority.clone(),
                management_endpoint: opts.management_endpoint.clone(),
                management_audience: opts.management_audience.clone(),
            };
            Ok(StartService {
                api: ServiceApi::ResourceManager(Box::new(settings)),
                subscription: id.subscription.clone(),
                storage_account: id.name.clone(),
                publish_settings: PathBuf::new(),
            })
        }
    }
}

/// The credential with its files made absolute, so later runs from another folder find them.
fn absolute(c: CredentialChoice) -> anyhow::Result<CredentialChoice> {
    let abs = |p: PathBuf| -> anyhow::Result<PathBuf> {
        std::path::absolute(&p).with_context(|| format!("{}", p.display()))
    };
    Ok(match c {
        CredentialChoice::Certificate { cert, key } => CredentialChoice::Certificate {
            cert: abs(cert)?,
            key: key.map(abs).transpose()?,
        },
        CredentialChoice::SecretFile(p) => CredentialChoice::SecretFile(abs(p)?),
        other => other,
    })
}

/// `offline start`: validates everything, then creates the repository, descriptor and policy.
pub fn offline_start(cfg: &Config, c: &StartCmd) -> anyhow::Result<Exit> {
    policy::check_job_name(&c.job_name)?;
    policy::check_container_name(&c.container)?;
    let service = start_service(c)?;
    policy::check_account_name(&service.storage_account)?;
    if cfg.state_dir.join(Policy::FILE).exists() {
        bail!(
            "{} already holds a policy (one staging job per agent); use another --state-dir or remove it",
            cfg.state_dir.display()
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
    let staging = staging_location(&c.staging)?;
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
    let mut exclude = crate::exclude::Exclusions::default();
    c.exclude.apply(&mut exclude)?;
    exclude.validate()?;
    let pass = cfg.passphrase.read(true)?;
    seedship_shared::crypto::check_passphrase(&pass)?;
    // everything is valid: write
    let host = seedship_shared::host::hostname();
    std::fs::create_dir_all(&job_dir).with_context(|| format!("cannot create {}", job_dir.display()))?;
    let mut pol = Policy::offline(sources, staging, c.job_name.clone(), total);
    pol.exclude = exclude;
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
        subscription: service.subscription,
        storage_account: service.storage_account,
        container: c.container.clone(),
        publish_settings: service.publish_settings,
        api: service.api,
        source_host: host,
        repository_id: repo.config().id.clone(),
        state: JobState::Created,
        created: seedship_shared::time::now_unix(),
        blobs: vec![],
    };
    desc.save(&job_dir)?;
    pol.save(&cfg.state_dir)?;
    println!(
        "created staging job {} in {} (repository {})",
        c.job_name,
        job_dir.display(),
        repo.config().id
    );
    match &desc.api {
        ServiceApi::Classic => println!(
            "import job: classic Import/Export API, publish settings {}",
            desc.publish_settings.display()
        ),
        ServiceApi::ResourceManager(s) => println!(
            "import job: Resource Manager, resource group {}, storage account {}, signed in as application {}",
            s.resource_group,
            s.storage_account_id,
            s.client_id.as_deref().unwrap_or("(managed identity)")
        ),
    }
    println!("next: {}", next_backup_command(&cfg.state_dir));
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

/// `backup`.
pub fn backup(cfg: &Config, c: &BackupCmd, sum: &mut BackupSummary) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cfg.state_dir)?;
    let job = |state| {
        Some(ImportJob {
            name: pol.job.clone(),
            state,
        })
    };
    if pol.mode == Mode::Online {
        sum.import_job = job(ImportJobState::Completed);
        sum.target = Some("vault".into());
        return crate::online::backup(cfg, c, &pol, sum);
    }
    let job_dir = pol.job_dir();
    let mut desc = JobDescriptor::load(&job_dir)?;
    sum.import_job = job(ImportJobState::recorded(&cfg.state_dir, &pol, Some(&desc)));
    if pol.mode == Mode::Offline && desc.state == JobState::BackupComplete && !c.another_snapshot {
        // the initial backup is staged: complete the import job once it is finished, then back up online
        return match crate::complete::run(cfg, c, &pol, &desc)? {
            crate::complete::Outcome::Waiting => Ok(Exit::Waiting),
            crate::complete::Outcome::Refused => {
                sum.import_job = job(ImportJobState::Refused);
                Ok(Exit::Failure)
            }
            crate::complete::Outcome::Completed => backup(cfg, c, sum),
        };
    }
    let _lock = crate::lock::acquire(&cfg.storage_key, &pol, "backup")?;
    sum.target = Some("staging".into());
    let start = start_walk(cfg, &pol)?;
    let repo = open_repo(cfg, &pol, true)?;
    let leaf_path = leaf_cache_path(cfg, &pol);
    let mut leaves = load_leaf_cache(&leaf_path);
    let mut wopts = cfg.tuning.staging_writer();
    wopts.known_leaves = known_leaves(&leaves, &desc.blobs);
    let out = run_pipeline(cfg, &pol, &repo, &desc.source_host, wopts, None, start)?;
    sum.set_stats(&out.stats);
    let Some(snap) = out.snapshot else {
        println!(
            "interrupted: {} new blobs are stored and indexed; run `seedship-agent backup` again to continue",
            out.stats.blobs_new
        );
        return Ok(Exit::Interrupted);
    };
    // retention first, so the descriptor lists only what stays; the snapshots of a job already complete
    // (its drives may be prepared) are protected by forget's guard
    crate::forget::after_backup(&repo, &pol)?;
    desc.blobs = staged_blobs(&repo, &desc.blobs, &out.volumes, &Default::default(), &mut leaves)?;
    desc.state = JobState::BackupComplete;
    desc.save(&job_dir)?;
    save_leaf_cache(&leaf_path, &leaves);
    sum.snapshot = Some(snap.clone());
    sum.import_job = job(ImportJobState::Waiting);
    let s = &out.stats;
    println!("{}", snapshot_line(&snap, s));
    Ok(backup_exit(s.errors))
}

/// `snapshots`.
pub fn snapshots(cfg: &Config, json: Option<File>) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cfg.state_dir)?;
    let repo = open_repo(cfg, &pol, true)?;
    if let Some(mut out) = json {
        let snapshots = repo
            .snapshots()?
            .into_iter()
            .map(|(id, s)| SnapshotEntry {
                id,
                time: s.time,
                host: s.host,
                paths: s.paths,
                files: s.stats.files,
                bytes: s.stats.bytes,
                partial: s.partial,
                parent: s.parent,
            })
            .collect();
        report::emit(&mut out, &SnapshotsReport { snapshots })?;
        return Ok(Exit::Success);
    }
    println!(
        "{:<16}  {:<23}  {:<12}  {:>8}  {:>10}  paths",
        "id", "time", "host", "files", "MiB"
    );
    for (id, s) in repo.snapshots()? {
        println!(
            "{:<16}  {:<23}  {:<12}  {:>8}  {:>10}  {}{}",
            &id[..16],
            seedship_shared::time::UtcTime::from_unix(s.time.max(0)).readable(),
            s.host,
            s.stats.files,
            s.stats.bytes >> 20,
            s.paths.join(" "),
            if s.partial { "  (partial)" } else { "" }
        );
    }
    Ok(Exit::Success)
}

/// The `backup` command line to run next, with `--state-dir` when it is not the default.
fn next_backup_command(state_dir: &Path) -> String {
    if state_dir == Path::new(crate::DEFAULT_STATE_DIR) {
        "seedship-agent backup".to_owned()
    } else {
        format!("seedship-agent --state-dir {} backup", state_dir.display())
    }
}

/// The staging location of `offline start`, canonical: created (0700) when missing and its parent exists.
fn staging_location(given: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    if let Err(e) = std::fs::metadata(given) {
        let parent = given
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if e.kind() != std::io::ErrorKind::NotFound || !parent.is_dir() {
            bail!(
                "staging location: {}",
                seedship_shared::staging::explain_io(given, &e)
            );
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(given)
            .with_context(|| format!("cannot create staging location {}", given.display()))?;
        println!("created staging location {}", given.display());
    }
    std::fs::canonicalize(given).map_err(|e| {
        anyhow::anyhow!(
            "staging location: {}",
            seedship_shared::staging::explain_io(given, &e)
        )
    })
}

/// `restore`.
pub fn restore(cfg: &Config, c: &RestoreCmd) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cfg.state_dir)?;
    let repo = open_repo(cfg, &pol, true)?;
    let (id, snap) = repo.find_snapshot(&c.snapshot)?;
    let exclude = crate::exclude::Exclusions {
        patterns: c.excludes.clone(),
        ..Default::default()
    }
    .compile(&[])?;
    let st = crate::restore::restore(
        &repo,
        &snap.tree,
        &c.target,
        &c.includes,
        (!c.excludes.is_empty()).then_some(&exclude),
        c.numeric_owner,
    )?;
    for w in &st.warnings {
        eprintln!("warning: {w}");
    }
    for inc in &st.unmatched {
        eprintln!(
            "warning: --include {inc} matches nothing in snapshot {}: nothing was restored for it (give the \
             path as the snapshot holds it, e.g. /srv/data/projects; `seedship-agent ls {} /` lists them)",
            &id[..16],
            &id[..16]
        );
    }
    if !c.includes.is_empty() && st.unmatched.len() == c.includes.len() {
        println!(
            "restored nothing from snapshot {}: no --include path is in it; {} was not created or changed",
            &id[..16],
            c.target.display()
        );
        return Ok(Exit::Partial);
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
    Ok(if st.warnings.is_empty() && st.unmatched.is_empty() {
        Exit::Success
    } else {
        Exit::Partial
    })
}

/// `check`.
pub fn check(cfg: &Config, c: &CheckCmd, json: Option<File>) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cfg.state_dir)?;
    let repo = open_repo(cfg, &pol, false)?;
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
    if let Some(mut out) = json {
        let doc = CheckJson {
            ok: rep.problems.is_empty(),
            snapshots: rep.snapshots,
            trees: rep.trees,
            blobs_read: rep.blobs_read,
            read_data: c.read_data,
            problems: rep.problems.clone(),
        };
        report::emit(&mut out, &doc)?;
    }
    Ok(if rep.problems.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// `status`.
pub fn status(cfg: &Config, json: Option<File>) -> anyhow::Result<Exit> {
    let pol = Policy::load(&cfg.state_dir)?;
    if let Some(mut out) = json {
        report::emit(&mut out, &StatusReport::load(&cfg.state_dir, &pol)?)?;
        return Ok(Exit::Success);
    }
    if pol.mode == Mode::Online {
        return crate::online::status(cfg, &pol);
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
        (_, JobState::BackupComplete) if crate::complete::record_path(&cfg.state_dir, &pol.job).exists() => format!(
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
    for line in crate::policy_cmd::summary(&pol) {
        println!("{line}");
    }
    if let Some(c) = crate::policy_cmd::last_change(&pol) {
        println!("{c}");
    }
    println!(
        "target: storage account {}, container {}",
        desc.storage_account, desc.container
    );
    Ok(Exit::Success)
}
