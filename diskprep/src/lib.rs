//! seedship-diskprep: copies an offline-backup job from its staging location onto LUKS2-encrypted shipping
//! drives, with a WAImportExport-style manifest per drive and a journal per drive, the way
//! AzureOfflineBackupDiskPrep does for Azure Backup.
//!
//! The binary is a thin `main` over [`run`]; everything lives in the library so tests can call it.
//! Modules: [`staging`] (jobs and their check), [`drive`] (targets and refusals), [`plan`] (spanning),
//! [`layout`], [`payload`], [`copy`] and [`verify`] (the drive's bytes), [`session`] (journal and state),
//! [`prepare`] (the flow), [`console`] (the operator), [`keyfile`], [`args`]; the import job: [`job`] (created
//! after preparation), [`record`] (`diskprep/job.json`), [`ship`] (`u:`), [`delete`] (`delete-job`) and
//! [`jobconsole`]. docs/diskprep.md describes the commands.

pub mod args;
pub mod console;
pub mod copy;
pub mod delete;
pub mod direct;
pub mod drive;
pub mod job;
mod jobcmd;
pub mod jobconsole;
pub mod keyfile;
pub mod layout;
pub mod payload;
pub mod plan;
pub mod prepare;
pub mod record;
pub mod session;
pub mod ship;
pub mod staging;
pub mod verify;

use clap::{Args, Parser, Subcommand, ValueEnum};
use prepare::{PrepError, PrepOptions};
use seedship_shared::luks::Pbkdf;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

/// The exit codes of `seedship-diskprep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Success = 0,
    /// The command failed; a rerun continues where it can.
    Failure = 1,
    /// A drive read back or checked does not match.
    VerifyFailed = 2,
    /// Interrupted (Ctrl-C, SIGTERM); a rerun resumes where this one stopped.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

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
    /// The storage account's key for the import job (or set SEEDSHIP_STORAGE_KEY; asked if missing).
    #[arg(
        long,
        env = "SEEDSHIP_STORAGE_KEY",
        hide_env_values = true,
        value_name = "KEY",
        conflicts_with = "container_sas"
    )]
    pub storage_account_key: Option<String>,
    /// A SAS of the container instead of the account key (or set SEEDSHIP_CONTAINER_SAS).
    #[arg(
        long,
        env = "SEEDSHIP_CONTAINER_SAS",
        hide_env_values = true,
        value_name = "SAS"
    )]
    pub container_sas: Option<String>,
    #[command(flatten)]
    pub ret: ReturnArgs,
}

/// How the Import/Export service is reached.
#[derive(Debug, Args, Clone)]
pub struct ApiArgs {
    /// Extra trusted CA certificate(s) for the service (PEM), e.g. the emulator's ca.pem.
    #[arg(long, env = "SEEDSHIP_MANAGEMENT_CA", value_name = "FILE")]
    pub management_ca: Option<PathBuf>,
}

/// Where the drives go back to, and whose carrier account pays (all optional at preparation; `u:` needs them).
#[derive(Debug, Args, Clone, Default)]
pub struct ReturnArgs {
    /// Return address: the recipient's name.
    #[arg(long, value_name = "TEXT")]
    pub return_name: Option<String>,
    /// Return address: street, city, postal code, country (one line).
    #[arg(long, value_name = "TEXT")]
    pub return_address: Option<String>,
    /// Return address: phone.
    #[arg(long, value_name = "TEXT")]
    pub return_phone: Option<String>,
    /// Return address: email.
    #[arg(long, value_name = "TEXT")]
    pub return_email: Option<String>,
    /// The carrier that ships the drives back.
    #[arg(long, value_name = "NAME")]
    pub return_carrier: Option<String>,
    /// Your account number with that carrier.
    #[arg(long, value_name = "NUMBER")]
    pub return_carrier_account: Option<String>,
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
}

/// Commands besides preparation.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a prepared drive: unlock it with its recovery key and check every range against its manifest.
    Verify {
        /// The drive (device or image file).
        #[arg(long, value_name = "PATH")]
        drive: PathBuf,
        /// Its 48-digit recovery key (or set SEEDSHIP_RECOVERY_KEY to keep it off the command line).
        #[arg(
            long,
            env = "SEEDSHIP_RECOVERY_KEY",
            hide_env_values = true,
            value_name = "KEY"
        )]
        key: String,
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
}

impl Cli {
    /// The net verbosity for [`seedship_shared::logging::init`].
    pub fn verbosity(&self) -> i8 {
        if self.quiet {
            -1
        } else {
            self.verbose.min(3) as i8
        }
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
        Some(Command::Verify { drive, key }) => verify_cmd(&drive, &key),
        Some(Command::Ship(a)) => {
            let a = *a;
            let answers = jobcmd::ShipAnswers {
                carrier: a.carrier,
                tracking_number: a.tracking_number,
                drive_count: a.drive_count,
                ship_date: a.ship_date,
                ret: a.ret,
            };
            jobcmd::ship_cmd(&a.job, answers, a.yes)
        }
        Some(Command::DeleteJob { job, yes }) => jobcmd::delete_cmd(&job, yes),
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
        jobcmd::preflight(&plan, args)?
    };
    if opts.dry_run {
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

fn verify_cmd(drive: &std::path::Path, key: &str) -> anyhow::Result<Exit> {
    let key = seedship_shared::recovery::RecoveryKey::parse(key)?;
    let mut ui = console::ConsoleUi::default();
    let progress = prepare::PrepUi::progress(&mut ui, "verifying", 0);
    match verify::verify_drive(drive, &key, progress.as_ref()) {
        Ok(stats) => {
            progress.finish();
            println!(
                "{}: verified {} files, {} ranges, {} of data against the manifest.",
                drive.display(),
                stats.members - 1,
                stats.segments,
                console::human(stats.bytes)
            );
            Ok(Exit::Success)
        }
        Err(verify::VerifyError::Luks(e)) => Err(e.into()),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(Exit::VerifyFailed)
        }
    }
}
