//! Trees: one JSON document per directory listing its entries with their metadata; stored as blobs.

use serde::{Deserialize, Serialize};

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Char,
    Block,
    Socket,
}

/// One chunk of a file at its offset; gaps between chunks are holes (zeros).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub off: u64,
    pub len: u64,
    /// Chunk id, hex.
    pub id: String,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The name; when it is not valid UTF-8 this is a lossy form and `name_raw` holds the bytes (hex).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_raw: Option<String>,
    pub kind: NodeKind,
    /// Permission bits including set-uid, set-gid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub ctime: i64,
    pub ctime_nsec: u32,
    /// Device and inode at backup time: change detection and hard links (equal pairs with `nlink > 1` are
    /// one file).
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub size: u64,
    /// Device number of char and block devices.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    /// Symlink target (lossy UTF-8) and its raw bytes (hex) when not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_raw: Option<String>,
    /// Extended attributes: name and value (hex).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<(String, String)>,
    /// File content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<ChunkRef>,
    /// Tree id (hex) of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Node {
    /// A node named `name` of `kind`, with no owner names, content or subtree, one link, and every other
    /// field zero (its maker fills in what it knows).
    pub fn new(name: &str, kind: NodeKind) -> Node {
        Node {
            name: name.into(),
            name_raw: None,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: 0,
            mtime_nsec: 0,
            ctime: 0,
            ctime_nsec: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
            size: 0,
            rdev: 0,
            target: None,
            target_raw: None,
            xattrs: vec![],
            content: vec![],
            subtree: None,
        }
    }

    /// The name as bytes.
    pub fn name_bytes(&self) -> Vec<u8> {
        self.name_cow().into_owned()
    }

    /// The name as bytes, borrowed when it is valid UTF-8 (no allocation for the usual name).
    pub fn name_cow(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.name_raw.as_deref().and_then(|h| hex::decode(h).ok()) {
            Some(b) => std::borrow::Cow::Owned(b),
            None => std::borrow::Cow::Borrowed(self.name.as_bytes()),
        }
    }

    /// The symlink target as bytes.
    pub fn target_bytes(&self) -> Option<Vec<u8>> {
        match self.target_raw.as_deref().and_then(|h| hex::decode(h).ok()) {
            Some(b) => Some(b),
            None => self.target.as_ref().map(|t| t.as_bytes().to_vec()),
        }
    }
}

/// The digest of what a backup's walk builds `nodes` from: every field of each node but a file's content
/// and extended attributes (read with its content) and a folder's subtree. Two node lists with the same
/// digest are equal apart from those, in the same order. A walk whose fresh nodes of a folder have the
/// digest recorded for the folder's tree in the parent snapshot keeps that tree without reading it (see
/// [`WalkRecord`](crate::repo::WalkRecord)).
pub fn walk_digest(nodes: &[Node]) -> [u8; 32] {
    // the fields go into one buffer hashed at once: many small updates cost more than the hash itself
    let mut b = Vec::with_capacity(nodes.len() * 128 + 8);
    let text = |b: &mut Vec<u8>, s: &str| {
        b.extend_from_slice(&(s.len() as u64).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
    };
    let opt = |b: &mut Vec<u8>, s: &Option<String>| match s {
        None => b.push(0),
        Some(s) => {
            b.push(1);
            text(b, s);
        }
    };
    b.extend_from_slice(&(nodes.len() as u64).to_le_bytes());
    for n in nodes {
        // every field named: a field added to Node must be placed here (or left out on purpose)
        let Node {
            name,
            name_raw,
            kind,
            mode,
            uid,
            gid,
            user,
            group,
            mtime,
            mtime_nsec,
            ctime,
            ctime_nsec,
            dev,
            ino,
            nlink,
            size,
            rdev,
            target,
            target_raw,
            xattrs,
            content: _,
            subtree: _,
        } = n;
        text(&mut b, name);
        opt(&mut b, name_raw);
        b.push(*kind as u8);
        for v in [*mode, *uid, *gid, *mtime_nsec, *ctime_nsec] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for v in [*mtime, *ctime] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for v in [*dev, *ino, *nlink, *size, *rdev] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for s in [user, group, target, target_raw] {
            opt(&mut b, s);
        }
        if *kind == NodeKind::File {
            // a file's attributes are read with its content
            continue;
        }
        b.extend_from_slice(&(xattrs.len() as u64).to_le_bytes());
        for (k, v) in xattrs {
            text(&mut b, k);
            text(&mut b, v);
        }
    }
    *blake3::Hasher::new_derive_key("seedship 2026 walk digest v1")
        .update(&b)
        .finalize()
        .as_bytes()
}

/// The digest of a run of names (as bytes), in order: a walk record's check that a part of a split folder
/// holds the same names as its parent's part, made before the part is `lstat`ed.
pub fn names_digest<N: AsRef<[u8]>>(names: impl IntoIterator<Item = N>) -> [u8; 32] {
    let mut b = Vec::new();
    for n in names {
        let n = n.as_ref();
        b.extend_from_slice(&(n.len() as u64).to_le_bytes());
        b.extend_from_slice(n);
    }
    *blake3::Hasher::new_derive_key("seedship 2026 walk names v1")
        .update(&b)
        .finalize()
        .as_bytes()
}

/// A directory listing, sorted by name bytes.
///
/// A folder of more entries than [`SplitRule::above`] is stored split: its tree holds no nodes but `parts`,
/// the ids of trees that each hold a run of its nodes, in order (a part holds nodes, never parts). It is
/// written as `{"parts":[...]}` without `nodes`, so that an agent from before split folders fails on it
/// ("missing field `nodes`") instead of reading an empty folder; snapshots holding one are version 2.
/// [`Repository::load_tree`](crate::repo::Repository::load_tree) joins the parts; a tree has either nodes
/// or parts, never both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Tree {
    #[serde(default)]
    pub nodes: Vec<Node>,
    /// Ids (hex) of the parts of a split folder.
    #[serde(default)]
    pub parts: Vec<String>,
}

