//! The LUKS2 JSON metadata: parsing what cryptsetup writes and building what seedship writes.
//!
//! Sections (LUKS2 on-disk format specification, section 3): `keyslots`, `tokens`, `segments`,
//! `digests`, `config`. Offsets and sizes are decimal strings (64-bit), small integers are JSON numbers.
//! A header copy is structurally valid when the sections are objects with at most [`MAX_OBJECTS`]
//! numbered entries, `config.json_size` equals the JSON area and `config.keyslots_size` is 4 KiB-aligned
//! and at most 128 MiB. Individual keyslots and digests that seedship cannot use (another cipher, KDF or
//! type) do not make the copy invalid; they are kept with the reason and reported only when no usable
//! keyslot unlocks. The data segment must be a single `crypt` segment (no reencryption in progress).

use base64::Engine;
use serde_json::{json, Map, Value};

use super::af;
use super::hash::LuksHash;
use super::kdf::KeyslotKdf;

/// Size of the binary part of a header copy, which the JSON area follows (defined here, below `header`,
/// because the JSON's `config` sizes are checked against it).
pub const BIN_LEN: usize = 4096;

/// Most objects per section, as cryptsetup's `LUKS2_OBJECTS_MAX`.
pub const MAX_OBJECTS: usize = 32;
/// Largest keyslots area cryptsetup accepts (`LUKS2_MAX_KEYSLOTS_SIZE`).
pub const MAX_KEYSLOTS_SIZE: u64 = 128 * 1024 * 1024;
/// The only cipher seedship reads or writes, for data and keyslot areas.
pub const CIPHER: &str = "aes-xts-plain64";
/// Volume and keyslot key size for [`CIPHER`] with AES-256.
pub const KEY_SIZE: usize = 64;
/// Salt length of keyslot KDFs and digests.
pub const SALT_LEN: usize = 32;

/// A keyslot seedship can try: `luks2` type, luks1 AF, raw area in [`CIPHER`].
#[derive(Debug, Clone)]
pub struct Keyslot {
    pub id: u32,
    pub area_offset: u64,
    pub area_size: u64,
    pub af_hash: LuksHash,
    pub stripes: usize,
    pub kdf: KeyslotKdf,
}

/// The data segment.
#[derive(Debug, Clone)]
pub struct Segment {
    pub id: u32,
    pub offset: u64,
    /// `None` for `"dynamic"` (up to the end of the device).
    pub size: Option<u64>,
    pub iv_tweak: u64,
    pub encryption: String,
    pub sector_size: u32,
    /// Why this segment cannot be used, if it cannot (integrity, flags, several segments).
    pub unsupported: Option<String>,
}

/// A PBKDF2 digest of the volume key, bound to keyslots and segments.
#[derive(Debug, Clone)]
pub struct KeyDigest {
    pub keyslots: Vec<u32>,
    pub segments: Vec<u32>,
    pub hash: LuksHash,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub digest: Vec<u8>,
}

/// The parsed metadata of one header copy.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// Usable keyslots, or the reason a keyslot is not usable.
    pub keyslots: Vec<Result<Keyslot, String>>,
    pub segment: Segment,
    pub digests: Vec<Result<KeyDigest, String>>,
    pub json_size: u64,
    pub keyslots_size: u64,
    /// Set when `config.requirements.mandatory` lists something (we support none).
    pub requirements: Vec<String>,
}

type R<T> = Result<T, String>;

fn section<'a>(root: &'a Map<String, Value>, name: &str) -> R<&'a Map<String, Value>> {
    let obj = root
        .get(name)
        .and_then(Value::as_object)
        .ok_or(format!("no \"{name}\" object"))?;
    if obj.len() > MAX_OBJECTS {
        return Err(format!(
            "\"{name}\" has {} entries, at most {MAX_OBJECTS} allowed",
            obj.len()
        ));
    }
    Ok(obj)
}

fn id(key: &str, what: &str) -> R<u32> {
    let n: u32 = numeric(key).map_err(|_| format!("{what} id {key:?} is not a number"))?;
    if n as usize >= MAX_OBJECTS {
        return Err(format!("{what} id {n} is not below {MAX_OBJECTS}"));
    }
    Ok(n)
}

fn numeric<T: std::str::FromStr>(s: &str) -> R<T> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a decimal number"));
    }
    s.parse().map_err(|_| format!("{s:?} is out of range"))
}

