//! [`RetryStore`]: retries a store's transient failures.
//!
//! Any [`BlobStore`] can be wrapped. An operation that fails with an error whose
//! [`BlobError::is_retryable`] is true (timeouts, connection failures, HTTP 5xx, 408, 429) is tried again
//! after an exponentially growing delay with random jitter, until it succeeds, [`RetryPolicy::max_attempts`]
//! is reached or the next delay would pass [`RetryPolicy::max_total`]. Permanent errors (every other 4xx,
//! alignment, limits, missing objects, local I/O) are returned at once. Every retry is logged with
//! `tracing::warn!` naming the operation, the object, the attempt and the error.
//!
//! Every operation of the trait is idempotent (writing the same pages again, setting the same length or
//! metadata), so a retry after a lost answer is safe. One special case: a `delete` retried after a transient
//! failure that then finds the object gone counts as done, since the first attempt deleted it.

use super::{BlobError, BlobInfo, BlobStore, Metadata};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::ops::Range;
use std::time::{Duration, Instant};

/// When and how often to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles with each further one.
    pub base_delay: Duration,
    /// Longest single delay.
    pub max_delay: Duration,
    /// No retry starts once this much time has passed since the first attempt.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    /// 10 attempts, 200 ms doubling up to 10 s, at most 2 minutes in all.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_total: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 for the first): `base * 2^(retry-1)`, capped at
    /// `max_delay`, then scaled by a random factor in [0.5, 1.0] so clients do not retry in lockstep.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX));
        let capped = exp.min(self.max_delay);
        let jitter = 0.5 + 0.5 * random_unit();
        capped.mul_f64(jitter)
    }
}

/// A random number in [0, 1) from the standard library's randomly keyed hasher (enough for jitter).
fn random_unit() -> f64 {
    let n = RandomState::new().hash_one(Instant::now());
    (n >> 11) as f64 / (1u64 << 53) as f64
}

