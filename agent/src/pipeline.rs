//! The backup pipeline as both backup commands run it: the staging one (`commands`, before the import job)
//! and the vault one (`online`). Opening the repository (with the vault's errors explained), running
//! [`crate::backup`] with progress and Ctrl-C, and the lines and exit code a finished backup reports.

use crate::ahead::StatAhead;
use crate::backup::{BackupOutcome, WriterOptions};
use crate::config::StorageKey;
use crate::exclude::Excluder;
use crate::policy::{Mode, Policy};
use crate::progress::{Counters, Display};
use crate::store::open_metered_repo_store;
use crate::{Config, Exit};
use seedship_shared::blob::leaves::{self, LeafCache, Leaves};
use seedship_shared::blob::Meter;
use seedship_shared::repo::{
    CachedStore, IndexCacheOptions, RepoError, Repository, Snapshot, SnapshotStats, VolumeDigest,
};
use seedship_shared::staging::StagedBlob;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Opens the policy's repository. With `cached`, metadata objects and trees are read through the local
/// cache in `<state-dir>/cache/<job>/` (`check` reads the store itself), and the index keeps at most
/// `SEEDSHIP_INDEX_MEMORY_MIB` of slots in memory, the rest in the cache file `index.cache` there.
pub(crate) fn open_repo(cfg: &Config, pol: &Policy, cached: bool) -> anyhow::Result<Arc<Repository>> {
    open_metered_repo(cfg, pol, cached, Arc::new(Meter::new()))
}

/// Opens the policy's repository ([`open_repo`]) with the vault's traffic counted (and uploads limited) by `meter`.
pub(crate) fn open_metered_repo(
    cfg: &Config,
    pol: &Policy,
    cached: bool,
    meter: Arc<Meter>,
) -> anyhow::Result<Arc<Repository>> {
    let pass = cfg.passphrase.read(false)?;
    let mut store = open_metered_repo_store(&cfg.storage_key, pol, meter)?;
    let dir = cfg.state_dir.join("cache").join(&pol.job);
    if cached {
        store = Arc::new(CachedStore::new(store, &dir));
    }
    let opened = if cached {
        let index_cache = IndexCacheOptions {
            dir: dir.clone(),
            memory_budget: cfg.tuning.index_memory_mib << 20,
        };
        Repository::open_cached(store, &pass, &index_cache)
    } else {
        Repository::open(store, &pass)
    };
    let mut repo = opened.map_err(|e| explain(e, &cfg.storage_key, pol))?;
    if cached {
        repo = repo.with_tree_cache(&dir);
    }
    Ok(Arc::new(repo))
}

/// An incremental's parent: the newest snapshot of the policy's sources, else (after `policy set` changed
/// them) the newest that shares a source with them, whose trees still spare reading the unchanged files.
fn parent_snapshot(repo: &Repository, pol: &Policy) -> anyhow::Result<Option<(String, Snapshot)>> {
    let paths: Vec<String> = pol
        .sources
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let all = repo.snapshots()?;
    if let Some(i) = all.iter().rposition(|(_, s)| s.paths == paths) {
        return Ok(all.into_iter().nth(i));
    }
    Ok(all
        .into_iter()
        .rev()
        .find(|(_, s)| s.paths.iter().any(|p| paths.contains(p))))
}

/// What a backup's walk starts from, made before the repository opens: the policy's exclusions, compiled
/// once for the walk and the listing ahead of it, and that listing ([`crate::ahead`], none when
/// `SEEDSHIP_STAT_AHEAD=off`), which runs while the repository opens.
pub(crate) struct WalkStart {
    exclude: Option<Arc<Excluder>>,
    ahead: Option<StatAhead>,
}

/// Compiles the policy's exclusions and starts listing its sources ahead of the walk: for a backup to call
/// before it opens the repository.
pub(crate) fn start_walk(cfg: &Config, pol: &Policy) -> anyhow::Result<WalkStart> {
    let exclude = if pol.exclude.is_empty() {
        None
    } else {
        Some(Arc::new(pol.exclude.compile(&pol.sources)?))
    };
    // a folder the walk splits is walked in parts, each lstat'ed on every core: not listed ahead
    let largest = seedship_shared::repo::SplitRule::default().above;
    let ahead = StatAhead::start(&pol.sources, exclude.clone(), cfg.tuning.stat_ahead, largest);
    Ok(WalkStart { exclude, ahead })
}

