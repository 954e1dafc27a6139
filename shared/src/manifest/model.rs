//! Manifest domain types and their validation rules.

use std::fmt;
use std::str::FromStr;

use super::{ManifestError, DOC_MANIFEST};

/// The manifest version we write (the one the reference grammar shows); any date-like string is read.
pub const MANIFEST_VERSION: &str = "2014-11-01";
/// Path of the manifest inside the drive payload (tar root), and the `ManifestFile` value sent to the API.
pub const MANIFEST_FILE: &str = "DriveManifest.xml";
/// Value of `ClientCreator` in the manifests we write.
pub const CLIENT_CREATOR: &str = concat!("seedship-diskprep ", env!("CARGO_PKG_VERSION"));
/// Page size of page blobs: every offset and length in a page range list is a multiple of it.
pub const PAGE_SIZE: u64 = 512;
/// Largest page range or block.
pub const MAX_RANGE_LEN: u64 = 4 << 20;

/// An MD5 digest; shown and written as 32 uppercase hex digits, read in either case.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Md5Hash(pub [u8; 16]);

impl Md5Hash {
    /// MD5 of `data`.
    pub fn of(data: &[u8]) -> Self {
        use md5::Digest;
        Md5Hash(md5::Md5::digest(data).into())
    }
}

impl fmt::Display for Md5Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for Md5Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Md5Hash({self})")
    }
}

impl FromStr for Md5Hash {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("expected 32 hexadecimal digits (Base16 MD5)");
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|_| "expected 32 hexadecimal digits (Base16 MD5)")?;
        Ok(Md5Hash(out))
    }
}

/// One page range: `length` bytes at blob offset `offset`, with the MD5 of those bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRange {
    pub offset: u64,
    pub length: u64,
    pub hash: Md5Hash,
}

/// One block of a block blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub offset: u64,
    pub length: u64,
    pub id: Option<String>,
    pub hash: Md5Hash,
}

/// The data description of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeList {
    Pages(Vec<PageRange>),
    Blocks(Vec<Block>),
}

/// What the service does when the blob already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportDisposition {
    #[default]
    Rename,
    NoOverwrite,
    Overwrite,
}

impl ImportDisposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rename => "rename",
            Self::NoOverwrite => "no-overwrite",
            Self::Overwrite => "overwrite",
        }
    }
}

impl FromStr for ImportDisposition {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rename" => Ok(Self::Rename),
            "no-overwrite" => Ok(Self::NoOverwrite),
            "overwrite" => Ok(Self::Overwrite),
            _ => Err("expected rename, no-overwrite or overwrite (case-sensitive)"),
        }
    }
}

/// A metadata or properties file on the drive and the MD5 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub path: String,
    pub hash: Md5Hash,
}

/// The credential the service uses to write the blobs. Never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    StorageAccountKey(String),
    ContainerSas(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StorageAccountKey(_) => f.write_str("StorageAccountKey(<redacted>)"),
            Self::ContainerSas(_) => f.write_str("ContainerSas(<redacted>)"),
        }
    }
}

/// Which part of a blob split across drives this drive holds: blob bytes `[start, end)`, stored contiguously
/// in the part file (blob offset `o` is at file offset `o - start`). Written as seedship's `ClientData`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobPart {
    /// 1-based part number (drive order).
    pub index: u32,
    pub start: u64,
    pub end: u64,
}

const PART_PREFIX: &str = "seedship-part:";

impl BlobPart {
    pub(crate) fn to_client_data(self) -> String {
        format!(
            "{PART_PREFIX}index={};start={};end={}",
            self.index, self.start, self.end
        )
    }

    pub(crate) fn from_client_data(s: &str) -> Option<Result<Self, &'static str>> {
        let rest = s.strip_prefix(PART_PREFIX)?;
        let mut it = rest.split(';');
        let mut field = |name: &str| -> Result<u64, &'static str> {
            it.next()
                .and_then(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .ok_or("expected seedship-part:index=<n>;start=<bytes>;end=<bytes>")
        };
        let part = (|| {
            let index = u32::try_from(field("index")?).map_err(|_| "part index too large")?;
            Ok(BlobPart {
                index,
                start: field("start")?,
                end: field("end")?,
            })
        })();
        Some(part.and_then(|p| {
            if it.next().is_some() {
                Err("trailing fields after end=")
            } else {
                Ok(p)
            }
        }))
    }
}

/// One blob entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBlob {
    /// Blob path relative to the account, starting with the container (`container/dir/name`).
    pub blob_path: String,
    /// File path relative to the drive root, Windows style (`\session\container\dir\name`).
    pub file_path: String,
    pub client_data: Option<String>,
    pub part: Option<BlobPart>,
    pub snapshot: Option<String>,
    /// Total blob length (the whole blob, even when this drive holds only a part).
    pub length: u64,
    pub disposition: Option<ImportDisposition>,
    pub ranges: RangeList,
    pub metadata: Option<FileRef>,
    pub properties: Option<FileRef>,
}

