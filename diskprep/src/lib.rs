//! seedship-diskprep: copies an offline-backup job from its staging location onto LUKS2-encrypted shipping
//! drives, with a WAImportExport-style manifest per drive and a journal per drive, the way
//! AzureOfflineBackupDiskPrep does for Azure Backup.
//!
//! The binary is a thin `main` over [`run`]; everything lives in the library so tests can call it.
//! It has two halves and the command line:
//! - [`prep`], preparing drives: [`prep::prepare`] (the flow), [`prep::staging`] (jobs and their check),
//!   [`prep::drive`] (targets and refusals), [`prep::plan`] (spanning), [`prep::layout`], [`prep::source`]
//!   (reading the staging files), [`prep::copy`], [`prep::readback`] and [`prep::verify`] (the drive's bytes), [`prep::session`] (journal and
//!   state), [`prep::keyfile`] and [`prep::console`] (the operator);
//! - [`job`], the import job after preparation: [`job::create`] (Put Job), [`job::record`]
//!   (`diskprep/job.json`), [`job::ship`] (`u:`), [`job::delete`] (`delete-job`), [`job::console`] and the
//!   command glue `job::cmd`;
//! - [`wai`], WAImportExport's way: `PrepImport` (its `/Name:value` spellings, sessions, the `/j:` journal)
//!   and [`job::from_journals`] (`create-job --journal`);
//! - [`args`] (the AzureOfflineBackupDiskPrep spellings) and [`Cli`] here.
//!
//! docs/diskprep.md describes the commands; docs/architecture.md shows where diskprep sits.

pub mod args;
pub mod job;
pub mod prep;
pub mod report;
pub mod wai;

use clap::{Args, Parser, Subcommand, ValueEnum};
use job::cmd as jobcmd;
pub use job::cmd::ReturnArgs;
use prep::prepare::{self, PrepError, PrepOptions};
use prep::{console, copy, drive, verify};
use seedship_shared::luks::Pbkdf;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use zeroize::Zeroizing;

/// The exit codes of `seedship-diskprep`.
/// (One list for every seedship command: [`seedship_shared::exit::Exit`].)
pub use seedship_shared::exit::Exit;

const AFTER_HELP: &str = "\
The AzureOfflineBackupDiskPrep spellings work too:
  seedship-diskprep s:/srv/staging                      prepare drives (asks for each drive)
  seedship-diskprep s:/srv/staging p:/root/x.publishsettings   on a machine other than the source
Non-interactive (a drive set):
  seedship-diskprep --staging /srv/staging --drive /dev/sdb --drive /dev/sdc --yes
  seedship-diskprep --staging /srv/staging --drive d1.img --drive d2.img --create-image 500G --yes
A run stopped by a crash, a kill or Ctrl-C resumes when run again with the same drives.
Recovery keys go to <staging>/<job>/diskprep/keys.tsv (mode 0600) unless --key-file says otherwise.
Then the import job is created (not with --no-create-job); see <staging>/<job>/diskprep/job.json:
  seedship-diskprep s:/srv/staging --location \"West US\"  (storage key: SEEDSHIP_STORAGE_KEY or asked)
After sending the drives:
  seedship-diskprep u: s:/srv/staging              carrier, tracking number, return address; review
  seedship-diskprep u: s:/srv/staging              later: the job's and the drives' state
  seedship-diskprep delete-job s:/srv/staging      in Creating or Completed only
WAImportExport's way (docs/waimportexport.md): one journal per drive, sessions, then a job from the journals:
  seedship-diskprep PrepImport /j:d1.jrn /id:session1 /t:/dev/sdb /format /encrypt /srcdir:/srv/st/job/blobs/ /dstdir:backup/
  seedship-diskprep create-job --journal d1.jrn d2.jrn --job-name NAME --location \"West US\"
  seedship-diskprep u: s:<folder of d1.jrn> --job NAME     (create-job records the job beside d1.jrn)

