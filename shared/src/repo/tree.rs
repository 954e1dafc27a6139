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
    /// The name as bytes.
    pub fn name_bytes(&self) -> Vec<u8> {
        match self.name_raw.as_deref().and_then(|h| hex::decode(h).ok()) {
            Some(b) => b,
            None => self.name.as_bytes().to_vec(),
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

/// A directory listing, sorted by name bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}
