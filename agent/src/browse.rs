//! Browsing snapshots without restoring them: `ls`, `find`, `diff` and `dump`.
//!
//! Paths are as in the snapshot: absolute, the root tree holding one node per source named by the source's
//! path (`/srv/data/projects/a.txt`). Trees are read through the local metadata cache, so browsing a vault
//! reads only what the cache lacks. `diff` skips subtrees whose ids are equal (unchanged folders cost
//! nothing). `dump` writes a file's bytes to stdout, or a folder as a pax tar stream of its regular files.

use crate::exclude::Exclusions;
use crate::{Config, Exit};
use anyhow::{bail, Context};
use seedship_shared::repo::{parse_id, Node, NodeKind, Repository, Tree};
use seedship_shared::tar::{EntryHeader, TarWriter};
use std::io::Write;

/// `ls`.
#[derive(Debug, clap::Args)]
pub struct LsCmd {
    /// Snapshot id, unique prefix, or "latest".
    pub snapshot: String,
    /// Only this path and what lies below it (as in the snapshot, e.g. /srv/data/projects).
    pub path: Option<String>,
    /// Show type and permissions, owner, size and modification time.
    #[arg(short, long)]
    pub long: bool,
    /// One JSON object a line.
    #[arg(long)]
    pub json: bool,
}

/// `find`.
#[derive(Debug, clap::Args)]
pub struct FindCmd {
    /// Glob patterns as for --exclude (`*.pdf`, `/srv/*/report-*`); an entry matching any is listed.
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Only in this snapshot (id, prefix or "latest"; repeatable; default all).
    #[arg(long = "snapshot", value_name = "ID")]
    pub snapshots: Vec<String>,
    /// One JSON object a line.
    #[arg(long)]
    pub json: bool,
}

/// `diff`.
#[derive(Debug, clap::Args)]
pub struct DiffCmd {
    /// The older snapshot.
    pub from: String,
    /// The newer snapshot.
    pub to: String,
    /// Print the changes and the totals as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `dump`.
#[derive(Debug, clap::Args)]
pub struct DumpCmd {
    /// Snapshot id, unique prefix, or "latest".
    pub snapshot: String,
    /// A file (written to stdout as it is) or a folder (written as a tar stream of its regular files).
    pub path: String,
}

fn load(repo: &Repository, id: &str, what: &str) -> anyhow::Result<Tree> {
    let id = parse_id(id).with_context(|| format!("{what}: invalid tree id"))?;
    Ok(repo.load_tree(&id)?)
}

/// Calls `f` for every node at or below `nodes` (depth first, in name order) with its path.
fn walk(
    repo: &Repository,
    nodes: &[Node],
    prefix: &str,
    f: &mut dyn FnMut(&str, &Node) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for n in nodes {
        let path = format!("{prefix}/{}", n.name);
        f(&path, n)?;
        if let (NodeKind::Dir, Some(sub)) = (n.kind, &n.subtree) {
            let t = load(repo, sub, &path)?;
            walk(repo, &t.nodes, &path, f)?;
        }
    }
    Ok(())
}

/// The node at `path` in a snapshot's root tree, with its normalised path; `None` for the root itself.
fn resolve(repo: &Repository, root: &Tree, path: &str) -> anyhow::Result<Option<(String, Node)>> {
    let want = format!("/{}", path.trim_matches('/'));
    if want == "/" {
        return Ok(None);
    }
    for n in &root.nodes {
        let top = format!("/{}", n.name);
        if want == top {
            return Ok(Some((top, n.clone())));
        }
        let Some(rest) = want.strip_prefix(&format!("{top}/")) else {
            continue;
        };
        let mut node = n.clone();
        for part in rest.split('/') {
            let Some(sub) = node.subtree.as_deref().filter(|_| node.kind == NodeKind::Dir) else {
                bail!("{want}: {} is not a folder in the snapshot", node.name);
            };
            let t = load(repo, sub, &want)?;
            node = t
                .nodes
                .into_iter()
                .find(|c| c.name == part)
                .with_context(|| format!("{want}: no such path in the snapshot"))?;
        }
        return Ok(Some((want, node)));
    }
    bail!(
        "{want}: no such path in the snapshot (its sources are {})",
        root.nodes
            .iter()
            .map(|n| format!("/{}", n.name))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn kind_char(k: NodeKind) -> char {
    match k {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::Char => 'c',
        NodeKind::Block => 'b',
        NodeKind::Socket => 's',
    }
}

fn kind_name(k: NodeKind) -> &'static str {
    match k {
        NodeKind::File => "file",
        NodeKind::Dir => "dir",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::Char => "char",
        NodeKind::Block => "block",
        NodeKind::Socket => "socket",
    }
}

fn perms(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (0o400 >> i) != 0 { c } else { '-' });
    }
    s
}