/// A store that retries the transient failures of the store it wraps.
#[derive(Debug)]
pub struct RetryStore<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S: BlobStore> RetryStore<S> {
    pub fn new(inner: S, policy: RetryPolicy) -> RetryStore<S> {
        RetryStore { inner, policy }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    fn retry<T>(
        &self,
        operation: &'static str,
        object: &str,
        mut f: impl FnMut() -> Result<T, BlobError>,
    ) -> Result<T, BlobError> {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match f() {
                Err(e) if e.is_retryable() && attempt < self.policy.max_attempts.max(1) => {
                    let delay = self.policy.delay(attempt);
                    if started.elapsed() + delay > self.policy.max_total {
                        return Err(e);
                    }
                    tracing::warn!(
                        operation,
                        object,
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        error = %e,
                        "blob operation failed, retrying"
                    );
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

impl<S: BlobStore> BlobStore for RetryStore<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn create_container(&self) -> Result<(), BlobError> {
        self.retry("create_container", "", || self.inner.create_container())
    }

    fn delete_container(&self) -> Result<(), BlobError> {
        let mut tried = false;
        self.retry("delete_container", "", || {
            match (self.inner.delete_container(), std::mem::replace(&mut tried, true)) {
                (Err(BlobError::ContainerNotFound { .. }), true) => Ok(()),
                (r, _) => r,
            }
        })
    }

    fn create(&self, name: &str, len: u64, metadata: &Metadata) -> Result<(), BlobError> {
        self.retry("create", name, || self.inner.create(name, len, metadata))
    }

    fn write_pages(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), BlobError> {
        self.retry("write_pages", name, || self.inner.write_pages(name, offset, data))
    }

    fn clear_pages(&self, name: &str, offset: u64, len: u64) -> Result<(), BlobError> {
        self.retry("clear_pages", name, || self.inner.clear_pages(name, offset, len))
    }

    fn update_pages(
        &self,
        name: &str,
        clears: &[Range<u64>],
        writes: &[(u64, Vec<u8>)],
    ) -> Result<(), BlobError> {
        // clearing and writing the same bytes again is harmless: the batch is retried whole
        self.retry("update_pages", name, || {
            self.inner.update_pages(name, clears, writes)
        })
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), BlobError> {
        self.retry("read_at", name, || self.inner.read_at(name, offset, buf))
    }

    fn page_ranges(&self, name: &str) -> Result<Vec<Range<u64>>, BlobError> {
        self.retry("page_ranges", name, || self.inner.page_ranges(name))
    }

    fn resize(&self, name: &str, len: u64) -> Result<(), BlobError> {
        self.retry("resize", name, || self.inner.resize(name, len))
    }

    fn properties(&self, name: &str) -> Result<BlobInfo, BlobError> {
        self.retry("properties", name, || self.inner.properties(name))
    }

    fn set_metadata(&self, name: &str, metadata: &Metadata) -> Result<(), BlobError> {
        self.retry("set_metadata", name, || self.inner.set_metadata(name, metadata))
    }

    fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        self.retry("list", prefix, || self.inner.list(prefix))
    }

    fn delete(&self, name: &str) -> Result<(), BlobError> {
        let mut tried = false;
        self.retry("delete", name, || {
            match (self.inner.delete(name), std::mem::replace(&mut tried, true)) {
                (Err(BlobError::NotFound { .. }), true) => Ok(()),
                (r, _) => r,
            }
        })
    }

    fn put_block(&self, name: &str, id: &str, data: &[u8]) -> Result<(), BlobError> {
        self.retry("put_block", name, || self.inner.put_block(name, id, data))
    }

    fn put_block_list(&self, name: &str, ids: &[String]) -> Result<(), BlobError> {
        self.retry("put_block_list", name, || self.inner.put_block_list(name, ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::MemoryStore;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A store that fails its first `failures` calls with `error`, then delegates to memory.
    #[derive(Debug)]
    struct Flaky {
        inner: MemoryStore,
        failures: AtomicU32,
        calls: AtomicU32,
        status: u16,
    }

    impl Flaky {
        fn new(failures: u32, status: u16) -> Flaky {
            Flaky {
                inner: MemoryStore::default(),
                failures: AtomicU32::new(failures),
                calls: AtomicU32::new(0),
                status,
            }
        }

        fn gate(&self) -> Result<(), BlobError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let left = self.failures.load(Ordering::SeqCst);
            if left == 0 {
                return Ok(());
            }
            self.failures.store(left - 1, Ordering::SeqCst);
            Err(if self.status == 0 {
                BlobError::Transport {
                    store: "flaky".into(),
                    operation: "op",
                    name: "x".into(),
                    message: "timed out".into(),
                }
            } else {
                BlobError::Http {
                    store: "flaky".into(),
                    operation: "op",
                    name: "x".into(),
                    status: self.status,
                    code: None,
                    message: "injected".into(),
                }
            })
        }
    }

    impl BlobStore for Flaky {
        fn describe(&self) -> String {
            "flaky".into()
        }
        fn create_container(&self) -> Result<(), BlobError> {
            self.gate()?;
            self.inner.create_container()
        }
        fn delete_container(&self) -> Result<(), BlobError> {
            self.gate()?;
            self.inner.delete_container()
        }
        fn create(&self, n: &str, l: u64, m: &Metadata) -> Result<(), BlobError> {
            self.gate()?;
            self.inner.create(n, l, m)
        }
        fn write_pages(&self, n: &str, o: u64, d: &[u8]) -> Result<(), BlobError> {
            self.gate()?;
            self.inner.write_pages(n, o, d)
        }
        fn clear_pages(&self, n: &str, o: u64, l: u64) -> Result<(), BlobError> {
            self.gate()?;
            self.inner.clear_pages(n, o, l)
        }
        fn read_at(&self, n: &str, o: u64, b: &mut [u8]) -> Result<(), BlobError> {
            self.gate()?;
            self.inner.read_at(n, o, b)
        }
        fn page_ranges(&self, n: &str) -> Result<Vec<Range<u64>>, BlobError> {
            self.gate()?;
            self.inner.page_ranges(n)
        }
        fn resize(&self, n: &str, l: u64) -> Result<(), BlobError> {
            self.gate()?;
            self.inner.resize(n, l)
        }
        fn properties(&self, n: &str) -> Result<BlobInfo, BlobError> {
            self.gate()?;
            self.inner.properties(n)
        }
        fn set_metadata(&self, n: &str, m: &Metadata) -> Result<(), BlobError> {
            self.gate()?;
            self.inner.set_metadata(n, m)
        }
        fn list(&self, p: &str) -> Result<Vec<BlobInfo>, BlobError> {
            self.gate()?;
            self.inner.list(p)
        }
        fn delete(&self, n: &str) -> Result<(), BlobError> {
            self.gate()?;
            self.inner.delete(n)
        }
    }

    fn quick(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            max_total: Duration::from_secs(60),
        }
    }

    #[test]
    fn transient_errors_are_retried() {
        for status in [0, 500, 503, 429, 408] {
            let s = RetryStore::new(Flaky::new(3, status), quick(5));
            s.create("a", 512, &Metadata::new()).unwrap();
            assert_eq!(s.inner().calls.load(Ordering::SeqCst), 4, "status {status}");
        }
    }

    #[test]
    fn retries_are_logged_with_operation_and_object() {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let s = RetryStore::new(Flaky::new(2, 503), quick(5));
            s.create("vol/0001", 512, &Metadata::new()).unwrap();
        });
        let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(log.matches("retrying").count(), 2, "{log}");
        assert!(
            log.contains("WARN") && log.contains("operation=\"create\""),
            "{log}"
        );
        assert!(
            log.contains("object=\"vol/0001\"") && log.contains("attempt=2"),
            "{log}"
        );
        assert!(log.contains("HTTP 503"), "{log}");
    }

    #[test]
    fn attempts_are_bounded() {
        let s = RetryStore::new(Flaky::new(10, 500), quick(3));
        let e = s.create("a", 512, &Metadata::new()).unwrap_err();
        assert_eq!(e.http_status(), Some(500));
        assert_eq!(s.inner().calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn client_errors_are_never_retried() {
        for status in [400, 403, 404, 409, 412] {
            let s = RetryStore::new(Flaky::new(1, status), quick(5));
            assert!(s.create("a", 512, &Metadata::new()).is_err());
            assert_eq!(s.inner().calls.load(Ordering::SeqCst), 1, "status {status}");
        }
        let s = RetryStore::new(Flaky::new(0, 0), quick(5));
        assert!(matches!(s.properties("missing"), Err(BlobError::NotFound { .. })));
        assert_eq!(s.inner().calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn total_time_is_bounded() {
        let policy = RetryPolicy {
            max_attempts: 100,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(50),
            max_total: Duration::ZERO,
        };
        let s = RetryStore::new(Flaky::new(10, 0), policy);
        assert!(s.list("").is_err());
        assert_eq!(s.inner().calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_retried_delete_that_finds_nothing_is_done() {
        let s = RetryStore::new(Flaky::new(1, 0), quick(5));
        s.inner().inner.create("a", 512, &Metadata::new()).unwrap();
        s.delete("a").unwrap();
        // But a first attempt that finds nothing is still an error.
        assert!(matches!(s.delete("a"), Err(BlobError::NotFound { .. })));
    }

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_total: Duration::from_secs(10),
        };
        for _ in 0..20 {
            let d1 = p.delay(1);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d3 = p.delay(3);
            assert!(
                d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
                "{d3:?}"
            );
            assert!(p.delay(40) <= Duration::from_millis(1000));
        }
    }
}
