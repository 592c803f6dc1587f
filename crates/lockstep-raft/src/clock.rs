//! Cluster time as the leader stamps it.
//!
//! `ct = max(ct of the last entry in the leader's log, base + monotonic time
//! since it became leader)`, with `base` that last entry's ct. It ignores
//! wall-clock jumps and stands still while there is no leader, so a TTL can
//! be lengthened by a failover but never shortened.

use std::time::Instant;

#[derive(Debug)]
pub struct LeaderClock {
    base_ms: u64,
    since: Instant,
    last_stamped_ms: u64,
}

impl LeaderClock {
    pub fn start(last_entry_ct_ms: u64, now: Instant) -> Self {
        LeaderClock {
            base_ms: last_entry_ct_ms,
            since: now,
            last_stamped_ms: last_entry_ct_ms,
        }
    }

    /// The cluster time for an entry proposed now; never decreases.
    pub fn stamp(&mut self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.since).as_millis() as u64;
        let ct = self.last_stamped_ms.max(self.base_ms + elapsed);
        self.last_stamped_ms = ct;
        ct
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn advances_with_monotonic_time_from_the_last_entry() {
        let start = Instant::now();
        let mut clock = LeaderClock::start(1_000, start);
        assert_eq!(clock.stamp(start), 1_000);
        assert_eq!(clock.stamp(start + Duration::from_millis(250)), 1_250);
        // An earlier instant (clock reading reordered) never moves time back.
        assert_eq!(clock.stamp(start + Duration::from_millis(100)), 1_250);
    }
}
