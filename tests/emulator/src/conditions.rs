//! Conditional requests on a job (reference section 1.1): `If-Match`, `If-None-Match`, `If-Modified-Since`,
//! `If-Unmodified-Since`. Only the pairs If-None-Match + If-Modified-Since and If-Match + If-Unmodified-Since
//! may be combined (checked with the other headers, 400 otherwise), and within a pair the first one wins. An
//! unmet condition is 412 on every method. ETags are weak and change with each Put or Update.

use crate::odata;
use crate::validation::Rejection;
use hyper::HeaderMap;

/// The version of the job a request addresses, if it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    /// Unix seconds of the last Put or Update (the ETag and Last-Modified derive from it).
    pub updated: i64,
}

fn failed(what: &str) -> Rejection {
    Rejection::new(
        412,
        "ConditionNotMet",
        format!("The condition in {what} is not met."),
    )
}

fn date(headers: &HeaderMap, name: &str) -> Result<Option<i64>, Rejection> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    let parsed = v
        .to_str()
        .ok()
        .and_then(|s| httpdate::parse_http_date(s.trim()).ok());
    let t = parsed.ok_or_else(|| {
        Rejection::new(
            400,
            "InvalidConditionalHeaders",
            format!("{name} is not an RFC 1123 date."),
        )
    })?;
    Ok(Some(
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    ))
}

/// Whether an ETag list (`*` or comma-separated tags) names the current version.
fn matches(list: &str, current: Option<Current>) -> bool {
    let Some(c) = current else { return false };
    let tag = odata::etag(c.updated);
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == tag || t.trim_start_matches("W/") == tag.trim_start_matches("W/"))
}

/// Evaluates the conditional headers against the job's current version (`None`: the job does not exist).
pub fn check(headers: &HeaderMap, current: Option<Current>) -> Result<(), Rejection> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let Some(list) = text("if-match") {
        return if matches(&list, current) {
            Ok(())
        } else {
            Err(failed("If-Match"))
        };
    }
    if let Some(list) = text("if-none-match") {
        return if matches(&list, current) {
            Err(failed("If-None-Match"))
        } else {
            Ok(())
        };
    }
    if let Some(since) = date(headers, "if-unmodified-since")? {
        return match current {
            Some(c) if c.updated <= since => Ok(()),
            _ => Err(failed("If-Unmodified-Since")),
        };
    }
    if let Some(since) = date(headers, "if-modified-since")? {
        return match current {
            Some(c) if c.updated > since => Ok(()),
            _ => Err(failed("If-Modified-Since")),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn conditions() {
        let cur = Some(Current {
            updated: 1_398_817_432,
        });
        let tag = odata::etag(1_398_817_432);
        assert!(check(&h(&[("if-match", &tag)]), cur).is_ok());
        assert!(check(&h(&[("if-match", "*")]), cur).is_ok());
        assert_eq!(check(&h(&[("if-match", "*")]), None).unwrap_err().status, 412);
        assert_eq!(
            check(&h(&[("if-match", "W/\"other\"")]), cur).unwrap_err().status,
            412
        );
        assert_eq!(check(&h(&[("if-none-match", "*")]), cur).unwrap_err().status, 412);
        assert!(check(&h(&[("if-none-match", "*")]), None).is_ok());
        let before = odata::http_date(1_398_817_431);
        let at = odata::http_date(1_398_817_432);
        assert!(check(&h(&[("if-modified-since", &before)]), cur).is_ok());
        assert_eq!(
            check(&h(&[("if-modified-since", &at)]), cur).unwrap_err().status,
            412
        );
        assert!(check(&h(&[("if-unmodified-since", &at)]), cur).is_ok());
        assert_eq!(
            check(&h(&[("if-unmodified-since", &before)]), cur)
                .unwrap_err()
                .status,
            412
        );
        // within a pair the first one wins
        assert!(check(&h(&[("if-match", &tag), ("if-unmodified-since", &before)]), cur).is_ok());
        assert_eq!(
            check(&h(&[("if-modified-since", "soon")]), cur)
                .unwrap_err()
                .status,
            400
        );
    }
}
