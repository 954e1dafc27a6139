//! Cancellation as an argument: one token that a binary's `main` creates and wires to SIGINT, SIGTERM and
//! SIGHUP, passed down to the long loops, which look at it and stop at a safe point (a blob committed, a
//! journal record flushed) so that a rerun continues. (mini-redis's shutdown.)
//!
//! Work that honours the token says so with [`Cancel::listen`]; `main`'s signal handler asks
//! [`Cancel::is_listening`] to choose between asking the work to stop and ending the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A cancellation token: clones share it.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    listening: Arc<AtomicBool>,
}

impl Cancel {
    /// A token nobody has cancelled, with no work listening yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the work to stop; returns whether it had been asked before.
    pub fn cancel(&self) -> bool {
        self.flag.swap(true, Ordering::SeqCst)
    }

    /// Whether the work was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The flag itself, for loops that read it directly.
    pub fn flag(&self) -> &AtomicBool {
        &self.flag
    }

    /// Says that work which stops at its safe points when cancelled is running (from now on, for the rest
    /// of the process).
    pub fn listen(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }

    /// Whether such work runs (see [`Cancel::listen`]).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag_and_the_listening() {
        let c = Cancel::new();
        let other = c.clone();
        assert!(!c.is_cancelled() && !c.is_listening());
        other.listen();
        assert!(c.is_listening());
        assert!(!other.cancel());
        assert!(c.is_cancelled() && c.flag().load(Ordering::SeqCst));
        assert!(c.cancel(), "the second cancel knows the first");
    }
}
