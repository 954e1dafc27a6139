//! `seedship-diskprep repairimport` (WAImportExport's `RepairImport`): after an import, sends again with Put
//! Page only the ranges a drive's copy log reports damaged or missing, from the original files, each checked
//! against the drive manifest's MD5 first (the repair core is [`seedship_shared::repair`]).
//!
//! Plan, then execute: the copy log is read, the drive's manifest taken from its journal (`--journal`, or
//! `<drive-id>.jrn` found beside the source folders as diskprep leaves it in `<staging>/<job>/diskprep/`),
//! every damaged blob's file found in the source folders (`/d:`; an ambiguous or missing one goes into a path
//! map file to fill in), and every range read and compared with its MD5. Any problem is named and nothing is
//! sent. Then each range is sent and recorded in the repair file (`/r:`), so a rerun after a kill or Ctrl-C
//! resumes; the bytes sent are reported.

use anyhow::{bail, Context};
use seedship_shared::blob::{
    AzureOptions, AzureStore, BlobStore, Credential, Meter, MeteredStore, RetryPolicy, RetryStore,
};
use seedship_shared::exit::Exit;
use seedship_shared::manifest::copylog::DriveLog;
use seedship_shared::repair::{self, Damage, Manifest, RepairError, RepairFile, RepairSource};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Copy logs larger than this are refused (a real one lists at most a drive's blobs and ranges).
const MAX_LOG_LEN: u64 = 64 << 20;

/// Test hook: `SEEDSHIP_TEST_KILL_AT=repair-range-N` kills the process with SIGKILL once N ranges were sent
/// and recorded (the resume test uses it).
const KILL_AT_ENV: &str = "SEEDSHIP_TEST_KILL_AT";

/// Examples and exit codes for `repairimport --help`.
pub const AFTER_HELP: &str = "\
WAImportExport's spellings work as documented (Linux paths):
  seedship-diskprep RepairImport /r:/srv/repair/D1.rep /d:/srv/staging/job1/blobs /sn:myaccount \\
      /sk:@/root/storage.key /CopyLogFile:/srv/repair/job1_D1_20261203-101500_error.xml
/d: takes several folders separated by ';'. /sk:KEY and /csas:SAS work too but put the secret on the
command line, readable by every user: prefer /sk:@FILE, /csas:@FILE or SEEDSHIP_STORAGE_KEY.
Check first without sending anything: add --dry-run. A rerun resumes from the repair file (/r:).

Exit codes: 0 repaired, 1 refused or failed (nothing sent when refused), 130 interrupted (run again to
resume). See docs/waimportexport.md.";

/// Options of `repairimport` (WAImportExport's spellings in brackets; docs/waimportexport.md).
#[derive(Debug, clap::Args)]
pub struct RepairImportArgs {
    /// The repair file (/r:): records every range sent, so a rerun resumes; created if missing.
    #[arg(long, value_name = "FILE")]
    pub repair_file: Option<PathBuf>,
    /// A folder holding the original files (/d:, several separated by `;`); repeat for more, e.g. the
    /// staging job's blobs folder `<staging>/<job>/blobs`.
    #[arg(long = "source-dir", value_name = "DIR")]
    pub source_dirs: Vec<PathBuf>,
    /// The drive's copy log the data centre wrote (/CopyLogFile:), downloaded from the storage account.
    #[arg(long, value_name = "FILE")]
    pub copy_log: Option<PathBuf>,
    /// The storage account the import went to (/sn:).
    #[arg(long, value_name = "NAME")]
    pub storage_account: Option<String>,
    /// The account's blob endpoint (default `https://<account>.blob.core.windows.net`; for Azurite
    /// `http://127.0.0.1:10000/devstoreaccount1`).
    #[arg(long, env = "SEEDSHIP_BLOB_ENDPOINT", value_name = "URL")]
    pub blob_endpoint: Option<String>,
    /// The drive's journal (/j:, seedship's addition), where the manifest's MD5s are; default: `<drive
    /// id>.jrn` beside the source folders (`<staging>/<job>/diskprep/`). Repeatable.
    #[arg(long = "journal", value_name = "FILE")]
    pub journals: Vec<PathBuf>,
    /// Paths of files the source folders do not resolve (/PathMapFile:): `<file path in the copy log>`, a tab,
    /// the file; a run that cannot resolve a file writes `<repair file>_pathmap.txt` to fill in.
    #[arg(long, value_name = "FILE")]
    pub path_map_file: Option<PathBuf>,
    /// A file holding the storage account key (/sk:@FILE; or set SEEDSHIP_STORAGE_KEY_FILE, or the key in
    /// SEEDSHIP_STORAGE_KEY).
    #[arg(long, env = "SEEDSHIP_STORAGE_KEY_FILE", value_name = "FILE")]
    pub storage_account_key_file: Option<PathBuf>,
    /// The key itself (/sk:KEY): accepted for compatibility only, a command line is readable by every user.
    #[arg(long, value_name = "KEY", hide_short_help = true)]
    pub storage_account_key: Option<String>,
    /// A file holding a SAS of the container, instead of the key (/csas:@FILE; or set
    /// SEEDSHIP_CONTAINER_SAS_FILE, or the SAS in SEEDSHIP_CONTAINER_SAS).
    #[arg(long, env = "SEEDSHIP_CONTAINER_SAS_FILE", value_name = "FILE")]
    pub container_sas_file: Option<PathBuf>,
    /// The SAS itself (/csas:SAS): accepted for compatibility only.
    #[arg(long, value_name = "SAS", hide_short_help = true)]
    pub container_sas: Option<String>,
    /// Check everything (copy log, manifest, every range's MD5 in the source files) and say what would be
    /// sent; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as one JSON document on standard output (docs/waimportexport.md).
    #[arg(long)]
    pub json: bool,
    /// A WAImportExport token this command cannot honour (set by the translator).
    #[arg(long, hide = true)]
    pub wai_error: Vec<String>,
}

/// What `repairimport --json` prints.
#[derive(Debug, Default, serde::Serialize)]
pub struct RepairReport {
    pub drive: String,
    pub ok: bool,
    pub dry_run: bool,
    /// Objects and ranges the copy log reports damaged or missing, and their bytes.
    pub objects: usize,
    pub ranges: usize,
    pub damaged_bytes: u64,
    /// Ranges sent now, and the bytes of page data sent with Put Page (retries included).
    pub ranges_sent: usize,
    pub bytes_sent: u64,
    /// Ranges an earlier run had sent (skipped).
    pub ranges_resumed: usize,
    pub repair_file: Option<String>,
    /// Every problem that stopped the repair (nothing was sent then).
    pub problems: Vec<String>,
}

/// What a run works with, checked before anything is sent.
struct RepairPlan {
    log: DriveLog,
    items: Vec<Damage>,
    sources: FileSource,
}

/// Runs `repairimport`.
pub fn run(a: &RepairImportArgs, cancel: &AtomicBool) -> anyhow::Result<Exit> {
    if let Some(e) = a.wai_error.first() {
        bail!("{e}");
    }
    let mut out = a.json.then(seedship_shared::jsonout::json_stdout).transpose()?;
    let mut report = RepairReport {
        dry_run: a.dry_run,
        repair_file: a.repair_file.as_ref().map(|p| p.display().to_string()),
        ..Default::default()
    };
    let exit = match plan(a, &mut report) {
        Ok(plan) if plan.items.is_empty() => {
            println!(
                "the copy log of drive {} reports no damaged or missing range: nothing to send",
                plan.log.drive_id
            );
            report.ok = true;
            Exit::Success
        }
        Ok(plan) if a.dry_run => {
            println!(
                "dry run: {} range(s) ({}) of {} object(s) would be sent; every one matches the manifest's \
                 MD5 in the source files. Nothing was sent.",
                report.ranges,
                seedship_shared::units::human(report.damaged_bytes),
                report.objects
            );
            drop(plan);
            report.ok = true;
            Exit::Success
        }
        Ok(plan) => execute(a, &plan, &mut report, cancel)?,
        Err(Refused(problems)) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            eprintln!("{} problem(s): nothing was sent.", problems.len());
            report.problems = problems;
            Exit::Failure
        }
    };
    if let Some(out) = out.as_mut() {
        seedship_shared::jsonout::emit(out, &report)?;
    }
    Ok(exit)
}

