//! Spanning a job's blobs over shipping drives: a pure function from sizes to a plan.
//!
//! Every blob is cut into *segments*: its data ranges (the pages that hold data) split at every 4 MiB
//! boundary of the blob, so no segment is longer than a manifest `PageRange` may be (4 MiB) and the cut points
//! do not depend on where a drive happens to fill up. A drive holds, for each blob it carries, one *part*:
//! the blob's bytes from the start of its first segment to the end of its last, as one tar member. Blobs are
//! laid out in order and a blob spans drives only at segment boundaries. A blob with no data at all still
//! gets an empty part, so that its manifest entry (and so its length) reaches the data centre.
//!
//! What a member, the manifest and the end of the tar stream cost on the drive is asked of a [`Layout`], so
//! this module knows nothing of tar or XML and can be property-tested on sizes alone.

use seedship_shared::manifest::ranges::range_windows;
use seedship_shared::units::human;
use std::ops::Range;

/// Manifest ranges are at most this long, and segments never cross a multiple of it.
pub const SEGMENT_SIZE: u64 = 4 * 1024 * 1024;

/// A blob of the staging location as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobExtents {
    /// The blob's name in the container (its path under `blobs/`).
    pub name: String,
    /// Length in bytes, a multiple of 512.
    pub len: u64,
    /// The ranges holding data: sorted, disjoint, 512-aligned, inside `0..len`.
    pub data: Vec<Range<u64>>,
}

/// What things cost on a drive's payload, in bytes. The manifest's size is estimated from above as a sum of
/// per-part and per-range costs, so that a drive can be filled in one pass.
pub trait Layout {
    /// Bytes taken by a tar member of `size` bytes for blob `name` (headers and padding included).
    fn member_len(&self, name: &str, size: u64) -> u64;
    /// Upper bound of the manifest text without any part.
    fn manifest_base_len(&self) -> u64;
    /// Upper bound of the manifest text one part of blob `name` adds, without its ranges.
    fn manifest_part_len(&self, name: &str) -> u64;
    /// Upper bound of the manifest text one page range adds.
    fn manifest_range_len(&self) -> u64;
    /// Bytes taken by the manifest as a tar member, given its text length.
    fn manifest_member_len(&self, text_len: u64) -> u64;
    /// Bytes taken by the end of the archive.
    fn trailer_len(&self) -> u64;
}

/// One blob's share of one drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartPlan {
    pub blob: String,
    /// The blob's full length (every part's manifest entry names it).
    pub blob_len: u64,
    /// The part covers blob bytes `start..end` (empty for a blob without data).
    pub start: u64,
    pub end: u64,
    /// The segments in the part, each a manifest `PageRange` unless it turns out to be all zeros.
    pub segments: Vec<Range<u64>>,
}

impl PartPlan {
    /// Bytes of blob data the part's member holds.
    pub fn size(&self) -> u64 {
        self.end - self.start
    }
}

/// What goes on one drive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DrivePlan {
    pub parts: Vec<PartPlan>,
    /// Upper bound of the drive's manifest text, from the [`Layout`]'s estimates.
    pub manifest_reserve: u64,
    /// Payload bytes the drive's tar stream takes, manifest and trailer included.
    pub payload_len: u64,
}

/// The whole job spread over drives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpanPlan {
    pub drives: Vec<DrivePlan>,
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the drives are too small: {} more drive payload is needed; add a drive of at least {} (the \
         payload plus the drive's {} header), e.g. an image with --drive NEW.img --create-image {}, \
         or use larger drives",
        human(*missing),
        human(drive_len_for(*missing)),
        human(DRIVE_HEADER),
        create_image_value(drive_len_for(*missing))
    )]
    NotEnoughSpace {
        /// Payload bytes still to place when the drives ran out.
        missing: u64,
        /// The drives that were filled.
        filled: usize,
    },
    #[error(
        "drive {drive} holds {} of payload, too small for even one 4 MiB segment: use a drive of at least {} \
         (--create-image {})",
        human(*capacity),
        human(drive_len_for(*needed)),
        create_image_value(drive_len_for(*needed))
    )]
    DriveTooSmall {
        drive: usize,
        capacity: u64,
        /// Payload bytes the drive would need.
        needed: u64,
    },
}

