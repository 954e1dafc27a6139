//! AES-256-XTS on several blocks per instruction: VAES with VPCLMULQDQ for the tweaks, where the CPU has
//! them (detected at run time), on 512-bit registers (four blocks per `vaesenc`) with AVX-512, or on 256-bit
//! registers (two blocks per `vaesenc`) with AVX2 alone. The portable path in [`super::crypt`] runs one
//! 128-bit AES-NI block per instruction through the `aes` crate and spends as long again moving blocks and
//! tweaks between arrays; these keep a sector's blocks and tweaks in registers: each 64-byte (32-byte) load
//! is XORed with its tweaks, runs the fourteen rounds, is XORed again and stored in place.
//!
//! The tweaks of blocks `j..j + 4` of a sector are the sector's first tweak times `x^j` ... `x^(j+3)` in
//! GF(2^128) (XTS's little-endian convention); the next four are these times `x^4`: each 128-bit lane
//! shifted left by four bits, the four bits that leave the low half carried into the high half, and the four
//! that leave the high half reduced by `x^128 = x^7 + x^2 + x + 1` (a carry-less multiply by 0x87).
//! The AVX2 path holds sixteen blocks' tweaks in eight registers and steps each by `x^16` the same way
//! (sixteen bits carried; the product of those bits with 0x87 still fits in 64 bits), so the eight steps are
//! independent instead of a chain.
//! Checked against the portable path (itself checked against the `xts-mode` crate and IEEE 1619) in the
//! tests of [`super::crypt`].

// The AVX-512 and VAES intrinsics are stable since Rust 1.89, the workspace's rust-version.

use std::arch::x86_64::*;

/// Which registers [`xts`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Width {
    /// 512-bit registers (AVX-512F/BW), four blocks per instruction.
    Avx512,
    /// 256-bit registers (AVX2), two blocks per instruction.
    Avx2,
}

/// The widest path this CPU can run [`xts`] on, if any.
pub(super) fn available() -> Option<Width> {
    if !(is_x86_feature_detected!("aes")
        && is_x86_feature_detected!("vaes")
        && is_x86_feature_detected!("vpclmulqdq"))
    {
        return None;
    }
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
        Some(Width::Avx512)
    } else if is_x86_feature_detected!("avx2") {
        Some(Width::Avx2)
    } else {
        None
    }
}

/// Whether this CPU can run [`xts`] on `width`'s registers.
pub(super) fn runs(width: Width) -> bool {
    matches!(
        (available(), width),
        (Some(Width::Avx512), _) | (Some(Width::Avx2), Width::Avx2)
    )
}

/// Sector sizes [`xts`] takes: whole groups of 32 blocks (LUKS2 sectors are 512 to 4096 bytes).
pub(super) const SECTOR_MULTIPLE: usize = 512;

/// The round keys of an AES-256-XTS key: data encryption, data decryption (the equivalent inverse
/// cipher's), and the tweak key's encryption; and the registers they run on.
#[derive(Clone)]
pub(super) struct Keys {
    enc: [[u8; 16]; 15],
    dec: [[u8; 16]; 15],
    tweak: [[u8; 16]; 15],
    pub(super) width: Width,
}

impl Keys {
    /// Expands the 64-byte XTS key (data key, then tweak key). `None` when the CPU lacks the instructions.
    pub(super) fn new(key: &[u8; 64]) -> Option<Self> {
        let width = available()?;
        // SAFETY: AES-NI is present (checked above).
        let (enc, dec, tweak) = unsafe {
            let enc = expand(key[..32].try_into().expect("32 bytes"));
            let tweak = expand(key[32..].try_into().expect("32 bytes"));
            (enc, inverse(&enc), tweak)
        };
        Some(Keys {
            enc,
            dec,
            tweak,
            width,
        })
    }
}

