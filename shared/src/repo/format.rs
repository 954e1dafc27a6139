//! The serialized forms of config, key files, index objects and snapshots.

use super::{ChunkId, RepoError};
use crate::chunker::ChunkerParams;
use crate::crypto::KdfParams;
use serde::{Deserialize, Serialize};

/// Blob kind: file content.
pub const BLOB_DATA: u8 = 0;
/// Blob kind: a serialized tree.
pub const BLOB_TREE: u8 = 1;
/// The first 8 bytes of a volume.
pub const VOLUME_MAGIC: &[u8; 8] = b"SEEDVOL1";
/// Packs start after this header.
pub const VOLUME_HEADER_LEN: u64 = 512;

const INDEX_MAGIC: &[u8; 8] = b"SEEDIDX1";
const ENTRY_LEN: usize = 32 + 1 + 4 + 8 + 4 + 4;

/// The `config` object (plain JSON inside a frame; holds no secret). Version 2 carries `mac`, a keyed BLAKE3
/// of the rest under a key derived from the master key, so that nobody without the passphrase can change the
/// chunker, volume size or cipher a writer uses; version 1 (no `mac`) is still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub version: u32,
    /// Repository id, 32 hex digits.
    pub id: String,
    pub chunker: ChunkerParams,
    /// Volumes are closed when they would grow past this many bytes.
    pub volume_size: u64,
    /// zstd level for new blobs.
    pub compression_level: i32,
    /// "aes-256-gcm".
    pub cipher: String,
    /// "blake3-keyed".
    pub chunk_id: String,
    /// Version 2: hex keyed BLAKE3 of this object serialised without `mac`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The config version [`Config::seal`] writes.
pub const CONFIG_VERSION: u32 = 2;

impl Config {
    /// The bytes the MAC covers: the config as JSON without its `mac`.
    fn mac_input(&self) -> Vec<u8> {
        let bare = Config {
            mac: None,
            ..self.clone()
        };
        serde_json::to_vec(&bare).expect("serializable")
    }

    fn mac_of(&self, key: &crate::crypto::MasterKey) -> String {
        hex::encode(
            blake3::keyed_hash(
                &key.derive("seedship 2026 repository config mac"),
                &self.mac_input(),
            )
            .as_bytes(),
        )
    }

    /// Makes this a version-2 config authenticated under `key`.
    pub fn seal(&mut self, key: &crate::crypto::MasterKey) {
        self.version = CONFIG_VERSION;
        self.mac = Some(self.mac_of(key));
    }

    /// Whether a version-2 config's MAC matches under `key` (a version-1 config has none to check).
    pub fn authentic(&self, key: &crate::crypto::MasterKey) -> bool {
        match (self.version, &self.mac) {
            (1, None) => true,
            (2, Some(mac)) => {
                let want = self.mac_of(key);
                // no early exit: the time says nothing about how much of the MAC matched
                mac.len() == want.len()
                    && mac.bytes().zip(want.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
            }
            _ => false,
        }
    }
}

/// A `keys/<id>` object: the master key wrapped by Argon2id(passphrase) and AES-256-GCM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    /// "argon2id".
    pub kdf: String,
    pub params: KdfParams,
    /// Salt, hex.
    pub salt: String,
    /// Envelope (nonce, ciphertext, tag) of the 64-byte master key, hex.
    pub wrapped: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
    /// Host that created the key.
    pub host: String,
}

/// Where one blob lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub id: ChunkId,
    /// [`BLOB_DATA`] or [`BLOB_TREE`].
    pub kind: u8,
    pub volume: u32,
    /// Byte offset of the envelope in the volume.
    pub offset: u64,
    /// Envelope length.
    pub len: u32,
    /// Plaintext (uncompressed) length.
    pub raw_len: u32,
}

