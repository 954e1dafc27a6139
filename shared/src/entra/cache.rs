//! The per-scope token cache every credential uses: a token is handed out again until it has less than
//! [`super::REFRESH_BEFORE`] left (or, for short-lived tokens, less than a tenth of its lifetime).

use super::{AccessToken, EntraError, REFRESH_BEFORE};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Tokens by scope.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, (AccessToken, Duration)>>,
}

impl TokenCache {
    /// The cached token for `scope`, or a new one from `fetch` (called with the lock held, so concurrent
    /// callers wait for one request instead of sending one each).
    pub fn get_or_fetch(
        &self,
        scope: &str,
        fetch: impl FnOnce(SystemTime) -> Result<AccessToken, EntraError>,
    ) -> Result<AccessToken, EntraError> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        if let Some((t, lifetime)) = tokens.get(scope) {
            let margin = REFRESH_BEFORE.min(*lifetime / 10);
            if !t.expires_within(margin, now) {
                return Ok(t.clone());
            }
        }
        let fresh = fetch(now)?;
        let lifetime = fresh.expires_at.duration_since(now).unwrap_or_default();
        tokens.insert(scope.to_owned(), (fresh.clone(), lifetime));
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    #[test]
    fn reuses_until_close_to_expiry() {
        let cache = TokenCache::default();
        let mut calls = 0;
        let mut get = |secs: u64| {
            cache
                .get_or_fetch("s", |now| {
                    calls += 1;
                    Ok(AccessToken {
                        token: Zeroizing::new(format!("t{calls}")),
                        expires_at: now + Duration::from_secs(secs),
                    })
                })
                .unwrap()
        };
        assert_eq!(get(3600).token.as_str(), "t1");
        assert_eq!(get(3600).token.as_str(), "t1");
        // a token with 1 s left is renewed
        let cache2 = TokenCache::default();
        let mut n = 0;
        for _ in 0..2 {
            cache2
                .get_or_fetch("s", |now| {
                    n += 1;
                    Ok(AccessToken {
                        token: Zeroizing::new("x".into()),
                        expires_at: now,
                    })
                })
                .unwrap();
        }
        assert_eq!(n, 2);
        assert_eq!(calls, 1);
        let e = cache2.get_or_fetch("other", |_| {
            Err(EntraError::Transport {
                endpoint: "e".into(),
                message: "down".into(),
            })
        });
        assert!(e.is_err());
    }
}