/// AES-256 key expansion (FIPS 197), with AES-NI's key generation assist.
///
/// # Safety
/// The CPU has AES-NI.
#[target_feature(enable = "aes,sse2")]
unsafe fn expand(key: &[u8; 32]) -> [[u8; 16]; 15] {
    // SAFETY (whole body): AES-NI and SSE2 are enabled; loads and stores are unaligned on 16-byte arrays.
    unsafe {
        #[inline(always)]
        unsafe fn mix(prev: __m128i, assist: __m128i) -> __m128i {
            // SAFETY: register-only SSE2 operations; the caller's target features include SSE2.
            unsafe {
                let mut k = prev;
                k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
                k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
                k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
                _mm_xor_si128(k, assist)
            }
        }
        let mut rk = [_mm_setzero_si128(); 15];
        rk[0] = _mm_loadu_si128(key.as_ptr().cast());
        rk[1] = _mm_loadu_si128(key.as_ptr().add(16).cast());
        // Round keys 2i and (but for the last, 14) 2i + 1.
        macro_rules! round {
            ($i:literal, $rcon:literal) => {
                round!(last $i, $rcon);
                let b = _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(rk[2 * $i]));
                rk[2 * $i + 1] = mix(rk[2 * $i - 1], b);
            };
            (last $i:literal, $rcon:literal) => {
                let a = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(rk[2 * $i - 1]));
                rk[2 * $i] = mix(rk[2 * $i - 2], a);
            };
        }
        round!(1, 0x01);
        round!(2, 0x02);
        round!(3, 0x04);
        round!(4, 0x08);
        round!(5, 0x10);
        round!(6, 0x20);
        round!(last 7, 0x40);
        let mut out = [[0u8; 16]; 15];
        for (o, k) in out.iter_mut().zip(rk) {
            _mm_storeu_si128(o.as_mut_ptr().cast(), k);
        }
        out
    }
}

/// The decryption round keys of the equivalent inverse cipher: the encryption keys in reverse order, the
/// inner ones through InvMixColumns.
///
/// # Safety
/// The CPU has AES-NI.
#[target_feature(enable = "aes,sse2")]
unsafe fn inverse(enc: &[[u8; 16]; 15]) -> [[u8; 16]; 15] {
    // SAFETY (whole body): AES-NI and SSE2 are enabled; loads and stores are unaligned on 16-byte arrays.
    unsafe {
        let mut dec = [[0u8; 16]; 15];
        for (i, d) in dec.iter_mut().enumerate() {
            let k = _mm_loadu_si128(enc[14 - i].as_ptr().cast());
            let k = if i == 0 || i == 14 { k } else { _mm_aesimc_si128(k) };
            _mm_storeu_si128(d.as_mut_ptr().cast(), k);
        }
        dec
    }
}

/// Encrypts (or with `enc` false decrypts) `buf` in place: consecutive sectors of `sector_size` bytes (a
/// multiple of [`SECTOR_MULTIPLE`]), sector `i` with IV `first_iv + i * iv_step`.
///
/// # Panics
/// If the sector size is not a multiple of [`SECTOR_MULTIPLE`] or `buf` is not whole sectors.
pub(super) fn xts(keys: &Keys, buf: &mut [u8], sector_size: usize, first_iv: u64, iv_step: u64, enc: bool) {
    let p = buf.as_mut_ptr();
    // SAFETY: source and destination are the same valid range of `buf.len()` bytes (each kernel reads a
    // group before it writes it).
    unsafe { run(keys, p, p, buf.len(), sector_size, first_iv, iv_step, enc) }
}

/// [`xts`] from `src` into `dst` (of the same length): the plaintext is read once, without a copy first.
///
/// # Panics
/// As [`xts`], or if the lengths differ.
pub(super) fn xts_into(
    keys: &Keys,
    src: &[u8],
    dst: &mut [u8],
    sector_size: usize,
    first_iv: u64,
    iv_step: u64,
    enc: bool,
) {
    assert_eq!(
        src.len(),
        dst.len(),
        "xts_into: source and destination of one length"
    );
    // SAFETY: `src` is valid for reads and `dst` for writes of `src.len()` bytes, and they do not overlap
    // (a shared and a mutable borrow).
    unsafe {
        run(
            keys,
            src.as_ptr(),
            dst.as_mut_ptr(),
            src.len(),
            sector_size,
            first_iv,
            iv_step,
            enc,
        )
    }
}

/// # Safety
/// `src` is valid for reads and `dst` for writes of `len` bytes; they are the same pointer or do not overlap.
#[allow(clippy::too_many_arguments)]
unsafe fn run(
    keys: &Keys,
    src: *const u8,
    dst: *mut u8,
    len: usize,
    sector_size: usize,
    first_iv: u64,
    iv_step: u64,
    enc: bool,
) {
    assert!(
        sector_size > 0 && sector_size.is_multiple_of(SECTOR_MULTIPLE) && len.is_multiple_of(sector_size)
    );
    assert!(
        runs(keys.width),
        "xts needs VAES, VPCLMULQDQ and AVX-512F/BW or AVX2"
    );
    // SAFETY: the instructions are present (asserted above); each sector is a whole number of 512-byte
    // groups inside the `len` bytes the caller guarantees.
    unsafe {
        match keys.width {
            Width::Avx512 => xts_vaes(keys, src, dst, len, sector_size, first_iv, iv_step, enc),
            Width::Avx2 => xts_vaes256(keys, src, dst, len, sector_size, first_iv, iv_step, enc),
        }
    }
}

