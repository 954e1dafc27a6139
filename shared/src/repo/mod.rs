//! The repository format: the objects a backup consists of, in staging, in the import container and in the
//! vault (docs/repository-format.md is the specification).
//!
//! Objects: `config` (plain, framed, authenticated with a key derived from the master key since version 2), `keys/<id>` (the master key wrapped by Argon2id(passphrase)),
//! `data/<volume>` (append-only page blobs holding packs of encrypted blobs), `index/<id>` (encrypted: chunk id
//! -> volume, offset, length) and `snapshots/<id>` (encrypted: root tree, time, host, paths, stats). Every
//! object but a volume starts with a frame header carrying its logical length and BLAKE3 digest, because page
//! blobs round lengths up to 512 bytes.

mod blob_index;
mod cache;
mod format;
mod frame;
mod pack;
pub mod prune;
mod repository;
mod tree;
mod tree_cache;

pub use blob_index::IndexCacheOptions;
pub use cache::CachedStore;
pub use format::{
    decode_index, encode_index, Config, IndexEntry, KeyFile, Snapshot, SnapshotStats, BLOB_DATA, BLOB_TREE,
    CONFIG_VERSION, SNAPSHOT_VERSION, VOLUME_HEADER_LEN, VOLUME_MAGIC,
};
pub use frame::{frame, unframe, FRAME_HEADER_LEN, FRAME_MAGIC};
pub use pack::{IndexPolicy, PackWriter, VolumeDigest};
pub use repository::{
    encode_blob, encode_blob_into, EncodedBlob, Listing, RepoOptions, Repository, TreeRefs, WalkRecord,
};
pub use tree::{names_digest, walk_digest, ChunkRef, Node, NodeKind, SplitRule, Tree};
pub use tree_cache::TreeCacheStats;

use crate::blob::BlobError;
use crate::crypto::CryptoError;

/// A chunk or tree id: keyed BLAKE3 of the plaintext.
pub type ChunkId = [u8; 32];

/// Hashes a [`ChunkId`] by its first eight bytes: ids are keyed BLAKE3 outputs, uniform and not choosable
/// without the key, so hashing them again (SipHash: a few percent of an unchanged backup's CPU, in the index
/// and the dedup set) buys nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(head);
    }
    fn write_usize(&mut self, _len: usize) {
        // the length prefix of a slice (always 32 for an id) carries nothing
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by chunk ids ([`IdHasher`]).
pub type IdMap<V> = std::collections::HashMap<ChunkId, V, std::hash::BuildHasherDefault<IdHasher>>;
/// A set of chunk ids ([`IdHasher`]).
pub type IdSet = std::collections::HashSet<ChunkId, std::hash::BuildHasherDefault<IdHasher>>;

/// Errors of the repository. Each names the object (and where it helps, the offset and chunk id).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("{object}: damaged: {detail} (run `seedship-agent check --read-data` to list all damage)")]
    Damaged { object: String, detail: String },
    #[error("{object}: never completely written (a backup was interrupted while writing it); the next backup removes it")]
    Incomplete { object: String },
    #[error("wrong passphrase: none of the {keys} key(s) in keys/ opens with it (check the passphrase file or SEEDSHIP_PASSPHRASE)")]
    WrongPassphrase { keys: usize },
    #[error("{store}: no repository here (object \"config\" is missing); create one with `seedship-agent offline start`")]
    NoRepository { store: String },
    #[error("{store}: a repository already exists here; choose another job name or staging location")]
    AlreadyExists { store: String },
    #[error("chunk {id} is not in the index (the repository is incomplete; run `seedship-agent check`)")]
    MissingChunk { id: String },
    #[error("key {0:?} not found (list them with `seedship-agent key list`)")]
    NoSuchKey(String),
    #[error("{0} is the repository's only key: add another with `seedship-agent key add` first (without a key nobody can open the repository)")]
    LastKey(String),
    #[error("snapshot {0:?} not found (list them with `seedship-agent snapshots`)")]
    NoSuchSnapshot(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("{object}: unsupported repository format version {version} (this agent reads version 1)")]
    Version { object: String, version: u32 },
    #[error("{object}: snapshot format version {version} is newer than this agent reads (up to {max}): upgrade seedship-agent to read this repository", max = format::SNAPSHOT_VERSION)]
    NewerSnapshot { object: String, version: u32 },
}

impl RepoError {
    pub(crate) fn damaged(object: impl Into<String>, detail: impl Into<String>) -> Self {
        RepoError::Damaged {
            object: object.into(),
            detail: detail.into(),
        }
    }
}

/// Hex form of an id, as used in object names and messages.
pub fn id_hex(id: &ChunkId) -> String {
    hex::encode(id)
}

/// Parses a 64-digit hex id.
pub fn parse_id(s: &str) -> Option<ChunkId> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

/// The object name of volume `n`.
pub fn volume_name(n: u32) -> String {
    format!("data/{n:08}")
}
