//! [`MeteredStore`]: counts what crosses the wire to a store and optionally limits the upload rate.
//!
//! Any [`BlobStore`] can be wrapped. The shared [`Meter`] counts the bytes in `write_pages` bodies (sent),
//! the bytes returned by `read_at` (received) and the requests made (a `write_pages` counts one request per
//! Put Page of at most 4 MiB, everything else one). With a rate limit, every `write_pages` goes through a
//! token bucket: the body is sent in pieces of at most a quarter of a second's worth (and at most eight Put
//! Pages), each piece waits until the bucket holds its bytes. The bucket may hold up to half a second's
//! worth, so the average rate over any interval of a few seconds stays at the limit. Reads are not limited.
//!
//! Placed below a [`super::RetryStore`], a retried request is counted (and throttled) again: the meter
//! shows what was really sent.

use super::{BlobError, BlobInfo, BlobStore, Metadata, MAX_PUT_PAGE, PAGE_SIZE};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a [`Meter`] counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeterStats {
    /// Bytes of page data sent (bodies of Put Page).
    pub bytes_sent: u64,
    /// Bytes of object data received (ranged reads).
    pub bytes_received: u64,
    /// Requests made (one per Put Page of at most 4 MiB, one per other operation).
    pub requests: u64,
}

/// The limit in force now (bytes per second; `None`: unlimited for now), asked before every piece.
pub type RateSchedule = Box<dyn Fn() -> Option<u64> + Send + Sync>;

/// A token bucket: `rate` bytes per second, holding at most half a second's worth. With a schedule, the rate
/// is asked again for every piece, so the limit in force follows the schedule during a long upload.
struct Bucket {
    schedule: Option<RateSchedule>,
    /// Tokens, the time they were counted, and the rate (0: unlimited for now).
    state: Mutex<(f64, Instant, u64)>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("rate", &self.rate())
            .field("scheduled", &self.schedule.is_some())
            .finish()
    }
}

fn burst(rate: u64) -> f64 {
    (rate as f64 / 2.0).max(PAGE_SIZE as f64)
}

impl Bucket {
    fn new(rate: u64) -> Bucket {
        Bucket {
            schedule: None,
            state: Mutex::new((burst(rate), Instant::now(), rate)),
        }
    }

    fn scheduled(schedule: RateSchedule) -> Bucket {
        let rate = schedule().unwrap_or(0);
        Bucket {
            schedule: Some(schedule),
            state: Mutex::new((burst(rate), Instant::now(), rate)),
        }
    }

    /// The rate in force (0: unlimited for now), asking the schedule if there is one.
    fn rate(&self) -> u64 {
        match &self.schedule {
            Some(f) => {
                let r = f().unwrap_or(0);
                self.state.lock().expect("bucket lock").2 = r;
                r
            }
            None => self.state.lock().expect("bucket lock").2,
        }
    }