/// Runs the backup pipeline into an open repository: removes what an interrupted run left unwritten,
/// finds the parent snapshot, shows progress, and prints the warnings. The listing ahead of `start` (from
/// [`start_walk`]) is stopped when the walk starts.
pub(crate) fn run_pipeline(
    cfg: &Config,
    pol: &Policy,
    repo: &Arc<Repository>,
    host: &str,
    wopts: WriterOptions,
    meter: Option<Arc<Meter>>,
    start: WalkStart,
) -> anyhow::Result<BackupOutcome> {
    for object in repo.remove_incomplete()? {
        eprintln!("removed {object}: an earlier, interrupted backup created it but never wrote it");
    }
    let parent = parent_snapshot(repo, pol)?;
    let WalkStart {
        exclude: excluder,
        ahead,
    } = start;
    let described = pol.exclude.describe();
    let listed = ahead.map(StatAhead::finish);
    if let Some(l) = &listed {
        let (folders, entries) = l.size();
        tracing::debug!(folders, entries, "listed ahead of the walk");
    }
    let sel = crate::backup::Selection {
        sources: &pol.sources,
        exclude: excluder.as_deref().map(|e| (e, described.as_slice())),
        ahead: listed.as_ref(),
    };
    // from here a signal stops the pipeline at a safe point instead of ending the process
    cfg.cancel.listen();
    let counters = Counters {
        meter,
        ..Counters::default()
    };
    let out = {
        // the first run reads about what `offline start` measured; later runs only changed files (unknown)
        let estimate = if parent.is_none() { pol.source_bytes } else { 0 };
        let _display = Display::start(&counters, estimate, cfg.quiet);
        crate::backup::run(
            repo.clone(),
            sel,
            parent,
            host,
            cfg.cancel.flag(),
            &counters,
            wopts,
        )?
    };
    for p in &out.problems {
        eprintln!("warning: {p}");
    }
    Ok(out)
}

/// The line a finished backup prints about its snapshot.
pub(crate) fn snapshot_line(snap: &str, s: &SnapshotStats) -> String {
    format!(
        "snapshot {} saved: {} files ({} unchanged), {} dirs, {} MiB read, {} new blobs, {} MiB stored",
        &snap[..16],
        s.files,
        s.files_unchanged,
        s.dirs,
        s.bytes_read >> 20,
        s.blobs_new,
        s.bytes_stored >> 20
    )
}

/// The file keeping the leaves of the staged volumes between runs (`<state>/cache/<job>/volume-leaves`).
pub(crate) fn leaf_cache_path(cfg: &Config, pol: &Policy) -> PathBuf {
    cfg.state_dir.join("cache").join(&pol.job).join("volume-leaves")
}

/// The leaf cache, empty (with a note) when it cannot be read: it only saves reading volumes again.
pub(crate) fn load_leaf_cache(path: &Path) -> LeafCache {
    LeafCache::load(path).unwrap_or_else(|why| {
        eprintln!("note: leaf cache {why}; the staged volumes are hashed whole this time");
        LeafCache::default()
    })
}

/// The cached leaves of the descriptor's volumes whose length and digest are what the descriptor records.
pub(crate) fn known_leaves(cache: &LeafCache, old: &[StagedBlob]) -> BTreeMap<String, Leaves> {
    old.iter()
        .filter_map(|b| {
            cache
                .matching(&b.name, b.len, &b.blake3)
                .map(|l| (b.name.clone(), l.clone()))
        })
        .collect()
}

