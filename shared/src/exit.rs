//! The exit codes of the seedship commands and their verbosity flags: one list for every binary, so that a
//! code means the same thing whichever command returns it (each command's `--help` names the ones it uses).

use std::process::ExitCode;

/// The exit codes of `seedship-agent`, `seedship-diskprep` and `seedship-emulator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Success = 0,
    /// The command failed; nothing was left half-done that a rerun cannot finish.
    Failure = 1,
    /// diskprep: a drive read back or checked does not match.
    VerifyFailed = 2,
    /// agent: the backup completed but some files were unreadable or changed while being read.
    Partial = 3,
    /// agent: nothing to do yet: the initial backup is staged and the import job is pending.
    Waiting = 75,
    /// Interrupted (Ctrl-C, SIGTERM); a rerun continues where this one stopped.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// The environment variable that makes the binaries append their final error line to a file (for the
/// error-message review: a test run collects every `error:` line the suite provokes).
pub const ERROR_LOG_ENV: &str = "SEEDSHIP_ERROR_LOG";

/// Appends `<binary>\t<message>` (one line; newlines in the message become ` / `) to `path`, created 0600.
/// Best effort: a failure to write is ignored, the error itself is already printed.
pub fn append_error_line(path: &std::path::Path, binary: &str, message: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let line = format!("{binary}\t{}\n", message.replace('\n', " / "));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// One line for an error and its causes, `outer: cause: cause`, as anyhow's `{:#}` prints it, except that a
/// cause whose text its outer message already shows is not printed again. Many error variants name their
/// source in their own message (`"{path}: {source}"`) and mark it `#[source]` too, so `{:#}` would say the
/// operating system's reason twice.
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// Prints `error: <error line>` on stderr for `binary`'s failure, and appends the line to the file
/// [`ERROR_LOG_ENV`] names, when it is set.
pub fn report_error(binary: &str, err: &(dyn std::error::Error + 'static)) {
    let line = error_line(err);
    eprintln!("error: {line}");
    if let Some(log) = std::env::var_os(ERROR_LOG_ENV) {
        append_error_line(log.as_ref(), binary, &line);
    }
}

/// The net verbosity for [`crate::logging::init`] from `-v` (counted, at most 3) and `-q`: `-q` wins (-1).
pub fn verbosity(verbose: u8, quiet: bool) -> i8 {
    if quiet {
        -1
    } else {
        verbose.min(3) as i8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("{path}: {source}")]
        Named {
            path: String,
            #[source]
            source: std::io::Error,
        },
        #[error("opening the repository")]
        Unnamed(#[source] std::io::Error),
        #[error("reading the index")]
        Context(#[source] Box<Outer>),
    }

    #[test]
    fn an_error_line_names_each_cause_once() {
        let io = || {
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "Permission denied (os error 13)",
            )
        };
        let named = Outer::Context(Box::new(Outer::Named {
            path: "/srv/x".into(),
            source: io(),
        }));
        assert_eq!(
            error_line(&named),
            "reading the index: /srv/x: Permission denied (os error 13)"
        );
        assert_eq!(
            error_line(&Outer::Unnamed(io())),
            "opening the repository: Permission denied (os error 13)"
        );
    }

    #[test]
    fn codes_and_verbosity() {
        assert_eq!(Exit::VerifyFailed as u8, 2);
        assert_eq!(Exit::Waiting as u8, 75);
        assert_eq!(verbosity(0, false), 0);
        assert_eq!(verbosity(9, false), 3);
        assert_eq!(verbosity(2, true), -1);
    }
}