Exit codes: 0 done, 1 failed (delete-job: the job's state forbids it), 2 a drive did not verify,
130 interrupted (run again to resume). See docs/diskprep.md.";

/// Command line of `seedship-diskprep`.
#[derive(Debug, Parser)]
#[command(
    name = "seedship-diskprep",
    version,
    about = "Copies an offline-backup job from its staging location onto encrypted shipping drives.",
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub prep: PrepArgs,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output: errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Options of drive preparation (the default action).
#[derive(Debug, Args)]
pub struct PrepArgs {
    /// The staging location the backup agent wrote (s:PATH).
    #[arg(long, value_name = "DIR")]
    pub staging: Option<PathBuf>,
    /// The publish-settings file (p:PATH); required on a machine other than the job's source machine.
    #[arg(long, value_name = "FILE")]
    pub publish_settings: Option<PathBuf>,
    /// The job to prepare, when the staging location holds several (otherwise asked).
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// A target drive: a whole block device (/dev/sdX) or an image file. Repeat for a drive set; without
    /// any, the drives are asked for one at a time.
    #[arg(long = "drive", value_name = "PATH")]
    pub drives: Vec<PathBuf>,
    /// Create each --drive that does not exist as a sparse image file of this size (e.g. 500G).
    #[arg(long, value_name = "SIZE")]
    pub create_image: Option<String>,
    /// Format without asking for confirmation (silent mode).
    #[arg(short, long)]
    pub yes: bool,
    /// Skip reading each drive back and checking it after writing.
    #[arg(long)]
    pub no_verify: bool,
    /// Where to write the recovery keys (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Check everything and print the plan, then stop before formatting anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Key derivation of the drives' keyslot.
    #[arg(long, value_enum, default_value_t = KdfChoice::Argon2id)]
    pub pbkdf: KdfChoice,
    /// Only prepare the drives; do not create the import job.
    #[arg(
        long,
        env = "SEEDSHIP_NO_CREATE_JOB",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub no_create_job: bool,
    #[command(flatten)]
    pub api: ApiArgs,
    /// The region of the storage account, where the service looks for a shipping location (asked if missing).
    #[arg(long, env = "SEEDSHIP_LOCATION", value_name = "NAME")]
    pub location: Option<String>,
    /// The storage credential for the import job (asked if missing).
    #[command(flatten)]
    pub cred: job::create::CredentialArgs,
    #[command(flatten)]
    pub ret: ReturnArgs,
}

/// How the Import/Export service is reached.
#[derive(Debug, Args, Clone)]
pub struct ApiArgs {
    /// Extra trusted CA certificate(s) for the service (PEM), e.g. the emulator's ca.pem.
    #[arg(long, env = "SEEDSHIP_MANAGEMENT_CA", value_name = "FILE")]
    pub management_ca: Option<PathBuf>,
    /// Entra ID sign-in for jobs the agent started with Resource Manager: a credential given here replaces
    /// the one recorded at `offline start` (a moved certificate or secret file).
    #[command(flatten)]
    pub entra: Box<seedship_shared::entra::EntraArgs>,
}

impl ApiArgs {
    /// These options with the publish-settings file given (p:), if any; resolved per job
    /// ([`jobcmd::Access::for_job`]).
    pub(crate) fn access(&self, publish_settings: Option<PathBuf>) -> jobcmd::Access {
        jobcmd::Access {
            publish_settings,
            management_ca: self.management_ca.clone(),
            entra: (*self.entra).clone(),
        }
    }
}

/// Which job `u:` and `delete-job` work on.
#[derive(Debug, Args, Clone)]
pub struct JobArgs {
    /// The staging location (s:PATH); required.
    #[arg(long, value_name = "DIR")]
    pub staging: Option<PathBuf>,
    /// The publish-settings file (p:PATH); without it, the one the agent recorded for the job.
    #[arg(long, value_name = "FILE")]
    pub publish_settings: Option<PathBuf>,
    /// The job, when several in the staging location have an import job.
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Keyslot key derivations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KdfChoice {
    /// Argon2id, 4 passes over 256 MiB (memory-hard; the default).
    Argon2id,
    /// PBKDF2-SHA256, 100000 iterations (fast to unlock; the key is 128 random bits either way).
    Pbkdf2,
}

/// The answers of `u:` (the `ship` command); each one missing is asked on the terminal.
#[derive(Debug, Args)]
pub struct ShipArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// The carrier that carries the package (one the shipping location supports).
    #[arg(long, value_name = "NAME")]
    pub carrier: Option<String>,
    /// The package's tracking number.
    #[arg(long, value_name = "NUMBER")]
    pub tracking_number: Option<String>,
    /// How many drives are in the package (default: all drives of the job).
    #[arg(long, value_name = "N")]
    pub drive_count: Option<u32>,
    /// When the package was sent, YYYY-MM-DD (default: today).
    #[arg(long, value_name = "DATE")]
    pub ship_date: Option<String>,
    #[command(flatten)]
    pub ret: ReturnArgs,
    /// Send the details without the review question.
    #[arg(short, long)]
    pub yes: bool,
    /// Only show the job's state, as one JSON document on standard output (fields in docs/diskprep.md);
    /// nothing is asked or sent.
    #[arg(long)]
    pub json: bool,
}

/// Commands besides preparation.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a prepared drive: unlock it with its recovery key and check every range against its manifest.
    Verify {
        /// The drive (device or image file).
        #[arg(long, value_name = "PATH")]
        drive: PathBuf,
        /// A file holding its 48-digit recovery key (or set SEEDSHIP_RECOVERY_KEY_FILE, or the key itself in
        /// SEEDSHIP_RECOVERY_KEY; asked for on a terminal if none is given).
        #[arg(
            long,
            env = "SEEDSHIP_RECOVERY_KEY_FILE",
            value_name = "FILE",
            conflicts_with = "key"
        )]
        key_file: Option<PathBuf>,
        /// The key itself: kept for compatibility only, since a command line is readable by every user; use
        /// --key-file or SEEDSHIP_RECOVERY_KEY.
        #[arg(
            long,
            env = "SEEDSHIP_RECOVERY_KEY",
            hide_env_values = true,
            value_name = "KEY",
            hide_short_help = true
        )]
        key: Option<String>,
        /// Print the result as one JSON document on standard output (fields in docs/diskprep.md).
        #[arg(long)]
        json: bool,
    },
    /// Give the shipping details (carrier, tracking number, return address) and move the import job to
    /// Shipping; run later, show the job's and the drives' state. Spelled `u:` too.
    Ship(Box<ShipArgs>),
    /// Delete the import job (and the personal data the service keeps) when its state allows: Creating or
    /// Completed.
    DeleteJob {
        #[command(flatten)]
        job: JobArgs,
        /// Delete without asking.
        #[arg(short, long)]
        yes: bool,
    },
    /// WAImportExport's PrepImport: copy a folder or file to a drive as one session, with the drive's journal
    /// (/j:). Spelled `PrepImport /j:FILE /id:SESSION /t:DRIVE /format /encrypt /srcdir:DIR /dstdir:C/` too;
    /// see docs/waimportexport.md.
    Prepimport(Box<wai::prepimport::PrepImportArgs>),
    /// Create the import job from drive journals written by prepimport (as the portal does from uploaded
    /// journal files) and print where to ship the drives.
    CreateJob(Box<job::from_journals::CreateJobArgs>),
    /// WAImportExport's RepairImport: after an import, send again only the ranges the drive's copy log
    /// reports damaged or missing, from the original files, each checked against the manifest's MD5.
    #[command(name = "repairimport", after_help = wai::repair::AFTER_HELP)]
    Repairimport(Box<wai::repair::RepairImportArgs>),
}

