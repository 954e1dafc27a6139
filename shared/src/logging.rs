//! The logging setup every binary shares: `tracing` to standard error, one line per event with its level,
//! filtered by `SEEDSHIP_LOG` (else `RUST_LOG`) or by the verbosity flags, with plain (uncoloured) output when
//! standard error is not a terminal, as under systemd, whose journal keeps the lines.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// The environment variable holding the log filter (`info`, `seedship_agent=debug`, ...).
pub const LOG_ENV: &str = "SEEDSHIP_LOG";

/// Installs the global subscriber. `verbosity` counts `-v` flags minus `-q` flags: -1 errors only,
/// 0 info, 1 debug, 2 or more trace. [`LOG_ENV`], when set, wins; then `RUST_LOG`.
pub fn init(verbosity: i8) {
    let default = match verbosity {
        i8::MIN..=-1 => "error",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env(LOG_ENV)
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal();
    // A second call (tests that run two commands in one process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}
