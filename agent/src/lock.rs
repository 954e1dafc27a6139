//! The repository's writer lock: `backup`, `forget` and `prune` on one repository never run at once.
//!
//! In staging the lock is the file `<staging>/<job>/lock`, held with `flock` (so a process that died holds
//! nothing) and holding a line naming the holder. In the vault it is a lease on the page blob `lock` in the
//! vault container (Azure's own primitive): 60 seconds, renewed every 15 seconds by a thread, released at the
//! end; the blob's metadata names the holder. A lock whose holder is gone (flock free, lease expired) but
//! whose holder line is still there is taken over with a note; so is a vault lease whose holder ran on this
//! host and is gone (no need to wait for the lease to expire). `seedship-agent unlock` breaks a vault lease
//! at once (for a holder known to be gone before its lease runs out) and clears a stale holder line.
//!
//! The lock is taken before the repository is opened: an index read before another writer (a prune) changed
//! it could name bytes that are gone.

use crate::config::StorageKey;
use crate::policy::{Mode, Policy};
use crate::store::open_vault_azure;
use anyhow::{bail, Context};
use seedship_shared::blob::{AzureStore, BlobError, BlobStore, Metadata};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The object holding the vault's lease.
pub const LOCK_BLOB: &str = "lock";
/// The vault lease's duration (Azure allows 15..=60 seconds or infinite).
const LEASE_SECONDS: u32 = 60;
/// How often the lease is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(15);

/// Who holds a lock, for messages.
fn holder(command: &str) -> Metadata {
    Metadata::from([
        ("host".to_owned(), seedship_shared::host::hostname()),
        ("pid".to_owned(), std::process::id().to_string()),
        ("command".to_owned(), command.to_owned()),
        (
            "since".to_owned(),
            seedship_shared::time::UtcTime::from_unix(seedship_shared::time::now_unix()).readable(),
        ),
    ])
}

fn describe(m: &Metadata) -> String {
    let g = |k: &str| m.get(k).map(String::as_str).unwrap_or("?");
    format!(
        "`{}` (process {} on host {}, since {})",
        g("command"),
        g("pid"),
        g("host"),
        g("since")
    )
}

fn to_line(m: &Metadata) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
        + "\n"
}