/// Problems found before anything was sent.
struct Refused(Vec<String>);

impl<E: std::fmt::Display> From<E> for Refused {
    fn from(e: E) -> Refused {
        Refused(vec![e.to_string()])
    }
}

/// Reads the copy log and the manifest, finds the files and checks every range.
fn plan(a: &RepairImportArgs, report: &mut RepairReport) -> Result<RepairPlan, Refused> {
    let need = |what: &str| {
        Refused(vec![format!(
            "give {what}; see seedship-diskprep repairimport --help"
        )])
    };
    let log_path = a
        .copy_log
        .as_ref()
        .ok_or_else(|| need("the copy log with /CopyLogFile:FILE (--copy-log)"))?;
    if a.repair_file.is_none() && !a.dry_run {
        return Err(need("the repair file with /r:FILE (--repair-file)"));
    }
    if a.source_dirs.is_empty() {
        return Err(need(
            "the folders holding the original files with /d:DIR (--source-dir)",
        ));
    }
    let log = read_log(log_path)?;
    report.drive = log.drive_id.clone();
    let manifest = manifest(a, &log.drive_id)?;
    let (items, problems) = repair::damage(&log, &manifest);
    if !problems.is_empty() {
        return Err(Refused(problems));
    }
    report.objects = items.len();
    report.ranges = items.iter().map(|d| d.fixes.len()).sum();
    report.damaged_bytes = items.iter().map(Damage::bytes).sum();
    let sources = FileSource::resolve(a, &items)?;
    let problems = repair::check(&items, &sources);
    if !problems.is_empty() {
        return Err(Refused(problems));
    }
    Ok(RepairPlan { log, items, sources })
}

