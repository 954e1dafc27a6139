//! Eight MD5 computations at once in the eight 32-bit lanes of AVX2 registers.
//!
//! Lane `i` of every vector belongs to message `i`: the four chaining words, and each of the 16 message words
//! of the block (loaded as two 32-byte rows per lane and transposed, so word `j` of all eight blocks sits in
//! one vector). The 64 steps are RFC 1321's, applied to all lanes with vector adds, logic and shifts; MD5 has
//! no data-dependent branches, so the lanes never diverge.
//!
//! MD5 is latency-bound: each step needs the previous one, six or seven instructions on the chain, so eight
//! lanes keep only a part of the vector units busy. [`compress16`] interleaves the steps of two groups of
//! eight lanes (two independent chains), so sixteen messages take about the time of eight.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::scalar::K;

/// Whether this CPU can run [`compress8`] (checked once, then cached by the standard library).
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// A zero block that idle lanes read (their result is discarded).
static IDLE: [u8; 64] = [0; 64];

/// Runs `blocks` blocks through all eight lanes: `state[w][i]` is chaining word `w` (A, B, C, D) of lane `i`,
/// and lane `i` reads `data[i]`, which holds exactly `blocks * 64` bytes, or, for `None`, the same zero block
/// each time (an idle lane, whose state is garbage afterwards).
///
/// # Panics
/// If the CPU lacks AVX2 (check [`available`] first) or a slice has the wrong length.
pub(super) fn compress8(state: &mut [[u32; 8]; 4], data: [Option<&[u8]>; 8], blocks: usize) {
    assert!(available(), "compress8 needs AVX2");
    let mut ptrs = [IDLE.as_ptr(); 8];
    let mut strides = [0usize; 8];
    for (i, d) in data.iter().enumerate() {
        if let Some(d) = d {
            assert_eq!(d.len(), blocks * 64, "lane {i} holds {blocks} blocks");
            ptrs[i] = d.as_ptr();
            strides[i] = 64;
        }
    }
    // SAFETY: AVX2 is present (asserted above). Every lane pointer is valid for `blocks * 64` bytes when its
    // stride is 64 (asserted slice lengths), or for 64 bytes read again and again when its stride is 0.
    unsafe { compress8_avx2(state, ptrs, strides, blocks) }
}

macro_rules! step {
    ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:literal) => {
        let t = _mm256_add_epi32(
            _mm256_add_epi32($a, $f($b, $c, $d)),
            _mm256_add_epi32($m, _mm256_set1_epi32($k as i32)),
        );
        let r = _mm256_or_si256(_mm256_slli_epi32::<$s>(t), _mm256_srli_epi32::<{ 32 - $s }>(t));
        $a = _mm256_add_epi32($b, r);
    };
}

/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
#[allow(unused_unsafe)] // the intrinsics are safe fns in AVX2 functions since Rust 1.86, unsafe before
unsafe fn f(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
    // SAFETY: register-only AVX2 operations; the caller guarantees AVX2.
    unsafe { _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d))) }
}

/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
#[allow(unused_unsafe)] // the intrinsics are safe fns in AVX2 functions since Rust 1.86, unsafe before
unsafe fn g(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
    // SAFETY: register-only AVX2 operations; the caller guarantees AVX2.
    unsafe { _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c))) }
}

/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
#[allow(unused_unsafe)] // the intrinsics are safe fns in AVX2 functions since Rust 1.86, unsafe before
unsafe fn h(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
    // SAFETY: register-only AVX2 operations; the caller guarantees AVX2.
    unsafe { _mm256_xor_si256(_mm256_xor_si256(b, c), d) }
}

/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
#[allow(unused_unsafe)] // the intrinsics are safe fns in AVX2 functions since Rust 1.86, unsafe before
unsafe fn i(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
    // SAFETY: register-only AVX2 operations; the caller guarantees AVX2.
    unsafe { _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, _mm256_set1_epi32(-1)))) }
}

