//! BitLocker-style 48-digit recovery keys: the passphrase of a shipping drive's LUKS2 keyslot.
//!
//! A key is 128 random bits written as 8 groups of 6 decimal digits separated by hyphens
//! (`123456-234567-...`). Each group is `11 * k` with `k < 65536`, so it carries 16 bits and a typing
//! mistake in a group is usually caught by the multiple-of-11 check. The hyphenated text
//! ([`RecoveryKey::as_str`] or `Display`) is exactly the passphrase given to the LUKS2 keyslot, so
//! `cryptsetup open --key-file` with the same text (no trailing newline) unlocks the drive.
//!
//! The key is a secret: `Debug` prints it redacted, and errors from [`RecoveryKey::parse`] name the
//! group and the rule it breaks but never echo the digits.

use std::fmt;

/// Number of 6-digit groups in a recovery key.
pub const GROUPS: usize = 8;
/// Digits per group.
pub const GROUP_DIGITS: usize = 6;
/// Length of the hyphenated text form: 8 * 6 digits + 7 hyphens.
pub const TEXT_LEN: usize = GROUPS * GROUP_DIGITS + GROUPS - 1;

/// Why a recovery key did not parse. Group numbers count from 1, as an operator reads them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryKeyError {
    #[error(
        "a recovery key has 8 groups of 6 digits separated by hyphens; found {found} group(s): \
         check that the whole key was copied"
    )]
    GroupCount { found: usize },
    #[error("group {group} of the recovery key is not 6 digits: retype that group")]
    NotSixDigits { group: usize },
    #[error(
        "group {group} of the recovery key is not a multiple of 11, so it was mistyped: retype that group"
    )]
    NotMultipleOf11 { group: usize },
    #[error(
        "group {group} of the recovery key is too large (at most 720885 = 11 * 65535): retype that group"
    )]
    TooLarge { group: usize },
    #[error("the operating system's random source failed while generating a recovery key: {reason}")]
    Random { reason: String },
}

/// A 48-digit recovery key. Holds the 8 16-bit group values; see the module docs for the format.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryKey {
    groups: [u16; GROUPS],
    text: String,
}

/// The key's digits are wiped when it goes.
impl Drop for RecoveryKey {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.groups.zeroize();
        self.text.zeroize();
    }
}

impl RecoveryKey {
    /// A new key with 128 bits from the operating system's random source.
    pub fn generate() -> Result<Self, RecoveryKeyError> {
        let mut bytes = [0u8; 2 * GROUPS];
        getrandom::fill(&mut bytes).map_err(|e| RecoveryKeyError::Random {
            reason: e.to_string(),
        })?;
        let mut groups = [0u16; GROUPS];
        for (g, pair) in groups.iter_mut().zip(bytes.chunks_exact(2)) {
            *g = u16::from_le_bytes([pair[0], pair[1]]);
        }
        Ok(Self::from_groups(groups))
    }

    /// The key whose groups carry these 16-bit values (group `i` is `11 * groups[i]`).
    pub fn from_groups(groups: [u16; GROUPS]) -> Self {
        let text = groups
            .iter()
            .map(|&k| format!("{:06}", 11 * u32::from(k)))
            .collect::<Vec<_>>()
            .join("-");
        Self { groups, text }
    }

    /// Parses the hyphenated form. Surrounding whitespace is ignored; inside, exactly 8 groups of 6
    /// digits separated by single hyphens are required.
    pub fn parse(s: &str) -> Result<Self, RecoveryKeyError> {
        let s = s.trim();
        let parts: Vec<&str> = s.split('-').collect();
        if parts.len() != GROUPS {
            return Err(RecoveryKeyError::GroupCount { found: parts.len() });
        }
        let mut groups = [0u16; GROUPS];
        for (i, part) in parts.iter().enumerate() {
            let group = i + 1;
            if part.len() != GROUP_DIGITS || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RecoveryKeyError::NotSixDigits { group });
            }
            let value: u32 = part
                .parse()
                .map_err(|_| RecoveryKeyError::NotSixDigits { group })?;
            if !value.is_multiple_of(11) {
                return Err(RecoveryKeyError::NotMultipleOf11 { group });
            }
            groups[i] = u16::try_from(value / 11).map_err(|_| RecoveryKeyError::TooLarge { group })?;
        }
        Ok(Self::from_groups(groups))
    }

    /// The hyphenated text: the LUKS2 keyslot passphrase.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The passphrase bytes given to the keyslot KDF (the hyphenated text, no newline).
    pub fn passphrase(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// The 16-bit group values.
    pub fn groups(&self) -> [u16; GROUPS] {
        self.groups
    }
}

