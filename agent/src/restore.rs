//! Restore: recreates a snapshot's files under a target folder, with holes, hard links, symlinks, special
//! files, owners (as root), modes, extended attributes and modification times. Every chunk is verified
//! against its id as it is read; damage stops the restore with the object named.
//!
//! One thread walks the trees and creates every entry; the content of regular files is fetched, verified and
//! written by [`WORKERS`] threads, so a restore from the vault keeps that many reads in flight instead of
//! waiting for one chunk at a time (small files over the network are latency-bound). A worker sets a file's
//! metadata once its content is written; directories get theirs last, deepest first, after every file is done
//! (a directory's times and a read-only mode must come after what is created inside it).

use crate::beneath::Dir;
use crate::exclude::Excluder;
use crate::fsmeta::{self, Target};
use anyhow::{bail, Context};
use seedship_shared::repo::{parse_id, Node, NodeKind, Repository};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
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
        let w = fsmeta::apply(Target::Fd(file.as_fd()), &dest, &node, self.owners.as_ref())
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
    /// `--include` paths the snapshot does not hold (nothing was created for them).
    pub unmatched: Vec<String>,
}

/// Whether the snapshot tree `top` holds `include` (a path as in the snapshot, without its leading `/`):
/// the path itself, or a folder on the way to one of the snapshot's source paths.
fn holds(repo: &Repository, top: &[Node], include: &str) -> anyhow::Result<bool> {
    if include.is_empty() {
        return Ok(true);
    }
    for node in top {
        let name = node.name.trim_matches('/');
        if name == include || name.starts_with(&format!("{include}/")) {
            return Ok(true);
        }
        let Some(rest) = include.strip_prefix(&format!("{name}/")) else {
            continue;
        };
        let mut cur = node.clone();
        let mut found = true;
        for part in rest.split('/').filter(|p| !p.is_empty()) {
            let sub = match (cur.kind, cur.subtree.as_deref().and_then(parse_id)) {
                (NodeKind::Dir, Some(sub)) => sub,
                _ => {
                    found = false;
                    break;
                }
            };
            let tree = repo.load_tree(&sub)?;
            match tree.nodes.into_iter().find(|n| n.name == part) {
                Some(n) => cur = n,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An entry's path below the target, one component per element.
type Parts = Vec<OsString>;

struct Restorer<'a, 's> {
    shared: &'s Shared<'a>,
    includes: Vec<String>,
    /// `--exclude` patterns: matching entries (and everything below a matching directory) are skipped.
    exclude: Option<&'a Excluder>,
    /// The target; every entry is reached from it one component at a time, never following a symlink.
    root: &'s Dir,
    /// The first restored path of each hard-linked file.
    links: HashMap<(u64, u64), Parts>,
    jobs: crossbeam_channel::Sender<FileJob>,
    /// Directories whose metadata is applied once every file is written, in creation order.
    dirs: Vec<(Parts, Node)>,
    /// Symlinks, created after everything else (as GNU tar does) so that no entry is written through one.
    symlinks: Vec<(Parts, Node, String)>,
    stats: RestoreStats,
}

/// Restores snapshot tree `tree` into `target`, limited to `includes` (paths as in the snapshot, with or
/// without a leading `/`) when not empty; an include the snapshot does not hold is listed in
/// [`RestoreStats::unmatched`] and nothing is created for it (not even the target, when none matches). Run as root, owners are set by the recorded user and group names
/// where this machine knows them, else by the recorded ids; `numeric_owner` uses the ids only.
pub fn restore(
    repo: &Repository,
    tree: &str,
    target: &Path,
    includes: &[String],
    exclude: Option<&Excluder>,
    numeric_owner: bool,
) -> anyhow::Result<RestoreStats> {
    let id = parse_id(tree).context("snapshot names an invalid root tree id")?;
    let top = repo.load_tree(&id)?;
    let mut matched = Vec::new();
    let mut unmatched = Vec::new();
    for inc in includes {
        let clean = inc.trim_matches('/').to_string();
        if holds(repo, &top.nodes, &clean)? {
            matched.push(clean);
        } else {
            unmatched.push(inc.clone());
        }
    }
    if !includes.is_empty() && matched.is_empty() {
        return Ok(RestoreStats {
            unmatched,
            ..Default::default()
        });
    }
    std::fs::create_dir_all(target).with_context(|| format!("cannot create target {}", target.display()))?;
    let root =
        Dir::open_target(target).with_context(|| format!("cannot open target {}", target.display()))?;
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
            includes: matched,
            exclude,
            root: &root,
            links: HashMap::new(),
            jobs: tx,
            dirs: Vec::new(),
            symlinks: Vec::new(),
            stats: RestoreStats::default(),
        };
        let res = r.walk(&top.nodes);
        // dropping the sender (inside r) ends the workers once the queue is empty
        let Restorer {
            dirs,
            symlinks,
            stats,
            ..
        } = r;
        res.map(|()| (dirs, symlinks, stats))
    });
    if let Some(e) = shared.error.lock().expect("lock").take() {
        return Err(e);
    }
    let (dirs, symlinks, mut stats) = walked?;
    for (parts, node, rel) in &symlinks {
        let (parent, name) =
            parent_of(&root, parts).with_context(|| format!("refusing to restore {rel:?}"))?;
        let show = parent.show(name);
        let t = node.target_bytes().unwrap_or_default();
        parent.symlink(name, OsStr::from_bytes(&t)).with_context(|| {
            format!(
                "refusing to restore symlink {rel:?}: cannot create {}",
                show.display()
            )
        })?;
        let w = fsmeta::apply(Target::At(&parent, name), &show, node, shared.owners.as_ref())
            .with_context(|| format!("cannot set metadata of {}", show.display()))?;
        stats.warnings.extend(w);
        stats.other += 1;
    }
    for (parts, node) in dirs.iter().rev() {
        let parts: Vec<&OsStr> = parts.iter().map(|p| p.as_os_str()).collect();
        let dir = root.walk(&parts, false)?;
        let w = fsmeta::apply(Target::Fd(dir.as_fd()), dir.path(), node, shared.owners.as_ref())
            .with_context(|| format!("cannot set metadata of {}", dir.path().display()))?;
        stats.warnings.extend(w);
    }
    stats.bytes = shared.bytes.load(Ordering::SeqCst);
    stats.warnings.extend(shared.warnings.into_inner().expect("lock"));
    stats.unmatched = unmatched;
    Ok(stats)
}

/// The directory holding the entry `parts` (reached without following symlinks) and the entry's name.
fn parent_of<'p>(root: &Dir, parts: &'p [OsString]) -> anyhow::Result<(Dir, &'p OsStr)> {
    let (name, dirs) = parts.split_last().context("empty restore path")?;
    let dirs: Vec<&OsStr> = dirs.iter().map(|p| p.as_os_str()).collect();
    Ok((root.walk(&dirs, false)?, name.as_os_str()))
}

