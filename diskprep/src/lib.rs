//! seedship drive preparation: copies an offline-backup job from the staging location onto encrypted shipping drives.
//!
//! The binary is a thin `main` over [`run`]; everything lives here so tests can call it.

pub mod args;
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

use clap::Parser;
use std::process::ExitCode;

/// The exit codes of `seedship-diskprep`, documented in its `--help` and man page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Success = 0,
    /// The command failed; nothing was left half-done that a rerun cannot finish.
    Failure = 1,
    /// Interrupted (Ctrl-C, SIGTERM); a rerun continues where this one stopped.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// Command line of `seedship-diskprep`.
#[derive(Debug, Parser)]
#[command(
    name = "seedship-diskprep",
    version,
    about = "seedship drive preparation: copies an offline-backup job from the staging location onto encrypted shipping drives."
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output: errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
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
pub fn run(_cli: Cli) -> anyhow::Result<Exit> {
    use clap::CommandFactory;
    Cli::command().print_help()?;
    Ok(Exit::Success)
}
