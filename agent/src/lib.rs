//! seedship backup agent: writes the initial full backup of a file server into a staging location for offline seeding, then incremental backups into the vault.
//!
//! The binary is a thin `main` over [`run`]; everything lives here so tests can call it. Modules: `policy`
//! (state directory, names, passphrase), `store` (the staging store or the vault), `backup` (the pipeline),
//! `online` (incrementals into the vault, upload limit, last-backup record), `complete` (verifying the finished
//! import job and moving it into the vault), `restore`, `check`, `fsmeta` (file metadata), `progress` (what
//! the operator sees), `commands` (one function per subcommand).

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

pub mod backup;
pub mod check;
mod commands;
pub mod complete;
pub mod fsmeta;
pub mod online;
pub mod policy;
pub mod progress;
pub mod restore;
pub mod store;

/// The exit codes of `seedship-agent`, documented in its `--help` and docs/agent.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Success = 0,
    /// The command failed; nothing was left half-done that a rerun cannot finish.
    Failure = 1,
    /// The backup completed but some files were unreadable or changed while being read (listed in the log).
    Partial = 3,
    /// Nothing to do yet: the initial backup is staged and the import job is pending.
    Waiting = 75,
    /// Interrupted (Ctrl-C, SIGTERM); a rerun continues where this one stopped.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

const EXIT_HELP: &str =
    "Exit codes: 0 success, 1 failure, 3 partial (some files unreadable or changed while read), \
75 waiting (initial backup staged, import job pending), 130 interrupted (rerun to continue).";

/// Command line of `seedship-agent`.
#[derive(Debug, Parser)]
#[command(
    name = "seedship-agent",
    version,
    about = "seedship backup agent: writes the initial full backup of a file server into a staging location for offline seeding, then incremental backups into the vault.",
    after_help = EXIT_HELP
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output: errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The agent's state directory (policy, caches).
    #[arg(
        long,
        env = "SEEDSHIP_STATE_DIR",
        default_value = "/var/lib/seedship",
        global = true
    )]
    pub state_dir: PathBuf,
    /// Read the repository passphrase from this file (else SEEDSHIP_PASSPHRASE, else a prompt).
    #[arg(long, global = true)]
    pub passphrase_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Offline seeding: set up a staging job.
    #[command(subcommand)]
    Offline(OfflineCmd),
    /// Run a backup according to the policy: the initial full backup into staging, or once the import is in
    /// the vault an incremental over the network (needs SEEDSHIP_STORAGE_KEY).
    Backup(BackupCmd),
    /// List the snapshots.
    Snapshots,
    /// Restore a snapshot (an id, a unique id prefix, or "latest") into a folder.
    Restore(RestoreCmd),
    /// Verify the repository (and with --read-data every byte of it).
    Check(CheckCmd),
    /// Show the policy and the staging job's state, or in online mode the vault and the last backup.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum OfflineCmd {
    /// Validate everything, create the repository and job descriptor in staging, and record the policy.
    Start(StartCmd),
}

#[derive(Debug, clap::Args)]
pub struct StartCmd {
    /// The staging location (a local folder with room for the initial backup).
    #[arg(long)]
    pub staging: PathBuf,
    /// Import job name: lowercase letters, digits, '-' and '_', starting with a letter.
    #[arg(long)]
    pub job_name: String,
    /// The Azure publish-settings file.
    #[arg(long)]
    pub publish_settings: PathBuf,
    /// Subscription id (must be in the publish-settings file).
    #[arg(long)]
    pub subscription: String,
    /// Storage account that receives the import.
    #[arg(long)]
    pub storage_account: String,
    /// Container the blobs are imported into.
    #[arg(long)]
    pub container: String,
    /// A folder to back up (repeatable).
    #[arg(long = "source", required = true)]
    pub sources: Vec<PathBuf>,
    /// Volume size in MiB (default 4096).
    #[arg(long, default_value_t = 4096)]
    pub volume_size_mib: u64,
}

#[derive(Debug, clap::Args)]
pub struct BackupCmd {
    /// While the import job is pending, write another snapshot into staging anyway (before shipping).
    #[arg(long)]
    pub another_snapshot: bool,
    /// Online mode: limit uploads to the vault to RATE bytes per second, with an optional K, M or G suffix
    /// for KiB/s, MiB/s, GiB/s (e.g. 10M, 512K). Every upload (packs, index, snapshot) goes through the
    /// limit; writes into staging are not limited.
    #[arg(
        long,
        env = "SEEDSHIP_LIMIT_UPLOAD",
        value_name = "RATE",
        value_parser = online::parse_rate
    )]
    pub limit_upload: Option<u64>,
    /// Completion: read every imported object and compare its BLAKE3 with the job descriptor's (default:
    /// metadata objects and a sample of data blobs).
    #[arg(long)]
    pub verify_all: bool,
    /// Completion: data blobs read back and authenticated when not `--verify-all`.
    #[arg(long, default_value_t = 64)]
    pub sample_blobs: usize,
    /// Completion: the vault container the imported objects are copied into (default `<container>-vault`).
    #[arg(long, env = "SEEDSHIP_VAULT_CONTAINER")]
    pub vault_container: Option<String>,
    /// Completion: the storage account's blob endpoint (default `https://<account>.blob.core.windows.net`;
    /// path style with the account for Azurite: `http://127.0.0.1:10000/devstoreaccount1`).
    #[arg(long, env = "SEEDSHIP_BLOB_ENDPOINT")]
    pub blob_endpoint: Option<String>,
    /// Completion: a PEM file of extra CA certificates trusted for the Import/Export API (the emulator's).
    #[arg(long, env = seedship_shared::api::MANAGEMENT_CA_ENV)]
    pub management_ca: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreCmd {
    /// Snapshot id, unique prefix, or "latest".
    pub snapshot: String,
    /// Target folder.
    #[arg(long)]
    pub target: PathBuf,
    /// Only restore these paths (as in the snapshot, e.g. /srv/data/projects); repeatable.
    #[arg(long = "include")]
    pub includes: Vec<String>,
    /// As root, set owners by the recorded numeric ids only (by default a user or group name recorded at
    /// backup time that exists on this machine wins over the recorded id, as with tar).
    #[arg(long)]
    pub numeric_owner: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckCmd {
    /// Read and verify every blob and every byte of the volumes (in staging or the vault).
    #[arg(long)]
    pub read_data: bool,
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

/// Runs one command line.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match &cli.command {
        Command::Offline(OfflineCmd::Start(c)) => commands::offline_start(&cli, c),
        Command::Backup(c) => commands::backup(&cli, c),
        Command::Snapshots => commands::snapshots(&cli),
        Command::Restore(c) => commands::restore(&cli, c),
        Command::Check(c) => commands::check(&cli, c),
        Command::Status => commands::status(&cli),
    }
}