/// Transposes eight rows of eight 32-bit words: `out[j]` holds word `j` of every row, row `i` in element `i`.
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
#[allow(unused_unsafe)] // the intrinsics are safe fns in AVX2 functions since Rust 1.86, unsafe before
pub(super) unsafe fn transpose(r: [__m256i; 8]) -> [__m256i; 8] {
    // SAFETY: register-only AVX2 shuffles; the caller guarantees AVX2.
    unsafe {
        let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
        let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
        let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
        let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
        let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
        let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
        // Words (0, 4), (1, 5), (2, 6), (3, 7) of rows 0-3 and of rows 4-7, one per 128-bit half.
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        [
            _mm256_permute2x128_si256::<0x20>(u0, u4),
            _mm256_permute2x128_si256::<0x20>(u1, u5),
            _mm256_permute2x128_si256::<0x20>(u2, u6),
            _mm256_permute2x128_si256::<0x20>(u3, u7),
            _mm256_permute2x128_si256::<0x31>(u0, u4),
            _mm256_permute2x128_si256::<0x31>(u1, u5),
            _mm256_permute2x128_si256::<0x31>(u2, u6),
            _mm256_permute2x128_si256::<0x31>(u3, u7),
        ]
    }
}

/// # Safety
/// The CPU has AVX2, and `ptrs[i]` is valid for reads of `(blocks - 1) * strides[i] + 64` bytes.
#[target_feature(enable = "avx2")]
unsafe fn compress8_avx2(
    state: &mut [[u32; 8]; 4],
    mut ptrs: [*const u8; 8],
    strides: [usize; 8],
    blocks: usize,
) {
    // SAFETY (whole body): AVX2 is enabled for this function; `state` rows are 32 bytes each (unaligned
    // loads and stores); the message loads stay within the bounds the caller guarantees.
    unsafe {
        let mut sa = _mm256_loadu_si256(state[0].as_ptr().cast());
        let mut sb = _mm256_loadu_si256(state[1].as_ptr().cast());
        let mut sc = _mm256_loadu_si256(state[2].as_ptr().cast());
        let mut sd = _mm256_loadu_si256(state[3].as_ptr().cast());
        let zero = _mm256_setzero_si256();
        for _ in 0..blocks {
            let (mut lo, mut hi) = ([zero; 8], [zero; 8]);
            for lane in 0..8 {
                lo[lane] = _mm256_loadu_si256(ptrs[lane].cast());
                hi[lane] = _mm256_loadu_si256(ptrs[lane].add(32).cast());
                ptrs[lane] = ptrs[lane].add(strides[lane]);
            }
            let (l, u) = (transpose(lo), transpose(hi));
            let m = [
                l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], u[0], u[1], u[2], u[3], u[4], u[5], u[6],
                u[7],
            ];
            let (mut a, mut b, mut c, mut d) = (sa, sb, sc, sd);
            step!(f, a, b, c, d, m[0], K[0], 7);
            step!(f, d, a, b, c, m[1], K[1], 12);
            step!(f, c, d, a, b, m[2], K[2], 17);
            step!(f, b, c, d, a, m[3], K[3], 22);
            step!(f, a, b, c, d, m[4], K[4], 7);
            step!(f, d, a, b, c, m[5], K[5], 12);
            step!(f, c, d, a, b, m[6], K[6], 17);
            step!(f, b, c, d, a, m[7], K[7], 22);
            step!(f, a, b, c, d, m[8], K[8], 7);
            step!(f, d, a, b, c, m[9], K[9], 12);
            step!(f, c, d, a, b, m[10], K[10], 17);
            step!(f, b, c, d, a, m[11], K[11], 22);
            step!(f, a, b, c, d, m[12], K[12], 7);
            step!(f, d, a, b, c, m[13], K[13], 12);
            step!(f, c, d, a, b, m[14], K[14], 17);
            step!(f, b, c, d, a, m[15], K[15], 22);
            step!(g, a, b, c, d, m[1], K[16], 5);
            step!(g, d, a, b, c, m[6], K[17], 9);
            step!(g, c, d, a, b, m[11], K[18], 14);
            step!(g, b, c, d, a, m[0], K[19], 20);
            step!(g, a, b, c, d, m[5], K[20], 5);
            step!(g, d, a, b, c, m[10], K[21], 9);
            step!(g, c, d, a, b, m[15], K[22], 14);
            step!(g, b, c, d, a, m[4], K[23], 20);
            step!(g, a, b, c, d, m[9], K[24], 5);
            step!(g, d, a, b, c, m[14], K[25], 9);
            step!(g, c, d, a, b, m[3], K[26], 14);
            step!(g, b, c, d, a, m[8], K[27], 20);
            step!(g, a, b, c, d, m[13], K[28], 5);
            step!(g, d, a, b, c, m[2], K[29], 9);
            step!(g, c, d, a, b, m[7], K[30], 14);
            step!(g, b, c, d, a, m[12], K[31], 20);
            step!(h, a, b, c, d, m[5], K[32], 4);
            step!(h, d, a, b, c, m[8], K[33], 11);
            step!(h, c, d, a, b, m[11], K[34], 16);
            step!(h, b, c, d, a, m[14], K[35], 23);
            step!(h, a, b, c, d, m[1], K[36], 4);
            step!(h, d, a, b, c, m[4], K[37], 11);
            step!(h, c, d, a, b, m[7], K[38], 16);
            step!(h, b, c, d, a, m[10], K[39], 23);
            step!(h, a, b, c, d, m[13], K[40], 4);
            step!(h, d, a, b, c, m[0], K[41], 11);
            step!(h, c, d, a, b, m[3], K[42], 16);
            step!(h, b, c, d, a, m[6], K[43], 23);
            step!(h, a, b, c, d, m[9], K[44], 4);
            step!(h, d, a, b, c, m[12], K[45], 11);
            step!(h, c, d, a, b, m[15], K[46], 16);
            step!(h, b, c, d, a, m[2], K[47], 23);
            step!(i, a, b, c, d, m[0], K[48], 6);
            step!(i, d, a, b, c, m[7], K[49], 10);
            step!(i, c, d, a, b, m[14], K[50], 15);
            step!(i, b, c, d, a, m[5], K[51], 21);
            step!(i, a, b, c, d, m[12], K[52], 6);
            step!(i, d, a, b, c, m[3], K[53], 10);
            step!(i, c, d, a, b, m[10], K[54], 15);
            step!(i, b, c, d, a, m[1], K[55], 21);
            step!(i, a, b, c, d, m[8], K[56], 6);
            step!(i, d, a, b, c, m[15], K[57], 10);
            step!(i, c, d, a, b, m[6], K[58], 15);
            step!(i, b, c, d, a, m[13], K[59], 21);
            step!(i, a, b, c, d, m[4], K[60], 6);
            step!(i, d, a, b, c, m[11], K[61], 10);
            step!(i, c, d, a, b, m[2], K[62], 15);
            step!(i, b, c, d, a, m[9], K[63], 21);
            sa = _mm256_add_epi32(sa, a);
            sb = _mm256_add_epi32(sb, b);
            sc = _mm256_add_epi32(sc, c);
            sd = _mm256_add_epi32(sd, d);
        }
        _mm256_storeu_si256(state[0].as_mut_ptr().cast(), sa);
        _mm256_storeu_si256(state[1].as_mut_ptr().cast(), sb);
        _mm256_storeu_si256(state[2].as_mut_ptr().cast(), sc);
        _mm256_storeu_si256(state[3].as_mut_ptr().cast(), sd);
    }
}

