//! Where everything sits in a drive's payload (a pax tar stream), as a pure function of the plan:
//!
//! ```text
//! DriveManifest.xml   a slot of the planned upper-bound size, ending on a 4096-byte sector boundary;
//!                     written last, the manifest text padded with spaces (XML allows trailing whitespace)
//! <session>/<container>/<blob>
//!                     one member per part, in plan order
//! end of archive      two zero blocks
//! ```
//!
//! The manifest comes first so that whoever reads the drive (the data centre, `verify`) knows every range and
//! its MD5 before the data, and checks everything in one streaming pass. Because the slot ends on a sector
//! boundary, filling it in at the end rewrites whole sectors and touches no data.

use crate::prep::error::CopyError;
use crate::prep::plan::{DrivePlan, Layout, PartPlan};
use seedship_shared::tar::{encode_header, entry_tar_size, EntryHeader, BLOCK, END_OF_ARCHIVE_LEN};
use std::ops::Range;

/// The manifest's member name, at the root of the payload.
pub use seedship_shared::manifest::MANIFEST_FILE as MANIFEST_NAME;
/// The manifest's path as the Import/Export API names it (relative to the drive's root).
pub const MANIFEST_PATH: &str = "\\DriveManifest.xml";

/// The sector size the manifest slot is aligned to.
const SECTOR: u64 = 4096;

/// The payload layout of one preparation session.
#[derive(Debug, Clone)]
pub struct DriveLayout {
    /// The session id: the folder the blobs' members sit in.
    pub session: String,
    /// The container the blobs go to; a blob's path on the drive and in the manifest starts with it.
    pub container: String,
    /// The modification time every member carries (fixed, so the stream is reproducible).
    pub mtime: i64,
    /// A manifest slot of fixed size (text bytes) for a drive that takes several sessions (`prepimport`):
    /// the slot is sized once, by the first session, and every later session rewrites it. `None`: sized by
    /// the plan.
    pub manifest_slot: Option<u64>,
    /// Where this session's members start in the payload, after the members of earlier sessions on the
    /// drive (where their end-of-archive marker was). `None`: right after the manifest member.
    pub data_from: Option<u64>,
}

impl DriveLayout {
    /// The blob's path in the account: `<container>/<blob name>` (the manifest's `BlobPath`).
    pub fn blob_path(&self, blob: &str) -> String {
        format!("{}/{blob}", self.container)
    }

    /// The tar member name of a part: `<session>/<container>/<blob name>`, as
    /// [`seedship_shared::manifest::DriveFilePath`] has it.
    pub fn member_name(&self, blob: &str) -> String {
        format!("{}/{}", self.session, self.blob_path(blob))
    }

    /// The header of a part's member.
    pub fn part_header(&self, part: &PartPlan) -> EntryHeader {
        EntryHeader::file(self.member_name(&part.blob), part.size(), self.mtime)
    }

    /// The header of the manifest slot for a manifest of at most `reserve` bytes: its size is rounded up so
    /// that the member ends on a sector boundary.
    pub fn manifest_header(&self, reserve: u64) -> EntryHeader {
        let reserve = self.manifest_slot.unwrap_or(reserve);
        let size = (reserve + BLOCK).div_ceil(SECTOR) * SECTOR - BLOCK;
        EntryHeader::file(MANIFEST_NAME, size, self.mtime)
    }

    /// Payload offsets of each part's member, and where the data members end (the end-of-archive marker).
    pub fn member_offsets(&self, plan: &DrivePlan) -> (Vec<u64>, u64) {
        let mut at = self.data_start(plan);
        let mut offsets = Vec::with_capacity(plan.parts.len());
        for p in &plan.parts {
            offsets.push(at);
            at += entry_tar_size(&self.part_header(p));
        }
        (offsets, at)
    }

    /// Payload offset where the first data member starts.
    pub fn data_start(&self, plan: &DrivePlan) -> u64 {
        self.data_from
            .unwrap_or_else(|| entry_tar_size(&self.manifest_header(plan.manifest_reserve)))
    }
}

/// Upper bounds of the manifest text, generous on purpose: a part's entry with its names XML-escaped (every
/// character may become `&quot;`, 6 bytes), a page range at its longest.
const MANIFEST_BASE: u64 = 2048;
const MANIFEST_PART: u64 = 1024;
const MANIFEST_RANGE: u64 = 128;

impl Layout for DriveLayout {
    fn member_len(&self, name: &str, size: u64) -> u64 {
        entry_tar_size(&EntryHeader::file(self.member_name(name), size, self.mtime))
    }
    fn manifest_base_len(&self) -> u64 {
        MANIFEST_BASE
    }
    fn manifest_part_len(&self, name: &str) -> u64 {
        MANIFEST_PART + 6 * 2 * self.member_name(name).len() as u64
    }
    fn manifest_range_len(&self) -> u64 {
        MANIFEST_RANGE
    }
    fn manifest_member_len(&self, text_len: u64) -> u64 {
        // With earlier sessions on the drive, everything before this session's members is taken already.
        self.data_from
            .unwrap_or_else(|| entry_tar_size(&self.manifest_header(text_len)))
    }
    fn trailer_len(&self) -> u64 {
        END_OF_ARCHIVE_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_slot_ends_on_a_sector() {
        let l = DriveLayout {
            session: "s1x".into(),
            container: "seed".into(),
            mtime: 0,
            manifest_slot: None,
            data_from: None,
        };
        let p = seedship_shared::manifest::DriveFilePath::new("s1x", "seed/data/0000").unwrap();
        assert_eq!(l.member_name("data/0000"), p.tar_path);
        for reserve in [0, 1, 3583, 3584, 3585, 10_000_000] {
            let h = l.manifest_header(reserve);
            assert!(h.size >= reserve);
            assert_eq!(entry_tar_size(&h) % SECTOR, 0, "{reserve}");
        }
    }
}

/// What the copy learnt about one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    pub blob: String,
    /// The segment's bytes in the blob.
    pub range: Range<u64>,
    /// Uppercase hex MD5, as the manifest wants it.
    pub md5: String,
    /// xxh3-128 of the same bytes, for the read-back check.
    pub xxh3: u128,
    /// Whether every byte is zero (such segments are left out of the manifest).
    pub zero: bool,
}

/// The header blocks (pax and ustar) of a part's member.
pub(crate) fn member_header(layout: &DriveLayout, part: &PartPlan) -> Result<Vec<u8>, CopyError> {
    encode_header(&layout.part_header(part)).map_err(|e| CopyError::Member {
        member: layout.member_name(&part.blob),
        reason: e.to_string(),
    })
}