impl ManifestBlob {
    /// A page-blob entry with the default disposition and no metadata.
    pub fn page_blob(
        blob_path: impl Into<String>,
        file_path: impl Into<String>,
        length: u64,
        ranges: Vec<PageRange>,
    ) -> Self {
        Self {
            blob_path: blob_path.into(),
            file_path: file_path.into(),
            client_data: None,
            part: None,
            snapshot: None,
            length,
            disposition: Some(ImportDisposition::Rename),
            ranges: RangeList::Pages(ranges),
            metadata: None,
            properties: None,
        }
    }

    /// Checks the rules of the format and of seedship's part files.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let fail = |reason: String| {
            Err(ManifestError::Blob {
                doc: DOC_MANIFEST,
                blob: self.blob_path.clone(),
                reason,
            })
        };
        if self.blob_path.is_empty() || !self.blob_path.contains('/') {
            return fail("BlobPath must start with the container name: container/blob".into());
        }
        if self.file_path.is_empty() {
            return fail("FilePath is empty".into());
        }
        if self.part.is_some() && self.client_data.is_some() {
            return fail("a part file entry cannot also carry free ClientData".into());
        }
        if self.length > i64::MAX as u64 {
            return fail(format!("Length {} is larger than any blob can be", self.length));
        }
        let (lo, hi) = match self.part {
            Some(p)
                if p.start % PAGE_SIZE != 0
                    || p.end % PAGE_SIZE != 0
                    || p.start >= p.end
                    || p.end > self.length =>
            {
                return fail(format!(
                    "part [{}, {}) is not a 512-aligned, non-empty range within the blob length {}",
                    p.start, p.end, self.length
                ));
            }
            Some(p) => (p.start, p.end),
            None => (0, self.length),
        };
        match &self.ranges {
            RangeList::Pages(ranges) => {
                if !self.length.is_multiple_of(PAGE_SIZE) {
                    return fail(format!(
                        "page blob Length {} is not a multiple of 512",
                        self.length
                    ));
                }
                let mut next = lo;
                for r in ranges {
                    if r.offset % PAGE_SIZE != 0 || r.length % PAGE_SIZE != 0 {
                        return fail(format!(
                            "PageRange at offset {} length {} is not 512-aligned",
                            r.offset, r.length
                        ));
                    }
                    if r.length == 0 || r.length > MAX_RANGE_LEN {
                        return fail(format!(
                            "PageRange at offset {} has length {} (must be 512..=4194304)",
                            r.offset, r.length
                        ));
                    }
                    if r.offset < next {
                        return fail(format!(
                            "PageRange at offset {} overlaps or is out of order (previous ends at {next})",
                            r.offset
                        ));
                    }
                    next = match r.offset.checked_add(r.length) {
                        Some(end) => end,
                        None => {
                            return fail(format!("PageRange at offset {} ends beyond 2^64", r.offset));
                        }
                    };
                    if next > hi {
                        return fail(format!(
                            "PageRange at offset {} ends at {next}, beyond {hi} (blob length or part end)",
                            r.offset
                        ));
                    }
                }
            }
            RangeList::Blocks(blocks) => {
                let mut next = 0;
                for b in blocks {
                    if b.offset != next {
                        return fail(format!(
                            "Block at offset {} leaves a gap or overlaps (expected {next})",
                            b.offset
                        ));
                    }
                    if b.length == 0 || b.length > MAX_RANGE_LEN {
                        return fail(format!(
                            "Block at offset {} has length {} (must be 1..=4194304)",
                            b.offset, b.length
                        ));
                    }
                    if self.part.is_some() {
                        return fail("a block blob is never split into parts across drives".into());
                    }
                    next = b.offset.saturating_add(b.length);
                }
                if next != self.length || blocks.len() > 50_000 {
                    return fail(format!(
                        "BlockList covers {next} bytes in {} blocks; must cover Length {} in at most 50000",
                        blocks.len(),
                        self.length
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The drive-level fields that precede the blob lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveHeader {
    pub version: String,
    pub drive_id: String,
    pub credential: Option<Credential>,
    pub client_creator: Option<String>,
}

impl DriveHeader {
    /// The header seedship writes: [`MANIFEST_VERSION`], `drive_id`, the credential, [`CLIENT_CREATOR`].
    pub fn new(drive_id: impl Into<String>, credential: Option<Credential>) -> Self {
        Self {
            version: MANIFEST_VERSION.to_string(),
            drive_id: drive_id.into(),
            credential,
            client_creator: Some(CLIENT_CREATOR.to_string()),
        }
    }
}

/// The header of one `BlobList`: an optional id and list-wide metadata/properties files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobListHeader {
    pub id: Option<String>,
    pub metadata: Option<FileRef>,
    pub properties: Option<FileRef>,
}

/// One `BlobList` with its blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobList {
    pub header: BlobListHeader,
    pub blobs: Vec<ManifestBlob>,
}

/// A whole manifest in memory (small drives, tests, the emulator's checks); large ones stream through
/// [`super::ManifestWriter`] and [`super::read_manifest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveManifest {
    pub header: DriveHeader,
    pub blob_lists: Vec<BlobList>,
}

/// Where a blob's data file sits on the drive: its path in the tar payload and its manifest `FilePath`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveFilePath {
    /// `<session-id>/<blob path>`, the tar member name.
    pub tar_path: String,
    /// `\<session-id>\<blob path with \ separators>`, the manifest `FilePath`.
    pub file_path: String,
}

impl DriveFilePath {
    /// Paths for `blob_path` in copy session `session_id` (`[A-Za-z0-9_#-]`, 3 to 30 characters, as
    /// WAImportExport requires). Blob paths with a backslash, an empty, `.` or `..` component are refused.
    pub fn new(session_id: &str, blob_path: &str) -> Result<Self, ManifestError> {
        let ok_id = (3..=30).contains(&session_id.len())
            && session_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_#-".contains(&b));
        if !ok_id {
            return Err(ManifestError::Value {
                doc: DOC_MANIFEST,
                at: 0,
                field: "session id".into(),
                value: session_id.into(),
                reason: "use 3 to 30 characters from A-Z a-z 0-9 _ # -".into(),
            });
        }
        let bad_component = blob_path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
        if bad_component || blob_path.contains('\\') || blob_path.contains('\0') {
            return Err(ManifestError::Blob {
                doc: DOC_MANIFEST,
                blob: blob_path.into(),
                reason:
                    "blob path cannot be stored as a drive file (backslash, NUL, or empty/./.. component)"
                        .into(),
            });
        }
        Ok(Self {
            tar_path: format!("{session_id}/{blob_path}"),
            file_path: format!("\\{session_id}\\{}", blob_path.replace('/', "\\")),
        })
    }

    /// The tar member name for a manifest `FilePath` (leading `\` dropped, `\` turned into `/`).
    pub fn tar_path_of(file_path: &str) -> String {
        file_path.trim_start_matches('\\').replace('\\', "/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_file_paths_follow_the_session_layout() {
        let p = DriveFilePath::new("seed_2026-#1", "vault/data/00 01").unwrap();
        assert_eq!(p.tar_path, "seed_2026-#1/vault/data/00 01");
        assert_eq!(p.file_path, "\\seed_2026-#1\\vault\\data\\00 01");
        assert_eq!(DriveFilePath::tar_path_of(&p.file_path), p.tar_path);
        for bad_session in ["ab", "has space", &"x".repeat(31), "sl/ash"] {
            assert!(DriveFilePath::new(bad_session, "c/b").is_err(), "{bad_session:?}");
        }
        for bad_blob in ["c//b", "c/../b", "c\\b", "/c/b", "c/b/"] {
            assert!(DriveFilePath::new("sess", bad_blob).is_err(), "{bad_blob:?}");
        }
    }

    #[test]
    fn page_ranges_near_2_pow_64_cannot_wrap_the_order_check() {
        let r = |offset: u64| PageRange {
            offset,
            length: 512,
            hash: Md5Hash::of(&[0u8; 512]),
        };
        let top = u64::MAX - 511; // 2^64 - 512, a multiple of 512
                                  // the second range ended at 2^64, which wrapped to 0 and let a third range start over at 0
        let b = ManifestBlob::page_blob("c/b", "\\s\\c\\b", top, vec![r(top - 512), r(top), r(0)]);
        let err = b.validate().unwrap_err().to_string();
        assert!(err.contains("Length"), "{err}");
        let ok = ManifestBlob::page_blob("c/b", "\\s\\c\\b", 1 << 40, vec![r(0), r((1 << 40) - 512)]);
        ok.validate().unwrap();
        let over = ManifestBlob::page_blob("c/b", "\\s\\c\\b", 1 << 40, vec![r(0), r(1 << 40)]);
        assert!(over.validate().is_err());
    }

    #[test]
    fn part_client_data_round_trips_and_rejects_junk() {
        let part = BlobPart {
            index: 3,
            start: 4 << 20,
            end: 12 << 20,
        };
        assert_eq!(BlobPart::from_client_data(&part.to_client_data()), Some(Ok(part)));
        assert_eq!(BlobPart::from_client_data("free text"), None);
        for junk in [
            "seedship-part:index=1",
            "seedship-part:index=1;start=0;end=x",
            "seedship-part:index=1;start=0;end=5;more",
        ] {
            assert!(matches!(BlobPart::from_client_data(junk), Some(Err(_))), "{junk}");
        }
    }
}
