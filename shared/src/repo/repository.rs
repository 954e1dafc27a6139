//! Opening and creating a repository, reading and writing its objects and blobs.

use super::blob_index::{BlobIndex, IndexCacheOptions};
use super::format::{
    decode_index, Config, IndexEntry, KeyFile, Snapshot, BLOB_TREE, CONFIG_VERSION, SNAPSHOT_VERSION,
};
use super::frame::{frame, unframe, FRAME_HEADER_LEN};
use super::tree::{Node, NodeKind, Tree};
use super::tree_cache::{TreeCache, TreeCacheStats};
use super::{id_hex, volume_name, ChunkId, IdSet, RepoError};
use crate::blob::{BlobError, BlobStore, Metadata};
use crate::chunker::{Chunker, ChunkerParams};
use crate::crypto::{self, KdfParams, MasterKey};
#[cfg(test)]
use crate::crypto::{MAX_KDF_MEMORY_KIB, MAX_KDF_PASSES};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

const COMPRESS_NONE: u8 = 0;
const COMPRESS_ZSTD: u8 = 1;

/// Options of a new repository.
#[derive(Debug, Clone)]
pub struct RepoOptions {
    pub chunker: ChunkerParams,
    pub volume_size: u64,
    pub compression_level: i32,
    pub kdf: KdfParams,
    pub host: String,
}

impl Default for RepoOptions {
    fn default() -> Self {
        RepoOptions {
            chunker: ChunkerParams::default(),
            volume_size: 4 << 30,
            compression_level: 1,
            kdf: KdfParams::default(),
            host: String::new(),
        }
    }
}

/// A blob ready to be packed.
#[derive(Debug)]
pub struct EncodedBlob {
    pub id: ChunkId,
    pub kind: u8,
    pub raw_len: u32,
    pub envelope: Vec<u8>,
}

/// Compresses (when it helps) and encrypts `raw` under `key`.
pub fn encode_blob(
    key: &MasterKey,
    level: i32,
    kind: u8,
    id: ChunkId,
    raw: &[u8],
) -> Result<EncodedBlob, RepoError> {
    encode_blob_into(key, level, kind, id, raw, Vec::new())
}

/// [`encode_blob`] into a reused buffer (its old content is discarded).
pub fn encode_blob_into(
    key: &MasterKey,
    level: i32,
    kind: u8,
    id: ChunkId,
    raw: &[u8],
    mut buf: Vec<u8>,
) -> Result<EncodedBlob, RepoError> {
    // envelope = nonce || (compression byte || body) encrypted in place || tag
    buf.clear();
    buf.reserve(crypto::ENVELOPE_OVERHEAD + 1 + raw.len());
    buf.resize(crypto::NONCE_LEN, 0);
    compress_into(level, raw, &mut buf);
    key.seal_in_place(&mut buf)?;
    Ok(EncodedBlob {
        id,
        kind,
        raw_len: raw.len() as u32,
        envelope: buf,
    })
}

thread_local! {
    /// One zstd context per thread (creating a context per blob is costly).
    static ZSTD: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Appends `compression byte || body` to `out`: zstd when it saves at least ~3%, else stored. zstd writes
/// straight into `out` (no copy of the compressed bytes).
fn compress_into(level: i32, raw: &[u8], out: &mut Vec<u8>) {
    let mark = out.len();
    if raw.len() >= 64 {
        let done = ZSTD.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().map(|(l, _)| *l) != Some(level) {
                *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
            }
            let (_, comp) = slot.as_mut()?;
            out.push(COMPRESS_ZSTD);
            out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
            let mut tail = std::io::Cursor::new(&mut *out);
            tail.set_position(mark as u64 + 1);
            let n = comp.compress_to_buffer(raw, &mut tail).ok()?;
            (n + n / 32 < raw.len()).then_some(())
        });
        if done.is_some() {
            return;
        }
        out.truncate(mark);
    }
    out.push(COMPRESS_NONE);
    out.extend_from_slice(raw);
}

fn compress(level: i32, raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    compress_into(level, raw, &mut out);
    out
}

thread_local! {
    /// One zstd decompression context per thread (creating one per blob costs more than small blobs).
    static UNZSTD: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses a blob (`raw_len` known from the index, at most 64 MiB) or an object (`None`).
fn decompress(object: &str, body: &[u8], raw_len: Option<usize>) -> Result<Vec<u8>, RepoError> {
    let zerr = |e: std::io::Error| RepoError::damaged(object, format!("zstd: {e}"));
    match body.first() {
        Some(&COMPRESS_NONE) => Ok(body[1..].to_vec()),
        Some(&COMPRESS_ZSTD) => match raw_len {
            Some(n) if n <= 64 << 20 => UNZSTD
                .with(|cell| {
                    let mut slot = cell.borrow_mut();
                    if slot.is_none() {
                        *slot = Some(zstd::bulk::Decompressor::new()?);
                    }
                    slot.as_mut().expect("set above").decompress(&body[1..], n)
                })
                .map_err(zerr),
            Some(n) => Err(RepoError::damaged(
                object,
                format!("implausible chunk length {n}"),
            )),
            None => zstd::stream::decode_all(&body[1..]).map_err(zerr),
        },
        _ => Err(RepoError::damaged(object, "unknown compression byte")),
    }
}

/// What a backup's walk needs of a folder's tree in the parent snapshot to keep it without reading it:
/// the [`walk_digest`](crate::repo::walk_digest) of its nodes, the [`names_digest`](crate::repo::names_digest)
/// of their names and the subtree ids of its folders, in order.
/// Kept in the local tree cache, sealed with the repository key (a record that does not open, or names
/// another tree, is dropped): a forged one would make a backup keep a changed folder's old tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkRecord {
    pub digest: [u8; 32],
    pub names: [u8; 32],
    pub subtrees: Vec<ChunkId>,
}

/// What a walk record's plaintext starts with.
const WALK_RECORD_TAG: &[u8] = b"seedship walk record 1\n";

impl WalkRecord {
    /// `tag | tree id | digest | names digest | subtree count (u32 LE) | subtree ids`.
    fn encode(&self, tree: &ChunkId) -> Vec<u8> {
        let mut out = Vec::with_capacity(WALK_RECORD_TAG.len() + 100 + 32 * self.subtrees.len());
        out.extend_from_slice(WALK_RECORD_TAG);
        out.extend_from_slice(tree);
        out.extend_from_slice(&self.digest);
        out.extend_from_slice(&self.names);
        out.extend_from_slice(&(self.subtrees.len() as u32).to_le_bytes());
        for id in &self.subtrees {
            out.extend_from_slice(id);
        }
        out
    }

    /// The record in `plain` if it is one of `tree`.
    fn decode(tree: &ChunkId, plain: &[u8]) -> Option<WalkRecord> {
        let rest = plain.strip_prefix(WALK_RECORD_TAG)?;
        let (id, rest) = rest.split_first_chunk::<32>()?;
        let (digest, rest) = rest.split_first_chunk::<32>()?;
        let (names, rest) = rest.split_first_chunk::<32>()?;
        let (n, rest) = rest.split_first_chunk::<4>()?;
        let n = u32::from_le_bytes(*n) as usize;
        if id != tree || rest.len() != n.checked_mul(32)? {
            return None;
        }
        let subtrees = rest
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect();
        Some(WalkRecord {
            digest: *digest,
            names: *names,
            subtrees,
        })
    }
}

/// An open repository: its store, master key, config and the in-memory index.
#[derive(Debug)]
pub struct Repository {
    store: Arc<dyn BlobStore>,
    key: MasterKey,
    config: Config,
    /// The index of every blob (and the volume ends its objects record).
    index: RwLock<BlobIndex>,
    /// Ids a backup's readers claimed for writing that the index does not hold yet ([`Repository::claim`]).
    claimed: Mutex<IdSet>,
    pub(super) trees: Option<TreeCache>,
    /// The key object the passphrase opened.
    key_name: String,
}

/// The most key objects [`Repository::open`] tries: each one costs an Argon2 derivation.
pub const MAX_KEY_OBJECTS: usize = 64;
/// The largest key object read (a key object is about 400 bytes).
pub const MAX_KEY_OBJECT_LEN: u64 = 64 * 1024;

