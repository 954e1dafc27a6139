//! The agent's configuration, built once at the top ([`Config::new`]) from the parsed command line
//! ([`crate::Cli`]) and the environment (`SEEDSHIP_*`), then passed down: nothing below `lib.rs` reads the
//! global arguments or an environment variable. (ripgrep's low-level arguments -> high-level arguments, fd's
//! `Opts` -> `Config`.) Each subcommand's own clap struct stays that command's options.
//!
//! Secrets are read lazily where a file names them (the passphrase file, `SEEDSHIP_STORAGE_KEY_FILE`: read
//! when the work needs them, so a command that needs none does not fail on an unreadable file), and held
//! zeroized where the environment gives them.

use crate::backup::WriterOptions;
use anyhow::{bail, Context};
use seedship_shared::blob::Credential;
use seedship_shared::cancel::Cancel;
use seedship_shared::repo::IndexPolicy;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// The environment variable holding the repository passphrase (when no `--passphrase-file` is given).
pub const PASSPHRASE_ENV: &str = "SEEDSHIP_PASSPHRASE";

/// The environment variable holding the storage account key (Base64, as the portal shows it).
pub const STORAGE_KEY_ENV: &str = "SEEDSHIP_STORAGE_KEY";

/// The environment variable naming a file that holds the storage account key (read instead of
/// [`STORAGE_KEY_ENV`] when set).
pub const STORAGE_KEY_FILE_ENV: &str = "SEEDSHIP_STORAGE_KEY_FILE";

/// The test hook of `prune`: `SEEDSHIP_TEST_KILL_AT=STEP` kills the process with SIGKILL at STEP.
pub const KILL_AT_ENV: &str = "SEEDSHIP_TEST_KILL_AT";

/// Everything a command needs besides its own options.
#[derive(Debug)]
pub struct Config {
    /// The agent's state directory (policy, caches, records).
    pub state_dir: PathBuf,
    /// Errors only: no progress display.
    pub quiet: bool,
    /// Where the repository passphrase comes from.
    pub passphrase: PassphraseSource,
    /// Where the vault's storage account key comes from.
    pub storage_key: StorageKey,
    /// The pipeline's tuning knobs.
    pub tuning: Tuning,
    /// `prune`'s crash-test hook ([`KILL_AT_ENV`]).
    pub kill_at: Option<String>,
    /// The cancellation token `main` wired to SIGINT, SIGTERM and SIGHUP.
    pub cancel: Cancel,
}

impl Config {
    /// The configuration of one command line, with the environment of this process.
    pub fn new(cli: &crate::Cli, cancel: Cancel) -> Config {
        Config {
            state_dir: cli.state_dir.clone(),
            quiet: cli.quiet,
            passphrase: PassphraseSource(SecretSource::new(cli.passphrase_file.clone(), PASSPHRASE_ENV)),
            storage_key: StorageKey::from_env(),
            tuning: Tuning::from_env(),
            kill_at: std::env::var(KILL_AT_ENV).ok(),
            cancel,
        }
    }
}

/// Where a secret comes from: a file (read when the work needs it), else the value an environment variable
/// held when the configuration was built (zeroized; `None` when unset or not Unicode).
#[derive(Default)]
pub struct SecretSource {
    file: Option<PathBuf>,
    env: Option<Zeroizing<String>>,
}