fn field<'a>(obj: &'a Map<String, Value>, key: &str, ctx: &str) -> R<&'a Value> {
    obj.get(key).ok_or_else(|| format!("{ctx}: missing \"{key}\""))
}

fn string<'a>(obj: &'a Map<String, Value>, key: &str, ctx: &str) -> R<&'a str> {
    field(obj, key, ctx)?
        .as_str()
        .ok_or_else(|| format!("{ctx}: \"{key}\" is not a string"))
}

fn object<'a>(obj: &'a Map<String, Value>, key: &str, ctx: &str) -> R<&'a Map<String, Value>> {
    field(obj, key, ctx)?
        .as_object()
        .ok_or_else(|| format!("{ctx}: \"{key}\" is not an object"))
}

fn u64_string(obj: &Map<String, Value>, key: &str, ctx: &str) -> R<u64> {
    numeric(string(obj, key, ctx)?).map_err(|e| format!("{ctx}: \"{key}\": {e}"))
}

fn u32_number(obj: &Map<String, Value>, key: &str, ctx: &str) -> R<u32> {
    field(obj, key, ctx)?
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("{ctx}: \"{key}\" is not a 32-bit unsigned number"))
}

fn base64_field(obj: &Map<String, Value>, key: &str, ctx: &str) -> R<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(string(obj, key, ctx)?)
        .map_err(|e| format!("{ctx}: \"{key}\" is not base64: {e}"))
}

fn id_list(obj: &Map<String, Value>, key: &str, ctx: &str) -> R<Vec<u32>> {
    let arr = field(obj, key, ctx)?
        .as_array()
        .ok_or_else(|| format!("{ctx}: \"{key}\" is not an array"))?;
    if arr.len() > MAX_OBJECTS {
        return Err(format!("{ctx}: \"{key}\" lists too many entries"));
    }
    arr.iter()
        .map(|v| {
            v.as_str()
                .ok_or(format!("{ctx}: \"{key}\" holds a non-string"))
                .and_then(|s| id(s, ctx))
        })
        .collect()
}

impl Metadata {
    /// Parses the JSON text of a header copy whose JSON area is `json_area` bytes.
    pub fn parse(json: &[u8], json_area: u64) -> R<Self> {
        let root: Value = serde_json::from_slice(json).map_err(|e| format!("not valid JSON: {e}"))?;
        let root = root.as_object().ok_or("the top level is not an object")?;
        section(root, "tokens")?;
        let config = section(root, "config")?;
        let json_size = u64_string(config, "json_size", "config")?;
        if json_size != json_area {
            return Err(format!(
                "config json_size {json_size} differs from the JSON area size {json_area}"
            ));
        }
        let keyslots_size = u64_string(config, "keyslots_size", "config")?;
        if keyslots_size % 4096 != 0 || keyslots_size > MAX_KEYSLOTS_SIZE {
            return Err(format!(
                "config keyslots_size {keyslots_size} is not 4 KiB-aligned or exceeds 128 MiB"
            ));
        }
        let requirements = match config.get("requirements").and_then(|r| r.get("mandatory")) {
            Some(Value::Array(a)) => a.iter().take(MAX_OBJECTS).map(|v| v.to_string()).collect(),
            _ => Vec::new(),
        };
        let hdr_size = json_area + BIN_LEN as u64;
        let area = (2 * hdr_size, 2 * hdr_size + keyslots_size);
        let mut keyslots = Vec::new();
        for (key, v) in section(root, "keyslots")? {
            let n = id(key, "keyslot")?;
            let slot = v.as_object().ok_or(format!("keyslot {n} is not an object"))?;
            keyslots.push(parse_keyslot(n, slot, area));
        }
        let mut digests = Vec::new();
        for (key, v) in section(root, "digests")? {
            let n = id(key, "digest")?;
            let d = v.as_object().ok_or(format!("digest {n} is not an object"))?;
            digests.push(parse_digest(n, d));
        }
        let segments = section(root, "segments")?;
        let mut segment: Option<Segment> = None;
        for (key, v) in segments {
            let n = id(key, "segment")?;
            let s = parse_segment(n, v.as_object().ok_or(format!("segment {n} is not an object"))?)?;
            if segment.as_ref().is_none_or(|cur| s.id < cur.id) {
                segment = Some(s);
            }
        }
        let mut segment = segment.ok_or("no segment")?;
        if segments.len() > 1 && segment.unsupported.is_none() {
            segment.unsupported = Some(format!(
                "{} segments (a reencryption in progress?)",
                segments.len()
            ));
        }
        if segment.offset != 0 && segment.offset < area.1 {
            return Err(format!(
                "data offset {} lies inside the keyslots area ending at {}",
                segment.offset, area.1
            ));
        }
        Ok(Metadata {
            keyslots,
            segment,
            digests,
            json_size,
            keyslots_size,
            requirements,
        })
    }