impl Repository {
    /// Creates a new repository in an empty store.
    pub fn init(store: Arc<dyn BlobStore>, passphrase: &str, opts: &RepoOptions) -> Result<Self, RepoError> {
        crypto::check_passphrase(passphrase)?;
        store.create_container()?;
        if !store.list("config")?.is_empty() {
            return Err(RepoError::AlreadyExists {
                store: store.describe(),
            });
        }
        let mut rid = [0u8; 16];
        crypto::random_bytes(&mut rid)?;
        let mut config = Config {
            version: CONFIG_VERSION,
            id: hex::encode(rid),
            chunker: opts.chunker,
            volume_size: opts.volume_size,
            compression_level: opts.compression_level,
            cipher: "aes-256-gcm".into(),
            chunk_id: "blake3-keyed".into(),
            mac: None,
        };
        let key = MasterKey::generate()?;
        config.seal(&key);
        let key_name = write_key_file(&*store, &key, passphrase, opts.kdf, &opts.host)?;
        // config last: its presence marks a complete repository
        write_framed(
            &*store,
            "config",
            &serde_json::to_vec(&config).expect("serializable"),
        )?;
        Ok(Repository {
            store,
            key,
            config,
            index: RwLock::new(BlobIndex::new(None, [0; 32])),
            claimed: Mutex::new(IdSet::default()),
            trees: None,
            key_name,
        })
    }

    /// Opens a repository with the passphrase and loads its index into memory.
    pub fn open(store: Arc<dyn BlobStore>, passphrase: &str) -> Result<Self, RepoError> {
        Self::open_with(store, passphrase, None)
    }

    /// Opens a repository with the passphrase and loads its index, keeping at most the budget of
    /// `index_cache` in memory and the rest in a cache file in its folder (see `blob_index`).
    pub fn open_cached(
        store: Arc<dyn BlobStore>,
        passphrase: &str,
        index_cache: &IndexCacheOptions,
    ) -> Result<Self, RepoError> {
        Self::open_with(store, passphrase, Some(index_cache))
    }

    fn open_with(
        store: Arc<dyn BlobStore>,
        passphrase: &str,
        index_cache: Option<&IndexCacheOptions>,
    ) -> Result<Self, RepoError> {
        // a missing container or folder means no repository; any other failure (a rejected key, no
        // connection) is reported as itself
        let found = match store.list("config") {
            Ok(l) => !l.is_empty(),
            Err(BlobError::ContainerNotFound { .. } | BlobError::NotFound { .. }) => false,
            Err(BlobError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e.into()),
        };
        if !found {
            return Err(RepoError::NoRepository {
                store: store.describe(),
            });
        }
        let config: Config = parse_json("config", &read_framed(&*store, "config")?)?;
        if !(1..=CONFIG_VERSION).contains(&config.version) {
            return Err(RepoError::Version {
                object: "config".into(),
                version: config.version,
            });
        }
        config
            .chunker
            .validate()
            .map_err(|e| RepoError::damaged("config", e.to_string()))?;
        let keys = store.list("keys/")?;
        if keys.len() > MAX_KEY_OBJECTS {
            // each costs an Argon2 derivation: a store stuffed with key objects must not hold the machine
            return Err(RepoError::damaged(
                "keys/",
                format!(
                    "{} key objects; at most {MAX_KEY_OBJECTS} are tried (remove the ones no passphrase opens)",
                    keys.len()
                ),
            ));
        }
        let mut key = None;
        for k in &keys {
            if k.len > MAX_KEY_OBJECT_LEN {
                return Err(RepoError::damaged(
                    &k.name,
                    format!("{} bytes; a key object is well under {MAX_KEY_OBJECT_LEN}", k.len),
                ));
            }
            let kf: KeyFile = parse_json(&k.name, &read_framed(&*store, &k.name)?)?;
            let salt = hex::decode(&kf.salt).map_err(|_| RepoError::damaged(&k.name, "salt is not hex"))?;
            let wrapped =
                hex::decode(&kf.wrapped).map_err(|_| RepoError::damaged(&k.name, "key is not hex"))?;
            kf.params
                .check()
                .map_err(|e| RepoError::damaged(&k.name, e.to_string()))?;
            let kek = crypto::derive_kek(passphrase, &salt, kf.params)?;
            if let Ok(raw) = crypto::open(&kek, &wrapped) {
                let raw: [u8; 64] = raw
                    .try_into()
                    .map_err(|_| RepoError::damaged(&k.name, "master key is not 64 bytes"))?;
                key = Some((MasterKey::from_bytes(&raw), k.name.clone()));
                break;
            }
        }
        let (key, key_name) = key.ok_or(RepoError::WrongPassphrase { keys: keys.len() })?;
        if !config.authentic(&key) {
            return Err(RepoError::damaged(
                "config",
                "it was changed by someone without the repository key (its MAC does not match); restore it \
                 from another copy of the repository",
            ));
        }
        if config.version == 1 {
            tracing::warn!(
                "repository config is version 1 (not authenticated); new repositories write version 2"
            );
        }
        let mac_key = key.derive("seedship 2026 index cache mac");
        let repo = Repository {
            store,
            key,
            config,
            index: RwLock::new(BlobIndex::new(index_cache, mac_key)),
            claimed: Mutex::new(IdSet::default()),
            trees: None,
            key_name,
        };
        repo.load_index()?;
        Ok(repo)
    }

    /// Loads the index (and volume ends): from the cache file for the index objects it covers, else from the
    /// index objects. Returns the number of index objects held.
    pub fn load_index(&self) -> Result<usize, RepoError> {
        let names: Vec<String> = self.store.list("index/")?.into_iter().map(|o| o.name).collect();
        let (todo, note) = self.index.write().expect("index lock").start_load(&names);
        if let Some(note) = note {
            tracing::warn!("{note}");
        }
        let mut skipped = 0;
        for name in todo {
            let body = match self.read_object(&name) {
                Err(RepoError::Incomplete { object }) => {
                    tracing::warn!(%object, "skipping an index object an interrupted backup left unwritten");
                    skipped += 1;
                    continue;
                }
                r => r?,
            };
            let (ends, entries) = decode_index(&name, &body)?;
            self.index
                .write()
                .expect("index lock")
                .load_object(&name, &ends, &entries)?;
        }
        self.index.write().expect("index lock").finish_load()?;
        Ok(names.len() - skipped)
    }

    /// Adds the entries of index object `object` (just written or read; `None` for entries no index object
    /// holds as they are) to the index. Of two entries for one id the one at the larger volume and offset
    /// wins (a prune's repacked copy).
    pub fn add_index(&self, object: Option<&str>, ends: &[(u32, u64)], entries: &[IndexEntry]) {
        self.index.write().expect("index lock").add(object, ends, entries);
        let mut claimed = self.claimed.lock().expect("lock");
        if !claimed.is_empty() {
            for e in entries {
                claimed.remove(&e.id);
            }
        }
    }

    /// The key object (`keys/…`) the passphrase opened.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// Every key object, by name.
    pub fn keys(&self) -> Result<Vec<(String, KeyFile)>, RepoError> {
        let mut out = vec![];
        for k in self.store.list("keys/")? {
            let kf: KeyFile = parse_json(&k.name, &read_framed(&*self.store, &k.name)?)?;
            out.push((k.name, kf));
        }
        Ok(out)
    }

    /// Adds a key object wrapping the master key with `passphrase`; returns its name.
    pub fn add_key(&self, passphrase: &str, kdf: KdfParams, host: &str) -> Result<String, RepoError> {
        crypto::check_passphrase(passphrase)?;
        write_key_file(&*self.store, &self.key, passphrase, kdf, host)
    }

    /// Removes a key object; the last one never goes (the repository could not be opened any more).
    pub fn remove_key(&self, name: &str) -> Result<(), RepoError> {
        let keys = self.store.list("keys/")?;
        if !keys.iter().any(|k| k.name == name) {
            return Err(RepoError::NoSuchKey(name.to_owned()));
        }
        if keys.len() < 2 {
            return Err(RepoError::LastKey(name.to_owned()));
        }
        self.store.delete(name)?;
        Ok(())
    }

