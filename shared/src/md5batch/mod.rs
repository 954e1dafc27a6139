//! MD5 of many messages at once: the drive manifest needs the MD5 of every page range (up to 4 MiB each),
//! and MD5 is sequential within a message (about 0.5 GB/s per core here), so the speed comes from hashing
//! several ranges side by side. [`md5_many`] hashes sixteen messages at a time (two groups of eight
//! interleaved, eight 32-bit lanes of 256-bit registers each) when the CPU has AVX2 (detected at run time);
//! where it has AVX-512VL too, with its ternary logic and rotate instructions (a shorter dependency chain per
//! step); one at a time with portable code otherwise.
//!
//! Messages of unequal length share the lanes for as many whole blocks as they all have; a lane whose message
//! runs out of whole blocks finishes it (tail and padding, at most two blocks, one lane at a time) and takes
//! the next message, so a batch of mixed sizes keeps the lanes busy. When fewer than two lanes are left busy
//! the rest is finished one lane at a time, which is then faster. Written from RFC 1321; checked against the
//! `md-5` crate by property tests and against the RFC's test suite.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod scalar;

use std::sync::atomic::{AtomicUsize, Ordering};

/// Messages hashed side by side by the vector code.
pub const LANES: usize = 8;

/// Which implementation [`md5_many`] uses on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Md5Backend {
    /// Eight lanes of AVX-512VL (256-bit registers).
    Avx512x8,
    /// Eight lanes of AVX2 (sixteen, two groups interleaved, for more than eight messages).
    Avx2x8,
    /// One message at a time (the `md-5` crate).
    Scalar,
}

impl std::fmt::Display for Md5Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Md5Backend::Avx512x8 => "AVX-512VL, 8 lanes",
            Md5Backend::Avx2x8 => "AVX2, 8 lanes (16 as two groups)",
            Md5Backend::Scalar => "scalar",
        })
    }
}

/// The implementation [`md5_many`] picks on this CPU.
pub fn backend() -> Md5Backend {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        return Md5Backend::Avx512x8;
    }
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        return Md5Backend::Avx2x8;
    }
    Md5Backend::Scalar
}

/// The MD5 digest of each message, in order.
pub fn md5_many(messages: &[&[u8]]) -> Vec<[u8; 16]> {
    let mut out = vec![[0u8; 16]; messages.len()];
    #[cfg(target_arch = "x86_64")]
    if messages.len() > 1 {
        if avx512::available() && messages.len() > LANES {
            many_lanes(messages, &mut out, avx512::compress16);
            return out;
        }
        if avx512::available() {
            many_lanes(messages, &mut out, avx512::compress8);
            return out;
        }
        if avx2::available() && messages.len() > LANES {
            many_lanes(messages, &mut out, avx2::compress16);
            return out;
        }
        if avx2::available() {
            many_lanes(messages, &mut out, avx2::compress8);
            return out;
        }
    }
    many_scalar(messages, &mut out);
    out
}

/// Messages one thread hashes side by side on this CPU: sixteen with AVX2 or AVX-512VL (two interleaved
/// groups of [`LANES`]), else [`LANES`].
pub fn lanes_per_thread() -> usize {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        return 2 * LANES;
    }
    LANES
}

/// [`md5_many`] on up to `threads` threads, each taking [`lanes_per_thread`] messages at a time (fewer lanes
/// per thread would not finish sooner: the vector code costs the same for one busy lane as for all).
pub fn md5_many_threads(messages: &[&[u8]], threads: usize) -> Vec<[u8; 16]> {
    let per = lanes_per_thread();
    let groups: Vec<&[&[u8]]> = messages.chunks(per).collect();
    let threads = threads.clamp(1, groups.len().max(1));
    if threads == 1 {
        return md5_many(messages);
    }
    let next = AtomicUsize::new(0);
    let mut out = vec![[0u8; 16]; messages.len()];
    let done: Vec<Vec<(usize, Vec<[u8; 16]>)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let g = next.fetch_add(1, Ordering::Relaxed);
                        let Some(group) = groups.get(g) else { break mine };
                        mine.push((g, md5_many(group)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("MD5 hashing does not panic"))
            .collect()
    });
    for (g, digests) in done.into_iter().flatten() {
        out[g * per..g * per + digests.len()].copy_from_slice(&digests);
    }
    out
}