/// Sixteen lanes: two groups of eight (lanes 0-7 and 8-15) whose steps are interleaved, so that while one
/// group's step waits for its previous result the other's runs (the same arguments and results as
/// [`compress8`], for sixteen lanes).
///
/// # Panics
/// If the CPU lacks AVX2 (check [`available`] first) or a slice has the wrong length.
pub(super) fn compress16(state: &mut [[u32; 16]; 4], data: [Option<&[u8]>; 16], blocks: usize) {
    assert!(available(), "compress16 needs AVX2");
    let mut ptrs = [IDLE.as_ptr(); 16];
    let mut strides = [0usize; 16];
    for (i, d) in data.iter().enumerate() {
        if let Some(d) = d {
            assert_eq!(d.len(), blocks * 64, "lane {i} holds {blocks} blocks");
            ptrs[i] = d.as_ptr();
            strides[i] = 64;
        }
    }
    // SAFETY: as in `compress8`: AVX2 is present and every lane pointer is valid for what its stride reads.
    unsafe { compress16_avx2(state, ptrs, strides, blocks) }
}

// One step in both groups (see `step!`); the message words are group 0's `m0` and group 1's `m1`. The
// message word and constant are added to `a` first (they are known steps ahead), so the chain from `b` is
// the round function, an add, the rotation and an add.
macro_rules! step2 {
    ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m0:expr, $m1:expr, $k:expr, $s:literal) => {
        let kk = _mm256_set1_epi32($k as i32);
        let e0 = _mm256_add_epi32($a.0, _mm256_add_epi32($m0, kk));
        let e1 = _mm256_add_epi32($a.1, _mm256_add_epi32($m1, kk));
        let t0 = _mm256_add_epi32(e0, $f($b.0, $c.0, $d.0));
        let t1 = _mm256_add_epi32(e1, $f($b.1, $c.1, $d.1));
        let r0 = _mm256_or_si256(_mm256_slli_epi32::<$s>(t0), _mm256_srli_epi32::<{ 32 - $s }>(t0));
        let r1 = _mm256_or_si256(_mm256_slli_epi32::<$s>(t1), _mm256_srli_epi32::<{ 32 - $s }>(t1));
        $a.0 = _mm256_add_epi32($b.0, r0);
        $a.1 = _mm256_add_epi32($b.1, r1);
    };
}