    /// Replaces the in-memory index (after prune rewrote the index objects).
    pub fn replace_index(&self, ends: &[(u32, u64)], entries: &[IndexEntry]) {
        self.index.write().expect("index lock").clear();
        self.claimed.lock().expect("lock").clear();
        self.add_index(None, ends, entries);
    }

    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }
    pub fn key(&self) -> &MasterKey {
        &self.key
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The chunker of this repository (gear table derived from the key).
    pub fn chunker(&self) -> Chunker {
        Chunker::new(
            self.config.chunker,
            &self.key.derive("seedship 2026 chunker gear table"),
        )
    }
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.index.read().expect("lock").contains(id)
    }
    pub fn lookup(&self, id: &ChunkId) -> Option<IndexEntry> {
        self.index.read().expect("lock").get(id)
    }
    /// Claims `id` for writing in this run: true when the index does not hold it and no one claimed it
    /// before (the caller then encodes and packs it), false otherwise. A claim ends when the blob's index
    /// entry arrives ([`Repository::add_index`]), so the claims held are the blobs between the readers and
    /// the next index object, not every blob of the run.
    pub fn claim(&self, id: &ChunkId) -> bool {
        let mut claimed = self.claimed.lock().expect("lock");
        !self.contains(id) && claimed.insert(*id)
    }
    /// Blobs in the index, the bytes it holds for them in memory, and how many of them are on disk.
    pub fn index_size(&self) -> (usize, usize, usize) {
        let idx = self.index.read().expect("lock");
        (idx.len(), idx.bytes(), idx.on_disk())
    }
    /// All index entries, in id order (for check and prune).
    pub fn index_entries(&self) -> Result<Vec<IndexEntry>, RepoError> {
        self.index.read().expect("lock").entries()
    }
    /// Logical end of each volume, as recorded in the index.
    pub fn volume_ends(&self) -> BTreeMap<u32, u64> {
        self.index.read().expect("lock").ends().clone()
    }

    /// Reads, decrypts and verifies one blob.
    pub fn read_blob(&self, id: &ChunkId) -> Result<Vec<u8>, RepoError> {
        let e = self
            .lookup(id)
            .ok_or_else(|| RepoError::MissingChunk { id: id_hex(id) })?;
        self.read_entry(&e)
    }

    /// Reads the blob an index entry points at and checks it against the entry.
    pub fn read_entry(&self, e: &IndexEntry) -> Result<Vec<u8>, RepoError> {
        let vol = volume_name(e.volume);
        let mut buf = vec![0u8; e.len as usize];
        self.store.read_at(&vol, e.offset, &mut buf)?;
        let what = format!("{vol} at offset {} (chunk {})", e.offset, id_hex(&e.id));
        self.open_envelope(&what, &buf, e)
    }

    /// Decrypts, decompresses and verifies the envelope of index entry `e`, read by the caller (for example
    /// as part of a larger read of its volume); errors name the volume, offset and chunk.
    pub fn open_entry(&self, e: &IndexEntry, envelope: &[u8]) -> Result<Vec<u8>, RepoError> {
        let what = format!(
            "{} at offset {} (chunk {})",
            volume_name(e.volume),
            e.offset,
            id_hex(&e.id)
        );
        if envelope.len() != e.len as usize {
            return Err(RepoError::damaged(
                &what,
                "envelope length differs from the index",
            ));
        }
        self.open_envelope(&what, envelope, e)
    }

    /// Decrypts, decompresses and verifies an envelope against its index entry.
    pub(super) fn open_envelope(
        &self,
        what: &str,
        envelope: &[u8],
        e: &IndexEntry,
    ) -> Result<Vec<u8>, RepoError> {
        let body = self
            .key
            .open(envelope)
            .map_err(|_| RepoError::damaged(what, "authentication failed"))?;
        let raw = decompress(what, &body, Some(e.raw_len as usize))?;
        if raw.len() != e.raw_len as usize || self.key.chunk_id(&raw) != e.id {
            return Err(RepoError::damaged(what, "content does not match its chunk id"));
        }
        Ok(raw)
    }

    /// Encodes a tree into a blob (not yet written).
    pub fn encode_tree(&self, tree: &Tree) -> Result<EncodedBlob, RepoError> {
        let raw = serde_json::to_vec(tree).expect("serializable");
        let id = self.key.chunk_id(&raw);
        encode_blob(
            &self.key,
            self.config.compression_level.max(3),
            BLOB_TREE,
            id,
            &raw,
        )
    }

    /// Writes an encrypted object `prefix/<blake3 of payload>`; returns its name.
    pub fn save_object(&self, prefix: &str, body: &[u8]) -> Result<String, RepoError> {
        let payload = self.key.seal(&compress(3, body))?;
        let name = format!("{prefix}/{}", blake3::hash(&payload).to_hex());
        write_framed(&*self.store, &name, &payload)?;
        Ok(name)
    }

    /// Reads an encrypted object written by [`Repository::save_object`], checking its name.
    pub fn read_object(&self, name: &str) -> Result<Vec<u8>, RepoError> {
        let payload = read_framed(&*self.store, name)?;
        let expect = name.rsplit('/').next().unwrap_or("");
        if blake3::hash(&payload).to_hex().as_str() != expect {
            return Err(RepoError::damaged(name, "content does not match the object name"));
        }
        let body = self
            .key
            .open(&payload)
            .map_err(|_| RepoError::damaged(name, "authentication failed"))?;
        decompress(name, &body, None)
    }

    /// Deletes the index and snapshot objects that an interrupted backup created but never wrote (all
    /// zeros: objects are created, then written). A backup calls this before it writes anything; returns the
    /// names removed.
    pub fn remove_incomplete(&self) -> Result<Vec<String>, RepoError> {
        let mut removed = Vec::new();
        for prefix in ["index/", "snapshots/"] {
            for o in self.store.list(prefix)? {
                // a written object's frame header is not zero: only an object whose head is zero is read whole
                let mut head = [0u8; FRAME_HEADER_LEN];
                let n = head.len().min(o.len as usize);
                if n > 0 {
                    self.store.read_at(&o.name, 0, &mut head[..n])?;
                    if head[..n].iter().any(|&b| b != 0) {
                        continue;
                    }
                }
                if let Err(RepoError::Incomplete { object }) = read_framed(&*self.store, &o.name) {
                    self.store.delete(&object)?;
                    removed.push(object);
                }
            }
        }
        Ok(removed)
    }

    /// Writes a snapshot object; returns its id (hex).
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<String, RepoError> {
        let name = self.save_object("snapshots", &serde_json::to_vec(snap).expect("serializable"))?;
        Ok(name["snapshots/".len()..].to_string())
    }

    /// All snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(String, Snapshot)>, RepoError> {
        let mut out = vec![];
        for o in self.store.list("snapshots/")? {
            let body = match self.read_object(&o.name) {
                Err(RepoError::Incomplete { object }) => {
                    tracing::warn!(%object, "skipping a snapshot object an interrupted backup left unwritten");
                    continue;
                }
                r => r?,
            };
            let s: Snapshot = parse_json(&o.name, &body)?;
            if s.version > SNAPSHOT_VERSION {
                return Err(RepoError::NewerSnapshot {
                    object: o.name,
                    version: s.version,
                });
            }
            out.push((o.name["snapshots/".len()..].to_string(), s));
        }
        out.sort_by_key(|(_, s)| (s.time, s.time_nsec));
        Ok(out)
    }

    /// Finds a snapshot by id, unique id prefix, or `latest`.
    pub fn find_snapshot(&self, which: &str) -> Result<(String, Snapshot), RepoError> {
        let all = self.snapshots()?;
        let found = if which == "latest" {
            all.into_iter().last()
        } else {
            let m: Vec<_> = all.into_iter().filter(|(id, _)| id.starts_with(which)).collect();
            if m.len() == 1 {
                m.into_iter().next()
            } else {
                None
            }
        };
        found.ok_or_else(|| RepoError::NoSuchSnapshot(which.to_string()))
    }
}

/// The tree cache's side of the repository: reading trees through it.
impl Repository {
    /// Keeps trees in a local cache under `dir` (see the `tree_cache` module): [`Repository::load_tree`]
    /// serves them from there once verified, and trees written or read are added.
    pub fn with_tree_cache(mut self, dir: &std::path::Path) -> Self {
        self.trees = Some(TreeCache::new(dir));
        self
    }

    /// Hits and misses of the tree cache (zero without one).
    pub fn tree_cache_stats(&self) -> TreeCacheStats {
        self.trees.as_ref().map(|t| t.stats()).unwrap_or_default()
    }