fn read_log(path: &Path) -> Result<DriveLog, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the copy log {}: {e}", path.display()))?
        .len();
    if len > MAX_LOG_LEN {
        return Err(format!(
            "the copy log {} is {len} bytes, more than a copy log can be",
            path.display()
        ));
    }
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read the copy log {}: {e}", path.display()))?;
    DriveLog::parse(&bytes).map_err(|e| format!("{} is not a copy log: {e}", path.display()))
}

/// The drive's manifest: the journals given, or `<drive>.jrn` found beside the source folders.
fn manifest(a: &RepairImportArgs, drive: &str) -> Result<Manifest, String> {
    let file = format!("{drive}.jrn");
    let found: Vec<PathBuf> = if a.journals.is_empty() {
        let mut near = Vec::new();
        for d in &a.source_dirs {
            if let Some(parent) = d.canonicalize().ok().as_deref().and_then(Path::parent) {
                near.push(parent.join("diskprep").join(&file));
            }
            near.push(d.join("diskprep").join(&file));
            if let Ok(entries) = std::fs::read_dir(d) {
                near.extend(entries.flatten().map(|e| e.path().join("diskprep").join(&file)));
            }
        }
        near.into_iter().filter(|p| p.is_file()).take(1).collect()
    } else {
        a.journals.clone()
    };
    let Some(first) = found.first() else {
        return Err(format!(
            "no journal of drive {drive} ({file}) beside the source folders: give the drive's journal with \
             /j:FILE (--journal); diskprep keeps it in <staging>/<job>/diskprep/{file}. It holds the manifest's \
             MD5s every range is checked against"
        ));
    };
    let mut m = Manifest::from_journal(first).map_err(|e| e.to_string())?;
    for j in &found[1..] {
        let more = Manifest::from_journal(j).map_err(|e| e.to_string())?;
        m = m.merged(more);
    }
    Ok(m)
}

/// The files the damaged blobs are read from.
struct FileSource {
    files: HashMap<String, PathBuf>,
}

