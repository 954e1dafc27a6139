//! Restore: recreates a snapshot's files under a target folder, with holes, hard links, symlinks, special
//! files, owners (as root), modes, extended attributes and modification times. Every chunk is verified
//! against its id as it is read; damage stops the restore with the object named.
//!
//! One thread walks the trees and creates every entry; the content of regular files is fetched, verified and
//! written by [`WORKERS`] threads, so a restore from the vault keeps that many reads in flight instead of
//! waiting for one chunk at a time (small files over the network are latency-bound). A worker sets a file's
//! metadata once its content is written; directories get theirs last, deepest first, after every file is done
//! (a directory's times and a read-only mode must come after what is created inside it).

use crate::fsmeta;
use anyhow::{bail, Context};
use seedship_shared::repo::{parse_id, Node, NodeKind, Repository};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Threads fetching and writing file content (reads in flight against the vault).
pub const WORKERS: usize = 8;

/// A regular file whose content a worker writes.
struct FileJob {
    file: std::fs::File,
    dest: PathBuf,
    rel: String,
    node: Node,
}

/// What the workers share with the walker.
struct Shared<'a> {
    repo: &'a Repository,
    owners: Option<fsmeta::Owners>,
    bytes: AtomicU64,
    failed: AtomicBool,
    error: Mutex<Option<anyhow::Error>>,
    warnings: Mutex<Vec<String>>,
}

impl Shared<'_> {
    fn fail(&self, e: anyhow::Error) {
        self.failed.store(true, Ordering::SeqCst);
        self.error.lock().expect("lock").get_or_insert(e);
    }

    /// Fetches, verifies and writes one file's chunks, then sets its metadata.
    fn write_file(&self, job: FileJob) -> anyhow::Result<()> {
        let FileJob {
            file,
            dest,
            rel,
            node,
        } = job;
        for c in &node.content {
            if self.failed.load(Ordering::SeqCst) {
                return Ok(());
            }
            let id = parse_id(&c.id).with_context(|| format!("{rel}: invalid chunk id"))?;
            let data = self
                .repo
                .read_blob(&id)
                .with_context(|| format!("restoring {rel}"))?;
            if data.len() as u64 != c.len {
                bail!(
                    "{rel}: chunk {} has {} bytes, the tree says {}",
                    c.id,
                    data.len(),
                    c.len
                );
            }
            file.write_all_at(&data, c.off)
                .with_context(|| format!("cannot write {}", dest.display()))?;
            self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        drop(file);
        let w = fsmeta::apply(&dest, &node, self.owners.as_ref())
            .with_context(|| format!("cannot set metadata of {}", dest.display()))?;
        self.warnings.lock().expect("lock").extend(w);
        Ok(())
    }
}

/// Counters of one restore.
#[derive(Debug, Default)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    pub bytes: u64,
    pub warnings: Vec<String>,
}

struct Restorer<'a, 's> {
    shared: &'s Shared<'a>,
    includes: Vec<String>,
    links: HashMap<(u64, u64), PathBuf>,
    jobs: crossbeam_channel::Sender<FileJob>,
    /// Directories whose metadata is applied once every file is written, in creation order.
    dirs: Vec<(PathBuf, Node)>,
    stats: RestoreStats,
}

/// Restores snapshot tree `tree` into `target`, limited to `includes` (paths as in the snapshot, with or
/// without a leading `/`) when not empty. Run as root, owners are set by the recorded user and group names
/// where this machine knows them, else by the recorded ids; `numeric_owner` uses the ids only.
pub fn restore(
    repo: &Repository,
    tree: &str,
    target: &Path,
    includes: &[String],
    numeric_owner: bool,
) -> anyhow::Result<RestoreStats> {
    let id = parse_id(tree).context("snapshot names an invalid root tree id")?;
    let root = repo.load_tree(&id)?;
    std::fs::create_dir_all(target).with_context(|| format!("cannot create target {}", target.display()))?;
    let shared = Shared {
        repo,
        owners: fsmeta::is_root().then(|| fsmeta::Owners::new(numeric_owner)),
        bytes: AtomicU64::new(0),
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        warnings: Mutex::new(Vec::new()),
    };
    let (tx, rx) = crossbeam_channel::bounded::<FileJob>(4 * WORKERS);
    let walked = std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            let rx = rx.clone();
            let shared = &shared;
            scope.spawn(move || {
                for job in rx {
                    if shared.failed.load(Ordering::SeqCst) {
                        continue; // drain without work so the walker never blocks
                    }
                    if let Err(e) = shared.write_file(job) {
                        shared.fail(e);
                    }
                }
            });
        }
        drop(rx);
        let mut r = Restorer {
            shared: &shared,
            includes: includes.iter().map(|s| s.trim_matches('/').to_string()).collect(),
            links: HashMap::new(),
            jobs: tx,
            dirs: Vec::new(),
            stats: RestoreStats::default(),
        };
        let res = r.walk(&root.nodes, target);
        // dropping the sender (inside r) ends the workers once the queue is empty
        let Restorer { dirs, stats, .. } = r;
        res.map(|()| (dirs, stats))
    });
    if let Some(e) = shared.error.lock().expect("lock").take() {
        return Err(e);
    }
    let (dirs, mut stats) = walked?;
    for (dest, node) in dirs.iter().rev() {
        let w = fsmeta::apply(dest, node, shared.owners.as_ref())
            .with_context(|| format!("cannot set metadata of {}", dest.display()))?;
        stats.warnings.extend(w);
    }
    stats.bytes = shared.bytes.load(Ordering::SeqCst);
    stats.warnings.extend(shared.warnings.into_inner().expect("lock"));
    Ok(stats)
}