    /// Adds a tree's envelope to the tree cache, if there is one (the pack writer calls this).
    pub fn remember_tree(&self, id: &ChunkId, envelope: &[u8]) {
        if let Some(t) = &self.trees {
            t.put(id, envelope);
        }
    }

    /// Writes the tree cache's pending index entries (the pack writer calls this with every index object).
    pub fn flush_tree_cache(&self) {
        if let Some(t) = &self.trees {
            t.flush();
        }
    }

    /// The walk record of folder tree `tree` in the tree cache, if there is one that authenticates
    /// (see [`WalkRecord`]) and the index holds the tree: like a cached tree, a record never makes a tree
    /// the repository lost (after damage, or a prune) part of a new snapshot.
    pub fn walk_record(&self, tree: &ChunkId) -> Option<WalkRecord> {
        let cache = self.trees.as_ref()?;
        if !self.contains(tree) {
            return None;
        }
        let at = self.walk_record_id(tree);
        let sealed = cache.get(&at)?;
        match self
            .key
            .open(&sealed)
            .ok()
            .and_then(|p| WalkRecord::decode(tree, &p))
        {
            Some(r) => Some(r),
            None => {
                cache.reject(
                    &at,
                    "a walk record that does not authenticate or is not this tree's",
                );
                None
            }
        }
    }

    /// Whether the tree cache holds a walk record for `tree` (not verified).
    pub fn has_walk_record(&self, tree: &ChunkId) -> bool {
        self.trees
            .as_ref()
            .is_some_and(|c| c.contains(&self.walk_record_id(tree)))
    }

    /// Adds the walk record of folder tree `tree` to the tree cache, if there is one; a failure is logged.
    pub fn save_walk_record(&self, tree: &ChunkId, rec: &WalkRecord) {
        let Some(cache) = &self.trees else {
            return;
        };
        match self.key.seal(&rec.encode(tree)) {
            Ok(sealed) => cache.put(&self.walk_record_id(tree), &sealed),
            Err(e) => tracing::warn!(tree = %id_hex(tree), error = %e, "cannot seal a walk record"),
        }
    }

    /// Replaces the walk record of `tree` by one no walk matches (an all-zero digest), so that this run
    /// and the next ones read the folder's tree instead (a later record of an id overrides an earlier one).
    pub fn forget_walk_record(&self, tree: &ChunkId) {
        let never = WalkRecord {
            digest: [0; 32],
            names: [0; 32],
            subtrees: vec![],
        };
        self.save_walk_record(tree, &never);
    }

    /// Where the walk record of `tree` is kept in the tree cache: a keyed hash no tree id can equal.
    fn walk_record_id(&self, tree: &ChunkId) -> ChunkId {
        *blake3::keyed_hash(&self.key.derive("seedship 2026 walk record id"), tree).as_bytes()
    }

    /// Reads a folder's tree with all its nodes (the parts of a split folder joined): from the tree cache when
    /// it holds a verified copy, else from the store. [`Repository::listing`] reads a split folder one part
    /// at a time instead.
    pub fn load_tree(&self, id: &ChunkId) -> Result<Tree, RepoError> {
        let nodes = self.listing(id)?.collect::<Result<Vec<_>, _>>()?;
        Ok(Tree::of(nodes))
    }

    /// Reads one tree object as stored: a folder's nodes, or the part ids of a split folder (checked to be
    /// valid ids, and not both).
    pub fn load_tree_object(&self, id: &ChunkId) -> Result<Tree, RepoError> {
        let what = format!("tree {}", id_hex(id));
        let raw = self.tree_bytes(id)?;
        let t: Tree = parse_json(&what, &raw)?;
        if !t.parts.is_empty() && !t.nodes.is_empty() {
            return Err(RepoError::damaged(what, "holds both nodes and parts"));
        }
        if let Some(bad) = t.parts.iter().find(|p| super::parse_id(p).is_none()) {
            return Err(RepoError::damaged(what, format!("invalid part id {bad:?}")));
        }
        Ok(t)
    }

    /// A folder's nodes in name order, read one part at a time (a folder that is not split is one part).
    pub fn listing(&self, id: &ChunkId) -> Result<Listing<'_>, RepoError> {
        let t = self.load_tree_object(id)?;
        let parts: Vec<ChunkId> = t.parts.iter().filter_map(|p| super::parse_id(p)).collect();
        Ok(Listing {
            repo: self,
            tree: *id,
            split: !parts.is_empty(),
            parts: parts.into_iter(),
            nodes: t.nodes.into_iter(),
        })
    }

    /// The nodes of `part`, a part of split folder `tree`.
    pub fn load_part(&self, tree: &ChunkId, part: &ChunkId) -> Result<Vec<Node>, RepoError> {
        let t = self.load_tree_object(part)?;
        if !t.parts.is_empty() {
            return Err(RepoError::damaged(
                format!("tree {}", id_hex(tree)),
                format!("its part {} is split itself", id_hex(part)),
            ));
        }
        Ok(t.nodes)
    }

    /// The blobs a tree references: its files' chunks and its folders' subtrees, read without the rest of
    /// the nodes (names, metadata), which a walk over every snapshot's trees (prune) has no use for.
    pub fn tree_refs(&self, id: &ChunkId) -> Result<TreeRefs, RepoError> {
        let raw = self.tree_bytes(id)?;
        let what = || format!("tree {}", id_hex(id));
        let t: RawTreeRefs<'_> =
            serde_json::from_slice(&raw).map_err(|e| RepoError::damaged(what(), format!("bad JSON: {e}")))?;
        let parse = |h: &str| {
            super::parse_id(h).ok_or_else(|| RepoError::damaged(what(), format!("invalid blob id {h:?}")))
        };
        let mut out = TreeRefs::default();
        // a split folder's parts are walked like its subtrees
        for p in t.parts {
            out.subtrees.push(parse(p)?);
        }
        for n in t.nodes {
            for c in n.content {
                out.chunks.push(parse(c.id)?);
            }
            if let (NodeKind::Dir, Some(sub)) = (n.kind, n.subtree) {
                out.subtrees.push(parse(sub)?);
            }
        }
        Ok(out)
    }

    /// A tree's plaintext (JSON), from the local tree cache when it holds it.
    fn tree_bytes(&self, id: &ChunkId) -> Result<Vec<u8>, RepoError> {
        let what = format!("tree {}", id_hex(id));
        let raw = match &self.trees {
            None => self.read_blob(id)?,
            Some(cache) => {
                let e = self
                    .lookup(id)
                    .ok_or_else(|| RepoError::MissingChunk { id: id_hex(id) })?;
                let cached = cache
                    .get(id)
                    .and_then(|env| match self.open_envelope(&what, &env, &e) {
                        Ok(raw) => Some(raw),
                        Err(err) => {
                            cache.reject(id, &err.to_string());
                            None
                        }
                    });
                cache.count(cached.is_some());
                match cached {
                    Some(raw) => raw,
                    None => {
                        let vol = volume_name(e.volume);
                        let mut env = vec![0u8; e.len as usize];
                        self.store().read_at(&vol, e.offset, &mut env)?;
                        let at = format!("{vol} at offset {} (chunk {})", e.offset, id_hex(&e.id));
                        let raw = self.open_envelope(&at, &env, &e)?;
                        cache.put(id, &env);
                        raw
                    }
                }
            }
        };
        Ok(raw)
    }
}

/// The blob ids a tree references ([`Repository::tree_refs`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TreeRefs {
    /// Chunks of the tree's files, in node order (repeats kept).
    pub chunks: Vec<ChunkId>,
    /// Trees of the tree's folders.
    pub subtrees: Vec<ChunkId>,
}

/// A tree as JSON with only what [`TreeRefs`] needs; the other fields are skipped unread.
#[derive(serde::Deserialize)]
struct RawTreeRefs<'a> {
    #[serde(default, borrow)]
    nodes: Vec<RawNodeRefs<'a>>,
    #[serde(default, borrow)]
    parts: Vec<&'a str>,
}

/// One part of a folder's listing: its id (none for a folder that is not split) and its nodes.
pub type Part = (Option<ChunkId>, Vec<Node>);