/// The tweak of IV `iv`: AES-256 of the IV (a 128-bit little-endian number) under the tweak key.
///
/// # Safety
/// The CPU has AES-NI.
#[target_feature(enable = "aes,sse2")]
#[inline]
unsafe fn first_tweak(tk: &[__m128i; 15], iv: u64) -> u128 {
    // SAFETY (whole body): AES-NI and SSE2 are enabled; the store is an unaligned 16-byte one into a local.
    unsafe {
        let mut t = _mm_xor_si128(_mm_set_epi64x(0, iv as i64), tk[0]);
        for k in &tk[1..14] {
            t = _mm_aesenc_si128(t, *k);
        }
        t = _mm_aesenclast_si128(t, tk[14]);
        let mut t0 = [0u8; 16];
        _mm_storeu_si128(t0.as_mut_ptr().cast(), t);
        u128::from_le_bytes(t0)
    }
}

/// Each 128-bit lane of `t` times `x^16` in GF(2^128), XTS convention.
///
/// # Safety
/// The CPU has AVX2 and VPCLMULQDQ.
#[target_feature(enable = "avx2,vpclmulqdq")]
#[inline]
unsafe fn mul_x16(t: __m256i) -> __m256i {
    // Register-only operations of the features enabled above (safe calls inside this function).
    let shifted = _mm256_slli_epi64::<16>(t);
    let out = _mm256_srli_epi64::<48>(t);
    let into_high = _mm256_bslli_epi128::<8>(out);
    // The high half's sixteen bits (selector 0x01: the first operand's high quadword) times 0x87.
    let reduce = _mm256_clmulepi64_epi128::<0x01>(out, _mm256_set_epi64x(0, 0x87, 0, 0x87));
    _mm256_xor_si256(_mm256_xor_si256(shifted, into_high), reduce)
}

/// The AVX2 path: sixteen blocks (eight 256-bit registers) at a time.
///
/// # Safety
/// The CPU has AES-NI, AVX2, VAES and VPCLMULQDQ; `sector_size` is a multiple of 512 and `len` whole
/// sectors; `src` is valid for reads and `dst` for writes of `len` bytes (the same pointer, or apart).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "aes,sse2,avx,avx2,vaes,vpclmulqdq")]
unsafe fn xts_vaes256(
    keys: &Keys,
    src: *const u8,
    dst: *mut u8,
    len: usize,
    sector_size: usize,
    first_iv: u64,
    iv_step: u64,
    enc: bool,
) {
    // SAFETY (whole body): the target features are enabled for this function; every load and store is an
    // unaligned 32-byte access inside the current 256-byte group of `src` or `dst` (or of a local array),
    // and a group is read whole before it is written.
    unsafe {
        let rk = if enc { &keys.enc } else { &keys.dec };
        let rk: [__m256i; 15] =
            std::array::from_fn(|r| _mm256_broadcastsi128_si256(_mm_loadu_si128(rk[r].as_ptr().cast())));
        let tk: [__m128i; 15] = std::array::from_fn(|r| _mm_loadu_si128(keys.tweak[r].as_ptr().cast()));
        let mut iv = first_iv;
        for sector in (0..len).step_by(sector_size) {
            // The sector's first sixteen tweaks, two per register.
            let mut t = first_tweak(&tk, iv);
            let mut first = [[0u8; 16]; 16];
            for f in &mut first {
                *f = t.to_le_bytes();
                t = super::gf_double(t);
            }
            let mut tws: [__m256i; 8] =
                std::array::from_fn(|j| _mm256_loadu_si256(first[2 * j..].as_ptr().cast()));
            for group in (sector..sector + sector_size).step_by(256) {
                let (p, q) = (src.add(group), dst.add(group));
                let mut x: [__m256i; 8] = std::array::from_fn(|j| {
                    _mm256_xor_si256(
                        _mm256_xor_si256(_mm256_loadu_si256(p.add(32 * j).cast()), tws[j]),
                        rk[0],
                    )
                });
                if enc {
                    for k in &rk[1..14] {
                        for v in &mut x {
                            *v = _mm256_aesenc_epi128(*v, *k);
                        }
                    }
                    for v in &mut x {
                        *v = _mm256_aesenclast_epi128(*v, rk[14]);
                    }
                } else {
                    for k in &rk[1..14] {
                        for v in &mut x {
                            *v = _mm256_aesdec_epi128(*v, *k);
                        }
                    }
                    for v in &mut x {
                        *v = _mm256_aesdeclast_epi128(*v, rk[14]);
                    }
                }
                for j in 0..8 {
                    _mm256_storeu_si256(q.add(32 * j).cast(), _mm256_xor_si256(x[j], tws[j]));
                    tws[j] = mul_x16(tws[j]);
                }
            }
            iv = iv.wrapping_add(iv_step);
        }
    }
}