impl Restorer<'_, '_> {
    /// Creates the snapshot's source paths under `target`, refusing unsafe ones.
    fn walk(&mut self, nodes: &[Node], target: &Path) -> anyhow::Result<()> {
        for node in nodes {
            let rel = PathBuf::from(&node.name);
            if rel.components().any(|c| !matches!(c, Component::Normal(_))) || node.name.is_empty() {
                bail!(
                    "snapshot has an unsafe source path {:?}; refusing to restore it",
                    node.name
                );
            }
            if !self.wanted(&node.name) {
                continue;
            }
            let dest = target.join(&rel);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            self.node(node, &dest, &node.name)?;
        }
        Ok(())
    }

    /// Whether `rel` is included, or lies on the way to an included path.
    fn wanted(&self, rel: &str) -> bool {
        self.includes.is_empty()
            || self
                .includes
                .iter()
                .any(|i| i == rel || rel.starts_with(&format!("{i}/")) || i.starts_with(&format!("{rel}/")))
    }

    fn node(&mut self, node: &Node, dest: &Path, rel: &str) -> anyhow::Result<()> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Ok(()); // a worker failed: its error is reported
        }
        let show = dest.display();
        match node.kind {
            NodeKind::Dir => {
                match std::fs::create_dir(dest) {
                    Ok(()) => {}
                    Err(e)
                        if e.kind() == std::io::ErrorKind::AlreadyExists
                            && std::fs::symlink_metadata(dest)
                                .map(|m| m.is_dir())
                                .unwrap_or(false) => {}
                    Err(e) => return Err(e).with_context(|| format!("cannot create {show}")),
                }
                self.stats.dirs += 1;
                let sub = node
                    .subtree
                    .as_deref()
                    .and_then(parse_id)
                    .with_context(|| format!("{rel}: directory without a tree"))?;
                let tree = self.shared.repo.load_tree(&sub)?;
                for child in &tree.nodes {
                    let name = child.name_bytes();
                    if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
                        bail!("{rel}: unsafe entry name {:?} in the snapshot", child.name);
                    }
                    let crel = format!("{rel}/{}", child.name);
                    if !self.wanted(&crel) {
                        continue;
                    }
                    self.node(child, &dest.join(OsStr::from_bytes(&name)), &crel)?;
                }
                self.dirs.push((dest.to_path_buf(), node.clone()));
                return Ok(());
            }
            NodeKind::File => {
                if node.nlink > 1 {
                    if let Some(first) = self.links.get(&(node.dev, node.ino)) {
                        std::fs::hard_link(first, dest)
                            .with_context(|| format!("cannot link {show} to {}", first.display()))?;
                        self.stats.files += 1;
                        return Ok(());
                    }
                    self.links.insert((node.dev, node.ino), dest.to_path_buf());
                }
                // never follow a symlink that is already at the destination
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(dest)
                    .with_context(|| format!("cannot create {show}"))?;
                f.set_len(node.size)
                    .with_context(|| format!("cannot size {show}"))?;
                self.stats.files += 1;
                if !node.content.is_empty() {
                    // the worker writes the content, then sets the metadata
                    let job = FileJob {
                        file: f,
                        dest: dest.to_path_buf(),
                        rel: rel.to_owned(),
                        node: node.clone(),
                    };
                    self.jobs
                        .send(job)
                        .map_err(|_| anyhow::anyhow!("restore workers stopped early"))?;
                    return Ok(());
                }
            }
            NodeKind::Symlink => {
                let t = node.target_bytes().unwrap_or_default();
                std::os::unix::fs::symlink(OsStr::from_bytes(&t), dest)
                    .with_context(|| format!("cannot create symlink {show}"))?;
                self.stats.other += 1;
            }
            _ => {
                if let Err(e) = fsmeta::make_special(dest, node) {
                    self.stats
                        .warnings
                        .push(format!("{show}: cannot create {:?} node: {e}", node.kind));
                    return Ok(());
                }
                self.stats.other += 1;
            }
        }
        let w = fsmeta::apply(dest, node, self.shared.owners.as_ref())
            .with_context(|| format!("cannot set metadata of {show}"))?;
        self.stats.warnings.extend(w);
        Ok(())
    }
}