/// A folder's nodes in name order, one part in memory at a time ([`Repository::listing`]).
pub struct Listing<'r> {
    repo: &'r Repository,
    tree: ChunkId,
    split: bool,
    /// Parts not read yet.
    parts: std::vec::IntoIter<ChunkId>,
    /// Nodes of the part being read that are not returned yet.
    nodes: std::vec::IntoIter<Node>,
}

impl Listing<'_> {
    /// Whether the folder is split into parts.
    pub fn is_split(&self) -> bool {
        self.split
    }

    /// The id of the next part when no node of the part before is left, without reading it (none for a
    /// folder that is not split, and after the last part).
    pub fn peek_part(&self) -> Option<ChunkId> {
        if self.nodes.len() > 0 {
            return None;
        }
        self.parts.as_slice().first().copied()
    }

    /// Passes the part [`Listing::peek_part`] names without reading it.
    pub fn skip_part(&mut self) {
        if self.nodes.len() == 0 {
            self.parts.next();
        }
    }

    /// The next part's id (none for a folder that is not split) and nodes; `None` after the last, and after
    /// a part that cannot be read.
    pub fn next_part(&mut self) -> Option<Result<Part, RepoError>> {
        if self.nodes.len() > 0 {
            return Some(Ok((None, std::mem::take(&mut self.nodes).collect())));
        }
        let part = self.parts.next()?;
        let r = self.repo.load_part(&self.tree, &part);
        if r.is_err() {
            self.parts = Vec::new().into_iter();
        }
        Some(r.map(|n| (Some(part), n)))
    }
}

impl Iterator for Listing<'_> {
    type Item = Result<Node, RepoError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(n) = self.nodes.next() {
                return Some(Ok(n));
            }
            match self.next_part()? {
                Ok((_, nodes)) => self.nodes = nodes.into_iter(),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct RawNodeRefs<'a> {
    kind: NodeKind,
    #[serde(default, borrow)]
    content: Vec<RawChunkRef<'a>>,
    #[serde(default, borrow)]
    subtree: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct RawChunkRef<'a> {
    id: &'a str,
}

