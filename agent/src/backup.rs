//! The backup pipeline: walkers (a rayon pool) -> N reader/chunker/encrypt workers -> one pack writer.
//!
//! The walkers list directories in parallel, record every directory's nodes in memory and send each changed
//! regular file to a bounded channel; workers read it (only its data extents: holes are skipped with
//! SEEK_DATA/SEEK_HOLE), cut it into chunks, name each chunk by keyed BLAKE3 and, when the chunk is new,
//! compress and encrypt it and pass it to the pack writer through another bounded channel (small blobs in
//! batches). Files whose size, mtime, ctime and inode equal the parent snapshot's are not read: their chunk
//! list is reused. When all files are done the trees are built bottom-up (siblings in parallel), then the
//! index is flushed and only then is the snapshot written. Cancelling stops the walk; whatever was packed and
//! indexed is reused by the next run.

use crate::fsmeta::{self, Names};
use crate::progress::Counters;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use rayon::prelude::*;
use seedship_shared::repo::{
    encode_blob, encode_blob_into, id_hex, parse_id, ChunkId, ChunkRef, EncodedBlob, IdSet, IndexPolicy,
    Node, NodeKind, PackWriter, Repository, Snapshot, SnapshotStats, Tree, VolumeDigest, BLOB_DATA,
    BLOB_TREE,
};
use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What one backup run produced.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The snapshot id, unless interrupted.
    pub snapshot: Option<String>,
    pub stats: SnapshotStats,
    pub volumes: Vec<VolumeDigest>,
    /// Messages about files that were unreadable or changed while read.
    pub problems: Vec<String>,
}

/// Blobs smaller than this are sent to the pack writer in batches (see [`BlobOut`]).
const SMALL_BLOB: usize = 256 << 10;
/// A batch is sent when it holds this many bytes of envelopes or [`BATCH_BLOBS`] blobs.
const BATCH_BYTES: usize = 1 << 20;
const BATCH_BLOBS: usize = 64;

/// Where readers send blobs, and where they take reusable buffers from. Small blobs (most files of a file
/// server are small) are gathered into batches: one channel operation and one wake-up of the pack writer
/// per batch instead of per blob (per-blob hand-offs cost about a tenth of the CPU time of a /usr backup in
/// spinning and context switches).
struct BlobOut {
    tx: Sender<Vec<EncodedBlob>>,
    pool: Receiver<Vec<u8>>,
    batch: Vec<EncodedBlob>,
    batch_bytes: usize,
}

impl BlobOut {
    fn new(tx: Sender<Vec<EncodedBlob>>, pool: Receiver<Vec<u8>>) -> Self {
        BlobOut {
            tx,
            pool,
            batch: vec![],
            batch_bytes: 0,
        }
    }

    /// Queues a blob; `Err` when the pack writer has stopped.
    fn send(&mut self, blob: EncodedBlob) -> Result<(), ()> {
        if blob.envelope.len() >= SMALL_BLOB {
            self.flush()?;
            return self.tx.send(vec![blob]).map_err(|_| ());
        }
        self.batch_bytes += blob.envelope.len();
        self.batch.push(blob);
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_BLOBS {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the batch gathered so far.
    fn flush(&mut self) -> Result<(), ()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        self.tx.send(std::mem::take(&mut self.batch)).map_err(|_| ())
    }
}

struct FileJob {
    id: usize,
    path: PathBuf,
    node_size: u64,
    mtime: (i64, u32),
}

/// Content, extended attributes, and a message when the file changed while being read.
type FileResult = Result<(Vec<ChunkRef>, Vec<(String, String)>, Option<String>), String>;

/// One directory as walked: its nodes (sorted by name), which of them wait for a file job's result, and its
/// walked subdirectories (with the index of their node).
#[derive(Default)]
struct DirRec {
    nodes: Vec<Node>,
    files: Vec<(usize, usize)>,
    subdirs: Vec<(usize, DirRec)>,
    /// Its tree in the parent snapshot.
    parent_id: Option<ChunkId>,
    /// Whether any of its own entries differs from that tree (added, removed, other metadata, unreadable).
    /// When none does and every subdirectory kept its tree, the directory keeps its tree id as well,
    /// without serialising and hashing its tree again.
    differs: bool,
}

/// The walk of the sources. Directories are walked in parallel (each directory's listing, lstat and parent
/// tree on one task; its subdirectories as further tasks), so its state is shared.
struct Walker<'a> {
    repo: &'a Repository,
    names: Names,
    jobs: Sender<FileJob>,
    next_job: AtomicUsize,
    links: Mutex<HashMap<(u64, u64), usize>>,
    stats: Mutex<SnapshotStats>,
    problems: Mutex<Vec<String>>,
    cancel: &'a AtomicBool,
    counters: &'a Counters,
}