impl Cli {
    /// The net verbosity for [`seedship_shared::logging::init`].
    pub fn verbosity(&self) -> i8 {
        seedship_shared::exit::verbosity(self.verbose, self.quiet)
    }
}

impl JobArgs {
    /// The job `u:` or `delete-job` works on, and how the service is reached.
    fn target(&self) -> anyhow::Result<jobcmd::JobTarget> {
        let staging = self.staging.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "give the staging location with s:<path> (or --staging DIR); see docs/diskprep.md"
            )
        })?;
        Ok(jobcmd::JobTarget {
            staging,
            job: self.job.clone(),
            access: self.api.access(self.publish_settings.clone()),
        })
    }
}

/// Turns the preparation arguments into options.
fn prep_options(a: &PrepArgs) -> anyhow::Result<PrepOptions> {
    let staging = a.staging.clone().ok_or_else(|| {
        anyhow::anyhow!("give the staging location with s:<path> (or --staging DIR); see --help")
    })?;
    let create_image = a.create_image.as_deref().map(drive::parse_size).transpose()?;
    Ok(PrepOptions {
        staging,
        publish_settings: a.publish_settings.clone(),
        job: a.job.clone(),
        drives: a.drives.clone(),
        create_image,
        yes: a.yes,
        verify: !a.no_verify,
        key_file: a.key_file.clone(),
        dry_run: a.dry_run,
        pbkdf: match a.pbkdf {
            KdfChoice::Argon2id => Pbkdf::DEFAULT,
            KdfChoice::Pbkdf2 => Pbkdf::Pbkdf2 { iterations: 100_000 },
        },
        host: seedship_shared::host::hostname(),
    })
}

/// Runs one command line; `cancel` is set by Ctrl-C or SIGTERM.
pub fn run(cli: Cli, cancel: &AtomicBool) -> anyhow::Result<Exit> {
    match cli.command {
        Some(Command::Verify {
            drive,
            key_file,
            key,
            json,
        }) => {
            let out = json.then(seedship_shared::jsonout::json_stdout).transpose()?;
            verify_cmd(&drive, &recovery_key(key_file.as_deref(), key)?, out)
        }
        Some(Command::Ship(a)) => {
            let a = *a;
            let answers = jobcmd::ShipAnswers {
                carrier: a.carrier,
                tracking_number: a.tracking_number,
                drive_count: a.drive_count,
                ship_date: a.ship_date,
                ret: a.ret,
            };
            let target = a.job.target()?;
            if a.json {
                let mut out = seedship_shared::jsonout::json_stdout()?;
                return jobcmd::job_status_json(&target, &mut out);
            }
            jobcmd::ship_cmd(&target, answers, a.yes)
        }
        Some(Command::DeleteJob { job, yes }) => jobcmd::delete_cmd(&job.target()?, yes),
        Some(Command::Prepimport(a)) => wai::prepimport::run(*a, cancel),
        Some(Command::CreateJob(a)) => job::from_journals::run(*a),
        Some(Command::Repairimport(a)) => wai::repair::run(&a, cancel),
        None => {
            let opts = prep_options(&cli.prep)?;
            prepare_cmd(opts, &cli.prep, cancel)
        }
    }
}

