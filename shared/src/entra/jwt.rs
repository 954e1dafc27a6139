//! Compact JSON Web Tokens (RFC 7519) as far as sign-in needs them: Base64url, signing a header and claims
//! with RS256 (RSASSA-PKCS1-v1_5 with SHA-256), and reading the parts of a token without checking it.
//!
//! Verifying a signature needs the signer's certificate and lives with whoever trusts it (the emulator).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Base64url without padding.
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes Base64url (padding tolerated).
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// Seconds since the Unix epoch of `t` (0 before it).
pub fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The system time of Unix seconds `secs`.
pub fn from_unix_seconds(secs: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64)
}

/// Signs `header` and `claims` with RS256: `b64url(header).b64url(claims).b64url(signature)`.
pub fn sign_rs256(
    key: &ring::rsa::KeyPair,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> Result<String, String> {
    let mut input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let rng = ring::rand::SystemRandom::new();
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &rng,
        input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "RSA signing failed".to_owned())?;
    input.push('.');
    input.push_str(&b64url(&signature));
    Ok(input)
}

/// The three parts of a compact JWT: the decoded header and claims, the signing input and the signature.
#[derive(Debug, Clone)]
pub struct Parts {
    pub header: serde_json::Value,
    pub claims: serde_json::Value,
    /// `header.claims` as sent: what the signature covers.
    pub signing_input: String,
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact JWT without verifying anything.
pub fn decode(token: &str) -> Result<Parts, String> {
    let mut it = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err("not a JSON Web Token (it must have three dot-separated parts)".into());
    };
    let json = |part: &str, what: &str| -> Result<serde_json::Value, String> {
        let bytes = b64url_decode(part).ok_or_else(|| format!("its {what} is not Base64url"))?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| format!("its {what} is not JSON"))?;
        if v.is_object() {
            Ok(v)
        } else {
            Err(format!("its {what} is not a JSON object"))
        }
    };
    Ok(Parts {
        header: json(h, "header")?,
        claims: json(c, "claims")?,
        signing_input: format!("{h}.{c}"),
        signature: b64url_decode(s).ok_or("its signature is not Base64url")?,
    })
}

/// A numeric claim (seconds), accepting numbers and numeric strings.
pub fn numeric_claim(claims: &serde_json::Value, name: &str) -> Option<i64> {
    match claims.get(name)? {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A string claim.
pub fn string_claim<'a>(claims: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    claims.get(name)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trip_and_decode_errors() {
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64url_decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(decode("a.b").is_err());
        assert!(decode("a.b.c.d").is_err());
        let h = b64url(br#"{"alg":"none"}"#);
        let c = b64url(br#"{"exp":"12","aud":"x"}"#);
        let p = decode(&format!("{h}.{c}.")).unwrap();
        assert_eq!(numeric_claim(&p.claims, "exp"), Some(12));
        assert_eq!(string_claim(&p.claims, "aud"), Some("x"));
        assert!(p.signature.is_empty());
        assert!(decode(&format!("{h}.{}.x", b64url(b"[1]")))
            .unwrap_err()
            .contains("claims"));
    }
}