/// Writes a key object wrapping `key` with `passphrase`; returns its name (`keys/` + 32 hex digits of the
/// BLAKE3 of its JSON).
fn write_key_file(
    store: &dyn BlobStore,
    key: &MasterKey,
    passphrase: &str,
    kdf: KdfParams,
    host: &str,
) -> Result<String, RepoError> {
    let mut salt = [0u8; 16];
    crypto::random_bytes(&mut salt)?;
    let kek = crypto::derive_kek(passphrase, &salt, kdf)?;
    let kf = KeyFile {
        version: 1,
        kdf: "argon2id".into(),
        params: kdf,
        salt: hex::encode(salt),
        wrapped: hex::encode(crypto::seal(&kek, &key.to_bytes())?),
        created: crate::time::now_unix(),
        host: host.to_owned(),
    };
    let kf_json = serde_json::to_vec(&kf).expect("serializable");
    let name = format!("keys/{}", hex::encode(&blake3::hash(&kf_json).as_bytes()[..16]));
    write_framed(store, &name, &kf_json)?;
    Ok(name)
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(object: &str, b: &[u8]) -> Result<T, RepoError> {
    serde_json::from_slice(b).map_err(|e| RepoError::damaged(object, format!("bad JSON: {e}")))
}

fn write_framed(store: &dyn BlobStore, name: &str, payload: &[u8]) -> Result<(), RepoError> {
    let f = frame(payload);
    store.create(name, f.len() as u64, &Metadata::new())?;
    store.write_pages(name, 0, &f)?;
    Ok(())
}

fn read_framed(store: &dyn BlobStore, name: &str) -> Result<Vec<u8>, RepoError> {
    let len = store.properties(name)?.len;
    if len > 1 << 30 {
        return Err(RepoError::damaged(
            name,
            format!("implausible length {len} for a metadata object"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    store.read_at(name, 0, &mut buf)?;
    // Objects are created, then written: all zeros means a write that never happened, not damage.
    if crate::manifest::ranges::is_all_zero(&buf) {
        return Err(RepoError::Incomplete {
            object: name.to_owned(),
        });
    }
    Ok(unframe(name, &buf)?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::MemoryStore;
    use crate::repo::{PackWriter, TreeCacheStats, BLOB_DATA};

    fn opts() -> RepoOptions {
        RepoOptions {
            kdf: KdfParams {
                m_cost: 64,
                t_cost: 1,
                p_cost: 1,
            },
            ..Default::default()
        }
    }

    const PASS: &str = "sixteen+ characters";

    fn blob(repo: &Repository, data: &[u8]) -> EncodedBlob {
        let id = repo.key().chunk_id(data);
        encode_blob(repo.key(), 1, BLOB_DATA, id, data).unwrap()
    }

    #[test]
    fn objects_created_but_never_written_are_skipped_then_removed() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        let r = Repository::init(store.clone(), PASS, &opts()).unwrap();
        let name = "index/0123456789abcdef";
        store.create(name, 512, &Metadata::new()).unwrap();
        store.create("snapshots/fedcba", 1024, &Metadata::new()).unwrap();
        // A reader sees neither; one flipped byte, though, is damage and stays an error.
        let o = Repository::open(store.clone(), PASS).unwrap();
        assert!(o.snapshots().unwrap().is_empty());
        assert_eq!(
            r.remove_incomplete().unwrap(),
            vec![name.to_owned(), "snapshots/fedcba".to_owned()]
        );
        assert!(store.list("index/").unwrap().is_empty());
        store.create(name, 512, &Metadata::new()).unwrap();
        store.write_pages(name, 0, &[1u8; 512]).unwrap();
        assert!(matches!(
            Repository::open(store, PASS),
            Err(RepoError::Damaged { .. })
        ));
    }

    #[test]
    fn init_open_and_wrong_passphrase() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        let r = Repository::init(store.clone(), PASS, &opts()).unwrap();
        assert!(matches!(
            Repository::init(store.clone(), PASS, &opts()),
            Err(RepoError::AlreadyExists { .. })
        ));
        let o = Repository::open(store.clone(), PASS).unwrap();
        assert_eq!(o.config(), r.config());
        let e = Repository::open(store, "another passphrase!").unwrap_err();
        assert!(e.to_string().contains("wrong passphrase"), "{e}");
        let empty: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        assert!(matches!(
            Repository::open(empty, PASS),
            Err(RepoError::NoRepository { .. })
        ));
    }

    #[test]
    fn packs_index_and_crash_recovery() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        let repo = Arc::new(Repository::init(store.clone(), PASS, &opts()).unwrap());
        let a = vec![1u8; 5000];
        let b: Vec<u8> = (0..9000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = PackWriter::open(repo.clone(), 4096, 100).unwrap();
        assert!(w.add(&blob(&repo, &a)).unwrap());
        assert!(!w.add(&blob(&repo, &a)).unwrap(), "duplicate in the same run");
        let digests = w.finish().unwrap();
        assert_eq!(digests.len(), 1);
        let indexed_end = repo.volume_ends()[&0];
        // a second writer packs b but "crashes" before indexing it
        let repo2 = Arc::new(Repository::open(store.clone(), PASS).unwrap());
        assert_eq!(repo2.read_blob(&repo.key().chunk_id(&a)).unwrap(), a);
        let mut w = PackWriter::open(repo2.clone(), 1024, 100).unwrap();
        w.add(&blob(&repo2, &b)).unwrap();
        w.add(&blob(&repo2, &[3u8; 2000])).unwrap();
        w.flush_pack().unwrap();
        drop(w);
        let repo3 = Arc::new(Repository::open(store.clone(), PASS).unwrap());
        assert!(
            !repo3.contains(&repo.key().chunk_id(&b)),
            "unindexed blobs are not visible"
        );
        let w = PackWriter::open(repo3.clone(), 1024, 100).unwrap();
        assert_eq!(
            store.properties("data/00000000").unwrap().len,
            indexed_end,
            "tail dropped"
        );
        drop(w);
        // damage is named
        let e = repo3.lookup(&repo.key().chunk_id(&a)).unwrap();
        let mut page = vec![0u8; 512];
        let page_off = (e.offset + 20) / 512 * 512;
        store.read_at("data/00000000", page_off, &mut page).unwrap();
        page[(e.offset + 20 - page_off) as usize] ^= 1;
        store.write_pages("data/00000000", page_off, &page).unwrap();
        let err = repo3.read_blob(&e.id).unwrap_err().to_string();
        assert!(err.contains("data/00000000") && err.contains("damaged"), "{err}");
    }

    #[test]
    fn config_is_authenticated_by_the_master_key_and_version_1_still_opens() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        Repository::init(store.clone(), PASS, &opts()).unwrap();
        let original: Config = parse_json("config", &read_framed(&*store, "config").unwrap()).unwrap();
        assert_eq!((original.version, original.mac.is_some()), (2, true));
        // a changed volume size (or chunker, or cipher) without the key is refused
        let mut tampered = original.clone();
        tampered.volume_size = 1 << 20;
        write_framed(&*store, "config", &serde_json::to_vec(&tampered).unwrap()).unwrap();
        let err = Repository::open(store.clone(), PASS)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("config") && err.contains("MAC"), "{err}");
        // a version-2 config stripped of its MAC is refused too
        let mut stripped = original.clone();
        stripped.mac = None;
        write_framed(&*store, "config", &serde_json::to_vec(&stripped).unwrap()).unwrap();
        assert!(Repository::open(store.clone(), PASS).is_err());
        // repositories written before version 2 still open
        let mut old = original.clone();
        old.version = 1;
        old.mac = None;
        write_framed(&*store, "config", &serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(Repository::open(store.clone(), PASS).unwrap().config().version, 1);
    }

    #[test]
    fn key_objects_with_costly_kdf_parameters_or_in_bulk_are_refused() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        Repository::init(store.clone(), PASS, &opts()).unwrap();
        let name = store.list("keys/").unwrap()[0].name.clone();
        let mut kf: KeyFile = parse_json(&name, &read_framed(&*store, &name).unwrap()).unwrap();
        let good = kf.clone();
        // more passes than any sane key (a tampered object could ask for 2^32 passes over 4 TiB)
        kf.params.t_cost = MAX_KDF_PASSES + 1;
        write_framed(&*store, &name, &serde_json::to_vec(&kf).unwrap()).unwrap();
        let err = Repository::open(store.clone(), PASS)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&name) && err.contains("passes"), "{err}");
        kf.params = KdfParams {
            m_cost: MAX_KDF_MEMORY_KIB,
            t_cost: 3,
            p_cost: 1,
        };
        write_framed(&*store, &name, &serde_json::to_vec(&kf).unwrap()).unwrap();
        assert!(Repository::open(store.clone(), PASS).is_err());
        write_framed(&*store, &name, &serde_json::to_vec(&good).unwrap()).unwrap();
        Repository::open(store.clone(), PASS).unwrap();
        // every key object costs a derivation: past the cap, none is tried
        let body = serde_json::to_vec(&good).unwrap();
        for i in 0..MAX_KEY_OBJECTS {
            write_framed(&*store, &format!("keys/extra{i:03}"), &body).unwrap();
        }
        let err = Repository::open(store.clone(), PASS)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("key objects") && err.contains("at most 64"), "{err}");
    }

    fn tree_blob(repo: &Repository, name: &str) -> (ChunkId, EncodedBlob) {
        let tree = Tree::of(vec![Node {
            mode: 0o644,
            mtime: 1,
            mtime_nsec: 2,
            ctime: 3,
            ctime_nsec: 4,
            dev: 5,
            ino: 6,
            ..Node::new(name, crate::repo::NodeKind::File)
        }]);
        let b = repo.encode_tree(&tree).unwrap();
        (b.id, b)
    }

    /// A new repository with a tree cache in `cache`, holding the packed trees "a" and "b".
    #[allow(clippy::type_complexity)]
    fn two_cached_trees(
        store: &Arc<dyn BlobStore>,
        cache: &std::path::Path,
    ) -> (Arc<Repository>, (ChunkId, EncodedBlob), (ChunkId, EncodedBlob)) {
        let repo = Arc::new(
            Repository::init(store.clone(), PASS, &opts())
                .unwrap()
                .with_tree_cache(cache),
        );
        let (a, b) = (tree_blob(&repo, "a"), tree_blob(&repo, "b"));
        let mut w = PackWriter::open(repo.clone(), 4096, 100).unwrap();
        w.add(&a.1).unwrap();
        w.add(&b.1).unwrap();
        w.finish().unwrap();
        (repo, a, b)
    }

    #[test]
    fn tree_refs_are_the_chunks_and_subtrees_of_the_full_tree() {
        use crate::repo::{ChunkRef, NodeKind};
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        let (repo, (a, _), _) = two_cached_trees(&store, dir.path());
        let node = |name: &str, kind: NodeKind| {
            let mut n = repo.load_tree(&a).unwrap().nodes.remove(0);
            n.name = name.into();
            n.kind = kind;
            n
        };
        let (c1, c2, sub) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let mut file = node("quote \" and\nnewline \u{1f600}", NodeKind::File);
        file.content = [c1, c2, c1]
            .iter()
            .enumerate()
            .map(|(i, c)| ChunkRef {
                off: i as u64 * 10,
                len: 10,
                id: id_hex(c),
            })
            .collect();
        file.xattrs = vec![("user.x".into(), "00ff".into())];
        let mut folder = node("folder", NodeKind::Dir);
        folder.subtree = Some(id_hex(&sub));
        let mut link = node("link", NodeKind::Symlink);
        link.target = Some("../elsewhere".into());
        let tree = Tree::of(vec![file, folder, link]);
        let blob = repo.encode_tree(&tree).unwrap();
        let mut w = PackWriter::open(repo.clone(), 4096, 100).unwrap();
        w.add(&blob).unwrap();
        w.finish().unwrap();
        let refs = repo.tree_refs(&blob.id).unwrap();
        assert_eq!(refs.chunks, vec![c1, c2, c1]);
        assert_eq!(refs.subtrees, vec![sub]);
        assert_eq!(repo.load_tree(&blob.id).unwrap(), tree);
    }

    #[test]
    fn a_split_folder_is_joined_from_its_parts_and_damaged_forms_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        let (repo, (a, ablob), (b, bblob)) = two_cached_trees(&store, dir.path());
        // an unsplit tree is written as before split folders (same JSON, so the same ids)
        let plain = repo.load_tree(&a).unwrap();
        let json = serde_json::to_string(&plain).unwrap();
        assert!(
            json.starts_with("{\"nodes\":[{\"name\":\"a\"") && !json.contains("parts"),
            "{json}"
        );
        assert_eq!(repo.encode_tree(&plain).unwrap().id, a);
        assert_eq!(serde_json::to_string(&Tree::default()).unwrap(), "{\"nodes\":[]}");

        let tree = |nodes: Vec<Node>, parts: Vec<String>| Tree { nodes, parts };
        let split = tree(vec![], vec![id_hex(&a), id_hex(&b)]);
        assert_eq!(
            serde_json::to_string(&split).unwrap(),
            format!("{{\"parts\":[\"{}\",\"{}\"]}}", id_hex(&a), id_hex(&b))
        );
        let both = tree(plain.nodes.clone(), vec![id_hex(&a)]);
        let bad_id = tree(vec![], vec!["zz".into()]);
        let s = repo.encode_tree(&split).unwrap();
        let nested = tree(vec![], vec![id_hex(&s.id)]);
        let (nested_blob, bad_id_blob) = (
            repo.encode_tree(&nested).unwrap(),
            repo.encode_tree(&bad_id).unwrap(),
        );
        // a tree with nodes and parts cannot be serialised as such: its JSON is written by hand
        let both_raw = format!(
            "{{\"nodes\":{},\"parts\":[\"{}\"]}}",
            serde_json::to_string(&both.nodes).unwrap(),
            id_hex(&a)
        );
        let both_id = repo.key().chunk_id(both_raw.as_bytes());
        let both_blob = encode_blob(repo.key(), 3, BLOB_TREE, both_id, both_raw.as_bytes()).unwrap();
        let mut w = PackWriter::open(repo.clone(), 4096, 100).unwrap();
        for blob in [&s, &nested_blob, &bad_id_blob, &both_blob] {
            w.add(blob).unwrap();
        }
        w.finish().unwrap();

        let joined = repo.load_tree(&s.id).unwrap();
        let names: Vec<_> = joined.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(joined.parts.is_empty());
        assert_eq!(repo.load_tree_object(&s.id).unwrap(), split);
        let mut l = repo.listing(&s.id).unwrap();
        assert!(l.is_split());
        assert_eq!(l.next_part().unwrap().unwrap().0, Some(a));
        assert_eq!(l.next_part().unwrap().unwrap().0, Some(b));
        assert!(l.next_part().is_none());
        let refs = repo.tree_refs(&s.id).unwrap();
        assert_eq!(refs.subtrees, vec![a, b]);
        drop((ablob, bblob));

        let err = |id: &ChunkId| repo.load_tree(id).unwrap_err().to_string();
        assert!(
            err(&nested_blob.id).contains("is split itself"),
            "{}",
            err(&nested_blob.id)
        );
        assert!(
            err(&bad_id_blob.id).contains("invalid part id \"zz\""),
            "{}",
            err(&bad_id_blob.id)
        );
        assert!(
            err(&both_id).contains("both nodes and parts"),
            "{}",
            err(&both_id)
        );
        // a missing part names the chunk, and the listing stops there
        let gone = tree(vec![], vec![id_hex(&a), id_hex(&[9; 32])]);
        let g = repo.encode_tree(&gone).unwrap();
        let mut w = PackWriter::open(repo.clone(), 4096, 100).unwrap();
        w.add(&g).unwrap();
        w.finish().unwrap();
        let items: Vec<_> = repo.listing(&g.id).unwrap().collect();
        assert_eq!(items.len(), 2);
        assert!(
            matches!(&items[1], Err(RepoError::MissingChunk { .. })),
            "{:?}",
            items[1]
        );
    }

    #[test]
    fn a_snapshot_newer_than_this_agent_reads_is_refused_by_name() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        let repo = Repository::init(store, PASS, &opts()).unwrap();
        let mut snap = Snapshot {
            version: SNAPSHOT_VERSION,
            time: 1,
            time_nsec: 0,
            host: "h".into(),
            paths: vec!["/x".into()],
            tree: id_hex(&[1; 32]),
            parent: None,
            stats: Default::default(),
            partial: false,
            excludes: vec![],
        };
        repo.save_snapshot(&snap).unwrap();
        assert_eq!(repo.snapshots().unwrap().len(), 1);
        snap.version = SNAPSHOT_VERSION + 1;
        snap.time = 2;
        let id = repo.save_snapshot(&snap).unwrap();
        let e = repo.snapshots().unwrap_err().to_string();
        assert!(
            e.contains(&format!("snapshots/{id}")) && e.contains("upgrade seedship-agent"),
            "{e}"
        );
    }

    #[test]
    fn trees_come_from_the_verified_cache_and_never_wrong() {
        use crate::blob::{Meter, MeteredStore};
        let dir = tempfile::tempdir().unwrap();
        let meter = Arc::new(Meter::new());
        let store: Arc<dyn BlobStore> = Arc::new(MeteredStore::new(MemoryStore::default(), meter.clone()));
        let (repo, (a, ablob), (b, bblob)) = two_cached_trees(&store, dir.path());
        let segment = dir.path().join("trees").join("00000000.seg");
        let seg = std::fs::read(&segment).unwrap();
        let at = |env: &[u8]| seg.windows(env.len()).position(|w| w == env).unwrap();
        let (a_at, b_at) = (at(&ablob.envelope), at(&bblob.envelope));
        assert!(b_at > a_at, "written trees are cached, in order");
        let before = meter.stats().bytes_received;
        assert_eq!(repo.load_tree(&a).unwrap().nodes[0].name, "a");
        assert_eq!(
            meter.stats().bytes_received,
            before,
            "a hit reads nothing from the store"
        );
        assert_eq!(repo.tree_cache_stats().hits, 1);
        // a record holding another tree, or a damaged one, is a miss that reads the store
        let mut tampered = seg.clone();
        tampered[a_at..a_at + ablob.envelope.len()].copy_from_slice(&bblob.envelope[..ablob.envelope.len()]);
        tampered[b_at + 20] ^= 1;
        std::fs::write(&segment, &tampered).unwrap();
        assert_eq!(repo.load_tree(&a).unwrap().nodes[0].name, "a");
        assert_eq!(repo.load_tree(&b).unwrap().nodes[0].name, "b");
        assert_eq!(repo.tree_cache_stats().misses, 2);
        assert!(meter.stats().bytes_received > before);
        // ... and is repaired: the next read is a hit again
        assert_eq!(repo.load_tree(&b).unwrap().nodes[0].name, "b");
        assert_eq!(repo.tree_cache_stats().hits, 2);
        // a cached tree the index does not hold stays invisible
        let (c, cblob) = tree_blob(&repo, "c");
        repo.remember_tree(&c, &cblob.envelope);
        assert!(matches!(repo.load_tree(&c), Err(RepoError::MissingChunk { .. })));
    }

    #[test]
    fn a_new_process_finds_cached_trees_and_a_torn_segment_is_only_a_miss() {
        use crate::blob::{Meter, MeteredStore};
        let dir = tempfile::tempdir().unwrap();
        let meter = Arc::new(Meter::new());
        let store: Arc<dyn BlobStore> = Arc::new(MeteredStore::new(MemoryStore::default(), meter.clone()));
        let (_, (a, _), (b, _)) = two_cached_trees(&store, dir.path());
        let reopen = || {
            Repository::open(store.clone(), PASS)
                .unwrap()
                .with_tree_cache(dir.path())
        };
        let repo = reopen();
        let before = meter.stats().bytes_received;
        assert_eq!(repo.load_tree(&a).unwrap().nodes[0].name, "a");
        assert_eq!(repo.load_tree(&b).unwrap().nodes[0].name, "b");
        assert_eq!(meter.stats().bytes_received, before, "both served by the segment");
        drop(repo);
        // a crash after the index entries but before the last record reached the disk: b is a miss
        let segment = dir.path().join("trees").join("00000000.seg");
        let len = std::fs::metadata(&segment).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let repo = reopen();
        assert_eq!(repo.load_tree(&a).unwrap().nodes[0].name, "a");
        assert_eq!(repo.load_tree(&b).unwrap().nodes[0].name, "b");
        assert_eq!(repo.tree_cache_stats(), TreeCacheStats { hits: 1, misses: 1 });
        drop(repo);
        // ... and b, read from the store, went into a new segment that the next process uses
        assert!(dir.path().join("trees").join("00000001.idx").exists());
        let repo = reopen();
        assert_eq!(repo.load_tree(&b).unwrap().nodes[0].name, "b");
        assert_eq!(repo.tree_cache_stats(), TreeCacheStats { hits: 1, misses: 0 });
    }

    #[test]
    fn walk_records_are_sealed_bound_to_their_tree_and_a_later_one_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        let (repo, (a, _), (b, _)) = two_cached_trees(&store, dir.path());
        let rec = WalkRecord {
            digest: [7; 32],
            names: [8; 32],
            subtrees: vec![[1; 32], [2; 32]],
        };
        assert!(!repo.has_walk_record(&a));
        let unindexed = [9; 32];
        repo.save_walk_record(&unindexed, &rec);
        assert!(repo.has_walk_record(&unindexed));
        assert_eq!(
            repo.walk_record(&unindexed),
            None,
            "the index does not hold that tree"
        );
        repo.save_walk_record(&a, &rec);
        assert!(repo.has_walk_record(&a) && !repo.has_walk_record(&b));
        assert_eq!(repo.walk_record(&a), Some(rec.clone()));
        assert_eq!(repo.walk_record(&b), None);
        drop(repo);
        // a new process reads it from the segment
        let reopen = || {
            Repository::open(store.clone(), PASS)
                .unwrap()
                .with_tree_cache(dir.path())
        };
        let repo = reopen();
        assert_eq!(repo.walk_record(&a), Some(rec.clone()));
        // a record that cannot be read (the repository's record for a), or that names another tree, is none
        assert_eq!(WalkRecord::decode(&b, &rec.encode(&a)), None);
        assert_eq!(WalkRecord::decode(&a, &rec.encode(&a)[..100]), None);
        // forgetting writes a record no digest matches, which the next process reads too
        repo.forget_walk_record(&a);
        let never = repo.walk_record(&a).unwrap();
        assert_eq!(never.digest, [0; 32]);
        drop(repo);
        assert_eq!(reopen().walk_record(&a).unwrap().digest, [0; 32]);
        // a record changed on disk does not authenticate: dropped with a warning
        let repo = reopen();
        drop(repo);
        for seg in std::fs::read_dir(dir.path().join("trees")).unwrap() {
            let p = seg.unwrap().path();
            if p.extension().is_some_and(|x| x == "seg") {
                let mut bytes = std::fs::read(&p).unwrap();
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
                std::fs::write(&p, bytes).unwrap();
            }
        }
        let repo = reopen();
        assert_eq!(repo.walk_record(&a), None);
        assert!(!repo.has_walk_record(&a), "rejected: dropped from the map");
    }

    #[test]
    fn index_by_bytes_and_appending_without_digests_reads_nothing() {
        use crate::blob::{Meter, MeteredStore};
        use crate::repo::IndexPolicy;
        let meter = Arc::new(Meter::new());
        let store: Arc<dyn BlobStore> = Arc::new(MeteredStore::new(MemoryStore::default(), meter.clone()));
        let repo = Arc::new(Repository::init(store.clone(), PASS, &opts()).unwrap());
        let mut w = PackWriter::open(repo.clone(), 4096, 1000).unwrap();
        w.set_index_policy(IndexPolicy {
            packs: 1000,
            bytes: Some(8192),
            interval: None,
        });
        for i in 0..12u32 {
            let data: Vec<u8> = (0..3000u32)
                .map(|j| ((i * 31 + j) % 251) as u8 ^ (j >> 8) as u8)
                .collect();
            w.add(&blob(&repo, &data)).unwrap();
        }
        w.finish().unwrap();
        let n = store.list("index/").unwrap().len();
        assert!(n >= 3, "an index object about every 8 KiB of packs, got {n}");
        // a second run appends to the same volume without reading it back when digests are off
        let repo2 = Arc::new(Repository::open(store.clone(), PASS).unwrap());
        let received = meter.stats().bytes_received;
        let mut w = PackWriter::open(repo2.clone(), 4096, 1)
            .unwrap()
            .without_digests();
        w.add(&blob(&repo2, &[9u8; 3000])).unwrap();
        assert!(w.finish().unwrap().is_empty(), "no digests");
        assert_eq!(meter.stats().bytes_received, received);
        let repo3 = Repository::open(store, PASS).unwrap();
        assert_eq!(
            repo3.read_blob(&repo3.key().chunk_id(&[9u8; 3000])).unwrap(),
            vec![9u8; 3000]
        );
    }

    #[test]
    fn every_volume_end_is_indexed_and_unindexed_volumes_are_removed() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        let o = RepoOptions {
            volume_size: 16384,
            ..opts()
        };
        let repo = Arc::new(Repository::init(store.clone(), PASS, &o).unwrap());
        // packs larger than a volume: a volume still never passes its size
        let mut w = PackWriter::open(repo.clone(), 65536, 100).unwrap();
        for i in 0..12u32 {
            let data: Vec<u8> = (0..3000u32)
                .map(|j| ((i * 37 + j) % 251) as u8 ^ (j >> 7) as u8)
                .collect();
            w.add(&blob(&repo, &data)).unwrap();
        }
        w.finish().unwrap();
        let reopened = Repository::open(store.clone(), PASS).unwrap();
        let ends = reopened.volume_ends();
        assert!(ends.len() >= 2, "{ends:?}");
        for (&v, &end) in &ends {
            let len = store.properties(&volume_name(v)).unwrap().len;
            assert_eq!(len, end.div_ceil(512) * 512, "volume {v}");
            assert!(end <= o.volume_size, "volume {v} ends at {end}");
        }
        // a volume a crashed run opened but never indexed is removed by the next writer
        let stray = volume_name(*ends.keys().last().unwrap() + 1);
        store.create(&stray, 1024, &Metadata::new()).unwrap();
        store.write_pages(&stray, 0, &[1u8; 1024]).unwrap();
        let reopened = Arc::new(reopened);
        drop(PackWriter::open(reopened, 4096, 100).unwrap());
        assert!(store.properties(&stray).is_err(), "{stray} was kept");
        assert_eq!(store.list("data/").unwrap().len(), ends.len());
    }

    #[test]
    fn claims_end_when_indexed_and_many_small_blobs_get_index_objects_in_time() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        let repo = Arc::new(Repository::init(store.clone(), PASS, &opts()).unwrap());
        let x = repo.key().chunk_id(b"x");
        assert!(repo.claim(&x));
        assert!(!repo.claim(&x), "claimed twice");
        // 16 MiB packs and an index object every 1000 packs: only the bound on waiting blobs writes one
        let mut w = PackWriter::open(repo.clone(), 16 << 20, 1000).unwrap();
        assert!(w.add(&blob(&repo, b"x")).unwrap());
        w.flush_index().unwrap();
        assert!(repo.contains(&x) && !repo.claim(&x));
        assert!(repo.claimed.lock().unwrap().is_empty(), "the claim ended");
        let n = crate::repo::pack::MAX_UNINDEXED + 10;
        for i in 0..n as u64 {
            let data = i.to_le_bytes();
            assert!(repo.claim(&repo.key().chunk_id(&data)));
            assert!(w.add(&blob(&repo, &data)).unwrap());
        }
        assert_eq!(
            store.list("index/").unwrap().len(),
            2,
            "one index object for x, one at the bound"
        );
        assert_eq!(repo.index_size().0, crate::repo::pack::MAX_UNINDEXED + 1);
        assert_eq!(
            repo.claimed.lock().unwrap().len(),
            10,
            "claims of indexed blobs ended"
        );
        w.finish().unwrap();
        let reopened = Repository::open(store, PASS).unwrap();
        assert_eq!(reopened.index_size().0, n + 1);
        assert!(reopened.contains(&repo.key().chunk_id(&7u64.to_le_bytes())));
    }

    /// With a small memory budget most of the index is in the cache file: blobs are found and read, a
    /// reopened repository takes the file (and reads only the index objects it does not cover), and answers
    /// as a repository opened without a cache.
    #[test]
    fn an_index_beyond_its_budget_is_read_from_the_cache_file() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        let cache = tempfile::tempdir().unwrap();
        let ic = IndexCacheOptions {
            dir: cache.path().to_path_buf(),
            memory_budget: 100 * 53,
        };
        Repository::init(store.clone(), PASS, &opts()).unwrap();
        let write = |repo: &Arc<Repository>, from: u64, to: u64| {
            let mut w = PackWriter::open(repo.clone(), 4096, 1).unwrap();
            for i in from..to {
                assert!(w.add(&blob(repo, &i.to_le_bytes())).unwrap());
            }
            w.finish().unwrap();
        };
        let repo = Arc::new(Repository::open_cached(store.clone(), PASS, &ic).unwrap());
        write(&repo, 0, 700);
        let (n, bytes, on_disk) = repo.index_size();
        assert_eq!(n, 700);
        assert!(on_disk >= 600, "{on_disk} on disk");
        assert!(bytes < 100 * 53 + 4096, "{bytes} bytes in memory");
        let id = repo.key().chunk_id(&5u64.to_le_bytes());
        assert_eq!(repo.read_blob(&id).unwrap(), 5u64.to_le_bytes());
        drop(repo);

        let plain = Repository::open(store.clone(), PASS).unwrap();
        let cached = Arc::new(Repository::open_cached(store.clone(), PASS, &ic).unwrap());
        assert_eq!(cached.index_entries().unwrap(), plain.index_entries().unwrap());
        assert_eq!(cached.volume_ends(), plain.volume_ends());
        assert!(cached.index_size().2 >= 600);
        // more objects: the file covers the old ones, the new ones are read and merged
        write(&cached, 700, 900);
        let again = Repository::open_cached(store.clone(), PASS, &ic).unwrap();
        let plain = Repository::open(store, PASS).unwrap();
        assert_eq!(again.index_size().0, 900);
        assert_eq!(again.index_entries().unwrap(), plain.index_entries().unwrap());
        assert_eq!(again.volume_ends(), plain.volume_ends());
        for i in [0u64, 699, 700, 899] {
            let id = again.key().chunk_id(&i.to_le_bytes());
            assert_eq!(again.read_blob(&id).unwrap(), i.to_le_bytes());
        }
        assert!(!again.contains(&again.key().chunk_id(b"never written")));
    }
}