/// Each 128-bit lane of `t` times `x^4` in GF(2^128), XTS convention.
///
/// # Safety
/// The CPU has AVX-512F/BW and VPCLMULQDQ.
#[target_feature(enable = "avx512f,avx512bw,vpclmulqdq")]
#[inline]
unsafe fn mul_x4(t: __m512i) -> __m512i {
    // Register-only operations of the features enabled above (safe calls inside this function).
    let shifted = _mm512_slli_epi64::<4>(t);
    let out = _mm512_srli_epi64::<60>(t);
    let into_high = _mm512_bslli_epi128::<8>(out);
    let reduce = _mm512_clmulepi64_epi128::<0x00>(_mm512_bsrli_epi128::<8>(out), _mm512_set1_epi64(0x87));
    _mm512_ternarylogic_epi64::<0x96>(shifted, into_high, reduce)
}

/// # Safety
/// The CPU has AES-NI, AVX-512F/BW, VAES and VPCLMULQDQ; `sector_size` is a multiple of 512 and `len` whole
/// sectors; `src` is valid for reads and `dst` for writes of `len` bytes (the same pointer, or apart).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "aes,sse2,avx2,avx512f,avx512bw,vaes,vpclmulqdq")]
unsafe fn xts_vaes(
    keys: &Keys,
    src: *const u8,
    dst: *mut u8,
    len: usize,
    sector_size: usize,
    first_iv: u64,
    iv_step: u64,
    enc: bool,
) {
    // SAFETY (whole body): the target features are enabled for this function; every load and store is an
    // unaligned 64-byte access inside the current 512-byte group of `src` or `dst`, and a group is read
    // whole before it is written.
    unsafe {
        let rk = if enc { &keys.enc } else { &keys.dec };
        let rk: [__m512i; 15] =
            std::array::from_fn(|r| _mm512_broadcast_i32x4(_mm_loadu_si128(rk[r].as_ptr().cast())));
        let tk: [__m128i; 15] = std::array::from_fn(|r| _mm_loadu_si128(keys.tweak[r].as_ptr().cast()));
        let mut iv = first_iv;
        for sector in (0..len).step_by(sector_size) {
            // The sector's first tweak, and its first four powers as the first group's tweak vector.
            let t0 = first_tweak(&tk, iv);
            let t1 = super::gf_double(t0);
            let t2 = super::gf_double(t1);
            let t3 = super::gf_double(t2);
            let four = [t0, t1, t2, t3].map(u128::to_le_bytes);
            let mut tw = _mm512_loadu_si512(four.as_ptr().cast());
            for group in (sector..sector + sector_size).step_by(512) {
                let (p, q) = (src.add(group), dst.add(group));
                let mut tws = [tw; 8];
                for j in 1..8 {
                    tws[j] = mul_x4(tws[j - 1]);
                }
                tw = mul_x4(tws[7]);
                let mut x: [__m512i; 8] = std::array::from_fn(|j| {
                    _mm512_ternarylogic_epi64::<0x96>(_mm512_loadu_si512(p.add(64 * j).cast()), tws[j], rk[0])
                });
                if enc {
                    for k in &rk[1..14] {
                        for v in &mut x {
                            *v = _mm512_aesenc_epi128(*v, *k);
                        }
                    }
                    for v in &mut x {
                        *v = _mm512_aesenclast_epi128(*v, rk[14]);
                    }
                } else {
                    for k in &rk[1..14] {
                        for v in &mut x {
                            *v = _mm512_aesdec_epi128(*v, *k);
                        }
                    }
                    for v in &mut x {
                        *v = _mm512_aesdeclast_epi128(*v, rk[14]);
                    }
                }
                for j in 0..8 {
                    _mm512_storeu_si512(q.add(64 * j).cast(), _mm512_xor_si512(x[j], tws[j]));
                }
            }
            iv = iv.wrapping_add(iv_step);
        }
    }
}