/// The descriptor's blob list: every object, with digests from the pack writer, kept from `old` or computed.
/// The volumes in `changed` (with the byte ranges changed in them since `old`; growth is found by length)
/// are hashed again, only the leaves touched where `cache` holds a matching entry. `cache` is left holding
/// the leaves of every volume listed.
pub(crate) fn staged_blobs(
    repo: &Repository,
    old: &[StagedBlob],
    fresh: &[VolumeDigest],
    changed: &BTreeMap<String, Vec<Range<u64>>>,
    cache: &mut LeafCache,
) -> anyhow::Result<Vec<StagedBlob>> {
    use rayon::prelude::*;
    let store = repo.store();
    let known = known_leaves(cache, old);
    let listed: Vec<(StagedBlob, Option<Leaves>)> = store
        .list("")?
        .into_par_iter()
        .map(|o| {
            let staged = |leaves: Leaves| {
                let b = StagedBlob {
                    name: o.name.clone(),
                    len: leaves.len,
                    blake3: leaves.hex(),
                };
                Ok((b, Some(leaves)))
            };
            if let Some(v) = fresh.iter().find(|v| v.name == o.name && v.leaves.len == o.len) {
                return staged(v.leaves.clone());
            }
            let ranges = changed.get(&o.name);
            if ranges.is_none() {
                if let Some(b) = old.iter().find(|b| b.name == o.name && b.len == o.len) {
                    // objects are immutable and volumes append-only: same name and length, same bytes
                    return Ok((b.clone(), known.get(&o.name).cloned()));
                }
            }
            if ranges.is_some() || o.name.starts_with("data/") {
                // changed, or grown since: the known leaves stand outside the changed ranges, below the old end
                return staged(match known.get(&o.name) {
                    Some(k) => leaves::rehash(&**store, &o.name, k, ranges.map_or(&[], Vec::as_slice))?,
                    None => leaves::hash_blob(&**store, &o.name)?,
                });
            }
            let (len, h) = crate::check::blob_digest(&**store, &o.name)?;
            let b = StagedBlob {
                name: o.name,
                len,
                blake3: h,
            };
            Ok((b, None))
        })
        .collect::<anyhow::Result<_>>()?;
    cache.blobs.clear();
    let mut out = Vec::with_capacity(listed.len());
    for (b, l) in listed {
        if let Some(l) = l {
            cache.blobs.insert(b.name.clone(), l);
        }
        out.push(b);
    }
    Ok(out)
}

/// Saves the leaf cache, with a note when it cannot (the next run hashes the volumes whole).
pub(crate) fn save_leaf_cache(path: &Path, cache: &LeafCache) {
    if let Err(e) = cache.save(path) {
        eprintln!(
            "note: cannot write the leaf cache {}: {e}; the next run hashes the staged volumes whole",
            path.display()
        );
    }
}

/// Turns an error opening the repository into one that says what to do, in online mode.
pub fn explain(e: RepoError, key: &StorageKey, pol: &Policy) -> anyhow::Error {
    let Some(v) = pol.vault.as_ref().filter(|_| pol.mode == Mode::Online) else {
        return e.into();
    };
    let msg = match &e {
        RepoError::Blob(b) => match crate::store::refusal_advice(key, b, v) {
            Some(m) => m,
            None => return e.into(),
        },
        RepoError::NoRepository { .. } => format!(
            "the vault container {} of storage account {} holds no repository: check the vault in {} (the \
             import is moved there after the import job completes)",
            v.container,
            v.account,
            Policy::FILE
        ),
        _ => return e.into(),
    };
    anyhow::Error::new(e).context(msg)
}

/// The exit code of a finished backup: partial (3) when some files could not be backed up, said on stdout.
pub(crate) fn backup_exit(errors: u64) -> Exit {
    if errors > 0 {
        println!("{errors} file(s) could not be backed up completely (see the warnings)");
        return Exit::Partial;
    }
    Exit::Success
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_keys_and_missing_repositories_are_explained() {
        let pol = Policy {
            mode: Mode::Online,
            vault: Some(crate::policy::VaultTarget {
                endpoint: "http://127.0.0.1:1/devstoreaccount1".into(),
                account: "devstoreaccount1".into(),
                container: "vault".into(),
                since: 0,
                import_container: None,
                entra: None,
            }),
            ..Policy::offline(vec![], "/nonexistent".into(), "job1".into(), 0)
        };
        let refused = RepoError::Blob(seedship_shared::blob::BlobError::Http {
            store: "vault".into(),
            operation: "List Blobs",
            name: "config".into(),
            status: 403,
            code: Some("AuthenticationFailed".into()),
            message: "no".into(),
        });
        let msg = format!("{:#}", explain(refused, &StorageKey::default(), &pol));
        assert!(
            msg.contains("refused the storage account key") && msg.contains("HTTP 403"),
            "{msg}"
        );
        let none = RepoError::NoRepository {
            store: "vault".into(),
        };
        let msg = format!("{:#}", explain(none, &StorageKey::default(), &pol));
        assert!(msg.contains("holds no repository"), "{msg}");
        let offline = Policy {
            mode: Mode::Offline,
            ..pol
        };
        let msg = format!(
            "{:#}",
            explain(
                RepoError::WrongPassphrase { keys: 1 },
                &StorageKey::default(),
                &offline
            )
        );
        assert!(msg.starts_with("wrong passphrase"), "{msg}");
    }
}