impl FileSource {
    /// Finds every damaged blob's file: the path map first, then the source folders. A file found nowhere,
    /// or in more than one place, goes into `<repair file>_pathmap.txt` and the run is refused.
    fn resolve(a: &RepairImportArgs, items: &[Damage]) -> Result<FileSource, Refused> {
        let map = match &a.path_map_file {
            Some(p) => read_path_map(p)?,
            None => HashMap::new(),
        };
        let mut files = HashMap::new();
        let mut open: Vec<(String, Vec<PathBuf>)> = Vec::new();
        for d in items {
            if let Some(p) = map.get(&d.file_path) {
                files.insert(d.target(), p.clone());
                continue;
            }
            let found = candidates(&a.source_dirs, d);
            match found.as_slice() {
                [one] => {
                    files.insert(d.target(), one.clone());
                }
                _ => open.push((d.file_path.clone(), found)),
            }
        }
        if open.is_empty() {
            return Ok(FileSource { files });
        }
        let map_file = match &a.repair_file {
            Some(r) => PathBuf::from(format!("{}_pathmap.txt", r.display())),
            None => PathBuf::from("repairimport_pathmap.txt"),
        };
        let text: String = open.iter().map(|(f, _)| format!("{f}\t\n")).collect();
        let written = std::fs::write(&map_file, text);
        let mut problems: Vec<String> = open
            .iter()
            .map(|(f, found)| match found.len() {
                0 => format!("{f}: no such file in the source folders (/d:)"),
                _ => format!(
                    "{f}: ambiguous, found as {}",
                    found
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            })
            .collect();
        problems.push(match written {
            Ok(()) => format!(
                "{} file(s) not resolved: they are listed in {}; after each, put a tab and the file's path, \
                 then run again with /PathMapFile:{} (--path-map-file)",
                open.len(),
                map_file.display(),
                map_file.display()
            ),
            Err(e) => format!("cannot write the path map file {}: {e}", map_file.display()),
        });
        Err(Refused(problems))
    }
}

/// The existing files a damaged blob may be in: its drive file path without the session folder, its blob
/// name, and the blob name in a staging job's `blobs` folder, under each source folder.
fn candidates(dirs: &[PathBuf], d: &Damage) -> Vec<PathBuf> {
    let rel = d.file_path.replace('\\', "/");
    let rel = rel.trim_start_matches('/');
    let after_session = rel.split_once('/').map_or(rel, |(_, r)| r);
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let mut tries = vec![
            dir.join(after_session),
            dir.join(&d.manifest_name),
            dir.join("blobs").join(&d.manifest_name),
        ];
        if let Ok(entries) = std::fs::read_dir(dir) {
            tries.extend(
                entries
                    .flatten()
                    .map(|e| e.path().join("blobs").join(&d.manifest_name)),
            );
        }
        for t in tries.into_iter().filter(|t| t.is_file()) {
            let real = t.canonicalize().unwrap_or(t);
            if !out.contains(&real) {
                out.push(real);
            }
        }
    }
    out
}

/// A path map file: `<file path>\t<file>` per line; blank lines, `#` comments and lines without a file are
/// skipped.
fn read_path_map(path: &Path) -> Result<HashMap<String, PathBuf>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the path map file {}: {e}", path.display()))?;
    let mut map = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        if let Some((from, to)) = line.split_once('\t') {
            let to = to.trim();
            if !to.is_empty() {
                map.insert(from.trim().to_owned(), PathBuf::from(to));
            }
        }
    }
    Ok(map)
}

impl RepairSource for FileSource {
    fn describe(&self, d: &Damage) -> String {
        self.files
            .get(&d.target())
            .map_or_else(|| "no file".into(), |p| format!("file {}", p.display()))
    }

    fn read_at(&self, d: &Damage, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        let path = self.files.get(&d.target()).ok_or("no file found for it")?;
        let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
        f.read_exact_at(buf, offset).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "the file ends before the range".to_owned(),
            _ => e.to_string(),
        })
    }
}

