//! WAImportExport's `RepairImport` command line, turned into the options of `seedship-diskprep
//! repairimport` before clap sees them: `/r:FILE` is `--repair-file`, `/d:DIR[;DIR...]` one `--source-dir`
//! per folder, `/CopyLogFile:FILE` `--copy-log`, `/sn:NAME` `--storage-account`, `/sk:KEY` / `/csas:SAS` the
//! credential (`/sk:@FILE` / `/csas:@FILE` read it from a file, which keeps it off the command line),
//! `/PathMapFile:FILE` `--path-map-file`, and seedship's `/j:FILE` `--journal`. Names are case-insensitive,
//! as WAImportExport takes them; a value may follow `/Name:` as the next argument (the documentation writes
//! `/id: <SessionId>`). Anything else passes through. A token repairimport cannot honour becomes a hidden
//! `--wai-error` that the command reports before doing anything.

use std::ffi::OsString;

/// Whether `arg` is the command: `RepairImport`, in any case.
pub fn is_command(arg: &str) -> bool {
    arg.eq_ignore_ascii_case("repairimport")
}

/// One `/Name` or `/Name:value` token ([`super::split_token`]), the name as typed.
fn split(arg: &str) -> Option<(&str, Option<&str>)> {
    super::split_token(arg).map(|t| (t.name, t.value))
}

/// The options of a RepairImport command line (the arguments after the command), starting with the
/// `repairimport` command itself.
pub fn translate<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["repairimport".into()];
    let mut args = args.into_iter().peekable();
    while let Some(a) = args.next() {
        let Some((name, value)) = a.to_str().and_then(split) else {
            out.push(a);
            continue;
        };
        let mut value = value.map(str::to_owned);
        if value.as_deref() == Some("") {
            if let Some(next) = args.next_if(|n| n.to_str().is_some_and(|s| split(s).is_none())) {
                value = next.to_str().map(str::to_owned);
            }
        }
        out.extend(option(name, value.as_deref()).into_iter().map(OsString::from));
    }
    out
}

/// The ordinary options one token stands for.
fn option(name: &str, value: Option<&str>) -> Vec<String> {
    let lower = name.to_ascii_lowercase();
    let with = |opt: &str| match value.filter(|v| !v.is_empty()) {
        Some(v) => vec![format!("--{opt}={v}")],
        None => vec![error(format!("/{name}: needs a value, e.g. /{name}:<value>"))],
    };
    let secret = |file_opt: &str, value_opt: &str| match value.filter(|v| !v.is_empty()) {
        Some(v) => match v.strip_prefix('@') {
            Some(file) => vec![format!("--{file_opt}={file}")],
            None => vec![format!("--{value_opt}={v}")],
        },
        None => vec![error(format!("/{name}: needs a value, e.g. /{name}:@FILE"))],
    };
    match lower.as_str() {
        "r" => with("repair-file"),
        "d" => match value.filter(|v| !v.is_empty()) {
            Some(v) => v
                .split(';')
                .filter(|d| !d.is_empty())
                .map(|d| format!("--source-dir={d}"))
                .collect(),
            None => vec![error("/d: needs one or more folders, e.g. /d:/srv/a;/srv/b".into())],
        },
        "copylogfile" => with("copy-log"),
        "sn" => with("storage-account"),
        "sk" => secret("storage-account-key-file", "storage-account-key"),
        "csas" => secret("container-sas-file", "container-sas"),
        "pathmapfile" => with("path-map-file"),
        "j" => with("journal"),
        "logdir" => vec![error(
            "/logdir: is not supported: seedship-diskprep repairimport writes its log to standard error (-v \
             for more) and its progress into the repair file (/r:); leave /logdir: out"
                .into(),
        )],
        "bk" | "manifestfile" => vec![error(format!(
            "/{name}: belongs to RepairExport, which seedship-diskprep does not have; RepairImport needs /r:, \
             /d:, /sn:, the credential and /CopyLogFile:"
        ))],
        _ => vec![error(format!(
            "/{name} is not an option of RepairImport (its options: /r: /d: /CopyLogFile: /sn: /sk: /csas: \
             /PathMapFile:, and seedship's /j:); see seedship-diskprep repairimport --help"
        ))],
    }
}

fn error(message: String) -> String {
    format!("--wai-error={message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(args: &[&str]) -> Vec<String> {
        translate(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn the_documented_command_translates() {
        assert_eq!(
            t(&[
                "/r:/srv/9WM35C2V.rep",
                "/d:/srv/pictures;/mnt/backup/photos",
                "/sn:bobmediaaccount",
                "/sk:@/root/key",
                "/CopyLogFile:/srv/9WM35C2V.log",
            ]),
            [
                "repairimport",
                "--repair-file=/srv/9WM35C2V.rep",
                "--source-dir=/srv/pictures",
                "--source-dir=/mnt/backup/photos",
                "--storage-account=bobmediaaccount",
                "--storage-account-key-file=/root/key",
                "--copy-log=/srv/9WM35C2V.log",
            ]
        );
    }

    #[test]
    fn names_any_case_values_after_a_space_and_paths_pass() {
        assert_eq!(
            t(&[
                "/R:",
                "x.rep",
                "/PATHMAPFILE:m.txt",
                "/csas:sv=1&sig=2",
                "--dry-run",
                "/srv/x"
            ]),
            [
                "repairimport",
                "--repair-file=x.rep",
                "--path-map-file=m.txt",
                "--container-sas=sv=1&sig=2",
                "--dry-run",
                "/srv/x"
            ]
        );
        assert_eq!(t(&["/sk:KEY=="]), ["repairimport", "--storage-account-key=KEY=="]);
        assert_eq!(t(&["/csas:@f"]), ["repairimport", "--container-sas-file=f"]);
    }

    #[test]
    fn unsupported_tokens_become_errors_naming_them() {
        for (arg, says) in [
            ("/logdir:/tmp", "/logdir: is not supported"),
            ("/bk:123", "RepairExport"),
            ("/foo:1", "/foo is not an option of RepairImport"),
            ("/r:", "/r: needs a value"),
        ] {
            let v = t(&[arg]);
            assert!(
                v[1].starts_with("--wai-error=") && v[1].contains(says),
                "{arg}: {v:?}"
            );
        }
    }

    #[test]
    fn the_command_in_any_case() {
        assert!(is_command("RepairImport") && is_command("repairimport") && !is_command("repair"));
    }
}