fn from_line(s: &str) -> Metadata {
    s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Whether the holder named by `m` ran on this host and its process no longer exists.
fn holder_gone_from_this_host(m: &Metadata) -> bool {
    let (Some(host), Some(pid)) = (m.get("host"), m.get("pid").and_then(|p| p.parse::<i32>().ok())) else {
        return false;
    };
    if *host != seedship_shared::host::hostname() || pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct RepoLock {
    held: Held,
}

#[derive(Debug)]
enum Held {
    File(File),
    Lease {
        store: Arc<AzureStore>,
        id: String,
        stop: Arc<AtomicBool>,
        renewer: Option<std::thread::JoinHandle<()>>,
    },
}

fn lock_file_path(pol: &Policy) -> PathBuf {
    pol.job_dir().join("lock")
}

fn try_flock(f: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn open_lock_file(pol: &Policy) -> anyhow::Result<(File, PathBuf)> {
    let path = lock_file_path(pol);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    Ok((f, path))
}

fn read_all(f: &mut File) -> String {
    let mut s = String::new();
    let _ = f.rewind();
    let _ = f.read_to_string(&mut s);
    s
}

/// Takes the repository's lock for `command`, or fails naming the holder.
pub fn acquire(key: &StorageKey, pol: &Policy, command: &str) -> anyhow::Result<RepoLock> {
    match (pol.mode, &pol.vault) {
        (Mode::Online, Some(v)) => {
            let store = Arc::new(open_vault_azure(key, v)?);
            acquire_lease(store, command)
        }
        _ => acquire_file(pol, command),
    }
}

fn acquire_file(pol: &Policy, command: &str) -> anyhow::Result<RepoLock> {
    let (mut f, path) = open_lock_file(pol)?;
    if !try_flock(&f).with_context(|| format!("cannot lock {}", path.display()))? {
        let who = from_line(&read_all(&mut f));
        bail!(
            "the repository is locked by {}: backup, forget and prune never run at once; wait for it to \
             finish (lock file {})",
            describe(&who),
            path.display()
        );
    }
    let old = read_all(&mut f);
    if !old.trim().is_empty() {
        eprintln!(
            "note: took over a stale lock left by {} (that process is gone)",
            describe(&from_line(&old))
        );
    }
    let write = |f: &mut File| -> std::io::Result<()> {
        f.set_len(0)?;
        f.rewind()?;
        f.write_all(to_line(&holder(command)).as_bytes())?;
        f.sync_data()
    };
    write(&mut f).with_context(|| format!("cannot write the lock file {}", path.display()))?;
    Ok(RepoLock { held: Held::File(f) })
}

fn acquire_lease(store: Arc<AzureStore>, command: &str) -> anyhow::Result<RepoLock> {
    let what = || format!("the lock blob {LOCK_BLOB:?} of {}", store.describe());
    match store.properties(LOCK_BLOB) {
        Ok(_) => {}
        Err(BlobError::NotFound { .. }) => match store.create(LOCK_BLOB, 512, &Metadata::new()) {
            // a lease held on a blob someone just created makes this fail too: the acquire below tells
            Ok(()) | Err(BlobError::AlreadyExists { .. }) | Err(BlobError::Http { status: 412, .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", what())),
        },
        Err(e) => return Err(e).with_context(what),
    }
    let mut lease = store.acquire_lease(LOCK_BLOB, LEASE_SECONDS).with_context(what)?;
    if lease.is_none() {
        let who = store
            .properties(LOCK_BLOB)
            .map(|p| p.metadata)
            .unwrap_or_default();
        if holder_gone_from_this_host(&who) {
            // its lease would expire by itself within a minute; the process is known to be gone
            eprintln!(
                "note: took over a stale lock left by {} (that process is gone)",
                describe(&who)
            );
            store.break_lease(LOCK_BLOB).with_context(what)?;
            store
                .set_metadata(LOCK_BLOB, &Metadata::new())
                .with_context(what)?;
            lease = store.acquire_lease(LOCK_BLOB, LEASE_SECONDS).with_context(what)?;
        }
    }
    let Some(id) = lease else {
        let who = store
            .properties(LOCK_BLOB)
            .map(|p| p.metadata)
            .unwrap_or_default();
        bail!(
            "the repository is locked by {}: backup, forget and prune never run at once; wait for it to \
             finish (a holder that died loses the lock within {LEASE_SECONDS} s; `seedship-agent unlock` \
             breaks it at once)",
            describe(&who)
        );
    };
    let old = store.properties(LOCK_BLOB).with_context(what)?.metadata;
    if !old.is_empty() {
        eprintln!(
            "note: took over a stale lock left by {} (its lease expired)",
            describe(&old)
        );
    }
    store
        .set_metadata_leased(LOCK_BLOB, &holder(command), &id)
        .with_context(what)?;
    let stop = Arc::new(AtomicBool::new(false));
    let renewer = {
        let (store, id, stop) = (store.clone(), id.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut waited = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                waited += Duration::from_millis(200);
                if waited >= RENEW_EVERY {
                    waited = Duration::ZERO;
                    if let Err(e) = store.renew_lease(LOCK_BLOB, &id) {
                        tracing::warn!(error = %e, "cannot renew the repository lock's lease");
                    }
                }
            }
        })
    };
    Ok(RepoLock {
        held: Held::Lease {
            store,
            id,
            stop,
            renewer: Some(renewer),
        },
    })
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        match &mut self.held {
            Held::File(f) => {
                // an empty file is a lock nobody holds; closing the file releases the flock
                let _ = f.set_len(0);
                let _ = f.sync_data();
            }
            Held::Lease {
                store,
                id,
                stop,
                renewer,
            } => {
                stop.store(true, Ordering::SeqCst);
                if let Some(t) = renewer.take() {
                    let _ = t.join();
                }
                let _ = store.set_metadata_leased(LOCK_BLOB, &Metadata::new(), id);
                if let Err(e) = store.release_lease(LOCK_BLOB, id) {
                    tracing::warn!(error = %e, "cannot release the repository lock's lease (it expires by itself)");
                }
            }
        }
    }
}

/// `unlock`: removes a lock whose holder is gone. Returns what was done, for the operator.
pub fn unlock(key: &StorageKey, pol: &Policy) -> anyhow::Result<String> {
    match (pol.mode, &pol.vault) {
        (Mode::Online, Some(v)) => {
            let store = open_vault_azure(key, v)?;
            let who = match store.properties(LOCK_BLOB) {
                Ok(p) => p.metadata,
                Err(BlobError::NotFound { .. }) => return Ok("the vault has no lock".into()),
                Err(e) => return Err(e.into()),
            };
            store.break_lease(LOCK_BLOB)?;
            store.set_metadata(LOCK_BLOB, &Metadata::new())?;
            Ok(if who.is_empty() {
                "the vault's lock was free; its lease (if any) is broken".into()
            } else {
                format!("removed the vault's lock held by {}", describe(&who))
            })
        }
        _ => {
            let (mut f, path) = open_lock_file(pol)?;
            let who = from_line(&read_all(&mut f));
            if !try_flock(&f)? {
                bail!(
                    "{} is held by a running process, {}: stop it (or let it finish) instead of unlocking",
                    path.display(),
                    describe(&who)
                );
            }
            f.set_len(0)?;
            f.sync_data()?;
            Ok(if who.is_empty() {
                format!("{} was not locked", path.display())
            } else {
                format!(
                    "removed the stale lock of {} ({})",
                    describe(&who),
                    path.display()
                )
            })
        }
    }
}