/// How the pack writer of a backup works: staging (the defaults) or the vault ([`WriterOptions::online`]).
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Pack size in bytes (`SEEDSHIP_PACK_SIZE_KIB`, default 16 MiB).
    pub pack_size: usize,
    /// When index objects are written.
    pub index: IndexPolicy,
    /// Whether volume digests are computed (for the staging job descriptor).
    pub digests: bool,
}

impl WriterOptions {
    /// Into staging: an index object every `SEEDSHIP_INDEX_EVERY` (16) packs, volume digests on.
    pub fn staging() -> WriterOptions {
        WriterOptions {
            pack_size: env_usize("SEEDSHIP_PACK_SIZE_KIB", 16 << 10) << 10,
            index: IndexPolicy::every_packs(env_usize("SEEDSHIP_INDEX_EVERY", 16)),
            digests: true,
        }
    }

    /// Into the vault: an index object also after `SEEDSHIP_INDEX_MIB` (64) MiB or `SEEDSHIP_INDEX_SECONDS`
    /// (20) seconds, whichever comes first, so that a killed run's successor uploads little again (at most
    /// that much plus the pack in flight); no volume digests (they would read the volume back).
    pub fn online() -> WriterOptions {
        let mut w = WriterOptions::staging();
        w.index.bytes = Some((env_usize("SEEDSHIP_INDEX_MIB", 64) as u64) << 20);
        w.index.interval = Some(std::time::Duration::from_secs(
            env_usize("SEEDSHIP_INDEX_SECONDS", 20) as u64,
        ));
        w.digests = false;
        w
    }
}

/// Runs one backup of `sources` into `repo`, using `parent` to skip unchanged files.
pub fn run(
    repo: Arc<Repository>,
    sources: &[PathBuf],
    parent: Option<(String, Snapshot)>,
    host: &str,
    cancel: &'static AtomicBool,
    counters: &Counters,
    wopts: WriterOptions,
) -> anyhow::Result<BackupOutcome> {
    let threads = env_usize(
        "SEEDSHIP_READERS",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
    );
    let (job_tx, job_rx) = bounded::<FileJob>(256);
    let (blob_tx, blob_rx) = bounded::<Vec<EncodedBlob>>(threads * 2);
    let (res_tx, res_rx) = unbounded::<(usize, FileResult)>();
    let seen = Arc::new(Mutex::new(IdSet::default()));
    // envelope buffers circulate readers -> writer -> readers instead of being allocated per blob
    let (pool_tx, pool_rx) = bounded::<Vec<u8>>(threads * 4);
    let writer = {
        let mut w = PackWriter::open(repo.clone(), wopts.pack_size, wopts.index.packs)?;
        w.set_index_policy(wopts.index);
        if !wopts.digests {
            w = w.without_digests();
        }
        std::thread::spawn(move || -> anyhow::Result<(Vec<VolumeDigest>, u64, u64)> {
            for batch in blob_rx {
                for b in batch {
                    w.add(&b)?;
                    // hand the buffer back to the readers (dropped when the pool is full)
                    let _ = pool_tx.try_send(b.envelope);
                }
            }
            let (n, bytes) = (w.blobs_stored, w.bytes_stored);
            Ok((w.finish()?, n, bytes))
        })
    };
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (rx, tx, res, repo, seen) = (
                job_rx.clone(),
                BlobOut::new(blob_tx.clone(), pool_rx.clone()),
                res_tx.clone(),
                repo.clone(),
                seen.clone(),
            );
            let c = counters.clone();
            std::thread::spawn(move || worker(&repo, rx, tx, res, &seen, &c, cancel))
        })
        .collect();
    drop((job_rx, res_tx));

    let parent_root = match &parent {
        Some((_, s)) => parse_id(&s.tree).and_then(|id| repo.load_tree(&id).ok()),
        None => None,
    };
    let walker = Walker {
        repo: &repo,
        names: Names::default(),
        jobs: job_tx,
        next_job: AtomicUsize::new(0),
        links: Mutex::new(HashMap::new()),
        stats: Mutex::new(SnapshotStats::default()),
        problems: Mutex::new(vec![]),
        cancel,
        counters,
    };
    let root = walker.walk_sources(sources, parent_root.as_ref());
    let Walker {
        jobs,
        next_job,
        stats,
        problems,
        ..
    } = walker;
    let (mut stats, mut problems) = (into_inner(stats), into_inner(problems));
    drop(jobs);
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a reader thread panicked"))?;
    }
    let mut results: Vec<Option<FileResult>> = Vec::new();
    results.resize_with(next_job.into_inner(), || None);
    for (job, r) in res_rx {
        results[job] = Some(r);
    }
    let cancelled = cancel.load(Ordering::SeqCst);
    let root_tree = if cancelled {
        None
    } else {
        let builder = TreeBuilder::new(&repo, &root, results, &blob_tx);
        let id = builder.build(root)?;
        stats.errors += builder.errors.into_inner();
        problems.extend(into_inner(builder.problems));
        Some(id)
    };
    drop(blob_tx);
    let (volumes, blobs, bytes) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the pack writer panicked"))??;
    stats.blobs_new = blobs;
    stats.bytes_stored = bytes;
    stats.bytes_read = counters.bytes.load(Ordering::Relaxed);
    let Some(root_tree) = root_tree else {
        return Ok(BackupOutcome {
            snapshot: None,
            stats,
            volumes,
            problems,
        });
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let snap = Snapshot {
        version: 1,
        time: now.as_secs() as i64,
        time_nsec: now.subsec_nanos(),
        host: host.to_string(),
        paths: sources.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
        tree: id_hex(&root_tree),
        parent: parent.map(|(id, _)| id),
        partial: stats.errors > 0,
        stats: stats.clone(),
    };
    let id = repo.save_snapshot(&snap)?;
    Ok(BackupOutcome {
        snapshot: Some(id),
        stats,
        volumes,
        problems,
    })
}