impl Tree {
    /// A tree of `nodes` (not split).
    pub fn of(nodes: Vec<Node>) -> Tree {
        Tree { nodes, parts: vec![] }
    }
}

impl Serialize for Tree {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut m = s.serialize_struct("Tree", 1)?;
        if self.parts.is_empty() {
            m.serialize_field("nodes", &self.nodes)?;
        } else {
            m.serialize_field("parts", &self.parts)?;
        }
        m.end()
    }
}

/// When a folder's tree is split into parts, and where its parts end. Whether a part ends after a node
/// depends on the node's name alone (and on how many nodes the part holds), so a folder in which a few
/// entries changed keeps the ids of its other parts from one backup to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitRule {
    /// Folders of more entries than this are split.
    pub above: usize,
    /// A part ends after a node whose name's keyed hash has its low `bits` bits zero (parts of about
    /// 2^bits nodes)...
    pub bits: u32,
    /// ...or when it holds this many nodes.
    pub max: usize,
}

impl Default for SplitRule {
    /// Folders of up to 16,384 entries are one tree, as before split folders existed; larger ones are split
    /// into parts of about 4,096 nodes (about 1 MiB of JSON), at most 16,384.
    fn default() -> Self {
        SplitRule {
            above: 16_384,
            bits: 12,
            max: 16_384,
        }
    }
}

impl SplitRule {
    /// Whether a part that holds `len` nodes ends after a node whose name has keyed hash `hash`.
    pub fn ends_part(&self, hash: &[u8; 32], len: usize) -> bool {
        let low = u32::from_le_bytes([hash[0], hash[1], hash[2], hash[3]]);
        len >= self.max || low & ((1u32 << self.bits.min(31)) - 1) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_digest_covers_every_field_a_walk_reads_and_no_other() {
        let mut file = Node::new("f", NodeKind::File);
        file.size = 3;
        let mut dir = Node::new("d", NodeKind::Dir);
        dir.xattrs = vec![("user.a".into(), "01".into())];
        let base = vec![file.clone(), dir.clone()];
        let d0 = walk_digest(&base);
        assert_eq!(walk_digest(&base), d0);
        // what a walk does not read: a file's content and attributes, a folder's subtree
        let mut same = base.clone();
        same[0].content = vec![ChunkRef {
            off: 0,
            len: 3,
            id: "00".repeat(32),
        }];
        same[0].xattrs = vec![("user.x".into(), "02".into())];
        same[1].subtree = Some("11".repeat(32));
        assert_eq!(walk_digest(&same), d0);
        // every other field, and the order
        let changes: Vec<fn(&mut Vec<Node>)> = vec![
            |n| n[0].name = "g".into(),
            |n| n[0].name_raw = Some("ff".into()),
            |n| n[0].kind = NodeKind::Symlink,
            |n| n[0].mode = 0o600,
            |n| n[0].uid = 1,
            |n| n[0].gid = 1,
            |n| n[0].user = Some("u".into()),
            |n| n[0].group = Some("g".into()),
            |n| n[0].mtime = 1,
            |n| n[0].mtime_nsec = 1,
            |n| n[0].ctime = 1,
            |n| n[0].ctime_nsec = 1,
            |n| n[0].dev = 1,
            |n| n[0].ino = 1,
            |n| n[0].nlink = 2,
            |n| n[0].size = 4,
            |n| n[0].rdev = 1,
            |n| n[0].target = Some("t".into()),
            |n| n[0].target_raw = Some("74".into()),
            |n| n[1].xattrs.clear(),
            |n| n.swap(0, 1),
            |n| {
                n.pop();
            },
            // a name's bytes moved into the next field are not the same nodes
            |n| {
                n[0].name = "".into();
                n[0].user = Some("f".into());
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut n = base.clone();
            change(&mut n);
            assert_ne!(walk_digest(&n), d0, "change {i}");
        }
    }
}