/// Encodes an index object body: magic, volume ends, entries (see the format document).
pub fn encode_index(volume_ends: &[(u32, u64)], entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + volume_ends.len() * 12 + entries.len() * ENTRY_LEN);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&(volume_ends.len() as u32).to_le_bytes());
    for (v, end) in volume_ends {
        out.extend_from_slice(&v.to_le_bytes());
        out.extend_from_slice(&end.to_le_bytes());
    }
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.id);
        out.push(e.kind);
        out.extend_from_slice(&e.volume.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
        out.extend_from_slice(&e.raw_len.to_le_bytes());
    }
    out
}

type DecodedIndex = (Vec<(u32, u64)>, Vec<IndexEntry>);

/// Decodes an index object body; never allocates more than the input justifies.
pub fn decode_index(object: &str, b: &[u8]) -> Result<DecodedIndex, RepoError> {
    let bad = |d: &str| RepoError::damaged(object, d.to_string());
    if b.len() < 12 || &b[..8] != INDEX_MAGIC {
        return Err(bad("not an index body (magic)"));
    }
    let mut pos = 8;
    let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().expect("4"));
    let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().expect("8"));
    let nvol = u32_at(pos) as usize;
    pos += 4;
    if nvol > (b.len() - pos) / 12 {
        return Err(bad("volume count exceeds the body"));
    }
    let mut ends = Vec::with_capacity(nvol);
    for _ in 0..nvol {
        ends.push((u32_at(pos), u64_at(pos + 4)));
        pos += 12;
    }
    if b.len() < pos + 4 {
        return Err(bad("truncated before the entry count"));
    }
    let n = u32_at(pos) as usize;
    pos += 4;
    if n != (b.len() - pos) / ENTRY_LEN || !(b.len() - pos).is_multiple_of(ENTRY_LEN) {
        return Err(bad("entry count does not match the body length"));
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let e = IndexEntry {
            id: b[pos..pos + 32].try_into().expect("32"),
            kind: b[pos + 32],
            volume: u32_at(pos + 33),
            offset: u64_at(pos + 37),
            len: u32_at(pos + 45),
            raw_len: u32_at(pos + 49),
        };
        if e.kind > BLOB_TREE {
            return Err(bad("unknown blob kind"));
        }
        entries.push(e);
        pos += ENTRY_LEN;
    }
    Ok((ends, entries))
}

/// Counters of one backup run, stored in its snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    /// Bytes of file content in the snapshot.
    pub bytes: u64,
    /// Files whose content was reused from the parent snapshot without reading them.
    pub files_unchanged: u64,
    /// Bytes read from files.
    pub bytes_read: u64,
    /// New blobs written and their stored (compressed, encrypted) size.
    pub blobs_new: u64,
    pub bytes_stored: u64,
    /// Files that could not be read or changed while being read.
    pub errors: u64,
}

/// The newest snapshot version this build reads: 2 when the snapshot holds a split folder (see
/// [`Tree`](super::Tree)), 1 otherwise (what every agent reads).
pub const SNAPSHOT_VERSION: u32 = 2;

/// A `snapshots/<id>` object (encrypted JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// Seconds since the Unix epoch, and nanoseconds.
    pub time: i64,
    pub time_nsec: u32,
    pub host: String,
    /// The backed-up source paths, absolute.
    pub paths: Vec<String>,
    /// Root tree id (hex): one node per source path, named by the path without its leading `/`.
    pub tree: String,
    /// The snapshot whose trees were used to skip unchanged files, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub stats: SnapshotStats,
    /// True when some files were unreadable or changed while read.
    pub partial: bool,
    /// The exclusions the backup applied, as options (`--exclude *.tmp`); empty when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trip_and_hostile_input() {
        let e = IndexEntry {
            id: [3; 32],
            kind: BLOB_TREE,
            volume: 2,
            offset: 4096,
            len: 100,
            raw_len: 80,
        };
        let b = encode_index(&[(2, 8192)], &[e, e]);
        let (ends, entries) = decode_index("index/x", &b).unwrap();
        assert_eq!(ends, vec![(2, 8192)]);
        assert_eq!(entries, vec![e, e]);
        for cut in 0..b.len() {
            assert!(decode_index("index/x", &b[..cut]).is_err(), "{cut}");
        }
        let mut huge = b.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_index("index/x", &huge).is_err());
    }
}
