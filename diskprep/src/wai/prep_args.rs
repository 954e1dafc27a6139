//! PrepImport's spellings turned into ordinary options before clap: `PrepImport /j:d1.jrn /id:s1 /t:/dev/sdb
//! /format /encrypt /srcdir:/srv/st /dstdir:backup/` becomes `prepimport --journal=d1.jrn --session-id=s1
//! --target=/dev/sdb --format --encrypt --srcdir=/srv/st --dstdir=backup/`. One parser, one `--help`.
//!
//! Names are case-insensitive. A value may follow the colon or, when nothing does (`/id: s1`, as the
//! documentation writes it), be the next argument. Secrets: `/sk:@FILE`, `/csas:@FILE` and `/bk:@FILE` read
//! the file; a secret typed on the command line is accepted and the command says how to pass it safely.
//! A WAImportExport option seedship does not implement is kept as `--unsupported=/Name` so the command
//! stops naming it, rather than clap's generic message.

use super::split_token;
use std::ffi::OsString;

/// The option each WAImportExport name stands for: `(name, option, takes a value)`.
const NAMES: &[(&str, &str, bool)] = &[
    ("j", "--journal", true),
    ("id", "--session-id", true),
    ("t", "--target", true),
    ("format", "--format", false),
    ("silentmode", "--yes", false),
    ("encrypt", "--encrypt", false),
    ("srcdir", "--srcdir", true),
    ("dstdir", "--dstdir", true),
    ("srcfile", "--srcfile", true),
    ("dstblob", "--dstblob", true),
    ("BlobType", "--blob-type", true),
    ("Disposition", "--disposition", true),
    ("logdir", "--logdir", true),
    ("ResumeSession", "--resume-session", false),
    ("AbortSession", "--abort-session", false),
    ("DataSet", "--dataset", true),
    ("InitialDriveSet", "--initial-drive-set", true),
    ("AdditionalDriveSet", "--additional-drive-set", true),
];

/// Secrets: `(name, option for a file, option for the value itself)`.
const SECRETS: &[(&str, &str, &str)] = &[
    ("sk", "--storage-account-key-file", "--storage-account-key"),
    ("csas", "--container-sas-file", "--container-sas"),
    ("bk", "--recovery-key-file", "--recovery-key"),
];

/// Whether `word` is the PrepImport command (any case).
pub fn is_command(word: &str) -> bool {
    word.eq_ignore_ascii_case("prepimport")
}

/// Translates the arguments after the `PrepImport` word; returns `prepimport` and the ordinary options.
pub fn translate(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["prepimport".into()];
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let Some(token) = arg.to_str().and_then(split_token) else {
            out.push(arg);
            continue;
        };
        let name = token.name;
        let mut value = || -> String {
            match token.value {
                Some("") | None => match args.peek().and_then(|a| a.to_str()) {
                    Some(next) if split_token(next).is_none() && !next.starts_with('-') => {
                        let v = next.to_owned();
                        args.next();
                        v
                    }
                    _ => String::new(),
                },
                Some(v) => v.to_owned(),
            }
        };
        if let Some((_, file_opt, value_opt)) = SECRETS.iter().find(|s| s.0.eq_ignore_ascii_case(name)) {
            let v = value();
            match v.strip_prefix('@') {
                Some(path) => out.push(format!("{file_opt}={path}").into()),
                None => {
                    out.push(format!("{value_opt}={v}").into());
                    out.push(format!("--secret-on-command-line=/{name}").into());
                }
            }
            continue;
        }
        match NAMES.iter().find(|n| n.0.eq_ignore_ascii_case(name)) {
            Some((_, opt, true)) => out.push(format!("{opt}={}", value()).into()),
            Some((_, opt, false)) if token.value.is_none() => out.push((*opt).into()),
            Some((n, _, false)) => out.push(format!("--unsupported=/{n} takes no value").into()),
            None => out.push(format!("--unsupported=/{name}").into()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(args: &[&str]) -> Vec<String> {
        translate(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn the_seed_002_command_as_written() {
        // `/id: <SessionId>` and `/dstdir: <DestinationBlobVirtualDirectory>/` with a space, as in seed 002.
        let got = tr(&[
            "/j:/root/d1.jrn",
            "/id:",
            "session1",
            "/sk:@/root/key",
            "/BlobType:PageBlob",
            "/t:/dev/sdb",
            "/format",
            "/encrypt",
            "/srcdir:/srv/staging",
            "/dstdir:",
            "backupcontainer/",
        ]);
        assert_eq!(
            got,
            [
                "prepimport",
                "--journal=/root/d1.jrn",
                "--session-id=session1",
                "--storage-account-key-file=/root/key",
                "--blob-type=PageBlob",
                "--target=/dev/sdb",
                "--format",
                "--encrypt",
                "--srcdir=/srv/staging",
                "--dstdir=backupcontainer/",
            ]
        );
    }

    #[test]
    fn names_are_case_insensitive_and_secrets_are_flagged() {
        let got = tr(&[
            "/J:x.jrn",
            "/ID:s2",
            "/SK:c2VjcmV0",
            "/RESUMESESSION",
            "/blobtype:PageBlob",
        ]);
        assert_eq!(
            got,
            [
                "prepimport",
                "--journal=x.jrn",
                "--session-id=s2",
                "--storage-account-key=c2VjcmV0",
                "--secret-on-command-line=/SK",
                "--resume-session",
                "--blob-type=PageBlob",
            ]
        );
    }

    #[test]
    fn a_path_after_an_empty_value_is_taken_and_unknown_names_are_kept() {
        let got = tr(&["/srcdir:", "/srv/st", "/skipwrite", "/format:x", "--dry-run"]);
        assert_eq!(
            got,
            [
                "prepimport",
                "--srcdir=/srv/st",
                "--unsupported=/skipwrite",
                "--unsupported=/format takes no value",
                "--dry-run",
            ]
        );
    }
}