    /// The digest bound to keyslot `slot` and the data segment, if any.
    pub fn digest_for(&self, slot: u32) -> Option<&KeyDigest> {
        self.digests
            .iter()
            .filter_map(|d| d.as_ref().ok())
            .find(|d| d.keyslots.contains(&slot) && d.segments.contains(&self.segment.id))
    }
}

fn parse_keyslot(n: u32, slot: &Map<String, Value>, area: (u64, u64)) -> R<Keyslot> {
    let ctx = format!("keyslot {n}");
    let ctx = ctx.as_str();
    let kind = string(slot, "type", ctx)?;
    if kind != "luks2" {
        return Err(format!("{ctx} has type {kind:?}"));
    }
    let key_size = u32_number(slot, "key_size", ctx)?;
    if key_size as usize != KEY_SIZE {
        return Err(format!(
            "{ctx} holds a {}-bit key, not {}-bit",
            u64::from(key_size) * 8,
            KEY_SIZE * 8
        ));
    }
    let af = object(slot, "af", ctx)?;
    let af_type = string(af, "type", ctx)?;
    let stripes = u32_number(af, "stripes", ctx)? as usize;
    let hash = string(af, "hash", ctx)?;
    let af_hash = LuksHash::from_name(hash).ok_or(format!("{ctx} uses AF hash {hash:?}"))?;
    if af_type != "luks1" || stripes != af::STRIPES {
        return Err(format!("{ctx} uses AF {af_type:?} with {stripes} stripes"));
    }
    let ar = object(slot, "area", ctx)?;
    let area_type = string(ar, "type", ctx)?;
    let enc = string(ar, "encryption", ctx)?;
    let area_key = u32_number(ar, "key_size", ctx)?;
    if area_type != "raw" || enc != CIPHER || area_key as usize != KEY_SIZE {
        return Err(format!(
            "{ctx} area is {area_type:?} encrypted with {enc:?} ({}-bit key)",
            u64::from(area_key) * 8
        ));
    }
    let area_offset = u64_string(ar, "offset", ctx)?;
    let area_size = u64_string(ar, "size", ctx)?;
    let end = area_offset
        .checked_add(area_size)
        .ok_or(format!("{ctx} area overflows"))?;
    if area_offset < area.0 || end > area.1 || area_offset % 512 != 0 {
        return Err(format!(
            "{ctx} area {area_offset}+{area_size} lies outside the keyslots area"
        ));
    }
    if area_size < af::split_len(KEY_SIZE, stripes) as u64 {
        return Err(format!(
            "{ctx} area of {area_size} bytes is too small for its key material"
        ));
    }
    let kdf = parse_kdf(object(slot, "kdf", ctx)?, ctx)?;
    Ok(Keyslot {
        id: n,
        area_offset,
        area_size,
        af_hash,
        stripes,
        kdf,
    })
}

fn parse_kdf(kdf: &Map<String, Value>, ctx: &str) -> R<KeyslotKdf> {
    let kind = string(kdf, "type", ctx)?;
    let salt = base64_field(kdf, "salt", ctx)?;
    if salt.len() != SALT_LEN {
        return Err(format!("{ctx}: kdf salt is {} bytes, not {SALT_LEN}", salt.len()));
    }
    match kind {
        "pbkdf2" => {
            let h = string(kdf, "hash", ctx)?;
            let hash = LuksHash::from_name(h).ok_or(format!("{ctx} uses PBKDF2 hash {h:?}"))?;
            let iterations = u32_number(kdf, "iterations", ctx)?;
            super::kdf::check_pbkdf2(iterations).map_err(|e| format!("{ctx}: {e}"))?;
            Ok(KeyslotKdf::Pbkdf2 {
                hash,
                iterations,
                salt,
            })
        }
        "argon2i" | "argon2id" => Ok(KeyslotKdf::Argon2 {
            id: kind == "argon2id",
            time: u32_number(kdf, "time", ctx)?,
            memory_kib: u32_number(kdf, "memory", ctx)?,
            lanes: u32_number(kdf, "cpus", ctx)?,
            salt,
        }),
        other => Err(format!("{ctx} uses KDF {other:?}")),
    }
}