impl Restorer<'_, '_> {
    /// Creates the snapshot's source paths under the target, refusing unsafe ones.
    fn walk(&mut self, nodes: &[Node]) -> anyhow::Result<()> {
        for node in nodes {
            let rel = PathBuf::from(&node.name);
            if rel.components().any(|c| !matches!(c, Component::Normal(_))) || node.name.is_empty() {
                bail!(
                    "snapshot has an unsafe source path {:?}; refusing to restore it",
                    node.name
                );
            }
            if !self.wanted(&node.name) || self.excluded(&node.name, node) {
                continue;
            }
            let parts: Parts = rel.iter().map(|c| c.to_os_string()).collect();
            let dirs: Vec<&OsStr> = parts[..parts.len() - 1].iter().map(|p| p.as_os_str()).collect();
            let parent = self
                .root
                .walk(&dirs, true)
                .with_context(|| format!("refusing to restore {:?}", node.name))?;
            self.node(node, &parent, parts, &node.name)
                .with_context(|| format!("refusing to restore {:?}", node.name))?;
        }
        Ok(())
    }

    /// Whether `rel` (a path in the snapshot without its leading `/`) matches a `--exclude` pattern.
    fn excluded(&self, rel: &str, node: &Node) -> bool {
        self.exclude
            .is_some_and(|x| x.matches_path(Path::new(&format!("/{rel}")), node.kind == NodeKind::Dir))
    }

    /// Whether `rel` is included, or lies on the way to an included path.
    fn wanted(&self, rel: &str) -> bool {
        self.includes.is_empty()
            || self
                .includes
                .iter()
                .any(|i| i == rel || rel.starts_with(&format!("{i}/")) || i.starts_with(&format!("{rel}/")))
    }

