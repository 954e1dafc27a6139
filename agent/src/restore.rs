//! Restore: recreates a snapshot's files under a target folder, with holes, hard links, symlinks, special
//! files, owners (as root), modes, extended attributes and modification times. Every chunk is verified
//! against its id as it is read; damage stops the restore with the object named.

use crate::fsmeta;
use anyhow::{bail, Context};
use seedship_shared::repo::{parse_id, Node, NodeKind, Repository};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Counters of one restore.
#[derive(Debug, Default)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    pub bytes: u64,
    pub warnings: Vec<String>,
}

struct Restorer<'a> {
    repo: &'a Repository,
    includes: Vec<String>,
    links: HashMap<(u64, u64), PathBuf>,
    owners: Option<fsmeta::Owners>,
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
    let mut r = Restorer {
        repo,
        includes: includes.iter().map(|s| s.trim_matches('/').to_string()).collect(),
        links: HashMap::new(),
        owners: fsmeta::is_root().then(|| fsmeta::Owners::new(numeric_owner)),
        stats: RestoreStats::default(),
    };
    for node in &root.nodes {
        let rel = PathBuf::from(&node.name);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) || node.name.is_empty() {
            bail!(
                "snapshot has an unsafe source path {:?}; refusing to restore it",
                node.name
            );
        }
        if !r.wanted(&node.name) {
            continue;
        }
        let dest = target.join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        r.node(node, &dest, &node.name)?;
    }
    Ok(r.stats)
}

impl Restorer<'_> {
    /// Whether `rel` is included, or lies on the way to an included path.
    fn wanted(&self, rel: &str) -> bool {
        self.includes.is_empty()
            || self
                .includes
                .iter()
                .any(|i| i == rel || rel.starts_with(&format!("{i}/")) || i.starts_with(&format!("{rel}/")))
    }

    fn node(&mut self, node: &Node, dest: &Path, rel: &str) -> anyhow::Result<()> {
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
                let tree = self.repo.load_tree(&sub)?;
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
                for c in &node.content {
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
                    f.write_all_at(&data, c.off)
                        .with_context(|| format!("cannot write {show}"))?;
                    self.stats.bytes += data.len() as u64;
                }
                self.stats.files += 1;
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
        let w = fsmeta::apply(dest, node, self.owners.as_ref())
            .with_context(|| format!("cannot set metadata of {show}"))?;
        self.stats.warnings.extend(w);
        Ok(())
    }
}
