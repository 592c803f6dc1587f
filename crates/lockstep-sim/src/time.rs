//! Simulated time: one virtual clock, seen by each node with its own
//! offset and drift.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockstep_raft::TimeSource;

/// Virtual nanoseconds since the run began, shared by all nodes.
#[derive(Clone)]
pub struct VirtualClock {
    nanos: Arc<AtomicU64>,
    /// The real instant the run began: only a base for `Instant`s, whose
    /// differences are all the core ever uses.
    base: Instant,
}

impl VirtualClock {
    pub fn new() -> VirtualClock {
        VirtualClock {
            nanos: Arc::new(AtomicU64::new(0)),
            base: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst) / 1_000_000
    }

    pub fn now_ns(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }

    pub fn advance_ms(&self, ms: u64) {
        self.nanos.fetch_add(ms * 1_000_000, Ordering::SeqCst);
    }
}

/// A node's view of time: `drift_ppm` parts per million fast or slow, and
/// a wall clock `offset_ms` away from the others.
pub struct NodeTime {
    pub clock: VirtualClock,
    pub drift_ppm: i64,
    pub offset_ms: i64,
}

impl TimeSource for NodeTime {
    fn now(&self) -> Instant {
        let nanos = self.clock.now_ns() as i128;
        let local = nanos + nanos * self.drift_ppm as i128 / 1_000_000;
        self.clock.base + Duration::from_nanos(local.max(0) as u64)
    }

    fn wall_clock_ms(&self) -> u64 {
        let local_ms = (self.now() - self.clock.base).as_millis() as i64;
        (1_700_000_000_000 + self.offset_ms + local_ms) as u64
    }
}