impl SecretSource {
    fn new(file: Option<PathBuf>, env_var: &str) -> SecretSource {
        SecretSource {
            file,
            env: std::env::var(env_var).ok().map(Zeroizing::new),
        }
    }
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource")
            .field("file", &self.file)
            .field("env", &self.env.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// The repository passphrase's source: `--passphrase-file`, else [`PASSPHRASE_ENV`], else a prompt.
#[derive(Debug)]
pub struct PassphraseSource(SecretSource);

impl PassphraseSource {
    /// The passphrase from the file, the environment or a prompt (asked twice when `confirm`).
    pub fn read(&self, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
        if let Some(f) = &self.0.file {
            return read_passphrase_file(f);
        }
        if let Some(s) = &self.0.env {
            return Ok(s.clone());
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "no passphrase: give --passphrase-file FILE or set {PASSPHRASE_ENV} (no terminal to ask on)"
            );
        }
        let p = Zeroizing::new(rpassword::prompt_password("Repository passphrase: ")?);
        if confirm {
            let again = Zeroizing::new(rpassword::prompt_password("Repeat the passphrase: ")?);
            if again != p {
                bail!("the two passphrases differ; nothing was written");
            }
        }
        Ok(p)
    }

    /// Whether the environment holds the passphrase.
    pub fn in_env(&self) -> bool {
        self.0.env.is_some()
    }
}

/// A passphrase file's content without its line end.
pub fn read_passphrase_file(f: &Path) -> anyhow::Result<Zeroizing<String>> {
    let mut s = Zeroizing::new(String::new());
    std::fs::File::open(f)
        .and_then(|mut h| std::io::Read::read_to_string(&mut h, &mut s))
        .with_context(|| format!("cannot read passphrase file {}", f.display()))?;
    Ok(Zeroizing::new(s.trim_end_matches(['\n', '\r']).to_string()))
}

/// The vault's storage account key: a file named by [`STORAGE_KEY_FILE_ENV`], else [`STORAGE_KEY_ENV`].
#[derive(Debug, Default)]
pub struct StorageKey(SecretSource);

impl StorageKey {
    /// The key's source in this process's environment.
    pub fn from_env() -> StorageKey {
        let file = std::env::var_os(STORAGE_KEY_FILE_ENV).filter(|f| !f.is_empty());
        StorageKey(SecretSource::new(file.map(PathBuf::from), STORAGE_KEY_ENV))
    }

    /// Whether a key is given (a file, or the variable set and not blank).
    pub fn is_given(&self) -> bool {
        self.0.file.is_some() || self.0.env.as_ref().is_some_and(|k| !k.trim().is_empty())
    }

    /// The key as a credential when one is given, `None` otherwise.
    pub fn given(&self) -> anyhow::Result<Option<Credential>> {
        if !self.is_given() {
            return Ok(None);
        }
        self.credential("").map(Some)
    }

    /// The credential for `account`, or an error that says how to give the key.
    pub fn credential(&self, account: &str) -> anyhow::Result<Credential> {
        if let Some(f) = &self.0.file {
            let key = seedship_shared::secret::from_file(f, "storage account key")?;
            return Ok(Credential::SharedKey(key.as_str().to_owned()));
        }
        match &self.0.env {
            Some(k) if !k.trim().is_empty() => Ok(Credential::SharedKey(k.trim().to_owned())),
            _ => bail!(
                "no key for storage account {account}: set {STORAGE_KEY_FILE_ENV} to a file holding it, or \
                 {STORAGE_KEY_ENV} (in /etc/seedship/agent.env for scheduled backups)"
            ),
        }
    }
}

/// The backup pipeline's tuning knobs, from the environment (documented in docs/agent.md); an unset,
/// unparsable or zero value means the default.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// `SEEDSHIP_PACK_SIZE_KIB` (16384).
    pub pack_size_kib: usize,
    /// `SEEDSHIP_INDEX_EVERY` (16 packs).
    pub index_every: usize,
    /// `SEEDSHIP_DIRS_IN_FLIGHT` (64).
    pub dirs_in_flight: usize,
    /// `SEEDSHIP_INDEX_MIB` (64), online only.
    pub index_mib: usize,
    /// `SEEDSHIP_INDEX_SECONDS` (20), online only.
    pub index_seconds: usize,
    /// `SEEDSHIP_READERS` (the available parallelism).
    pub readers: usize,
    /// `SEEDSHIP_INDEX_MEMORY_MIB` (32): MiB of index slots (53 bytes per blob) held in memory; beyond it
    /// they go to the index cache file in the local cache folder.
    pub index_memory_mib: usize,
    /// `SEEDSHIP_STAT_AHEAD` (65536): entries listed and lstat'ed ahead of the walk while the repository
    /// opens (about 120 bytes each, freed as the walk takes them); `off` turns it off (0, as for every
    /// knob, means the default).
    pub stat_ahead: usize,
}