/// A tuning knob from the environment (documented in docs/agent.md), or its default.
fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

fn into_inner<T>(m: Mutex<T>) -> T {
    m.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Builds the trees bottom-up once every file's result is in: the subdirectories of a directory in parallel,
/// then the directory itself (its tree is serialised, named, and compressed and encrypted when new).
struct TreeBuilder<'a> {
    repo: &'a Repository,
    /// Each file job's result, taken by its last user (hard links share a job).
    results: Vec<Mutex<Option<FileResult>>>,
    /// How many nodes still need each job's result.
    uses: Vec<AtomicUsize>,
    blobs: &'a Sender<Vec<EncodedBlob>>,
    errors: AtomicU64,
    problems: Mutex<Vec<String>>,
}

impl<'a> TreeBuilder<'a> {
    fn new(
        repo: &'a Repository,
        root: &DirRec,
        results: Vec<Option<FileResult>>,
        blobs: &'a Sender<Vec<EncodedBlob>>,
    ) -> Self {
        let uses: Vec<AtomicUsize> = results.iter().map(|_| AtomicUsize::new(0)).collect();
        fn count(d: &DirRec, uses: &[AtomicUsize]) {
            for &(_, job) in &d.files {
                uses[job].fetch_add(1, Ordering::Relaxed);
            }
            for (_, child) in &d.subdirs {
                count(child, uses);
            }
        }
        count(root, &uses);
        TreeBuilder {
            repo,
            results: results.into_iter().map(Mutex::new).collect(),
            uses,
            blobs,
            errors: AtomicU64::new(0),
            problems: Mutex::new(vec![]),
        }
    }

    fn problem(&self, msg: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.problems.lock().expect("lock").push(msg);
    }