/// The bytes at the start of every drive before its payload: the LUKS2 header and keyslots (16 MiB).
pub const DRIVE_HEADER: u64 = 16 << 20;

/// The least drive size that holds `payload` bytes: the header plus the payload in whole 4096-byte sectors.
pub fn drive_len_for(payload: u64) -> u64 {
    DRIVE_HEADER + payload.div_ceil(4096) * 4096
}

/// A `--create-image` value of at least `bytes`: whole MiB (`20M`), or whole GiB from 10 GiB up (`12G`).
pub fn create_image_value(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes >= 10 * GIB {
        format!("{}G", bytes.div_ceil(GIB))
    } else {
        format!("{}M", bytes.div_ceil(MIB))
    }
}

/// Splits data ranges at every multiple of [`SEGMENT_SIZE`] (the manifest's range windows).
pub fn segments(data: &[Range<u64>]) -> Vec<Range<u64>> {
    data.iter()
        .flat_map(|r| range_windows(r.start, r.end).map(|(start, len)| start..start + len))
        .collect()
}

/// Where the planner stands: the next segment of the next blob.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    blobs: &'a [BlobExtents],
    segments: Vec<Vec<Range<u64>>>,
    blob: usize,
    segment: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(blobs: &'a [BlobExtents]) -> Self {
        Cursor {
            blobs,
            segments: blobs.iter().map(|b| segments(&b.data)).collect(),
            blob: 0,
            segment: 0,
        }
    }

    /// Whether everything has been placed.
    pub fn is_done(&self) -> bool {
        self.blob >= self.blobs.len()
    }

    /// Fills one drive of `capacity` payload bytes from the cursor on and advances past what it placed.
    /// Places nothing (and returns an empty plan) when not even the first segment fits.
    pub fn fill_drive(&mut self, capacity: u64, layout: &dyn Layout) -> DrivePlan {
        let mut drive = DrivePlan::default();
        let mut usage = Usage::new(layout);
        while !self.is_done() {
            let blob = &self.blobs[self.blob];
            let segs = &self.segments[self.blob];
            let start = segs.get(self.segment).map_or(0, |s| s.start);
            let mut part = PartPlan {
                blob: blob.name.clone(),
                blob_len: blob.len,
                start,
                end: start,
                segments: Vec::new(),
            };
            let before = usage.clone();
            usage.add_part(&part.blob, layout);
            if usage.total(layout) > capacity {
                usage = before;
                break;
            }
            while let Some(seg) = segs.get(self.segment + part.segments.len()) {
                let mut next = usage.clone();
                next.grow_part(&part.blob, part.size(), seg.end - part.start, layout);
                if next.total(layout) > capacity {
                    break;
                }
                usage = next;
                part.end = seg.end;
                part.segments.push(seg.clone());
            }
            if part.segments.is_empty() && !segs.is_empty() {
                usage = before;
                break;
            }
            self.segment += part.segments.len();
            drive.parts.push(part);
            if self.segment >= segs.len() {
                self.blob += 1;
                self.segment = 0;
            } else {
                break; // the drive is full in the middle of this blob
            }
        }
        if !drive.parts.is_empty() {
            drive.payload_len = usage.total(layout);
            drive.manifest_reserve = usage.manifest_text;
        }
        drive
    }

    /// Payload bytes the rest would take on one drive of unlimited size.
    pub fn remaining_len(&self, layout: &dyn Layout) -> u64 {
        let mut rest = self.clone();
        rest.fill_drive(u64::MAX, layout).payload_len
    }
}

/// Running totals of one drive's payload, updated in constant time per segment.
#[derive(Debug, Clone)]
struct Usage {
    members: u64,
    manifest_text: u64,
}

