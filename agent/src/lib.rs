//! seedship backup agent: writes the initial full backup of a file server into a staging location for offline seeding, then incremental backups into the vault.
//!
//! The binary is a thin `main` over [`run`]; everything lives here so tests can call it. [`run`] turns the
//! command line and the environment into one [`Config`] (module `config`) and passes that down. Modules: `policy`
//! (state directory, names, passphrase), `store` (the staging store or the vault), `backup` (the pipeline),
//! `online` (incrementals into the vault, upload limit, last-backup record), `pipeline` (opening the
//! repository and running the backup pipeline, for `commands` and `online`), `complete` (verifying the finished
//! import job and moving it into the vault), `restore` (with `beneath`: paths resolved inside the target), `check`, `fsmeta` (file metadata), `progress` (what
//! the operator sees), `commands` (one function per subcommand).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

pub mod ahead;
pub mod backup;
pub mod beneath;
pub mod browse;
pub mod check;
mod commands;
pub mod complete;
pub mod config;
pub mod delete_import;
pub mod exclude;
pub mod forget;
pub mod fsmeta;
pub mod lock;
pub mod online;
mod pipeline;
pub mod policy;
pub mod policy_cmd;
pub mod progress;
pub mod prune;
pub mod report;
pub mod restore;
pub mod retention;
pub mod store;
pub mod throttle;

/// The exit codes of `seedship-agent`, documented in its `--help` and docs/agent.md.
/// (One list for every seedship command: [`seedship_shared::exit::Exit`].)
pub use seedship_shared::exit::Exit;

pub use config::Config;

const EXIT_HELP: &str =
    "Exit codes: 0 success, 1 failure, 3 partial (some files unreadable or changed while read), \
75 waiting (initial backup staged, import job pending), 130 interrupted (rerun to continue).";

/// The state directory when neither `--state-dir` nor `SEEDSHIP_STATE_DIR` gives one.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/seedship";

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
        default_value = DEFAULT_STATE_DIR,
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
    Snapshots(JsonArg),
    /// Restore a snapshot (an id, a unique id prefix, or "latest") into a folder.
    Restore(RestoreCmd),
    /// Verify the repository (and with --read-data every byte of it).
    Check(CheckCmd),
    /// Show the policy and the staging job's state, or in online mode the vault and the last backup.
    Status(JsonArg),
    /// Remove the snapshots no keep rule keeps (restic's rules; buckets in local time), or with --dry-run
    /// show which rule keeps each.
    Forget(forget::ForgetCmd),
    /// Show or change the backup policy: sources, exclusions, retention, upload limit.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCmd),
    /// List what a snapshot holds (below PATH).
    Ls(browse::LsCmd),
    /// Find paths matching glob patterns across snapshots.
    Find(browse::FindCmd),
    /// Show what was added, removed and changed between two snapshots, with sizes.
    Diff(browse::DiffCmd),
    /// Write a file of a snapshot to stdout, or a folder as a tar stream.
    Dump(browse::DumpCmd),
    /// Give back the space of blobs no snapshot references: wholly dead packs are cleared (Clear Pages in
    /// the vault, holes in staging), partly used packs repacked only past --max-unused.
    Prune(PruneCmd),
    /// Remove the repository's writer lock left by a process that is gone.
    Unlock,
    /// After the import is in the vault: delete the imported objects from the import container (each one
    /// only if the vault holds an object of the same name, at least as long).
    DeleteImport(delete_import::DeleteImportCmd),
    /// Manage the repository's passphrases (key objects).
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(Debug, clap::Args)]
pub struct PruneCmd {
    #[command(flatten)]
    pub limits: prune::PruneArgs,
    /// Print what would be freed and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan and what was freed as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// List the key objects (the one of the passphrase in use is marked).
    List,
    /// Add a passphrase.
    Add(NewPassphrase),
    /// Remove a key object (by id as `key list` shows it); the last one cannot be removed.
    Remove(KeyRemove),
    /// Change the passphrase in use (rewrites its key object only).
    Passwd(NewPassphrase),
}

