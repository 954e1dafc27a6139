//! The AzureOfflineBackupDiskPrep spellings: `s:<staging>`, `p:<publish settings>` and `u:` are accepted
//! beside `--staging`, `--publish-settings` and the `ship` command, so that the commands of the Azure
//! Backup documentation work as they are written. Turning them into ordinary arguments before clap sees
//! them keeps one parser and one `--help`.

use std::ffi::OsString;

/// Rewrites `s:X` to `--staging=X`, `p:X` to `--publish-settings=X` and a lone `u:` to the `ship` command
/// (moved to the front, where clap expects a command). Everything else is passed through unchanged.
pub fn normalize<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    let mut args = args.into_iter().peekable();
    let program = args.next();
    // WAImportExport's PrepImport and RepairImport: their own translators (crate::wai).
    type Translator = fn(&mut dyn Iterator<Item = OsString>) -> Vec<OsString>;
    let wai: Option<Translator> = match args.peek().and_then(|a| a.to_str()) {
        Some(w) if crate::wai::prep_args::is_command(w) => Some(|a| crate::wai::prep_args::translate(a)),
        Some(w) if crate::wai::repair_args::is_command(w) => Some(|a| crate::wai::repair_args::translate(a)),
        _ => None,
    };
    if let Some(translate) = wai {
        args.next();
        let mut out: Vec<OsString> = program.into_iter().collect();
        out.extend(translate(&mut args));
        return out;
    }
    let mut ship = false;
    let mut rest = Vec::new();
    for a in args {
        match a.to_str() {
            Some("u:") => ship = true,
            Some(s) if s.starts_with("s:") => rest.push(format!("--staging={}", &s[2..]).into()),
            Some(s) if s.starts_with("p:") => rest.push(format!("--publish-settings={}", &s[2..]).into()),
            _ => rest.push(a),
        }
    }
    let mut out: Vec<OsString> = program.into_iter().collect();
    if ship {
        out.push("ship".into());
    }
    out.extend(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn documentation_spellings() {
        assert_eq!(n(&["dp", "s:/srv/staging"]), ["dp", "--staging=/srv/staging"]);
        assert_eq!(
            n(&["dp", "s:/srv/st", "p:/home/a/x.publishsettings", "--yes"]),
            [
                "dp",
                "--staging=/srv/st",
                "--publish-settings=/home/a/x.publishsettings",
                "--yes"
            ]
        );
        assert_eq!(n(&["dp", "u:"]), ["dp", "ship"]);
        assert_eq!(
            n(&["dp", "u:", "s:/st", "p:/p"]),
            ["dp", "ship", "--staging=/st", "--publish-settings=/p"]
        );
    }

    #[test]
    fn repairimport_goes_to_its_translator() {
        assert_eq!(
            n(&["dp", "RepairImport", "/r:x.rep", "-v"]),
            ["dp", "repairimport", "--repair-file=x.rep", "-v"]
        );
    }

    #[test]
    fn other_arguments_pass_unchanged() {
        assert_eq!(
            n(&["dp", "verify", "--drive", "x:y"]),
            ["dp", "verify", "--drive", "x:y"]
        );
        assert_eq!(n(&["dp"]), ["dp"]);
    }

    #[test]
    fn prepimport_goes_to_its_translator() {
        assert_eq!(
            n(&["dp", "PrepImport", "/j:d.jrn", "/silentmode"]),
            ["dp", "prepimport", "--journal=d.jrn", "--yes"]
        );
    }
}
