//! seedship-emulator: the classic Azure Import/Export service and the data centre that imports shipped drives, on one machine.
//!
//! The binary is a thin `main` over [`run`]; everything lives here so tests can call it. `init` ([`init()`])
//! prepares a directory (CA, server certificate, subscription, management certificate, publish settings,
//! locations table); `serve` ([`server::serve`]) answers the classic API over HTTPS with client-certificate
//! authentication, [`handlers`] holds the operations (sharing [`state`] with the operator endpoints), [`validation`] the documented request rules,
//! [`conditions`] the If-* headers, [`store`]
//! the SQLite job store with the emulator clock, [`operator`] the operator endpoints, and [`datacentre`] the
//! import of a job's drives (`receive`, docs/datacentre.md). docs/emulator.md
//! describes the files and endpoints.

pub mod arm;
pub mod conditions;
pub mod config;
pub mod datacentre;
pub mod entra;
pub mod handlers;
pub mod init;
pub mod odata;
pub mod operator;
pub mod request;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;
pub mod validation;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

pub use config::{EmulatorConfig, EmulatorDir, EmulatorError};
pub use init::{init, InitOptions, InitReport};
pub use server::{bind, serve, BoundServer, ServeConfig};

/// The exit codes of `seedship-emulator`, documented in its `--help` and man page.
/// (One list for every seedship command: [`seedship_shared::exit::Exit`].)
pub use seedship_shared::exit::Exit;

/// Command line of `seedship-emulator`.
#[derive(Debug, Parser)]
#[command(
    name = "seedship-emulator",
    version,
    about = "seedship-emulator: the classic Azure Import/Export service and the data centre that imports shipped drives, on one machine.",
    after_help = "Exit codes: 0 success, 1 failure (`receive`: the job did not end Completed). `serve` stops cleanly on Ctrl-C or SIGTERM and exits 0."
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output: errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a CA, a server certificate, a subscription with its management certificate, a publish-settings
    /// file and a locations table in DIR.
    Init(InitCmd),
    /// Serve the classic Import/Export API over HTTPS from DIR until Ctrl-C or SIGTERM.
    Serve(ServeCmd),
    /// The drives of an import job arrive at the data centre: import them into the storage account and
    /// complete the job (docs/datacentre.md).
    Receive(ReceiveCmd),
}

/// `seedship-emulator receive`.
#[derive(Debug, clap::Args)]
pub struct ReceiveCmd {
    /// The directory `init` prepared (with --storage-account).
    #[arg(long)]
    pub dir: PathBuf,
    /// The job's name.
    #[arg(long)]
    pub job: String,
    /// A drive (device or image file) of the job; repeat for each drive received.
    #[arg(long = "drive", required = true)]
    pub drives: Vec<PathBuf>,
}

/// `seedship-emulator init`.
#[derive(Debug, clap::Args)]
pub struct InitCmd {
    /// The emulator's directory (created if missing; must not hold an emulator yet).
    #[arg(long)]
    pub dir: PathBuf,
    /// Subscription id (default: a random GUID).
    #[arg(long)]
    pub subscription_id: Option<String>,
    /// Subscription name shown in the publish settings.
    #[arg(long, default_value = "seedship emulator")]
    pub subscription_name: String,
    /// Storage account the data centre imports into (for the import step).
    #[arg(long, requires = "storage_endpoint")]
    pub storage_account: Option<String>,
    /// Blob endpoint of that account, e.g. http://127.0.0.1:10000/devstoreaccount1.
    #[arg(long)]
    pub storage_endpoint: Option<String>,
    /// A file holding the account key of that account (Base64), or set SEEDSHIP_EMULATOR_STORAGE_KEY_FILE
    /// (or the key itself in SEEDSHIP_EMULATOR_STORAGE_KEY).
    #[arg(
        long,
        env = "SEEDSHIP_EMULATOR_STORAGE_KEY_FILE",
        value_name = "FILE",
        conflicts_with = "storage_key"
    )]
    pub storage_key_file: Option<PathBuf>,
    /// The key itself: kept for compatibility only, since a command line is readable by every user; use
    /// --storage-key-file or SEEDSHIP_EMULATOR_STORAGE_KEY.
    #[arg(
        long,
        env = "SEEDSHIP_EMULATOR_STORAGE_KEY",
        hide_env_values = true,
        hide_short_help = true
    )]
    pub storage_key: Option<String>,
    /// Fixed ServiceManagementUrl for the publish settings; without it `serve` writes the address it listens on.
    #[arg(long)]
    pub url: Option<String>,
    /// Port `serve` listens on by default.
    #[arg(long)]
    pub listen_port: Option<u16>,
}