impl Usage {
    fn new(layout: &dyn Layout) -> Self {
        Usage {
            members: 0,
            manifest_text: layout.manifest_base_len(),
        }
    }

    fn add_part(&mut self, name: &str, layout: &dyn Layout) {
        self.members = self.members.saturating_add(layout.member_len(name, 0));
        self.manifest_text = self.manifest_text.saturating_add(layout.manifest_part_len(name));
    }

    fn grow_part(&mut self, name: &str, old_size: u64, new_size: u64, layout: &dyn Layout) {
        self.members = (self.members - layout.member_len(name, old_size))
            .saturating_add(layout.member_len(name, new_size));
        self.manifest_text = self.manifest_text.saturating_add(layout.manifest_range_len());
    }

    fn total(&self, layout: &dyn Layout) -> u64 {
        self.members
            .saturating_add(layout.manifest_member_len(self.manifest_text))
            .saturating_add(layout.trailer_len())
    }
}

/// Plans the whole job onto drives of the given payload capacities, in order, before anything is written.
/// Drives left over are not used. Fails with how much more is needed when the drives are not enough.
pub fn plan(blobs: &[BlobExtents], capacities: &[u64], layout: &dyn Layout) -> Result<SpanPlan, PlanError> {
    let mut cursor = Cursor::new(blobs);
    let mut plan = SpanPlan::default();
    for (i, &capacity) in capacities.iter().enumerate() {
        if cursor.is_done() {
            break;
        }
        let drive = cursor.fill_drive(capacity, layout);
        if drive.parts.is_empty() {
            let needed = layout.member_len("", SEGMENT_SIZE)
                + layout.manifest_member_len(
                    layout.manifest_base_len() + layout.manifest_part_len("") + layout.manifest_range_len(),
                )
                + layout.trailer_len();
            return Err(PlanError::DriveTooSmall {
                drive: i + 1,
                capacity,
                needed,
            });
        }
        plan.drives.push(drive);
    }
    if !cursor.is_done() {
        return Err(PlanError::NotEnoughSpace {
            missing: cursor.remaining_len(layout),
            filled: plan.drives.len(),
        });
    }
    Ok(plan)
}