/// The sixteen message words of eight lanes' next block: `ptrs[lane]` advanced by its stride.
///
/// # Safety
/// The CPU has AVX2, and each `ptrs[lane]` is valid for 64 bytes of reads.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load8(ptrs: &mut [*const u8], strides: &[usize]) -> [__m256i; 16] {
    // SAFETY: AVX2 is enabled; the caller guarantees the 64 bytes at each pointer.
    unsafe {
        let zero = _mm256_setzero_si256();
        let (mut lo, mut hi) = ([zero; 8], [zero; 8]);
        for lane in 0..8 {
            lo[lane] = _mm256_loadu_si256(ptrs[lane].cast());
            hi[lane] = _mm256_loadu_si256(ptrs[lane].add(32).cast());
            ptrs[lane] = ptrs[lane].add(strides[lane]);
        }
        let (l, u) = (transpose(lo), transpose(hi));
        [
            l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7], u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
        ]
    }
}

/// # Safety
/// The CPU has AVX2, and `ptrs[i]` is valid for reads of `(blocks - 1) * strides[i] + 64` bytes.
#[target_feature(enable = "avx2")]
unsafe fn compress16_avx2(
    state: &mut [[u32; 16]; 4],
    mut ptrs: [*const u8; 16],
    strides: [usize; 16],
    blocks: usize,
) {
    // SAFETY (whole body): AVX2 is enabled for this function; each `state` row is two 32-byte halves
    // (unaligned loads and stores); the message loads stay within the caller's bounds.
    unsafe {
        let row = |w: usize, g: usize| _mm256_loadu_si256(state[w].as_ptr().add(8 * g).cast());
        let mut sa = (row(0, 0), row(0, 1));
        let mut sb = (row(1, 0), row(1, 1));
        let mut sc = (row(2, 0), row(2, 1));
        let mut sd = (row(3, 0), row(3, 1));
        let (p0, p1) = ptrs.split_at_mut(8);
        let (s0, s1) = strides.split_at(8);
        for _ in 0..blocks {
            let m0 = load8(p0, s0);
            let m1 = load8(p1, s1);
            let (mut a, mut b, mut c, mut d) = (sa, sb, sc, sd);
            step2!(f, a, b, c, d, m0[0], m1[0], K[0], 7);
            step2!(f, d, a, b, c, m0[1], m1[1], K[1], 12);
            step2!(f, c, d, a, b, m0[2], m1[2], K[2], 17);
            step2!(f, b, c, d, a, m0[3], m1[3], K[3], 22);
            step2!(f, a, b, c, d, m0[4], m1[4], K[4], 7);
            step2!(f, d, a, b, c, m0[5], m1[5], K[5], 12);
            step2!(f, c, d, a, b, m0[6], m1[6], K[6], 17);
            step2!(f, b, c, d, a, m0[7], m1[7], K[7], 22);
            step2!(f, a, b, c, d, m0[8], m1[8], K[8], 7);
            step2!(f, d, a, b, c, m0[9], m1[9], K[9], 12);
            step2!(f, c, d, a, b, m0[10], m1[10], K[10], 17);
            step2!(f, b, c, d, a, m0[11], m1[11], K[11], 22);
            step2!(f, a, b, c, d, m0[12], m1[12], K[12], 7);
            step2!(f, d, a, b, c, m0[13], m1[13], K[13], 12);
            step2!(f, c, d, a, b, m0[14], m1[14], K[14], 17);
            step2!(f, b, c, d, a, m0[15], m1[15], K[15], 22);
            step2!(g, a, b, c, d, m0[1], m1[1], K[16], 5);
            step2!(g, d, a, b, c, m0[6], m1[6], K[17], 9);
            step2!(g, c, d, a, b, m0[11], m1[11], K[18], 14);
            step2!(g, b, c, d, a, m0[0], m1[0], K[19], 20);
            step2!(g, a, b, c, d, m0[5], m1[5], K[20], 5);
            step2!(g, d, a, b, c, m0[10], m1[10], K[21], 9);
            step2!(g, c, d, a, b, m0[15], m1[15], K[22], 14);
            step2!(g, b, c, d, a, m0[4], m1[4], K[23], 20);
            step2!(g, a, b, c, d, m0[9], m1[9], K[24], 5);
            step2!(g, d, a, b, c, m0[14], m1[14], K[25], 9);
            step2!(g, c, d, a, b, m0[3], m1[3], K[26], 14);
            step2!(g, b, c, d, a, m0[8], m1[8], K[27], 20);
            step2!(g, a, b, c, d, m0[13], m1[13], K[28], 5);
            step2!(g, d, a, b, c, m0[2], m1[2], K[29], 9);
            step2!(g, c, d, a, b, m0[7], m1[7], K[30], 14);
            step2!(g, b, c, d, a, m0[12], m1[12], K[31], 20);
            step2!(h, a, b, c, d, m0[5], m1[5], K[32], 4);
            step2!(h, d, a, b, c, m0[8], m1[8], K[33], 11);
            step2!(h, c, d, a, b, m0[11], m1[11], K[34], 16);
            step2!(h, b, c, d, a, m0[14], m1[14], K[35], 23);
            step2!(h, a, b, c, d, m0[1], m1[1], K[36], 4);
            step2!(h, d, a, b, c, m0[4], m1[4], K[37], 11);
            step2!(h, c, d, a, b, m0[7], m1[7], K[38], 16);
            step2!(h, b, c, d, a, m0[10], m1[10], K[39], 23);
            step2!(h, a, b, c, d, m0[13], m1[13], K[40], 4);
            step2!(h, d, a, b, c, m0[0], m1[0], K[41], 11);
            step2!(h, c, d, a, b, m0[3], m1[3], K[42], 16);
            step2!(h, b, c, d, a, m0[6], m1[6], K[43], 23);
            step2!(h, a, b, c, d, m0[9], m1[9], K[44], 4);
            step2!(h, d, a, b, c, m0[12], m1[12], K[45], 11);
            step2!(h, c, d, a, b, m0[15], m1[15], K[46], 16);
            step2!(h, b, c, d, a, m0[2], m1[2], K[47], 23);
            step2!(i, a, b, c, d, m0[0], m1[0], K[48], 6);
            step2!(i, d, a, b, c, m0[7], m1[7], K[49], 10);
            step2!(i, c, d, a, b, m0[14], m1[14], K[50], 15);
            step2!(i, b, c, d, a, m0[5], m1[5], K[51], 21);
            step2!(i, a, b, c, d, m0[12], m1[12], K[52], 6);
            step2!(i, d, a, b, c, m0[3], m1[3], K[53], 10);
            step2!(i, c, d, a, b, m0[10], m1[10], K[54], 15);
            step2!(i, b, c, d, a, m0[1], m1[1], K[55], 21);
            step2!(i, a, b, c, d, m0[8], m1[8], K[56], 6);
            step2!(i, d, a, b, c, m0[15], m1[15], K[57], 10);
            step2!(i, c, d, a, b, m0[6], m1[6], K[58], 15);
            step2!(i, b, c, d, a, m0[13], m1[13], K[59], 21);
            step2!(i, a, b, c, d, m0[4], m1[4], K[60], 6);
            step2!(i, d, a, b, c, m0[11], m1[11], K[61], 10);
            step2!(i, c, d, a, b, m0[2], m1[2], K[62], 15);
            step2!(i, b, c, d, a, m0[9], m1[9], K[63], 21);
            sa = (_mm256_add_epi32(sa.0, a.0), _mm256_add_epi32(sa.1, a.1));
            sb = (_mm256_add_epi32(sb.0, b.0), _mm256_add_epi32(sb.1, b.1));
            sc = (_mm256_add_epi32(sc.0, c.0), _mm256_add_epi32(sc.1, c.1));
            sd = (_mm256_add_epi32(sd.0, d.0), _mm256_add_epi32(sd.1, d.1));
        }
        for (w, v) in [sa, sb, sc, sd].into_iter().enumerate() {
            _mm256_storeu_si256(state[w].as_mut_ptr().cast(), v.0);
            _mm256_storeu_si256(state[w].as_mut_ptr().add(8).cast(), v.1);
        }
    }
}
