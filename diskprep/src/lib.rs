//! seedship-diskprep: copies an offline-backup job from its staging location onto LUKS2-encrypted shipping
//! drives, with a WAImportExport-style manifest per drive and a journal per drive, the way
//! AzureOfflineBackupDiskPrep does for Azure Backup.
//!
//! The binary is a thin `main` over [`run`]; everything lives in the library so tests can call it.
//! Modules: [`staging`] (jobs and their check), [`drive`] (targets and refusals), [`plan`] (spanning),
//! [`layout`], [`payload`], [`copy`] and [`verify`] (the drive's bytes), [`session`] (journal and state),
//! [`prepare`] (the flow), [`console`] (the operator), [`keyfile`], [`args`].

pub mod args;
pub mod console;
pub mod copy;
pub mod drive;
pub mod keyfile;
pub mod layout;
pub mod payload;
pub mod plan;
pub mod prepare;
pub mod session;
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

Exit codes: 0 done, 1 failed, 2 a drive did not verify, 130 interrupted (run again to resume).";

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
    /// The staging location the backup agent wrote (s:<path>).
    #[arg(long, value_name = "DIR")]
    pub staging: Option<PathBuf>,
    /// The publish-settings file (p:<path>); required on a machine other than the job's source machine.
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
}

/// Keyslot key derivations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KdfChoice {
    /// Argon2id, 4 passes over 256 MiB (memory-hard; the default).
    Argon2id,
    /// PBKDF2-SHA256, 100000 iterations (fast to unlock; the key is 128 random bits either way).
    Pbkdf2,
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
fn prep_options(a: PrepArgs) -> anyhow::Result<PrepOptions> {
    let staging = a.staging.ok_or_else(|| {
        anyhow::anyhow!("give the staging location with s:<path> (or --staging DIR); see --help")
    })?;
    let create_image = a.create_image.as_deref().map(drive::parse_size).transpose()?;
    Ok(PrepOptions {
        staging,
        publish_settings: a.publish_settings,
        job: a.job,
        drives: a.drives,
        create_image,
        yes: a.yes,
        verify: !a.no_verify,
        key_file: a.key_file,
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
        None => prepare_cmd(prep_options(cli.prep)?, cancel),
    }
}

fn prepare_cmd(opts: PrepOptions, cancel: &AtomicBool) -> anyhow::Result<Exit> {
    let mut ui = console::ConsoleUi::default();
    let plan = prepare::plan(&opts, &mut ui)?;
    if opts.dry_run {
        println!("Dry run: nothing was formatted or written.");
        return Ok(Exit::Success);
    }
    match prepare::execute(&plan, &opts, &mut ui, cancel) {
        Ok(report) => {
            console::print_report(&report);
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
