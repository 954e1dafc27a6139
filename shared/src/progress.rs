//! Progress reporting for long work (backups, drive preparation, imports).
//!
//! The library reports through the [`Progress`] trait and never draws anything itself; each binary chooses an
//! implementation: bars on a terminal, periodic log lines under systemd or in CI, nothing in tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A sink for the progress of one long task. Implementations must be cheap to call from hot loops and from
/// several threads at once.
pub trait Progress: Send + Sync {
    /// Sets the total amount of work (bytes unless the task says otherwise), when it is known.
    fn set_total(&self, total: u64);
    /// Adds `delta` finished units.
    fn inc(&self, delta: u64);
    /// Sets a short description of the current step ("drive 2 of 3", "scanning /srv").
    fn set_message(&self, message: &str);
    /// Marks the task finished.
    fn finish(&self);
}

/// Progress that goes nowhere (tests, `--quiet`).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_total(&self, _total: u64) {}
    fn inc(&self, _delta: u64) {}
    fn set_message(&self, _message: &str) {}
    fn finish(&self) {}
}

/// Progress that only counts; tests read it back.
#[derive(Debug, Default, Clone)]
pub struct CountingProgress {
    total: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
}

impl CountingProgress {
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

impl Progress for CountingProgress {
    fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }
    fn inc(&self, delta: u64) {
        self.done.fetch_add(delta, Ordering::Relaxed);
    }
    fn set_message(&self, _message: &str) {}
    fn finish(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_progress_adds_from_threads() {
        let p = CountingProgress::default();
        p.set_total(400);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let p = p.clone();
                s.spawn(move || (0..100).for_each(|_| p.inc(1)));
            }
        });
        assert_eq!((p.total(), p.done()), (400, 400));
    }
}