fn many_scalar(messages: &[&[u8]], out: &mut [[u8; 16]]) {
    use md5::Digest;
    for (m, o) in messages.iter().zip(out) {
        *o = md5::Md5::digest(m).into();
    }
}

/// `N` lanes' compression function: `state[w][i]` is chaining word `w` of lane `i`, which reads `blocks`
/// blocks of `data[i]` (or, for `None`, idles on a zero block).
#[cfg(target_arch = "x86_64")]
type Compress<const N: usize> = fn(&mut [[u32; N]; 4], [Option<&[u8]>; N], usize);

/// The lane scheduler over a [`Compress`] of `N` lanes (see the module documentation).
#[cfg(target_arch = "x86_64")]
fn many_lanes<const N: usize>(messages: &[&[u8]], out: &mut [[u8; 16]], compress: Compress<N>) {
    // A lane's message and how many of its bytes are in the lane's state.
    let mut lanes: [Option<(usize, usize)>; N] = [None; N];
    let mut state = [[0u32; N]; 4];
    let mut queue = 0..messages.len();
    let whole = |k: usize| messages[k].len() / 64 * 64;
    let lane_state = |state: &[[u32; N]; 4], lane: usize| std::array::from_fn(|w| state[w][lane]);
    loop {
        for (lane, slot) in lanes.iter_mut().enumerate() {
            while slot.is_none() {
                let Some(k) = queue.next() else { break };
                if whole(k) == 0 {
                    out[k] = scalar::md5(messages[k]);
                    continue;
                }
                *slot = Some((k, 0));
                for (w, init) in scalar::INIT.iter().enumerate() {
                    state[w][lane] = *init;
                }
            }
        }
        let busy = lanes.iter().flatten();
        if busy.clone().count() < 2 {
            break;
        }
        // Every busy lane has at least one whole block left (finished lanes are emptied below).
        let blocks = busy.map(|&(k, at)| (whole(k) - at) / 64).min().unwrap_or(0);
        let data = lanes.map(|l| l.map(|(k, at)| &messages[k][at..at + blocks * 64]));
        compress(&mut state, data, blocks);
        for (lane, slot) in lanes.iter_mut().enumerate() {
            if let Some((k, at)) = slot {
                *at += blocks * 64;
                if *at == whole(*k) {
                    let m = messages[*k];
                    out[*k] = scalar::finish(lane_state(&state, lane), &m[*at..], m.len() as u64);
                    *slot = None;
                }
            }
        }
    }
    // At most one lane is left busy, and the queue is empty.
    for (lane, slot) in lanes.iter().enumerate() {
        if let Some((k, at)) = *slot {
            let m = messages[k];
            let mut s = lane_state(&state, lane);
            scalar::compress_blocks(&mut s, &m[at..whole(k)]);
            out[k] = scalar::finish(s, &m[whole(k)..], m.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest;
    use proptest::prelude::*;

    fn reference(m: &[u8]) -> [u8; 16] {
        md5::Md5::digest(m).into()
    }

    /// RFC 1321 appendix A.5.
    const SUITE: [(&str, &str); 7] = [
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("a", "0cc175b9c0f1b6a831c399e269772661"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
        (
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "d174ab98d277d9f5a5611c2c9f419d9f",
        ),
        (
            "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "57edf4a22be3c955ac49da2e2107b67a",
        ),
    ];

    #[test]
    fn rfc_1321_test_suite() {
        for (m, want) in SUITE {
            assert_eq!(hex::encode(scalar::md5(m.as_bytes())), want, "scalar {m:?}");
        }
        // Every lane count, and each message in every lane position.
        for n in 1..=SUITE.len() {
            for rot in 0..SUITE.len() {
                let msgs: Vec<&[u8]> = (0..n)
                    .map(|i| SUITE[(i + rot) % SUITE.len()].0.as_bytes())
                    .collect();
                let got = md5_many(&msgs);
                for (i, g) in got.iter().enumerate() {
                    assert_eq!(hex::encode(g), SUITE[(i + rot) % SUITE.len()].1);
                }
            }
        }
    }

    /// Sixteen full lanes of long messages that end at different blocks, and the threaded variant.
    #[test]
    fn unequal_long_messages_match_md5() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let msgs: Vec<&[u8]> = (0..19)
            .map(|i| &data[i * 1000..i * 1000 + 1 + i * 13_577])
            .collect();
        let want: Vec<_> = msgs.iter().map(|m| reference(m)).collect();
        assert_eq!(md5_many(&msgs), want);
        assert_eq!(md5_many_threads(&msgs, 3), want);
        assert_eq!(md5_many_threads(&msgs[..1], 4), want[..1]);
        assert!(md5_many_threads(&[], 2).is_empty());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_vector_code_runs_here_when_the_cpu_has_avx2() {
        let want = if avx512::available() {
            Md5Backend::Avx512x8
        } else if is_x86_feature_detected!("avx2") {
            Md5Backend::Avx2x8
        } else {
            Md5Backend::Scalar
        };
        assert_eq!(backend(), want);
    }

    /// Each vector backend this CPU has, whichever [`md5_many`] picks (so the AVX2 code stays tested on a
    /// CPU with AVX-512).
    #[cfg(target_arch = "x86_64")]
    fn vector_backends() -> Vec<(&'static str, Compress<LANES>)> {
        let mut v: Vec<(&'static str, Compress<LANES>)> = Vec::new();
        if avx2::available() {
            v.push(("avx2", avx2::compress8));
        }
        if avx512::available() {
            v.push(("avx512", avx512::compress8));
        }
        v
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_vector_backend_matches_md5() {
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let msgs: Vec<&[u8]> = (0..21)
            .map(|i| &data[i * 777..i * 777 + i * 8_191 + (i % 3) * 17])
            .chain(SUITE.iter().map(|(m, _)| m.as_bytes()))
            .collect();
        let want: Vec<_> = msgs.iter().map(|m| reference(m)).collect();
        for (name, compress8) in vector_backends() {
            let mut out = vec![[0u8; 16]; msgs.len()];
            many_lanes(&msgs, &mut out, compress8);
            assert_eq!(out, want, "{name}");
        }
        if avx2::available() {
            let mut out = vec![[0u8; 16]; msgs.len()];
            many_lanes(&msgs, &mut out, avx2::compress16);
            assert_eq!(out, want, "avx2, 16 lanes");
        }
        if avx512::available() {
            let mut out = vec![[0u8; 16]; msgs.len()];
            many_lanes(&msgs, &mut out, avx512::compress16);
            assert_eq!(out, want, "avx512, 16 lanes");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn equal_to_md5_crate(
            lens in proptest::collection::vec(prop_oneof![0usize..200, 0usize..5000, 50usize..70, 110usize..130], 0..20),
            seed in any::<u64>(),
        ) {
            let mut x = seed | 1;
            let total: usize = lens.iter().sum();
            let data: Vec<u8> = (0..total).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }).collect();
            let mut msgs: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            for l in &lens {
                msgs.push(&data[at..at + l]);
                at += l;
            }
            let want: Vec<_> = msgs.iter().map(|m| reference(m)).collect();
            prop_assert_eq!(md5_many(&msgs), want.clone());
            prop_assert_eq!(md5_many_threads(&msgs, 2), want.clone());
            let mut out = vec![[0u8; 16]; msgs.len()];
            many_scalar(&msgs, &mut out);
            prop_assert_eq!(out, want.clone());
            for (m, w) in msgs.iter().zip(&want) {
                prop_assert_eq!(&scalar::md5(m), w);
            }
        }
    }
}
