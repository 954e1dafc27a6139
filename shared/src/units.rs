//! Byte counts for people: [`human`] prints them the way every seedship command shows sizes and rates, and
//! [`parse_size`] and [`parse_rate`] read them the one way every seedship option takes them (`500M`, `1.5G`,
//! `4GiB`, `2TB`, `10M/s`, a plain byte count). Suffixes are binary (1G = 2^30), the way disk tools print
//! capacities.

/// `1.2 MiB`: a byte count for people (binary units, one decimal; plain bytes below 1 KiB).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// A size or rate that could not be read, with the text and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}: {reason}")]
pub struct SizeError {
    /// `size` or `rate`.
    pub what: &'static str,
    pub text: String,
    pub reason: String,
}

/// Reads a size: a number (a fraction like `1.5` allowed) with an optional unit `K`, `M`, `G` or `T`
/// (also spelled `KB`/`KiB` and so on, any case; all binary) or `B`; a plain number is bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    size_of(text, "size", text.trim())
}

/// Reads a rate in bytes per second: a size ([`parse_size`]) with an optional `/s`, between 1K and 1P per
/// second (what an upload limit can sensibly be).
pub fn parse_rate(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let rate = size_of(text, "rate", t.strip_suffix("/s").unwrap_or(t))?;
    if !(1 << 10..=1 << 50).contains(&rate) {
        return Err(SizeError {
            what: "rate",
            text: text.to_owned(),
            reason: "a rate must be between 1K and 1048576G per second".into(),
        });
    }
    Ok(rate)
}

fn size_of(text: &str, what: &'static str, t: &str) -> Result<u64, SizeError> {
    let bad = |reason: &str| SizeError {
        what,
        text: text.to_owned(),
        reason: format!(
            "{reason}; give bytes with an optional K, M, G or T suffix (binary), e.g. 500M or 1.5G"
        ),
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad("unknown unit")),
    };
    if num.is_empty() {
        return Err(bad("it does not start with a number"));
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(1u64 << shift).ok_or_else(|| bad("it is too large"));
    }
    let v: f64 = num.parse().map_err(|_| bad("not a number"))?;
    let bytes = v * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad("it is too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_every_spelling() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("2TB"), Ok(2 << 40));
        assert_eq!(parse_size("1.5m"), Ok(3 << 19));
        assert_eq!(parse_size(" 1073741824 "), Ok(1 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("12B"), Ok(12));
        for bad in ["", "G", "4X", "99999999999T", "-1M", "1.2.3M", "nanM", "1e30G"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid size"), "{bad}: {e}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10M"), Ok(10 << 20));
        assert_eq!(parse_rate("512K"), Ok(512 << 10));
        assert_eq!(parse_rate("512k/s"), Ok(512 << 10));
        assert_eq!(parse_rate("1.5MB"), Ok(3 << 19));
        assert_eq!(parse_rate("2G"), Ok(2 << 30));
        assert_eq!(parse_rate("2000000"), Ok(2_000_000));
        for bad in ["", "M", "10X", "-1M", "0", "100", "nanM", "1e30G"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1000), "1000 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(1_258_291), "1.2 MiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
        assert_eq!(human(3 << 50), "3072.0 TiB");
    }
}