impl Tuning {
    /// The knobs in this process's environment.
    pub fn from_env() -> Tuning {
        Tuning {
            pack_size_kib: env_usize("SEEDSHIP_PACK_SIZE_KIB", 16 << 10),
            index_every: env_usize("SEEDSHIP_INDEX_EVERY", 16),
            dirs_in_flight: env_usize("SEEDSHIP_DIRS_IN_FLIGHT", 64),
            index_mib: env_usize("SEEDSHIP_INDEX_MIB", 64),
            index_seconds: env_usize("SEEDSHIP_INDEX_SECONDS", 20),
            readers: env_usize(
                "SEEDSHIP_READERS",
                std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            ),
            index_memory_mib: env_usize("SEEDSHIP_INDEX_MEMORY_MIB", 32),
            stat_ahead: match std::env::var("SEEDSHIP_STAT_AHEAD").as_deref() {
                Ok("off") => 0,
                _ => env_usize("SEEDSHIP_STAT_AHEAD", 1 << 16),
            },
        }
    }

    /// Into staging: an index object every [`Tuning::index_every`] packs, volume digests on.
    pub fn staging_writer(&self) -> WriterOptions {
        WriterOptions {
            pack_size: self.pack_size_kib << 10,
            index: IndexPolicy::every_packs(self.index_every),
            digests: true,
            dirs_in_flight: self.dirs_in_flight,
            readers: self.readers,
            known_leaves: Default::default(),
            split: Default::default(),
        }
    }

    /// Into the vault: an index object also after [`Tuning::index_mib`] MiB or [`Tuning::index_seconds`]
    /// seconds, whichever comes first, so that a killed run's successor uploads little again (at most that
    /// much plus the pack in flight); no volume digests (they would read the volume back).
    pub fn online_writer(&self) -> WriterOptions {
        let mut w = self.staging_writer();
        w.index.bytes = Some((self.index_mib as u64) << 20);
        w.index.interval = Some(Duration::from_secs(self.index_seconds as u64));
        w.digests = false;
        w
    }
}

/// A knob from the environment, or its default.
fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_writer_indexes_by_bytes_and_time_without_digests() {
        let t = Tuning {
            pack_size_kib: 4,
            index_every: 3,
            dirs_in_flight: 5,
            index_mib: 2,
            index_seconds: 7,
            readers: 1,
            index_memory_mib: 1,
            stat_ahead: 0,
        };
        let s = t.staging_writer();
        assert_eq!(
            (s.pack_size, s.index.packs, s.digests, s.dirs_in_flight),
            (4096, 3, true, 5)
        );
        assert_eq!((s.index.bytes, s.index.interval), (None, None));
        let o = t.online_writer();
        assert_eq!(o.index.bytes, Some(2 << 20));
        assert_eq!(o.index.interval, Some(Duration::from_secs(7)));
        assert!(!o.digests);
    }

    #[test]
    fn storage_key_from_the_environment_is_trimmed_and_a_missing_one_is_explained() {
        let k = StorageKey(SecretSource {
            file: None,
            env: Some(Zeroizing::new(" a2V5 \n".into())),
        });
        assert!(matches!(k.credential("acct").unwrap(), Credential::SharedKey(ref s) if s == "a2V5"));
        let none = StorageKey(SecretSource {
            file: None,
            env: None,
        });
        let msg = format!("{:#}", none.credential("acct").unwrap_err());
        assert!(msg.contains("acct") && msg.contains(STORAGE_KEY_ENV), "{msg}");
        assert!(!format!("{k:?}").contains("a2V5"));
    }
}