/// Sends every range not recorded in the repair file; reports the bytes sent.
fn execute(
    a: &RepairImportArgs,
    plan: &RepairPlan,
    report: &mut RepairReport,
    cancel: &AtomicBool,
) -> anyhow::Result<Exit> {
    let account = a.storage_account.clone().ok_or_else(|| {
        anyhow::anyhow!("give the storage account with /sn:NAME (--storage-account); nothing was sent")
    })?;
    let endpoint = a
        .blob_endpoint
        .clone()
        .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    let cred = credential(a, &account)?;
    let meter = Arc::new(Meter::new());
    let open = |container: &str| -> Result<Arc<dyn BlobStore>, String> {
        let opts = AzureOptions::new(&endpoint, &account, container, cred.clone());
        let store = AzureStore::new(opts).map_err(|e| format!("cannot open it at {endpoint}: {e}"))?;
        let metered = MeteredStore::new(store, meter.clone());
        Ok(Arc::new(RetryStore::new(metered, RetryPolicy::default())))
    };
    let rep = a.repair_file.as_ref().context("the repair file")?;
    let mut file = RepairFile::open(rep)?;
    println!(
        "repairing the import of drive {}: {} range(s) ({}) of {} object(s) reported damaged or missing; \
         repair file {} ({} range(s) recorded as sent)",
        plan.log.drive_id,
        report.ranges,
        seedship_shared::units::human(report.damaged_bytes),
        report.objects,
        rep.display(),
        file.recorded()
    );
    let kill_after: Option<usize> = std::env::var(KILL_AT_ENV)
        .ok()
        .and_then(|v| v.strip_prefix("repair-range-")?.parse().ok());
    let total = report.ranges;
    let mut progress = |d: &Damage, f: &repair::Fix, s: &repair::Sent| {
        println!(
            "  {} range {}..{} ({}) sent [{}/{}]",
            d.target(),
            f.offset,
            f.offset + f.length,
            f.status,
            s.ranges + s.resumed,
            total
        );
        if kill_after == Some(s.ranges) {
            // SAFETY: sends SIGKILL to this process (the resume test's hook).
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    };
    let result = repair::send(
        &plan.items,
        &plan.sources,
        &open,
        &mut file,
        cancel,
        &mut progress,
    );
    report.bytes_sent = meter.stats().bytes_sent;
    match result {
        Ok(sent) => {
            report.ok = true;
            report.ranges_sent = sent.ranges;
            report.ranges_resumed = sent.resumed;
            println!(
                "repaired: {}; the import of drive {} now holds every range its copy log reported",
                repair::sent_line(sent.ranges, report.bytes_sent, sent.resumed),
                plan.log.drive_id
            );
            Ok(Exit::Success)
        }
        Err(e @ RepairError::Interrupted { .. }) => {
            eprintln!("{e}");
            report.problems.push(e.to_string());
            Ok(Exit::Interrupted)
        }
        Err(e) => {
            eprintln!("error: {e}");
            report.problems.push(e.to_string());
            Ok(Exit::Failure)
        }
    }
}

/// The storage credential, from whichever form was given; a value on the command line gets a warning.
fn credential(a: &RepairImportArgs, account: &str) -> anyhow::Result<Credential> {
    use seedship_shared::secret::from_file;
    let warn = |flag: &str, what: &str, env: &str| {
        eprintln!(
            "warning: {flag} put the {what} on the command line, where every user of this machine can read it \
             (ps, /proc); next time use {flag}@FILE (a file only you can read) or set {env}"
        );
    };
    if let Some(f) = &a.storage_account_key_file {
        return Ok(Credential::SharedKey(
            from_file(f, "storage account key")?.to_string(),
        ));
    }
    if let Some(k) = &a.storage_account_key {
        warn("/sk:", "storage account key", "SEEDSHIP_STORAGE_KEY");
        return Ok(Credential::SharedKey(k.clone()));
    }
    if let Some(f) = &a.container_sas_file {
        return Ok(Credential::Sas(from_file(f, "container SAS")?.to_string()));
    }
    if let Some(s) = &a.container_sas {
        warn("/csas:", "container SAS", "SEEDSHIP_CONTAINER_SAS");
        return Ok(Credential::Sas(s.clone()));
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if let Some(k) = env("SEEDSHIP_STORAGE_KEY") {
        return Ok(Credential::SharedKey(k.trim().to_owned()));
    }
    if let Some(s) = env("SEEDSHIP_CONTAINER_SAS") {
        return Ok(Credential::Sas(s.trim().to_owned()));
    }
    bail!(
        "no credential for storage account {account}: give /sk:@FILE (a file holding the key) or /csas:@FILE \
         (a container SAS), or set SEEDSHIP_STORAGE_KEY / SEEDSHIP_CONTAINER_SAS; nothing was sent"
    )
}