fn prepare_cmd(opts: PrepOptions, args: &PrepArgs, cancel: &AtomicBool) -> anyhow::Result<Exit> {
    let mut ui = console::ConsoleUi::default();
    let plan = prepare::plan(&opts, &mut ui)?;
    let creation = if args.no_create_job {
        None
    } else {
        jobcmd::preflight(&plan, args.job_setup()?)?
    };
    if opts.dry_run {
        jobcmd::print_dry_run(creation.as_ref());
        println!("Dry run: nothing was formatted or written.");
        return Ok(Exit::Success);
    }
    match prepare::execute(&plan, &opts, &mut ui, cancel) {
        Ok(report) => {
            console::print_report(&report);
            if let Some(c) = creation {
                jobcmd::create(&plan, &report, c)?;
            }
            Ok(Exit::Success)
        }
        Err(PrepError::Copy(e @ copy::CopyError::Interrupted { .. })) => {
            eprintln!("{e}");
            Ok(Exit::Interrupted)
        }
        Err(PrepError::Verify(e)) => {
            eprintln!("error: {e}");
            Ok(Exit::VerifyFailed)
        }
        Err(e) => Err(e.into()),
    }
}

/// The recovery key for `verify`: from its file, the value form, or a prompt on a terminal.
fn recovery_key(file: Option<&std::path::Path>, value: Option<String>) -> anyhow::Result<Zeroizing<String>> {
    if let Some(f) = file {
        return Ok(seedship_shared::secret::from_file(f, "recovery key")?);
    }
    if let Some(v) = value {
        return Ok(Zeroizing::new(v));
    }
    Ok(Zeroizing::new(job::console::ask_secret(
        "Recovery key of the drive",
        "--key-file FILE or SEEDSHIP_RECOVERY_KEY",
    )?))
}

impl PrepArgs {
    /// What creating the import job needs: how the service is reached and the request's options.
    fn job_setup(&self) -> anyhow::Result<jobcmd::JobSetup> {
        Ok(jobcmd::JobSetup {
            access: self.api.access(self.publish_settings.clone()),
            request: job::create::JobRequest {
                location: self.location.clone(),
                credential: self.cred.credential()?,
                return_address: self.ret.address()?,
                return_shipping: self.ret.shipping()?,
            },
        })
    }
}

fn verify_cmd(drive: &std::path::Path, key: &str, json: Option<std::fs::File>) -> anyhow::Result<Exit> {
    let key = seedship_shared::recovery::RecoveryKey::parse(key)?;
    let mut ui = console::ConsoleUi::default();
    let progress = prepare::PrepUi::progress(&mut ui, "verifying", 0);
    let mut doc = report::VerifyReport {
        drive: drive.display().to_string(),
        ok: false,
        files: 0,
        ranges: 0,
        blocks: 0,
        bytes: 0,
        error: None,
    };
    let exit = match verify::verify_drive(drive, &key, progress.as_ref()) {
        Ok(stats) => {
            progress.finish();
            let pages = stats.segments - stats.blocks;
            let checked = match (pages, stats.blocks) {
                (_, 0) => format!("{pages} page ranges"),
                (0, blocks) => format!("{blocks} blocks"),
                (_, blocks) => format!("{pages} page ranges and {blocks} blocks"),
            };
            println!(
                "{}: verified {} files, {checked}, {} of data against the manifest.",
                drive.display(),
                stats.members - 1,
                seedship_shared::units::human(stats.bytes)
            );
            doc.ok = true;
            doc.files = stats.members.saturating_sub(1) as u64;
            doc.ranges = stats.segments as u64;
            doc.blocks = stats.blocks as u64;
            doc.bytes = stats.bytes;
            Exit::Success
        }
        Err(verify::VerifyError::Luks(e)) => {
            if let Some(mut out) = json {
                doc.error = Some(e.to_string());
                seedship_shared::jsonout::emit(&mut out, &doc)?;
            }
            return Err(e.into());
        }
        Err(e) => {
            eprintln!("error: {e}");
            doc.error = Some(e.to_string());
            Exit::VerifyFailed
        }
    };
    if let Some(mut out) = json {
        seedship_shared::jsonout::emit(&mut out, &doc)?;
    }
    Ok(exit)
}