fn node_json(path: &str, n: &Node) -> serde_json::Value {
    serde_json::json!({
        "path": path,
        "type": kind_name(n.kind),
        "size": n.size,
        "mode": n.mode & 0o7777,
        "uid": n.uid,
        "gid": n.gid,
        "mtime": n.mtime,
        "target": n.target,
    })
}

fn long_line(path: &str, n: &Node) -> String {
    let who = |name: &Option<String>, id: u32| name.clone().unwrap_or_else(|| id.to_string());
    format!(
        "{}{} {:>8} {:>8} {:>12} {} {}{}",
        kind_char(n.kind),
        perms(n.mode),
        who(&n.user, n.uid),
        who(&n.group, n.gid),
        n.size,
        seedship_shared::time::UtcTime::from_unix(n.mtime).readable(),
        path,
        n.target
            .as_deref()
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default()
    )
}

/// `ls`.
pub fn ls(cfg: &Config, c: &LsCmd) -> anyhow::Result<Exit> {
    let pol = crate::policy::Policy::load(&cfg.state_dir)?;
    let repo = crate::pipeline::open_repo(cfg, &pol, true)?;
    let (_, snap) = repo.find_snapshot(&c.snapshot)?;
    let root = load(&repo, &snap.tree, "snapshot root")?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut print = |path: &str, n: &Node| -> anyhow::Result<()> {
        if c.json {
            writeln!(out, "{}", node_json(path, n))?;
        } else if c.long {
            writeln!(out, "{}", long_line(path, n))?;
        } else {
            writeln!(out, "{path}")?;
        }
        Ok(())
    };
    match c
        .path
        .as_deref()
        .map(|p| resolve(&repo, &root, p))
        .transpose()?
        .flatten()
    {
        None => walk(&repo, &root.nodes, "", &mut print)?,
        Some((path, node)) => {
            let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            walk(&repo, std::slice::from_ref(&node), parent, &mut print)?;
        }
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// `find`.
pub fn find(cfg: &Config, c: &FindCmd) -> anyhow::Result<Exit> {
    let pol = crate::policy::Policy::load(&cfg.state_dir)?;
    let repo = crate::pipeline::open_repo(cfg, &pol, true)?;
    let matcher = Exclusions {
        patterns: c.patterns.clone(),
        ..Default::default()
    }
    .compile(&[])
    .context("find: invalid pattern")?;
    let snaps = if c.snapshots.is_empty() {
        repo.snapshots()?
    } else {
        c.snapshots
            .iter()
            .map(|s| repo.find_snapshot(s))
            .collect::<Result<Vec<_>, _>>()?
    };
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut found = 0u64;
    for (id, snap) in &snaps {
        let root = load(&repo, &snap.tree, "snapshot root")?;
        let mut header = false;
        walk(&repo, &root.nodes, "", &mut |path, n| {
            if !matcher.matches_path(std::path::Path::new(path), n.kind == NodeKind::Dir) {
                return Ok(());
            }
            found += 1;
            if c.json {
                let mut v = node_json(path, n);
                v["snapshot"] = serde_json::Value::from(id.as_str());
                writeln!(out, "{v}")?;
            } else {
                if !header {
                    writeln!(
                        out,
                        "snapshot {} of {}:",
                        &id[..16],
                        seedship_shared::time::UtcTime::from_unix(snap.time.max(0)).readable()
                    )?;
                    header = true;
                }
                writeln!(out, "  {}", long_line(path, n))?;
            }
            Ok(())
        })?;
    }
    out.flush()?;
    if !c.json {
        eprintln!("{found} match(es) in {} snapshot(s)", snaps.len());
    }
    Ok(Exit::Success)
}

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// `added`, `removed`, `changed` (content, type or link target) or `metadata` (mode, owner, times).
    pub change: &'static str,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The size in the newer snapshot (for `removed`: in the older).
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_size: Option<u64>,
}

/// Totals of a diff.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiffStats {
    pub added: u64,
    pub added_bytes: u64,
    pub removed: u64,
    pub removed_bytes: u64,
    pub changed: u64,
    pub changed_bytes_before: u64,
    pub changed_bytes_after: u64,
    pub metadata: u64,
}