fn parse_digest(n: u32, d: &Map<String, Value>) -> R<KeyDigest> {
    let ctx = format!("digest {n}");
    let ctx = ctx.as_str();
    let kind = string(d, "type", ctx)?;
    if kind != "pbkdf2" {
        return Err(format!("{ctx} has type {kind:?}"));
    }
    let h = string(d, "hash", ctx)?;
    let hash = LuksHash::from_name(h).ok_or(format!("{ctx} uses hash {h:?}"))?;
    let salt = base64_field(d, "salt", ctx)?;
    let digest = base64_field(d, "digest", ctx)?;
    if salt.len() != SALT_LEN || !(digest.len() == 20 || digest.len() == hash.output_len()) {
        return Err(format!(
            "{ctx}: salt of {} or digest of {} bytes",
            salt.len(),
            digest.len()
        ));
    }
    let iterations = u32_number(d, "iterations", ctx)?;
    super::kdf::check_pbkdf2(iterations).map_err(|e| format!("{ctx}: {e}"))?;
    Ok(KeyDigest {
        keyslots: id_list(d, "keyslots", ctx)?,
        segments: id_list(d, "segments", ctx)?,
        hash,
        iterations,
        salt,
        digest,
    })
}

fn parse_segment(n: u32, s: &Map<String, Value>) -> R<Segment> {
    let ctx = format!("segment {n}");
    let ctx = ctx.as_str();
    let kind = string(s, "type", ctx)?;
    let offset = u64_string(s, "offset", ctx)?;
    let size = match string(s, "size", ctx)? {
        "dynamic" => None,
        other => Some(numeric::<u64>(other).map_err(|e| format!("{ctx}: size: {e}"))?),
    };
    if offset % 512 != 0 || size.is_some_and(|z| z % 512 != 0 || z == 0) {
        return Err(format!("{ctx}: offset {offset} or size {size:?} not 512-aligned"));
    }
    let mut unsupported = None;
    if kind != "crypt" {
        unsupported = Some(format!("a {kind:?} segment"));
    }
    let (mut iv_tweak, mut encryption, mut sector_size) = (0, String::new(), 512);
    if kind == "crypt" {
        iv_tweak = u64_string(s, "iv_tweak", ctx)?;
        encryption = string(s, "encryption", ctx)?.to_owned();
        sector_size = u32_number(s, "sector_size", ctx)?;
        if ![512, 1024, 2048, 4096].contains(&sector_size) || offset % u64::from(sector_size) != 0 {
            return Err(format!("{ctx}: sector size {sector_size} at offset {offset}"));
        }
        if encryption != CIPHER {
            unsupported = Some(format!("cipher {encryption:?}"));
        } else if s.contains_key("integrity") {
            unsupported = Some("dm-integrity".into());
        } else if s
            .get("flags")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
        {
            unsupported = Some("segment flags (a reencryption in progress?)".into());
        }
    }
    Ok(Segment {
        id: n,
        offset,
        size,
        iv_tweak,
        encryption,
        sector_size,
        unsupported,
    })
}

/// What [`build_json`] writes: seedship's fixed layout with one keyslot and one digest.
pub struct Layout<'a> {
    pub json_size: u64,
    pub keyslots_size: u64,
    pub area_offset: u64,
    pub area_size: u64,
    pub data_offset: u64,
    pub sector_size: u32,
    pub kdf: &'a KeyslotKdf,
    pub digest_iterations: u32,
    pub digest_salt: &'a [u8],
    pub digest: &'a [u8],
}

