//! Generates the files the packages ship that are derived from the binaries' clap definitions: one man page
//! (section 1) for every command and subcommand of `seedship-agent` and `seedship-diskprep`, and their bash,
//! zsh and fish completions. The definitions are walked, not listed, so a new subcommand gets its page and its
//! completion without touching this crate.
//!
//! Each top-level page also gets an ENVIRONMENT section (the variables read outside clap's own `env` options,
//! which clap renders beside their option) and every page a SEE ALSO section linking its parent and children.

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One shipped program: its command definition and what its man page says about the environment.
pub struct Program {
    /// The clap definition, as the binary parses it.
    pub command: clap::Command,
    /// Environment variables with their meaning, for the ENVIRONMENT section.
    pub environment: &'static [(&'static str, &'static str)],
}

const LOG_ENV: (&str, &str) = (
    "SEEDSHIP_LOG",
    "Log filter: error, warn, info (the default), debug or trace, or per module (seedship_agent=debug). \
Wins over -v/-q; RUST_LOG is read when SEEDSHIP_LOG is unset. Log lines go to standard error, one line per \
event with its level, without colour when standard error is not a terminal (as under systemd, where the \
journal keeps them).",
);

const AGENT_ENV: &[(&str, &str)] = &[
    LOG_ENV,
    (
        "SEEDSHIP_PASSPHRASE",
        "The repository passphrase, when --passphrase-file is not given (otherwise it is asked for on a terminal).",
    ),
    (
        "SEEDSHIP_STORAGE_KEY",
        "The storage account key (Base64), needed from the import job's completion on. \
SEEDSHIP_STORAGE_KEY_FILE names a file holding it instead. A job started with an Entra ID application \
(Resource Manager) needs no key: without one, vault requests carry that application's bearer tokens \
(role Storage Blob Data Contributor on the account).",
    ),
    (
        "SEEDSHIP_BLOB_CA",
        "Extra trusted CA certificates (PEM) for the blob endpoint.",
    ),
    (
        "SEEDSHIP_METRICS_FILE",
        "After every backup, write node_exporter textfile-collector metrics to this file (as --metrics-file).",
    ),
    (
        "SEEDSHIP_CLIENT_SECRET",
        "The Entra ID application's client secret for Resource Manager import jobs, instead of \
--client-secret-file (never on the command line).",
    ),
    ("SEEDSHIP_READERS", "Reader and compressor threads (default: one per core)."),
    ("SEEDSHIP_PACK_SIZE_KIB", "Pack size in KiB (default 16384)."),
    (
        "SEEDSHIP_INDEX_EVERY, SEEDSHIP_INDEX_MIB, SEEDSHIP_INDEX_SECONDS",
        "How often an index object is written (packs, MiB of packs into the vault, seconds); see /etc/seedship/agent.env.",
    ),
];

const DISKPREP_ENV: &[(&str, &str)] = &[
    LOG_ENV,
    (
        "SEEDSHIP_STORAGE_KEY, SEEDSHIP_STORAGE_KEY_FILE",
        "The storage account key for the import job, or a file holding it (otherwise asked for).",
    ),
    (
        "SEEDSHIP_CLIENT_SECRET",
        "The Entra ID application's client secret for Resource Manager import jobs, instead of \
--client-secret-file (never on the command line).",
    ),
    (
        "SEEDSHIP_CONTAINER_SAS, SEEDSHIP_CONTAINER_SAS_FILE",
        "A SAS of the container instead of the account key, or a file holding it.",
    ),
    (
        "SEEDSHIP_RECOVERY_KEY, SEEDSHIP_RECOVERY_KEY_FILE",
        "The recovery key for verify, or a file holding it (otherwise asked for).",
    ),
];

/// The programs the packages ship.
pub fn programs() -> Vec<Program> {
    vec![
        Program {
            command: seedship_agent::Cli::command(),
            environment: AGENT_ENV,
        },
        Program {
            command: seedship_diskprep::Cli::command(),
            environment: DISKPREP_ENV,
        },
    ]
}