#[derive(Debug, clap::Args)]
pub struct NewPassphrase {
    /// Read the new passphrase from this file (else it is asked twice on the terminal).
    #[arg(long)]
    pub new_passphrase_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct KeyRemove {
    /// The key's id (`keys/<id>` or `<id>`).
    pub key: String,
}

/// `--json` of a command that reports.
#[derive(Debug, clap::Args)]
pub struct JsonArg {
    /// Print one JSON document on standard output (fields in docs/agent.md); other output goes to standard
    /// error.
    #[arg(long)]
    pub json: bool,
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
    /// The Azure publish-settings file: the classic Import/Export API. Without it, the Resource Manager API
    /// with the Entra ID application given by --tenant, --client-id and --client-certificate or
    /// --client-secret-file.
    #[arg(long, value_name = "FILE")]
    pub publish_settings: Option<PathBuf>,
    /// Subscription id (classic: must be in the publish-settings file; Resource Manager: taken from
    /// --storage-account-id when that is given).
    #[arg(long, required_unless_present = "storage_account_id")]
    pub subscription: Option<String>,
    /// Storage account that receives the import, by name (with --subscription; Resource Manager also
    /// --resource-group).
    #[arg(
        long,
        required_unless_present = "storage_account_id",
        conflicts_with = "storage_account_id"
    )]
    pub storage_account: Option<String>,
    /// Resource Manager: the storage account by resource id
    /// (/subscriptions/SUB/resourceGroups/GROUP/providers/Microsoft.Storage/storageAccounts/NAME).
    #[arg(long, value_name = "ID", conflicts_with = "publish_settings")]
    pub storage_account_id: Option<String>,
    /// Resource Manager: the resource group the import job is created in (default: the storage account's,
    /// from --storage-account-id).
    #[arg(long, value_name = "GROUP", conflicts_with = "publish_settings")]
    pub resource_group: Option<String>,
    /// Resource Manager: the Entra ID application that signs in (and the authority and management endpoint
    /// overrides for sovereign clouds and the emulator).
    #[command(flatten)]
    pub entra: seedship_shared::entra::EntraArgs,
    /// Container the blobs are imported into.
    #[arg(long)]
    pub container: String,
    /// A folder to back up (repeatable).
    #[arg(long = "source", required = true)]
    pub sources: Vec<PathBuf>,
    /// Volume size in MiB (default 4096).
    #[arg(long, default_value_t = 4096)]
    pub volume_size_mib: u64,
    #[command(flatten)]
    pub exclude: policy_cmd::ExcludeArgs,
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
        value_parser = seedship_shared::units::parse_rate
    )]
    pub limit_upload: Option<u64>,
    /// Completion: read every imported object and compare its BLAKE3 with the job descriptor's (default:
    /// metadata objects and a sample of data blobs).
    #[arg(long)]
    pub verify_all: bool,
    /// Completion: first send again, from the staged copy, the ranges the drives' copy logs report damaged
    /// or missing (each checked against the drive manifest's MD5 and the staged BLAKE3), then complete with
    /// every object's BLAKE3 compared (implies --verify-all). Progress in `<state-dir>/repair-<job>.rep`.
    #[arg(long)]
    pub repair_from_staging: bool,
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
    /// The publish-settings file to reach the Import/Export service with, instead of the path recorded at
    /// `offline start` (when the file moved, or on another machine).
    #[arg(long, env = "SEEDSHIP_PUBLISH_SETTINGS", value_name = "FILE")]
    pub publish_settings: Option<PathBuf>,
    /// Completion of a Resource Manager job: Entra ID sign-in options; a credential given here replaces the
    /// one recorded at `offline start` (when the file moved, or on another machine).
    #[command(flatten)]
    pub entra: seedship_shared::entra::EntraArgs,
    /// After the run (whatever its outcome), write node_exporter textfile-collector metrics to this file,
    /// atomically and mode 0644 (e.g. /var/lib/prometheus/node-exporter/seedship.prom).
    #[arg(long, env = "SEEDSHIP_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// At the end, print the run's summary as one JSON document on standard output (also when it fails);
    /// other output goes to standard error.
    #[arg(long)]
    pub json: bool,
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
    /// Leave out paths matching PATTERN (gitignore-style glob against the path in the snapshot, as
    /// --exclude at backup); repeatable.
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,
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
    #[command(flatten)]
    pub json: JsonArg,
}

impl Cli {
    /// The net verbosity for [`seedship_shared::logging::init`].
    pub fn verbosity(&self) -> i8 {
        seedship_shared::exit::verbosity(self.verbose, self.quiet)
    }
}

/// Runs one command line: builds its [`Config`] (arguments and environment, once; `cancel` is the token
/// `main` wired to the signals) and runs the command.
pub fn run(cli: Cli, cancel: seedship_shared::cancel::Cancel) -> anyhow::Result<Exit> {
    let cfg = Config::new(&cli, cancel);
    run_command(&cfg, &cli.command)
}

/// Runs one command with its configuration.
fn run_command(cfg: &Config, command: &Command) -> anyhow::Result<Exit> {
    match command {
        Command::Offline(OfflineCmd::Start(c)) => commands::offline_start(cfg, c),
        Command::Backup(c) => reported_backup(cfg, c),
        Command::Snapshots(j) => commands::snapshots(cfg, json_out(j.json)?),
        Command::Restore(c) => commands::restore(cfg, c),
        Command::Check(c) => commands::check(cfg, c, json_out(c.json.json)?),
        Command::Status(j) => commands::status(cfg, json_out(j.json)?),
        Command::Forget(c) => forget::forget(cfg, c),
        Command::Policy(c) => policy_cmd::run(cfg, c),
        Command::Ls(c) => browse::ls(cfg, c),
        Command::Find(c) => browse::find(cfg, c),
        Command::Diff(c) => browse::diff(cfg, c),
        Command::Dump(c) => browse::dump(cfg, c),
        Command::Prune(c) => prune::prune(cfg, c),
        Command::Unlock => prune::unlock(cfg),
        Command::DeleteImport(c) => delete_import::run(cfg, c),
        Command::Key(c) => prune::key(cfg, c),
    }
}

/// The original standard output for the JSON document, when `--json` was given.
fn json_out(json: bool) -> anyhow::Result<Option<std::fs::File>> {
    Ok(json.then(report::json_stdout).transpose()?)
}

/// `backup` with its summary: printed as JSON with `--json` and written as metrics with `--metrics-file`,
/// whatever the outcome, before the outcome is returned.
fn reported_backup(cfg: &Config, c: &BackupCmd) -> anyhow::Result<Exit> {
    let mut out = json_out(c.json)?;
    let started = std::time::Instant::now();
    let mut summary = report::BackupSummary {
        started: report::unix_now(),
        ..Default::default()
    };
    let outcome = commands::backup(cfg, c, &mut summary);
    summary.finish(&outcome, started);
    if let Some(path) = &c.metrics_file {
        if let Err(e) = report::write_metrics(path, &summary) {
            // the backup's own outcome matters more; the missing metrics show as stale in monitoring
            tracing::error!("{}", seedship_shared::exit::error_line(e.as_ref()));
        }
    }
    if let Some(out) = out.as_mut() {
        report::emit(out, &summary)?;
    }
    outcome
}