/// `seedship-emulator serve`.
#[derive(Debug, clap::Args)]
pub struct ServeCmd {
    /// The directory `init` prepared.
    #[arg(long)]
    pub dir: PathBuf,
    /// Address to listen on (port 0 = any free port; default 127.0.0.1 and the port given to init, else 8443).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

impl Cli {
    /// The net verbosity for [`seedship_shared::logging::init`].
    pub fn verbosity(&self) -> i8 {
        seedship_shared::exit::verbosity(self.verbose, self.quiet)
    }
}

/// Runs one command line. Output for the operator goes to stdout here, never from the library modules.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    use anyhow::Context;
    match cli.command {
        Command::Init(cmd) => {
            let storage_key = match (&cmd.storage_key_file, cmd.storage_key) {
                (Some(f), _) => {
                    Some(seedship_shared::secret::from_file(f, "storage account key")?.to_string())
                }
                (None, k) => k,
            };
            if cmd.storage_account.is_some() && storage_key.is_none() {
                anyhow::bail!(
                    "--storage-account needs its key: --storage-key-file FILE or SEEDSHIP_EMULATOR_STORAGE_KEY"
                );
            }
            let storage_account = match (cmd.storage_account, cmd.storage_endpoint, storage_key) {
                (Some(name), Some(endpoint), Some(key)) => {
                    Some(config::StorageAccountConfig { name, endpoint, key })
                }
                _ => None,
            };
            let opts = InitOptions {
                dir: cmd.dir.clone(),
                subscription_id: cmd.subscription_id,
                subscription_name: cmd.subscription_name,
                storage_account,
                url: cmd.url,
                listen_port: cmd.listen_port,
            };
            let report = init(&opts).with_context(|| format!("initialising {}", cmd.dir.display()))?;
            println!(
                "subscription {} (management certificate {})",
                report.subscription_id, report.thumbprint
            );
            println!("publish settings: {}", report.publish_settings.display());
            println!(
                "CA certificate (for --management-ca): {}",
                report.ca_cert.display()
            );
            println!(
                "Entra ID application {} in tenant {}: {}",
                report.entra_client_id,
                report.entra_tenant,
                report.entra_app.display()
            );
            Ok(Exit::Success)
        }
        Command::Serve(cmd) => {
            let dir = EmulatorDir::new(&cmd.dir);
            let port = EmulatorConfig::load(&dir)
                .ok()
                .and_then(|c| c.listen_port)
                .unwrap_or(8443);
            let listen = cmd
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            rt.block_on(async {
                let bound = bind(&ServeConfig {
                    dir: cmd.dir.clone(),
                    listen,
                })
                .await
                .with_context(|| format!("starting the emulator from {}", cmd.dir.display()))?;
                println!("listening on {}", bound.url());
                bound.run(shutdown_signal()).await.context("serving")
            })?;
            Ok(Exit::Success)
        }
        Command::Receive(cmd) => {
            let out = datacentre::receive_and_import(&cmd.dir, &cmd.job, &cmd.drives)
                .with_context(|| format!("receiving drives for job {}", cmd.job))?;
            for d in &out.drives {
                println!(
                    "drive {}: {} ({}), {} bytes written, {} corrupted range(s); log {}/{}",
                    d.drive_id,
                    d.status,
                    d.state_name(),
                    d.bytes_written,
                    d.ranges_corrupted,
                    d.error_log.0,
                    d.error_log.1
                );
            }
            for id in &out.never_received {
                println!("drive {id}: never received");
            }
            println!("job {}: {}", out.job, out.state);
            Ok(if out.state == seedship_shared::api::JobState::Completed {
                Exit::Success
            } else {
                Exit::Failure
            })
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