impl fmt::Display for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryKey(<redacted>)")
    }
}

impl std::str::FromStr for RecoveryKey {
    type Err = RecoveryKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_key_formats_and_parses() {
        let key = RecoveryKey::from_groups([0, 1, 2, 65535, 9090, 12345, 40000, 7]);
        assert_eq!(
            key.as_str(),
            "000000-000011-000022-720885-099990-135795-440000-000077"
        );
        assert_eq!(key.as_str().len(), TEXT_LEN);
        assert_eq!(RecoveryKey::parse(key.as_str()).unwrap(), key);
        assert_eq!(RecoveryKey::parse(&format!("  {key}\n")).unwrap(), key);
    }

    #[test]
    fn generated_keys_are_valid_and_differ() {
        let a = RecoveryKey::generate().unwrap();
        let b = RecoveryKey::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(RecoveryKey::parse(&a.to_string()).unwrap(), a);
        for g in a.as_str().split('-') {
            assert_eq!(g.parse::<u32>().unwrap() % 11, 0);
        }
    }

    #[test]
    fn debug_is_redacted() {
        let key = RecoveryKey::from_groups([1234; GROUPS]);
        let dbg = format!("{key:?}");
        assert!(!dbg.contains("013574"), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn errors_name_the_group() {
        let good = "000011-000022-000033-000044-000055-000066-000077-000088";
        assert!(RecoveryKey::parse(good).is_ok());
        let cases = [
            (
                "000011-000022-000033-000044-000055-000066-000077",
                RecoveryKeyError::GroupCount { found: 7 },
            ),
            (
                "000011-000022-00003-000044-000055-000066-000077-000088",
                RecoveryKeyError::NotSixDigits { group: 3 },
            ),
            (
                "000011-000022-000033-0000a4-000055-000066-000077-000088",
                RecoveryKeyError::NotSixDigits { group: 4 },
            ),
            (
                "000011-000022-000033-000044-+00055-000066-000077-000088",
                RecoveryKeyError::NotSixDigits { group: 5 },
            ),
            (
                "000011-000022-000033-000044-000055-000067-000077-000088",
                RecoveryKeyError::NotMultipleOf11 { group: 6 },
            ),
            (
                "000011-000022-000033-000044-000055-000066-720896-000088",
                RecoveryKeyError::TooLarge { group: 7 },
            ),
            (
                "000011-000022-000033-000044-000055-000066-000077-999998",
                RecoveryKeyError::NotMultipleOf11 { group: 8 },
            ),
            (
                // 999999 = 11 * 90909
                "000011-000022-000033-000044-000055-000066-000077-999999",
                RecoveryKeyError::TooLarge { group: 8 },
            ),
            ("", RecoveryKeyError::GroupCount { found: 1 }),
        ];
        for (text, want) in cases {
            let err = RecoveryKey::parse(text).unwrap_err();
            assert_eq!(err, want, "{text}");
            let msg = err.to_string();
            if let RecoveryKeyError::NotSixDigits { group }
            | RecoveryKeyError::NotMultipleOf11 { group }
            | RecoveryKeyError::TooLarge { group } = want
            {
                assert!(msg.contains(&format!("group {group}")), "{msg}");
            }
        }
        // 720896 = 11 * 65536 is the first multiple of 11 that no longer fits 16 bits.
        assert!(RecoveryKey::parse("720885-0-0-0-0-0-0-0").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(groups in proptest::array::uniform8(any::<u16>())) {
            let key = RecoveryKey::from_groups(groups);
            prop_assert_eq!(RecoveryKey::parse(key.as_str()).unwrap().groups(), groups);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,80}") {
            let _ = RecoveryKey::parse(&s);
        }
    }
}