    /// Creates `node` as the last component of `parts` in `parent`.
    fn node(&mut self, node: &Node, parent: &Dir, parts: Parts, rel: &str) -> anyhow::Result<()> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Ok(()); // a worker failed: its error is reported
        }
        let name = parts.last().context("empty restore path")?.clone();
        let dest = parent.show(&name);
        let show = dest.display();
        match node.kind {
            NodeKind::Dir => {
                // private until its metadata is applied at the end
                let dir = parent
                    .make_dir(&name, 0o700)
                    .with_context(|| format!("cannot create {show}"))?;
                self.stats.dirs += 1;
                let sub = node
                    .subtree
                    .as_deref()
                    .and_then(parse_id)
                    .with_context(|| format!("{rel}: directory without a tree"))?;
                // a split folder is read one part at a time
                let shared = self.shared;
                for child in shared.repo.listing(&sub)? {
                    let child = &child?;
                    let cname = child.name_bytes();
                    if cname.is_empty() || cname.contains(&b'/') || cname == b"." || cname == b".." {
                        bail!("{rel}: unsafe entry name {:?} in the snapshot", child.name);
                    }
                    let crel = format!("{rel}/{}", child.name);
                    if !self.wanted(&crel) || self.excluded(&crel, child) {
                        continue;
                    }
                    let mut cparts = parts.clone();
                    cparts.push(OsStr::from_bytes(&cname).to_os_string());
                    self.node(child, &dir, cparts, &crel)?;
                }
                self.dirs.push((parts, node.clone()));
                Ok(())
            }
            NodeKind::File => {
                if node.nlink > 1 {
                    if let Some(first) = self.links.get(&(node.dev, node.ino)) {
                        let (from, from_name) = parent_of(self.root, first)?;
                        parent.hard_link(&name, &from, from_name).with_context(|| {
                            format!("cannot link {show} to {}", from.show(from_name).display())
                        })?;
                        self.stats.files += 1;
                        return Ok(());
                    }
                    self.links.insert((node.dev, node.ino), parts.clone());
                }
                // never follows a symlink that is already at the destination
                let f = parent
                    .create_file(&name)
                    .with_context(|| format!("cannot create {show}"))?;
                f.set_len(node.size)
                    .with_context(|| format!("cannot size {show}"))?;
                self.stats.files += 1;
                if !node.content.is_empty() {
                    // the worker writes the content, then sets the metadata
                    let job = FileJob {
                        file: f,
                        dest: dest.clone(),
                        rel: rel.to_owned(),
                        node: node.clone(),
                    };
                    self.jobs
                        .send(job)
                        .map_err(|_| anyhow::anyhow!("restore workers stopped early"))?;
                    return Ok(());
                }
                let w = fsmeta::apply(Target::Fd(f.as_fd()), &dest, node, self.shared.owners.as_ref())
                    .with_context(|| format!("cannot set metadata of {show}"))?;
                self.stats.warnings.extend(w);
                Ok(())
            }
            NodeKind::Symlink => {
                self.symlinks.push((parts, node.clone(), rel.to_owned()));
                Ok(())
            }
            _ => {
                let made = fsmeta::special_mode(node).and_then(|mode| parent.mknod(&name, mode, node.rdev));
                if let Err(e) = made {
                    self.stats
                        .warnings
                        .push(format!("{show}: cannot create {:?} node: {e}", node.kind));
                    return Ok(());
                }
                self.stats.other += 1;
                let w = fsmeta::apply(
                    Target::At(parent, &name),
                    &dest,
                    node,
                    self.shared.owners.as_ref(),
                )
                .with_context(|| format!("cannot set metadata of {show}"))?;
                self.stats.warnings.extend(w);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hand-crafted hostile snapshots, written through the repository API: nothing outside the target may
    //! change, and the refusal names the entry.
    use super::*;
    use seedship_shared::repo::{encode_blob, PackWriter, Tree, BLOB_DATA};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    struct Repo {
        repo: Arc<Repository>,
        w: PackWriter,
    }

    impl Repo {
        fn new() -> Repo {
            let repo = crate::backup::tests::test_repo();
            let w = PackWriter::open(repo.clone(), 1 << 16, 100).unwrap();
            Repo { repo, w }
        }

        fn tree(&mut self, nodes: Vec<Node>) -> String {
            let b = self.repo.encode_tree(&Tree::of(nodes)).unwrap();
            self.w.add(&b).unwrap();
            hex::encode(b.id)
        }

        fn data(&mut self, data: &[u8]) -> String {
            let id = self.repo.key().chunk_id(data);
            let b = encode_blob(self.repo.key(), 1, BLOB_DATA, id, data).unwrap();
            self.w.add(&b).unwrap();
            hex::encode(id)
        }

        /// Restores the root tree `nodes` into `target`.
        fn restore(mut self, nodes: Vec<Node>, target: &Path) -> anyhow::Result<RestoreStats> {
            let root = self.tree(nodes);
            self.w.finish().unwrap();
            restore(&self.repo, &root, target, &[], None, false)
        }
    }

    fn node(name: &str, kind: &str, extra: serde_json::Value) -> Node {
        let mut v = serde_json::json!({
            "name": name, "kind": kind, "mode": 0o644, "uid": 0, "gid": 0, "mtime": 1_600_000_000,
            "mtime_nsec": 0, "ctime": 0, "ctime_nsec": 0, "dev": 1, "ino": 1, "nlink": 1, "size": 0,
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn symlink(name: &str, to: &Path) -> Node {
        node(
            name,
            "symlink",
            serde_json::json!({"target": to.to_str().unwrap(), "mode": 0o777}),
        )
    }

    fn file(r: &mut Repo, name: &str, data: &[u8], ino: u64, nlink: u64) -> Node {
        let id = r.data(data);
        node(
            name,
            "file",
            serde_json::json!({"size": data.len(), "ino": ino, "nlink": nlink,
                "content": [{"off": 0, "len": data.len(), "id": id}]}),
        )
    }

    /// A target and an `outside` folder beside it that must stay empty.
    fn folders() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let (target, outside) = (d.path().join("target"), d.path().join("outside"));
        std::fs::create_dir(&outside).unwrap();
        (d, target, outside)
    }

    fn assert_untouched(outside: &Path) {
        let left: Vec<_> = std::fs::read_dir(outside)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "restore wrote outside its target: {left:?}");
    }

    #[test]
    fn a_symlink_entry_is_never_written_through() {
        let (_d, target, outside) = folders();
        let mut r = Repo::new();
        let evil = file(&mut r, "x/cron.d/evil", b"* * * * * root sh\n", 2, 1);
        let err = r
            .restore(vec![symlink("x", &outside), evil], &target)
            .unwrap_err();
        assert_untouched(&outside);
        let msg = format!("{err:#}");
        assert!(msg.contains("\"x\"") || msg.contains("target/x"), "{msg}");
    }

    #[test]
    fn a_symlink_inside_a_directory_is_never_written_through() {
        let (_d, target, outside) = folders();
        let mut r = Repo::new();
        let evil = file(&mut r, "evil", b"owned", 2, 1);
        let inner = r.tree(vec![evil]);
        let dir = node("l", "dir", serde_json::json!({"subtree": inner, "mode": 0o755}));
        let sub = r.tree(vec![symlink("l", &outside), dir]);
        let top = node("d", "dir", serde_json::json!({"subtree": sub, "mode": 0o755}));
        let err = r.restore(vec![top], &target).unwrap_err();
        assert_untouched(&outside);
        assert!(format!("{err:#}").contains("d/l"), "{err:#}");
    }

    #[test]
    fn a_hard_link_through_a_symlink_is_refused() {
        let (_d, target, outside) = folders();
        let mut r = Repo::new();
        let first = file(&mut r, "a", b"linked", 7, 2);
        let second = file(&mut r, "x/b", b"linked", 7, 2);
        let err = r
            .restore(vec![first, symlink("x", &outside), second], &target)
            .unwrap_err();
        assert_untouched(&outside);
        assert!(format!("{err:#}").contains("\"x"), "{err:#}");
    }

    #[test]
    fn a_symlink_already_in_the_target_is_not_followed() {
        let (_d, target, outside) = folders();
        std::fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&outside, target.join("x")).unwrap();
        let mut r = Repo::new();
        let evil = file(&mut r, "x/y/evil", b"owned", 2, 1);
        let err = r.restore(vec![evil], &target).unwrap_err();
        assert_untouched(&outside);
        let msg = format!("{err:#}");
        assert!(msg.contains("x/y/evil") && msg.contains("symlink"), "{msg}");
    }

    #[test]
    fn ordinary_trees_restore_with_links_symlinks_and_read_only_folders() {
        let (_d, target, _outside) = folders();
        let mut r = Repo::new();
        let a = file(&mut r, "a", b"hello", 9, 2);
        let b = file(&mut r, "b", b"hello", 9, 2);
        let link = node("l", "symlink", serde_json::json!({"target": "a", "mode": 0o777}));
        let sub = r.tree(vec![a, b, link]);
        let ro = node(
            "etc/ro",
            "dir",
            serde_json::json!({"subtree": sub, "mode": 0o555}),
        );
        let st = r.restore(vec![ro], &target).unwrap();
        let ro = target.join("etc/ro");
        assert_eq!(std::fs::read(ro.join("l")).unwrap(), b"hello");
        assert_eq!(std::fs::read_link(ro.join("l")).unwrap(), Path::new("a"));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(ro.join("a")).unwrap().ino(),
            std::fs::metadata(ro.join("b")).unwrap().ino()
        );
        let m = std::fs::metadata(&ro).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o555);
        assert_eq!(
            m.mtime(),
            1_600_000_000,
            "the folder's time is set after its symlink is made"
        );
        assert_eq!((st.files, st.dirs, st.other), (2, 1, 1));
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
