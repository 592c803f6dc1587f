//! The simulated network: frames wait in flight for a random delay, and
//! may be dropped, duplicated (and so reordered) or cut by a partition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lockstep_raft::PeerSender;
use rand::rngs::StdRng;
use rand::Rng;

#[derive(Clone, Debug)]
pub struct NetworkFaults {
    pub drop: f64,
    pub duplicate: f64,
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
}

/// Frames a node sent during its turn, picked up by the network after it.
#[derive(Clone, Default)]
pub struct Outbox(Arc<Mutex<Vec<(u64, Bytes)>>>);

pub struct NodeSender {
    outbox: Outbox,
}

impl NodeSender {
    pub fn new(outbox: Outbox) -> NodeSender {
        NodeSender { outbox }
    }
}

impl PeerSender for NodeSender {
    fn send(&self, to: u64, frame: Bytes) -> bool {
        self.outbox.0.lock().expect("outbox").push((to, frame));
        true
    }
}

impl Outbox {
    pub fn take(&self) -> Vec<(u64, Bytes)> {
        std::mem::take(&mut *self.outbox_lock())
    }

    fn outbox_lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Bytes)>> {
        self.0.lock().expect("outbox")
    }
}

pub struct Network {
    pub faults: NetworkFaults,
    /// (deliver at ms, sequence) -> (from, to, frame)
    in_flight: BTreeMap<(u64, u64), (u64, u64, Bytes)>,
    next_seq: u64,
    /// Directed links that lose everything.
    cut: BTreeSet<(u64, u64)>,
    pub sent: u64,
    pub dropped: u64,
}

impl Network {
    pub fn new(faults: NetworkFaults) -> Network {
        Network {
            faults,
            in_flight: BTreeMap::new(),
            next_seq: 0,
            cut: BTreeSet::new(),
            sent: 0,
            dropped: 0,
        }
    }

    pub fn send(&mut self, rng: &mut StdRng, now_ms: u64, from: u64, to: u64, frame: Bytes) {
        self.sent += 1;
        if self.cut.contains(&(from, to)) || rng.gen_bool(self.faults.drop) {
            self.dropped += 1;
            return;
        }
        let copies = if rng.gen_bool(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = rng.gen_range(self.faults.min_delay_ms..=self.faults.max_delay_ms);
            self.in_flight
                .insert((now_ms + delay, self.next_seq), (from, to, frame.clone()));
            self.next_seq += 1;
        }
    }

    /// Frames due by `now_ms`, in delivery order.
    pub fn due(&mut self, now_ms: u64) -> Vec<(u64, u64, Bytes)> {
        let later = self.in_flight.split_off(&(now_ms + 1, 0));
        let due = std::mem::replace(&mut self.in_flight, later);
        due.into_values()
            .filter(|(from, to, _)| !self.cut.contains(&(*from, *to)))
            .collect()
    }

    pub fn cut(&mut self, from: u64, to: u64) {
        self.cut.insert((from, to));
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn is_cut(&self) -> bool {
        !self.cut.is_empty()
    }
}