    fn build(&self, rec: DirRec) -> anyhow::Result<ChunkId> {
        let DirRec {
            mut nodes,
            files,
            subdirs,
            parent_id,
            differs,
        } = rec;
        let children = subdirs
            .into_par_iter()
            .map(|(ni, child)| {
                let was = child.parent_id;
                Ok((ni, self.build(child)?, was))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut same = !differs && files.is_empty();
        for (ni, id, was) in children {
            same &= was == Some(id);
            nodes[ni].subtree = Some(id_hex(&id));
        }
        if let (true, Some(id)) = (same, parent_id) {
            return Ok(id);
        }
        let mut drop_nodes = HashSet::new();
        for (ni, job) in files {
            let last = self.uses[job].fetch_sub(1, Ordering::AcqRel) == 1;
            let result = {
                let mut slot = self.results[job].lock().expect("lock");
                if last {
                    slot.take()
                } else {
                    slot.clone()
                }
            };
            match result {
                Some(Ok((content, xattrs, changed))) => {
                    nodes[ni].content = content;
                    nodes[ni].xattrs = xattrs;
                    // a hard-linked file's problem is reported once, by its last user
                    if let (Some(msg), true) = (changed, last) {
                        self.problem(msg);
                    }
                }
                Some(Err(msg)) => {
                    if last {
                        self.problem(msg);
                    }
                    drop_nodes.insert(ni);
                }
                None => anyhow::bail!("internal error: no result for a file job"),
            }
        }
        let tree = Tree {
            nodes: nodes
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !drop_nodes.contains(i))
                .map(|(_, n)| n)
                .collect(),
        };
        // an unchanged directory has the same id: skip compressing and encrypting it again
        let raw = serde_json::to_vec(&tree)?;
        let id = self.repo.key().chunk_id(&raw);
        if !self.repo.contains(&id) {
            let blob = encode_blob(self.repo.key(), 3, BLOB_TREE, id, &raw)?;
            self.blobs
                .send(vec![blob])
                .map_err(|_| anyhow::anyhow!("the pack writer stopped"))?;
        }
        Ok(id)
    }
}

impl Walker<'_> {
    fn walk_sources(&self, sources: &[PathBuf], parent: Option<&Tree>) -> DirRec {
        // the root (one entry per source) is always encoded again: it is small
        let mut root = DirRec {
            differs: true,
            ..DirRec::default()
        };
        let mut subdirs = vec![];
        for src in sources {
            let name = src.to_string_lossy().trim_start_matches('/').to_string();
            let pnode = parent
                .and_then(|t| t.nodes.iter().find(|n| n.name == name))
                .cloned();
            match std::fs::symlink_metadata(src) {
                Ok(m) => {
                    self.add_entry(
                        &mut root,
                        &mut subdirs,
                        std::ffi::OsStr::new(&name),
                        src,
                        &m,
                        pnode,
                    );
                }
                Err(e) => self.problem(format!("{}: {e}", src.display())),
            }
        }
        root.subdirs = self.walk_subdirs(subdirs);
        root
    }

    fn problem(&self, msg: String) {
        tracing::warn!("{msg}");
        self.problems.lock().expect("lock").push(msg);
        self.stats.lock().expect("lock").errors += 1;
    }

    /// Walks the subdirectories found in one directory, in parallel.
    fn walk_subdirs(&self, subdirs: Vec<PendingDir>) -> Vec<(usize, DirRec)> {
        subdirs
            .into_par_iter()
            .map(|sd| {
                let ptree = sd.parent.and_then(|id| self.repo.load_tree(&id).ok());
                let mut d = self.walk_dir(&sd.path, ptree);
                d.parent_id = sd.parent;
                (sd.node, d)
            })
            .collect()
    }

    fn walk_dir(&self, path: &Path, parent: Option<Tree>) -> DirRec {
        let mut d = DirRec {
            differs: parent.is_none(),
            ..DirRec::default()
        };
        let mut entries = vec![];
        match std::fs::read_dir(path) {
            Ok(rd) => {
                for e in rd {
                    match e {
                        Ok(e) => entries.push((e.file_name(), e)),
                        Err(e) => {
                            d.differs = true;
                            self.problem(format!("{}: cannot list: {e}", path.display()))
                        }
                    }
                }
            }
            Err(e) => {
                self.problem(format!("{}: cannot list: {e}", path.display()));
                return d;
            }
        };
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        // the parent's nodes are moved out (not cloned) into the nodes of unchanged files
        let mut pmap: HashMap<Vec<u8>, Node> = parent
            .map(|t| t.nodes.into_iter().map(|n| (n.name_bytes(), n)).collect())
            .unwrap_or_default();
        let mut subdirs = vec![];
        for (name, entry) in entries {
            if self.cancel.load(Ordering::Relaxed) {
                d.differs = true;
                break;
            }
            let p = path.join(&name);
            // lstat relative to the open directory (DirEntry::metadata does not follow symlinks), which
            // spares the kernel a walk of the whole path per entry
            let same = match entry.metadata() {
                Ok(m) => self.add_entry(&mut d, &mut subdirs, &name, &p, &m, pmap.remove(name.as_bytes())),
                Err(e) => {
                    self.problem(format!("{}: {e}", p.display()));
                    false
                }
            };
            d.differs |= !same;
        }
        // entries of the parent tree that are gone
        d.differs |= !pmap.is_empty();
        d.subdirs = self.walk_subdirs(subdirs);
        d
    }

