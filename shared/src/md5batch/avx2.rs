//! Eight MD5 computations at once in the eight 32-bit lanes of AVX2 registers.
//!
//! Lane `i` of every vector belongs to message `i`: the four chaining words, and each of the 16 message words
//! of the block (loaded as two 32-byte rows per lane and transposed, so word `j` of all eight blocks sits in
//! one vector). The 64 steps are RFC 1321's, applied to all lanes with vector adds, logic and shifts; MD5 has
//! no data-dependent branches, so the lanes never diverge.

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