    /// Takes `n` bytes from the bucket, sleeping until they have accrued. Several threads may wait at once;
    /// each reserves its bytes first, so together they never exceed the rate.
    fn take(&self, n: u64) {
        let wait = {
            let mut s = self.state.lock().expect("bucket lock");
            let now = Instant::now();
            let rate = s.2;
            if rate == 0 {
                s.1 = now;
                return;
            }
            let refill = now.duration_since(s.1).as_secs_f64() * rate as f64;
            s.0 = (s.0 + refill).min(burst(rate)) - n as f64;
            s.1 = now;
            if s.0 < 0.0 {
                Duration::from_secs_f64(-s.0 / rate as f64)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// The largest piece sent at once: a quarter second's worth in whole pages, at most 8 Put Pages (which
    /// the store below may send in parallel, so a high limit is not slowed by one request at a time).
    fn piece(&self) -> usize {
        let rate = self.rate();
        if rate == 0 {
            return (8 * MAX_PUT_PAGE) as usize;
        }
        let q = (rate / 4 / PAGE_SIZE * PAGE_SIZE).max(PAGE_SIZE);
        q.min(8 * MAX_PUT_PAGE) as usize
    }
}

/// Counters (and the optional upload limit) shared by the stores that use them and the code reporting them.
#[derive(Debug, Default)]
pub struct Meter {
    sent: AtomicU64,
    received: AtomicU64,
    requests: AtomicU64,
    limit: Option<Bucket>,
}

impl Meter {
    /// A meter without a limit.
    pub fn new() -> Meter {
        Meter::default()
    }

    /// A meter that limits uploads to `bytes_per_second` (`None` or 0: unlimited).
    pub fn with_limit(bytes_per_second: Option<u64>) -> Meter {
        Meter {
            limit: bytes_per_second.filter(|&r| r > 0).map(Bucket::new),
            ..Meter::default()
        }
    }

    /// A meter whose upload limit follows `schedule`, asked again before every piece sent.
    pub fn with_schedule(schedule: RateSchedule) -> Meter {
        Meter {
            limit: Some(Bucket::scheduled(schedule)),
            ..Meter::default()
        }
    }

    /// The upload limit in force now in bytes per second, if any.
    pub fn limit(&self) -> Option<u64> {
        self.limit.as_ref().map(Bucket::rate).filter(|&r| r > 0)
    }

    /// What was counted so far.
    pub fn stats(&self) -> MeterStats {
        MeterStats {
            bytes_sent: self.sent.load(Ordering::Relaxed),
            bytes_received: self.received.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// A store whose traffic is counted by a [`Meter`] and whose uploads it may limit.
#[derive(Debug)]
pub struct MeteredStore<S> {
    inner: S,
    meter: Arc<Meter>,
}

impl<S: BlobStore> MeteredStore<S> {
    pub fn new(inner: S, meter: Arc<Meter>) -> MeteredStore<S> {
        MeteredStore { inner, meter }
    }

    /// The meter (shared with whoever reports the figures).
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    fn put(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), BlobError> {
        self.meter.requests.fetch_add(
            (data.len() as u64).div_ceil(MAX_PUT_PAGE).max(1),
            Ordering::Relaxed,
        );
        self.inner.write_pages(name, offset, data)?;
        self.meter.sent.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl<S: BlobStore> BlobStore for MeteredStore<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn create_container(&self) -> Result<(), BlobError> {
        self.meter.request();
        self.inner.create_container()
    }
    fn delete_container(&self) -> Result<(), BlobError> {
        self.meter.request();
        self.inner.delete_container()
    }
    fn create(&self, name: &str, len: u64, metadata: &Metadata) -> Result<(), BlobError> {
        self.meter.request();
        self.inner.create(name, len, metadata)
    }
    fn write_pages(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), BlobError> {
        let Some(bucket) = &self.meter.limit else {
            return self.put(name, offset, data);
        };
        if data.is_empty() {
            return self.put(name, offset, data);
        }
        // offsets and lengths stay multiples of 512: every piece but the last is whole pages
        let piece = bucket.piece();
        for (i, part) in data.chunks(piece).enumerate() {
            bucket.take(part.len() as u64);
            self.put(name, offset + (i * piece) as u64, part)?;
        }
        Ok(())
    }
    fn clear_pages(&self, name: &str, offset: u64, len: u64) -> Result<(), BlobError> {
        self.meter.request();
        self.inner.clear_pages(name, offset, len)
    }
    fn update_pages(
        &self,
        name: &str,
        clears: &[Range<u64>],
        writes: &[(u64, Vec<u8>)],
    ) -> Result<(), BlobError> {
        if self.meter.limit.is_some() {
            // under an upload limit every write goes through the bucket, one call at a time
            return super::update_pages_one_by_one(self, name, clears, writes);
        }
        let sent: u64 = writes.iter().map(|(_, d)| d.len() as u64).sum();
        let requests = clears.len() as u64
            + writes
                .iter()
                .map(|(_, d)| (d.len() as u64).div_ceil(MAX_PUT_PAGE).max(1))
                .sum::<u64>();
        self.meter.requests.fetch_add(requests, Ordering::Relaxed);
        self.inner.update_pages(name, clears, writes)?;
        self.meter.sent.fetch_add(sent, Ordering::Relaxed);
        Ok(())
    }
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), BlobError> {
        self.meter.request();
        self.inner.read_at(name, offset, buf)?;
        self.meter.received.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn visit(
        &self,
        name: &str,
        offset: u64,
        len: usize,
        buf: &mut Vec<u8>,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), BlobError> {
        self.meter.request();
        self.inner.visit(name, offset, len, buf, f)?;
        self.meter.received.fetch_add(len as u64, Ordering::Relaxed);
        Ok(())
    }
    fn page_ranges(&self, name: &str) -> Result<Vec<Range<u64>>, BlobError> {
        self.meter.request();
        self.inner.page_ranges(name)
    }
    fn resize(&self, name: &str, len: u64) -> Result<(), BlobError> {
        self.meter.request();
        self.inner.resize(name, len)
    }
    fn properties(&self, name: &str) -> Result<BlobInfo, BlobError> {
        self.meter.request();
        self.inner.properties(name)
    }
    fn set_metadata(&self, name: &str, metadata: &Metadata) -> Result<(), BlobError> {
        self.meter.request();
        self.inner.set_metadata(name, metadata)
    }
    fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        self.meter.request();
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> Result<(), BlobError> {
        self.meter.request();
        self.inner.delete(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::MemoryStore;

    fn store(limit: Option<u64>) -> (MeteredStore<MemoryStore>, Arc<Meter>) {
        let meter = Arc::new(Meter::with_limit(limit));
        let s = MeteredStore::new(MemoryStore::default(), meter.clone());
        s.create_container().unwrap();
        (s, meter)
    }

    #[test]
    fn counts_bytes_and_requests() {
        let (s, meter) = store(None);
        s.create("data/0", 10 << 20, &Metadata::new()).unwrap();
        s.write_pages("data/0", 512, &vec![7u8; (9 << 20) + 512]).unwrap();
        let mut buf = vec![0u8; 1000];
        s.read_at("data/0", 3, &mut buf).unwrap();
        let st = meter.stats();
        assert_eq!(st.bytes_sent, (9 << 20) + 512);
        assert_eq!(st.bytes_received, 1000);
        // container, create, three Put Pages (4 + 4 + 1 MiB), one read
        assert_eq!(st.requests, 1 + 1 + 3 + 1);
        assert!(s.write_pages("data/none", 0, &[0u8; 512]).is_err());
        assert_eq!(
            meter.stats().bytes_sent,
            st.bytes_sent,
            "a failed write sends nothing"
        );
    }

    #[test]
    fn a_scheduled_limit_follows_the_schedule_between_pieces() {
        let rate = Arc::new(AtomicU64::new(1 << 20));
        let r = rate.clone();
        let meter = Arc::new(Meter::with_schedule(Box::new(move || {
            Some(r.load(Ordering::Relaxed)).filter(|&x| x > 0)
        })));
        let s = MeteredStore::new(MemoryStore::default(), meter.clone());
        s.create_container().unwrap();
        s.create("a", 16 << 20, &Metadata::new()).unwrap();
        assert_eq!(meter.limit(), Some(1 << 20));
        // 1 MiB at 1 MiB/s with half a second's burst: at least about half a second
        let t = Instant::now();
        s.write_pages("a", 0, &vec![1u8; 1 << 20]).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(400), "{:?}", t.elapsed());
        // the schedule lifts the limit: 8 MiB go at once
        rate.store(0, Ordering::Relaxed);
        assert_eq!(meter.limit(), None);
        let t = Instant::now();
        s.write_pages("a", 1 << 20, &vec![2u8; 8 << 20]).unwrap();
        assert!(t.elapsed() < Duration::from_millis(400), "{:?}", t.elapsed());
        assert_eq!(meter.stats().bytes_sent, 9 << 20);
    }

    #[test]
    fn limited_writes_arrive_whole_in_pieces() {
        let (s, meter) = store(Some(1 << 30));
        assert_eq!(meter.limit(), Some(1 << 30));
        let data: Vec<u8> = (0..(5 << 20) + 1024).map(|i| (i % 251) as u8).collect();
        s.create("a", data.len() as u64 + 512, &Metadata::new()).unwrap();
        s.write_pages("a", 512, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        s.read_at("a", 512, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(meter.stats().bytes_sent, data.len() as u64);
        let b = Bucket::new(1000);
        assert_eq!(b.piece(), 512, "at least one page");
        assert_eq!(Bucket::new(1 << 30).piece(), 8 * MAX_PUT_PAGE as usize);
        assert_eq!(Bucket::new(64 << 20).piece(), 16 << 20);
        assert_eq!(Bucket::new(1 << 20).piece(), 256 << 10);
    }

    #[test]
    fn the_bucket_owes_time_for_what_exceeds_its_burst() {
        // no sleeping in a unit test: inspect the state the bucket computes
        let b = Bucket::new(1 << 20);
        let full = b.state.lock().unwrap().0;
        assert_eq!(full, (1 << 19) as f64, "starts with half a second's worth");
        b.take(1 << 18);
        let left = b.state.lock().unwrap().0;
        assert!(left <= (1 << 18) as f64 + 1000.0, "{left}");
    }
}
