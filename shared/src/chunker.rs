//! Content-defined chunking: a FastCDC-style gear hash with normalized chunking.
//!
//! A rolling hash `h = (h << 1) + gear[byte]` runs over the data; a chunk ends where the top bits of `h` are
//! all zero. Before the average size a stricter condition (more bits) applies, after it a looser one, so chunk
//! sizes cluster around the average. No cut happens before `min` bytes and one is forced at `max`. The gear
//! table is derived from the repository key, so boundaries reveal nothing to someone without it.

use serde::{Deserialize, Serialize};

/// Chunk size limits, stored in the repository config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min: usize,
    pub avg: usize,
    pub max: usize,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min: 512 * 1024,
            avg: 1024 * 1024,
            max: 8 * 1024 * 1024,
        }
    }
}

/// Invalid chunker parameters (from a config file or the command line).
#[derive(Debug, thiserror::Error)]
#[error("invalid chunker parameters min {min} / avg {avg} / max {max}: need 64 <= min < avg < max <= 64 MiB and avg a power of two")]
pub struct ChunkerParamsError {
    pub min: usize,
    pub avg: usize,
    pub max: usize,
}

impl ChunkerParams {
    /// Checks the limits.
    pub fn validate(&self) -> Result<(), ChunkerParamsError> {
        let ok = self.min >= 64
            && self.min < self.avg
            && self.avg < self.max
            && self.max <= 64 * 1024 * 1024
            && self.avg.is_power_of_two();
        if ok {
            Ok(())
        } else {
            Err(ChunkerParamsError {
                min: self.min,
                avg: self.avg,
                max: self.max,
            })
        }
    }
}

/// Finds chunk boundaries. Cheap to clone; shared by all reader threads.
#[derive(Clone)]
pub struct Chunker {
    params: ChunkerParams,
    gear: Box<[u64; 256]>,
    shift_strict: u32,
    shift_loose: u32,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker").field("params", &self.params).finish()
    }
}

impl Chunker {
    /// A chunker with a gear table expanded from `seed` (32 secret bytes). `params` must be valid.
    pub fn new(params: ChunkerParams, seed: &[u8; 32]) -> Self {
        let mut bytes = [0u8; 256 * 8];
        blake3::Hasher::new_keyed(seed)
            .update(b"seedship gear table")
            .finalize_xof()
            .fill(&mut bytes);
        let mut gear = Box::new([0u64; 256]);
        for (i, g) in gear.iter_mut().enumerate() {
            *g = u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        }
        let bits = params.avg.trailing_zeros();
        Chunker {
            params,
            gear,
            shift_strict: 64 - (bits + 2),
            shift_loose: 64 - bits.saturating_sub(2).max(1),
        }
    }

    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// The length of the chunk that starts at `data[0]`, or `None` when more data is needed to decide
    /// (`data` is shorter than `max` and the input has not ended). At `eof` it always returns the length
    /// of the next chunk (all of `data` when it is shorter than a cut); `data` must not be empty then.
    pub fn cut(&self, data: &[u8], eof: bool) -> Option<usize> {
        let p = self.params;
        if data.len() <= p.min {
            return if eof { Some(data.len()) } else { None };
        }
        let end = data.len().min(p.max);
        let normal = p.avg.min(end);
        let mut h: u64 = 0;
        // The hash window is 64 bytes: start early enough that the first tested position is well mixed.
        let start = p.min - 64;
        for &b in &data[start..p.min] {
            h = (h << 1).wrapping_add(self.gear[b as usize]);
        }
        for (i, &b) in data[p.min..normal].iter().enumerate() {
            h = (h << 1).wrapping_add(self.gear[b as usize]);
            if h >> self.shift_strict == 0 {
                return Some(p.min + i + 1);
            }
        }
        for (i, &b) in data[normal..end].iter().enumerate() {
            h = (h << 1).wrapping_add(self.gear[b as usize]);
            if h >> self.shift_loose == 0 {
                return Some(normal + i + 1);
            }
        }
        if end == p.max || eof {
            Some(end)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 1024,
            avg: 4096,
            max: 16384,
        }
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut out = vec![0u8; n];
        blake3::Hasher::new()
            .update(&seed.to_le_bytes())
            .finalize_xof()
            .fill(&mut out);
        out
    }

    fn chunks(c: &Chunker, data: &[u8]) -> Vec<usize> {
        let mut out = vec![];
        let mut pos = 0;
        while pos < data.len() {
            let n = c.cut(&data[pos..], true).unwrap();
            out.push(n);
            pos += n;
        }
        out
    }

    #[test]
    fn limits_and_average() {
        let c = Chunker::new(small(), &[7; 32]);
        let data = pseudo_random(2 << 20, 1);
        let sizes = chunks(&c, &data);
        assert_eq!(sizes.iter().sum::<usize>(), data.len());
        for s in &sizes[..sizes.len() - 1] {
            assert!((1024..=16384).contains(s), "{s}");
        }
        let avg = data.len() / sizes.len();
        assert!((2048..=8192).contains(&avg), "average {avg}");
    }

    #[test]
    fn boundaries_resynchronise_after_an_insertion() {
        let c = Chunker::new(small(), &[9; 32]);
        let data = pseudo_random(1 << 20, 2);
        let mut shifted = b"inserted bytes".to_vec();
        shifted.extend_from_slice(&data);
        let a: std::collections::HashSet<usize> = chunks(&c, &data).into_iter().collect();
        let b: std::collections::HashSet<usize> = chunks(&c, &shifted).into_iter().collect();
        assert!(a.intersection(&b).count() * 2 > a.len(), "most chunks survive");
    }

    #[test]
    fn streaming_needs_more_data_or_cuts_at_max() {
        let c = Chunker::new(small(), &[1; 32]);
        assert_eq!(c.cut(&[0u8; 100], false), None);
        assert_eq!(c.cut(&[0u8; 100], true), Some(100));
        // all zeros never matches the stricter condition with this table? either way a cut <= max
        let n = c.cut(&[0u8; 20000], false).unwrap();
        assert!(n <= 16384);
        assert!(small().validate().is_ok());
        assert!(ChunkerParams {
            min: 10,
            avg: 3,
            max: 1
        }
        .validate()
        .is_err());
    }
}