    /// Adds the node of one entry to `d`; returns whether it equals its node in the parent tree (for a
    /// directory: apart from its subtree, which is compared when the trees are built).
    fn add_entry(
        &self,
        d: &mut DirRec,
        subdirs: &mut Vec<PendingDir>,
        name: &std::ffi::OsStr,
        p: &Path,
        m: &std::fs::Metadata,
        pnode: Option<Node>,
    ) -> bool {
        let mut node = match fsmeta::node_from(name, p, m, &self.names, !m.file_type().is_file()) {
            Ok(n) => n,
            Err(e) => {
                self.problem(format!("{}: {e}", p.display()));
                return false;
            }
        };
        let ni = d.nodes.len();
        let mut same = false;
        match node.kind {
            NodeKind::Dir => {
                self.stats.lock().expect("lock").dirs += 1;
                // the fresh node has no subtree yet: compare the rest, keep the parent's subtree id
                let parent = pnode.filter(|n| n.kind == NodeKind::Dir).and_then(|mut prev| {
                    let sub = prev.subtree.take();
                    same = prev == node;
                    sub.as_deref().and_then(parse_id)
                });
                subdirs.push(PendingDir {
                    node: ni,
                    path: p.to_path_buf(),
                    parent,
                });
            }
            NodeKind::File => {
                {
                    let mut st = self.stats.lock().expect("lock");
                    st.files += 1;
                    st.bytes += node.size;
                }
                self.counters.files.fetch_add(1, Ordering::Relaxed);
                if let Some(mut prev) = pnode.filter(|n| unchanged(n, &node)) {
                    // the content and attributes are taken over (moved): every other field must match
                    // for the node to be the parent's (the fresh node has no content and no attributes)
                    let content = std::mem::take(&mut prev.content);
                    let xattrs = std::mem::take(&mut prev.xattrs);
                    same = prev == node;
                    node.content = content;
                    node.xattrs = xattrs;
                    self.stats.lock().expect("lock").files_unchanged += 1;
                } else if node.size == 0 {
                    node.xattrs = fsmeta::read_xattrs(p).ok().flatten().unwrap_or_default();
                } else {
                    let key = (node.dev, node.ino);
                    // hard links share one job: the first of them found sends it
                    let (job, new) = {
                        let mut links = self.links.lock().expect("lock");
                        match links.get(&key) {
                            Some(&j) if node.nlink > 1 => (j, false),
                            _ => {
                                let j = self.next_job.fetch_add(1, Ordering::Relaxed);
                                if node.nlink > 1 {
                                    links.insert(key, j);
                                }
                                (j, true)
                            }
                        }
                    };
                    if new {
                        let fj = FileJob {
                            id: job,
                            path: p.to_path_buf(),
                            node_size: node.size,
                            mtime: (node.mtime, node.mtime_nsec),
                        };
                        if self.jobs.send(fj).is_err() {
                            return false;
                        }
                    }
                    d.files.push((ni, job));
                }
            }
            _ => {
                self.stats.lock().expect("lock").other += 1;
                same = pnode.is_some_and(|prev| prev == node);
            }
        }
        d.nodes.push(node);
        same
    }
}

/// A subdirectory found while listing its parent, walked after the listing.
struct PendingDir {
    node: usize,
    path: PathBuf,
    /// Its tree in the parent snapshot.
    parent: Option<ChunkId>,
}

fn unchanged(prev: &Node, now: &Node) -> bool {
    prev.kind == NodeKind::File
        && prev.size == now.size
        && (prev.mtime, prev.mtime_nsec) == (now.mtime, now.mtime_nsec)
        && (prev.ctime, prev.ctime_nsec) == (now.ctime, now.ctime_nsec)
        && prev.ino == now.ino
        && (prev.size == 0 || !prev.content.is_empty())
}

fn worker(
    repo: &Repository,
    jobs: Receiver<FileJob>,
    mut blobs: BlobOut,
    results: Sender<(usize, FileResult)>,
    seen: &Mutex<IdSet>,
    counters: &Counters,
    cancel: &AtomicBool,
) {
    let chunker = repo.chunker();
    // room for the largest chunk plus a refill, so that the unconsumed tail is moved rarely
    let mut buf = Vec::with_capacity(chunker.params().max + 2 * chunker.params().avg);
    for job in jobs {
        // once cancelled, queued files are not read: no snapshot will be written anyway
        let r = if cancel.load(Ordering::Relaxed) {
            Err(format!("{}: not read (interrupted)", job.path.display()))
        } else {
            read_file(repo, &chunker, &job, &mut buf, &mut blobs, seen, counters, cancel)
        };
        if results.send((job.id, r)).is_err() {
            return;
        }
    }
    // a failure here shows as the pack writer's own error
    let _ = blobs.flush();
}