#[cfg(test)]
// Lists of data ranges with one range are what these tests mean, not a range collected into a vector.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A layout with tar-like costs: 512 bytes of header per member, data padded to 512, a manifest of
    /// 4 KiB plus 512 bytes per part and 128 per range, a 1 KiB trailer.
    struct TestLayout;

    impl Layout for TestLayout {
        fn member_len(&self, _name: &str, size: u64) -> u64 {
            512 + size.div_ceil(512) * 512
        }
        fn manifest_base_len(&self) -> u64 {
            4096
        }
        fn manifest_part_len(&self, _name: &str) -> u64 {
            512
        }
        fn manifest_range_len(&self) -> u64 {
            128
        }
        fn manifest_member_len(&self, text_len: u64) -> u64 {
            self.member_len("DriveManifest.xml", text_len)
        }
        fn trailer_len(&self) -> u64 {
            1024
        }
    }

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn segments_split_at_4_mib_boundaries() {
        assert_eq!(
            segments(&[0..512, 3 * MIB..9 * MIB]),
            vec![0..512, 3 * MIB..4 * MIB, 4 * MIB..8 * MIB, 8 * MIB..9 * MIB]
        );
    }

    #[test]
    fn one_big_drive_takes_everything() {
        let blobs = vec![
            BlobExtents {
                name: "config".into(),
                len: 512,
                data: vec![0..512],
            },
            BlobExtents {
                name: "data/0".into(),
                len: 20 * MIB,
                data: vec![0..20 * MIB],
            },
            BlobExtents {
                name: "empty".into(),
                len: 4096,
                data: vec![],
            },
        ];
        let p = plan(&blobs, &[1 << 40], &TestLayout).unwrap();
        assert_eq!(p.drives.len(), 1);
        assert_eq!(p.drives[0].parts.len(), 3);
        assert_eq!(p.drives[0].parts[2].size(), 0);
    }

    #[test]
    fn shortfall_says_how_much_more() {
        let blobs = vec![BlobExtents {
            name: "v".into(),
            len: 64 * MIB,
            data: vec![0..64 * MIB],
        }];
        let e = plan(&blobs, &[20 * MIB, 20 * MIB], &TestLayout).unwrap_err();
        let PlanError::NotEnoughSpace { missing, filled } = e else {
            panic!("{e}")
        };
        assert_eq!(filled, 2);
        // 16 MiB per drive fit (four segments), 32 MiB remain plus overheads.
        assert!(missing > 32 * MIB && missing < 33 * MIB, "{missing}");
        let m = e.to_string();
        assert!(m.contains("32.0 MiB more drive payload"), "{m}");
        // the ready value covers the rest and the 16 MiB header, in whole MiB
        assert!(m.contains("--create-image 49M"), "{m}");
        assert_eq!(create_image_value(drive_len_for(missing)), "49M");
        assert_eq!(create_image_value(12 << 30), "12G");
    }

    #[test]
    fn tiny_drive_is_refused_by_number() {
        let blobs = vec![BlobExtents {
            name: "v".into(),
            len: 8 * MIB,
            data: vec![0..8 * MIB],
        }];
        let e = plan(&blobs, &[1 << 30, MIB], &TestLayout);
        assert!(e.is_ok(), "a second drive that is not needed is not checked");
        let e = plan(&blobs, &[MIB], &TestLayout).unwrap_err();
        assert!(matches!(e, PlanError::DriveTooSmall { drive: 1, .. }), "{e}");
    }

    fn blobs_strategy() -> impl Strategy<Value = Vec<BlobExtents>> {
        // Each blob: up to 24 MiB, with up to 4 data ranges in 512-byte units.
        let blob = (
            1u64..=49152,
            proptest::collection::vec((0u64..49152, 1u64..20000), 0..4),
        );
        proptest::collection::vec(blob, 1..6).prop_map(|blobs| {
            blobs
                .into_iter()
                .enumerate()
                .map(|(i, (pages, raw))| {
                    let len = pages * 512;
                    let ranges = raw
                        .into_iter()
                        .map(|(s, l)| {
                            let s = (s % pages) * 512;
                            s..(s + l * 512).min(len)
                        })
                        .collect();
                    BlobExtents {
                        name: format!("data/{i:04}"),
                        len,
                        data: seedship_shared::blob::merge_ranges(ranges),
                    }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn plans_cover_every_segment_once_and_respect_capacities(
            blobs in blobs_strategy(),
            capacities in proptest::collection::vec(6 * MIB..40 * MIB, 1..8),
        ) {
            match plan(&blobs, &capacities, &TestLayout) {
                Ok(p) => {
                    for (d, cap) in p.drives.iter().zip(&capacities) {
                        prop_assert!(d.payload_len <= *cap);
                    }
                    for b in &blobs {
                        let placed: Vec<_> = p.drives.iter().flat_map(|d| &d.parts)
                            .filter(|part| part.blob == b.name).collect();
                        prop_assert!(!placed.is_empty(), "every blob reaches some manifest");
                        let segs: Vec<_> = placed.iter().flat_map(|part| part.segments.clone()).collect();
                        prop_assert_eq!(&segs, &segments(&b.data));
                        for part in placed {
                            prop_assert!(part.segments.iter().all(|s| s.start >= part.start && s.end <= part.end));
                            prop_assert!(part.segments.iter().all(|s| s.end - s.start <= SEGMENT_SIZE && s.start % 512 == 0 && s.end % 512 == 0));
                        }
                    }
                }
                Err(PlanError::NotEnoughSpace { missing, .. }) => {
                    // Adding a drive of the missing size makes the plan succeed.
                    let mut more = capacities.clone();
                    more.push(missing);
                    prop_assert!(plan(&blobs, &more, &TestLayout).is_ok());
                }
                Err(PlanError::DriveTooSmall { .. }) => prop_assert!(false, "capacities are at least 6 MiB"),
            }
        }
    }
}