/// The JSON metadata for a freshly formatted drive.
pub fn build_json(l: &Layout<'_>) -> Value {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let kdf = match l.kdf {
        KeyslotKdf::Pbkdf2 {
            hash,
            iterations,
            salt,
        } => {
            json!({"type": "pbkdf2", "hash": hash.name(), "iterations": iterations, "salt": b64(salt)})
        }
        KeyslotKdf::Argon2 {
            id,
            time,
            memory_kib,
            lanes,
            salt,
        } => json!({
            "type": if *id { "argon2id" } else { "argon2i" },
            "time": time, "memory": memory_kib, "cpus": lanes, "salt": b64(salt)
        }),
    };
    json!({
        "keyslots": {"0": {
            "type": "luks2",
            "key_size": KEY_SIZE,
            "af": {"type": "luks1", "stripes": af::STRIPES, "hash": "sha256"},
            "area": {"type": "raw", "offset": l.area_offset.to_string(), "size": l.area_size.to_string(),
                     "encryption": CIPHER, "key_size": KEY_SIZE},
            "kdf": kdf,
        }},
        "tokens": {},
        "segments": {"0": {
            "type": "crypt", "offset": l.data_offset.to_string(), "size": "dynamic", "iv_tweak": "0",
            "encryption": CIPHER, "sector_size": l.sector_size,
        }},
        "digests": {"0": {
            "type": "pbkdf2", "keyslots": ["0"], "segments": ["0"], "hash": "sha256",
            "iterations": l.digest_iterations, "salt": b64(l.digest_salt), "digest": b64(l.digest),
        }},
        "config": {"json_size": l.json_size.to_string(), "keyslots_size": l.keyslots_size.to_string()},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> Value {
        let kdf = KeyslotKdf::Pbkdf2 {
            hash: LuksHash::Sha256,
            iterations: 1000,
            salt: vec![1; 32],
        };
        build_json(&Layout {
            json_size: 12288,
            keyslots_size: 16_744_448,
            area_offset: 32768,
            area_size: 258_048,
            data_offset: 16 << 20,
            sector_size: 4096,
            kdf: &kdf,
            digest_iterations: 1000,
            digest_salt: &[2; 32],
            digest: &[3; 32],
        })
    }

    fn parse(v: &Value) -> R<Metadata> {
        Metadata::parse(&serde_json::to_vec(v).unwrap(), 12288)
    }

    #[test]
    fn what_we_build_parses_back() {
        let m = parse(&ours()).unwrap();
        assert_eq!((m.json_size, m.keyslots_size), (12288, 16_744_448));
        let slot = m.keyslots[0].as_ref().unwrap();
        assert_eq!(
            (slot.area_offset, slot.area_size, slot.stripes),
            (32768, 258_048, 4000)
        );
        assert_eq!(
            (m.segment.offset, m.segment.size, m.segment.sector_size),
            (16 << 20, None, 4096)
        );
        assert!(m.segment.unsupported.is_none());
        assert_eq!(m.digest_for(0).unwrap().digest, vec![3; 32]);
    }

    #[test]
    fn hostile_values_are_reasons_not_panics() {
        let mut v = ours();
        v["keyslots"]["0"]["key_size"] = json!(u32::MAX);
        v["keyslots"]["0"]["area"]["key_size"] = json!(u32::MAX);
        let m = parse(&v).unwrap();
        assert!(m.keyslots[0].as_ref().unwrap_err().contains("keyslot 0"));

        let mut v = ours();
        v["keyslots"]["0"]["area"]["offset"] = json!("18446744073709551615");
        assert!(parse(&v).unwrap().keyslots[0].is_err());

        let mut v = ours();
        v["config"]["json_size"] = json!("4096");
        assert!(parse(&v).unwrap_err().contains("json_size"));

        let mut v = ours();
        v["segments"]["0"]["encryption"] = json!("serpent-xts-plain64");
        assert!(parse(&v)
            .unwrap()
            .segment
            .unsupported
            .unwrap()
            .contains("serpent"));

        let mut v = ours();
        v["segments"]["0"]["offset"] = json!("4096");
        assert!(parse(&v).unwrap_err().contains("inside the keyslots area"));

        let mut v = ours();
        let many: Map<String, Value> = (0..40).map(|i| (i.to_string(), json!({}))).collect();
        v["tokens"] = Value::Object(many);
        assert!(parse(&v).unwrap_err().contains("at most 32"));

        // a customer's drive may not ask for hours of PBKDF2 (keyslot or digest)
        let mut v = ours();
        v["keyslots"]["0"]["kdf"]["iterations"] = json!(u32::MAX);
        let m = parse(&v).unwrap();
        let e = m.keyslots[0].as_ref().unwrap_err();
        assert!(
            e.contains("keyslot 0") && e.contains("4294967295 PBKDF2 iterations"),
            "{e}"
        );
        let mut v = ours();
        v["digests"]["0"]["iterations"] = json!(super::super::kdf::MAX_PBKDF2_ITERATIONS + 1);
        let e = match parse(&v) {
            Ok(m) => m.digests[0].as_ref().unwrap_err().clone(),
            Err(e) => e,
        };
        assert!(e.contains("digest 0") && e.contains("PBKDF2 iterations"), "{e}");

        assert!(Metadata::parse(b"[1,2", 12288).is_err());
        assert!(Metadata::parse(&[b'['; 10_000], 12288).is_err());
    }
}