/// The differences between two lists of nodes under `prefix` (subtrees with equal ids are skipped).
pub fn diff_nodes(
    repo: &Repository,
    a: &[Node],
    b: &[Node],
    prefix: &str,
    out: &mut dyn FnMut(Change) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // every entry at or below `n`, as added or removed
    let all =
        |change: &'static str, n: &Node, path: &str, out: &mut dyn FnMut(Change) -> anyhow::Result<()>| {
            let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            walk(repo, std::slice::from_ref(n), parent, &mut |p, n| {
                out(Change {
                    change,
                    path: p.to_string(),
                    kind: kind_name(n.kind),
                    size: if n.kind == NodeKind::File { n.size } else { 0 },
                    old_size: None,
                })
            })
        };
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let order = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.name_bytes().cmp(&y.name_bytes()),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                let path = format!("{prefix}/{}", a[i].name);
                all("removed", &a[i], &path, out)?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let path = format!("{prefix}/{}", b[j].name);
                all("added", &b[j], &path, out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (&a[i], &b[j]);
                let path = format!("{prefix}/{}", y.name);
                if x.kind != y.kind {
                    all("removed", x, &path, out)?;
                    all("added", y, &path, out)?;
                } else if x.kind == NodeKind::Dir {
                    if x.subtree != y.subtree {
                        let ta = x.subtree.as_deref().map(|s| load(repo, s, &path)).transpose()?;
                        let tb = y.subtree.as_deref().map(|s| load(repo, s, &path)).transpose()?;
                        let (na, nb) = (
                            ta.map(|t| t.nodes).unwrap_or_default(),
                            tb.map(|t| t.nodes).unwrap_or_default(),
                        );
                        diff_nodes(repo, &na, &nb, &path, out)?;
                    }
                } else {
                    let content = x.size != y.size
                        || x.target != y.target
                        || x.rdev != y.rdev
                        || x.content
                            .iter()
                            .map(|c| (&c.id, c.off))
                            .ne(y.content.iter().map(|c| (&c.id, c.off)));
                    let meta = (x.mode, x.uid, x.gid, x.mtime, x.mtime_nsec, &x.xattrs)
                        != (y.mode, y.uid, y.gid, y.mtime, y.mtime_nsec, &y.xattrs);
                    if content || meta {
                        out(Change {
                            change: if content { "changed" } else { "metadata" },
                            path,
                            kind: kind_name(y.kind),
                            size: y.size,
                            old_size: content.then_some(x.size),
                        })?;
                    }
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

impl DiffStats {
    fn count(&mut self, c: &Change) {
        match c.change {
            "added" => {
                self.added += 1;
                self.added_bytes += c.size;
            }
            "removed" => {
                self.removed += 1;
                self.removed_bytes += c.size;
            }
            "changed" => {
                self.changed += 1;
                self.changed_bytes_before += c.old_size.unwrap_or(0);
                self.changed_bytes_after += c.size;
            }
            _ => self.metadata += 1,
        }
    }
}

/// `diff`.
pub fn diff(cfg: &Config, c: &DiffCmd) -> anyhow::Result<Exit> {
    let pol = crate::policy::Policy::load(&cfg.state_dir)?;
    let repo = crate::pipeline::open_repo(cfg, &pol, true)?;
    let (ia, sa) = repo.find_snapshot(&c.from)?;
    let (ib, sb) = repo.find_snapshot(&c.to)?;
    let (ta, tb) = (
        load(&repo, &sa.tree, "snapshot root")?,
        load(&repo, &sb.tree, "snapshot root")?,
    );
    let mut stats = DiffStats::default();
    let mut changes = vec![];
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    if !c.json {
        writeln!(
            out,
            "comparing snapshot {} with snapshot {}",
            &ia[..16],
            &ib[..16]
        )?;
    }
    diff_nodes(&repo, &ta.nodes, &tb.nodes, "", &mut |ch| {
        stats.count(&ch);
        if c.json {
            changes.push(ch);
        } else {
            let (mark, size) = match (ch.change, ch.old_size) {
                ("added", _) => ("+", format!("{}", ch.size)),
                ("removed", _) => ("-", format!("{}", ch.size)),
                ("changed", Some(o)) => ("M", format!("{o} -> {}", ch.size)),
                _ => ("U", String::new()),
            };
            let slash = if ch.kind == "dir" { "/" } else { "" };
            if size.is_empty() || ch.kind != "file" {
                writeln!(out, "{mark}  {}{slash}", ch.path)?;
            } else {
                writeln!(out, "{mark}  {}  ({size} bytes)", ch.path)?;
            }
        }
        Ok(())
    })?;
    if c.json {
        let v = serde_json::json!({"from": ia, "to": ib, "changes": changes, "summary": stats});
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        writeln!(
            out,
            "added: {} entries, {} bytes; removed: {} entries, {} bytes; changed: {} files, {} -> {} bytes; metadata only: {}",
            stats.added,
            stats.added_bytes,
            stats.removed,
            stats.removed_bytes,
            stats.changed,
            stats.changed_bytes_before,
            stats.changed_bytes_after,
            stats.metadata
        )?;
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// Writes a file node's content (holes as zeros) to `w`.
fn write_content(repo: &Repository, path: &str, n: &Node, w: &mut dyn Write) -> anyhow::Result<()> {
    let zeros = [0u8; 64 << 10];
    let mut pos = 0u64;
    let fill = |w: &mut dyn Write, to: u64, pos: &mut u64| -> std::io::Result<()> {
        while *pos < to {
            let k = (to - *pos).min(zeros.len() as u64) as usize;
            w.write_all(&zeros[..k])?;
            *pos += k as u64;
        }
        Ok(())
    };
    for c in &n.content {
        fill(w, c.off, &mut pos)?;
        let id = parse_id(&c.id).with_context(|| format!("{path}: invalid chunk id"))?;
        let data = repo
            .read_blob(&id)
            .with_context(|| format!("{path}: cannot read its data"))?;
        if data.len() as u64 != c.len {
            bail!(
                "{path}: a chunk holds {} bytes, the tree says {}",
                data.len(),
                c.len
            );
        }
        w.write_all(&data)?;
        pos += c.len;
    }
    fill(w, n.size, &mut pos)?;
    Ok(())
}

/// `dump`.
pub fn dump(cfg: &Config, c: &DumpCmd) -> anyhow::Result<Exit> {
    let pol = crate::policy::Policy::load(&cfg.state_dir)?;
    let repo = crate::pipeline::open_repo(cfg, &pol, true)?;
    let (_, snap) = repo.find_snapshot(&c.snapshot)?;
    let root = load(&repo, &snap.tree, "snapshot root")?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out.lock());
    let resolved = resolve(&repo, &root, &c.path)?;
    let (base, nodes) = match &resolved {
        Some((path, n)) if n.kind == NodeKind::File => {
            write_content(&repo, path, n, &mut out)?;
            out.flush()?;
            return Ok(Exit::Success);
        }
        Some((path, n)) if n.kind == NodeKind::Dir => {
            let sub = n
                .subtree
                .as_deref()
                .with_context(|| format!("{path}: folder without a tree"))?;
            (path.clone(), load(&repo, sub, path)?.nodes)
        }
        Some((path, n)) => bail!("{path} is a {}: dump writes files and folders", kind_name(n.kind)),
        None => (String::new(), root.nodes.clone()),
    };
    let mut tar = TarWriter::new(&mut out);
    let mut skipped = 0u64;
    walk(&repo, &nodes, &base, &mut |path, n| {
        if n.kind != NodeKind::File {
            skipped += u64::from(n.kind != NodeKind::Dir);
            return Ok(());
        }
        let rel = path[base.len()..].trim_start_matches('/');
        let mut h = EntryHeader::file(rel, n.size, n.mtime);
        h.mode = n.mode & 0o7777;
        let mut e = tar.begin_entry(&h)?;
        write_content(&repo, path, n, &mut e)?;
        e.finish()?;
        Ok(())
    })?;
    tar.finish()?;
    out.flush()?;
    if skipped > 0 {
        eprintln!("note: {skipped} symlink(s) and special file(s) are not in the tar stream (it holds regular files)");
    }
    Ok(Exit::Success)
}