/// Reads up to `want` bytes at `offset` into `buf`'s spare capacity (which must hold `want` bytes), without
/// zero-filling it first; returns the count read and appends exactly those bytes to `buf`.
fn read_uninit(f: &std::fs::File, buf: &mut Vec<u8>, want: usize, offset: u64) -> std::io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    assert!(spare.len() >= want, "read_uninit: spare capacity too small");
    loop {
        // SAFETY: pread writes at most `want` bytes into the spare capacity, which holds at least `want`.
        let n = unsafe {
            libc::pread(
                f.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                want,
                offset as libc::off_t,
            )
        };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(n);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The data extents of a file: all of it unless it has holes.
fn extents(f: &std::fs::File, m: &std::fs::Metadata) -> Vec<(u64, u64)> {
    let size = m.size();
    if m.blocks() * 512 >= size {
        return vec![(0, size)];
    }
    let fd = f.as_raw_fd();
    let mut out = vec![];
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // SAFETY: lseek on an open descriptor.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return vec![(0, size)];
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size } else { (hole as u64).min(size) };
        out.push((data as u64, end));
        pos = end as i64;
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn read_file(
    repo: &Repository,
    chunker: &seedship_shared::chunker::Chunker,
    job: &FileJob,
    buf: &mut Vec<u8>,
    blobs: &mut BlobOut,
    seen: &Mutex<IdSet>,
    counters: &Counters,
    cancel: &AtomicBool,
) -> FileResult {
    let show = job.path.display();
    let f = std::fs::File::open(&job.path).map_err(|e| format!("{show}: cannot read: {e}"))?;
    let m0 = f.metadata().map_err(|e| format!("{show}: {e}"))?;
    let (max, avg) = (chunker.params().max, chunker.params().avg);
    let level = repo.config().compression_level;
    let mut content = vec![];
    let mut short = false;
    for (start, end) in extents(&f, &m0) {
        let mut pos = start; // file offset of buf[head]
        buf.clear();
        // unconsumed data is buf[head..]: chunks are cut from its front without moving the rest, which is
        // moved to the front only when the buffer's capacity would otherwise be exceeded
        let mut head = 0;
        let mut read_to = start;
        let mut target = 2 * avg;
        loop {
            while buf.len() - head < target && read_to < end {
                let want = ((end - read_to) as usize).min(target - (buf.len() - head));
                if buf.len() + want > buf.capacity() {
                    buf.copy_within(head.., 0);
                    buf.truncate(buf.len() - head);
                    head = 0;
                    buf.reserve(want);
                }
                let n =
                    read_uninit(&f, buf, want, read_to).map_err(|e| format!("{show}: read error: {e}"))?;
                counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                if n == 0 {
                    short = true;
                    break;
                }
                read_to += n as u64;
            }
            if buf.len() == head {
                break;
            }
            let eof = read_to >= end || short;
            let Some(cut) = chunker.cut(&buf[head..], eof) else {
                target = max;
                continue;
            };
            let chunk = &buf[head..head + cut];
            if cancel.load(Ordering::Relaxed) {
                return Err(format!("{show}: interrupted"));
            }
            let id = repo.key().chunk_id(chunk);
            if !repo.contains(&id) && seen.lock().expect("lock").insert(id) {
                let reuse = blobs.pool.try_recv().unwrap_or_default();
                let blob = encode_blob_into(repo.key(), level, BLOB_DATA, id, chunk, reuse)
                    .map_err(|e| format!("{show}: {e}"))?;
                blobs
                    .send(blob)
                    .map_err(|_| format!("{show}: the pack writer stopped"))?;
            }
            content.push(ChunkRef {
                off: pos,
                len: cut as u64,
                id: id_hex(&id),
            });
            pos += cut as u64;
            head += cut;
            target = 2 * avg;
        }
        if short {
            break;
        }
    }
    let m1 = f.metadata().map_err(|e| format!("{show}: {e}"))?;
    let changed = short || m1.size() != job.node_size || (m1.mtime(), m1.mtime_nsec() as u32) != job.mtime;
    let xattrs = fsmeta::read_xattrs(&job.path).ok().flatten().unwrap_or_default();
    Ok((
        content,
        xattrs,
        changed.then(|| format!("{show}: changed while being read (backed up as read)")),
    ))
}
