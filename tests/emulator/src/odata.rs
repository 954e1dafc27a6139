//! Building answers: the service's response headers (seed 001's sample), JSON bodies with `\/`-escaped
//! slashes, `odata.error` bodies, OData links, ETags and dates.

use crate::validation::{Metadata, Rejection};
use seedship_shared::api::{to_service_json, ODataErrorBody};

/// The `Server` header value.
pub const SERVER: &str = concat!("seedship-emulator/", env!("CARGO_PKG_VERSION"));

/// An answer, independent of hyper so handlers stay plain functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The header `name`, if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// 32 random hex digits for `x-ms-request-id`.
pub fn request_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b = t.as_nanos().to_le_bytes();
    }
    hex::encode(b)
}

/// An answer with the service's standard headers. `body` is `None` for answers without content.
pub fn reply(
    status: u16,
    version: Option<&str>,
    metadata: Metadata,
    now: i64,
    body: Option<Vec<u8>>,
) -> Reply {
    let mut headers = vec![("Cache-Control", "no-cache".to_string())];
    if body.is_some() {
        headers.push((
            "Content-Type",
            format!(
                "application/json;odata={};streaming=true;charset=utf-8",
                metadata.as_str()
            ),
        ));
    }
    headers.push(("Content-Encoding", "identity".into()));
    headers.push(("Content-Language", "en-us".into()));
    headers.push(("Server", SERVER.into()));
    headers.push(("x-ms-servedbyregion", "emulator".into()));
    headers.push(("DataServiceVersion", "3.0;".into()));
    if let Some(v) = version {
        headers.push(("x-ms-version", v.to_string()));
    }
    headers.push(("x-ms-request-id", request_id()));
    headers.push(("Date", http_date(now)));
    Reply {
        status,
        headers,
        body: body.unwrap_or_default(),
    }
}

/// The `odata.error` answer for a rejection.
pub fn error(rej: &Rejection, version: Option<&str>, now: i64) -> Reply {
    let body = ODataErrorBody::new(rej.status, rej.code, rej.message.clone());
    let json = to_service_json(&body).unwrap_or_default();
    let mut r = reply(rej.status, version, Metadata::Minimal, now, Some(json));
    if let Some(ct) = r.headers.iter_mut().find(|(n, _)| *n == "Content-Type") {
        ct.1 = "application/json".into();
    }
    r
}

/// Serialises a body the way the service does.
pub fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    to_service_json(value).unwrap_or_default()
}

/// Percent-encodes a path segment or query value (unreserved characters stay): the client's encoding.
pub use seedship_shared::api::percent_encode as encode;

/// Percent-decodes; `plus` also turns `+` into a space (query strings). Invalid escapes stay as they are.
pub fn decode(s: &str, plus: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if plus && b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 1123 date of Unix seconds.
pub fn http_date(unix: i64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64))
}

/// ISO 8601 UTC (`2014-04-30T00:23:52Z`) of Unix seconds.
pub fn iso8601(unix: i64) -> String {
    seedship_shared::time::UtcTime::from_unix(unix).iso8601()
}

/// The ETag of a job last changed at `unix`, shaped like the service's (`W/"datetime'...'"`).
pub fn etag(unix: i64) -> String {
    format!("W/\"datetime'{}'\"", iso8601(unix).replace(':', "%3A"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_escapes() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_398_815_941), "2014-04-29T23:59:01Z");
        assert_eq!(http_date(1_398_815_941), "Tue, 29 Apr 2014 23:59:01 GMT");
        assert_eq!(etag(1_398_817_432), "W/\"datetime'2014-04-30T00%3A23%3A52Z'\"");
        assert_eq!(encode("West US"), "West%20US");
        assert_eq!(decode("West%20US", false), "West US");
        assert_eq!(decode("West+US%2", true), "West US%2");
        assert_eq!(decode("%zz%4", false), "%zz%4");
        assert_eq!(decode("\u{e9}%\u{e9}", false), "\u{e9}%\u{e9}");
    }
}