/// Writes `man/*.1` and `completions/{bash,zsh,fish}/*` under `out` and returns the files written.
pub fn generate(programs: Vec<Program>, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man_dir = out.join("man");
    fs::create_dir_all(&man_dir).with_context(|| format!("cannot create {}", man_dir.display()))?;
    for p in programs {
        let mut cmd = p.command.disable_help_subcommand(true);
        cmd.build();
        write_pages(&cmd, None, p.environment, &man_dir, &mut written)?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let dir = out.join("completions").join(shell.to_string());
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let name = cmd.get_name().to_owned();
            let path = clap_complete::generate_to(shell, &mut cmd, name, &dir)
                .with_context(|| format!("cannot write the {shell} completion into {}", dir.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// The man page's name of a (built) command: `seedship-agent`, `seedship-agent-offline-start`.
pub fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned()
}

fn write_pages(
    cmd: &clap::Command,
    parent: Option<&str>,
    environment: &[(&str, &str)],
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let name = page_name(cmd);
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .source(format!("seedship {}", env!("CARGO_PKG_VERSION")))
        .manual("seedship manual")
        .render(&mut page)?;
    if parent.is_none() {
        environment_section(&mut page, environment)?;
    }
    let children: Vec<&clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    let mut see_also: Vec<String> = parent.into_iter().map(str::to_owned).collect();
    see_also.extend(children.iter().map(|c| page_name(c)));
    if !see_also.is_empty() {
        writeln!(page, ".SH \"SEE ALSO\"")?;
        let refs: Vec<String> = see_also
            .iter()
            .map(|n| format!("\\fB{}\\fR(1)", roff_escape(n)))
            .collect();
        writeln!(page, "{}", refs.join(", "))?;
    }
    fs::write(&path, &page).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for child in children {
        write_pages(child, Some(&name), environment, dir, written)?;
    }
    Ok(())
}

fn environment_section(page: &mut Vec<u8>, environment: &[(&str, &str)]) -> std::io::Result<()> {
    if environment.is_empty() {
        return Ok(());
    }
    writeln!(page, ".SH ENVIRONMENT")?;
    for (name, meaning) in environment {
        writeln!(
            page,
            ".TP\n\\fB{}\\fR\n{}",
            roff_escape(name),
            roff_escape(meaning)
        )?;
    }
    Ok(())
}

/// Escapes text for a roff line: backslashes, hyphens (so they stay ASCII hyphens) and a leading dot or quote.
fn roff_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            _ => out.push(c),
        }
    }
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_pages(cmd: &clap::Command, out: &mut Vec<String>) {
        out.push(page_name(cmd));
        for c in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            all_pages(c, out);
        }
    }

    #[test]
    fn every_command_and_subcommand_gets_a_page_and_completions() {
        let dir = tempfile::tempdir().unwrap();
        let written = generate(programs(), dir.path()).unwrap();
        let mut expected = Vec::new();
        for p in programs() {
            let mut cmd = p.command.disable_help_subcommand(true);
            cmd.build();
            all_pages(&cmd, &mut expected);
        }
        assert!(
            expected.contains(&"seedship-agent-offline-start".to_owned()),
            "{expected:?}"
        );
        assert!(
            expected.contains(&"seedship-diskprep-verify".to_owned()),
            "{expected:?}"
        );
        for name in &expected {
            let page = fs::read_to_string(dir.path().join("man").join(format!("{name}.1"))).unwrap();
            assert!(page.starts_with(".ie") || page.contains(".TH"), "{name}: {page}");
            assert!(page.contains(".SH NAME"), "{name}");
        }
        let man_count = written
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "1"))
            .count();
        assert_eq!(man_count, expected.len());
        for (shell, file) in [
            ("bash", "seedship-agent.bash"),
            ("zsh", "_seedship-agent"),
            ("fish", "seedship-agent.fish"),
            ("bash", "seedship-diskprep.bash"),
        ] {
            let text = fs::read_to_string(dir.path().join("completions").join(shell).join(file)).unwrap();
            assert!(
                text.contains("backup") || text.contains("verify"),
                "{shell} {file}"
            );
        }
    }

    #[test]
    fn top_page_documents_logging_and_links_subcommands() {
        let dir = tempfile::tempdir().unwrap();
        generate(programs(), dir.path()).unwrap();
        let page = fs::read_to_string(dir.path().join("man/seedship-agent.1")).unwrap();
        assert!(page.contains(".SH ENVIRONMENT"));
        assert!(page.contains("SEEDSHIP_LOG"));
        assert!(page.contains("\\-v"), "the -v option is on the page");
        assert!(page.contains("\\fBseedship\\-agent\\-backup\\fR(1)"));
        let sub = fs::read_to_string(dir.path().join("man/seedship-agent-backup.1")).unwrap();
        assert!(sub.contains("\\fBseedship\\-agent\\fR(1)"));
    }

    #[test]
    fn roff_escape_keeps_text_literal() {
        assert_eq!(roff_escape("a-b\\c"), "a\\-b\\ec");
        assert_eq!(roff_escape(".x"), "\\&.x");
    }
}
