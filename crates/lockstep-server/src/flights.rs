//! One `SET ... NX` per key in flight from this node at a time.
//!
//! Many clients spinning on one lock name send `SET name token NX PX ttl`
//! over and over. While the lock is held, each attempt is answered by a
//! linearizable read (the engine's `noop`). But between a release and the
//! next grant the key is absent here, and every attempt that arrives in
//! that window would otherwise go through the log as an entry, although at
//! most one of them can set the key: the entries only delay the holder's
//! next release. So a node sends one such attempt per key to the log at a
//! time; an attempt that finds another in flight waits for it to be
//! answered and then starts over, where the key is then most often present
//! and the attempt is answered by a read.
//!
//! Waiting changes no reply: the attempt is still decided at a
//! linearizable point after it arrived (a read after a barrier, or its own
//! entry). It only costs the waiters the in-flight attempt's commit time,
//! which they would have spent in the log anyway. Nothing is shared
//! between nodes; attempts on other nodes are not held back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

/// How many times one attempt waits for others before it goes to the log
/// whatever it finds: a bound on its extra latency under a stream of
/// attempts that each act (a key set and deleted again between them).
pub const MAX_WAITS: usize = 3;

/// The keys with an attempt in flight from this node.
#[derive(Default)]
pub struct Flights {
    // Dropping a key's sender (the guard does) wakes its waiters.
    keys: Mutex<HashMap<Bytes, watch::Sender<()>>>,
}

/// An attempt's turn on its key.
pub enum Turn {
    /// No other attempt is in flight: go to the log, holding this until
    /// the reply.
    Go(FlightGuard),
    /// Another is: wait for it (`changed` ends when it is answered).
    Wait(watch::Receiver<()>),
}

impl Flights {
    pub fn join(self: &Arc<Self>, key: &Bytes) -> Turn {
        let mut keys = self.keys.lock().expect("flights lock");
        if let Some(flight) = keys.get(key) {
            return Turn::Wait(flight.subscribe());
        }
        keys.insert(key.clone(), watch::channel(()).0);
        Turn::Go(FlightGuard {
            flights: self.clone(),
            key: key.clone(),
        })
    }
}

/// The in-flight attempt of a key; dropping it lets the waiters go.
pub struct FlightGuard {
    flights: Arc<Flights>,
    key: Bytes,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.flights
            .keys
            .lock()
            .expect("flights lock")
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_attempt_per_key_goes_and_its_end_wakes_the_waiters() {
        let flights = Arc::new(Flights::default());
        let key = Bytes::from_static(b"lock");
        let Turn::Go(guard) = flights.join(&key) else {
            panic!("the first attempt waited");
        };
        let Turn::Wait(mut first) = flights.join(&key) else {
            panic!("a second attempt went while the first was in flight");
        };
        let Turn::Wait(mut second) = flights.join(&key) else {
            panic!("a third attempt went while the first was in flight");
        };
        // Another key is not held back.
        assert!(matches!(
            flights.join(&Bytes::from_static(b"other")),
            Turn::Go(_)
        ));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), first.changed())
                .await
                .is_err(),
            "a waiter woke while the attempt was still in flight"
        );
        drop(guard);
        for waiter in [&mut first, &mut second] {
            tokio::time::timeout(Duration::from_secs(1), waiter.changed())
                .await
                .expect("the end of the attempt woke its waiter")
                .expect_err("the flight ended, it did not send a value");
        }
        assert!(matches!(flights.join(&key), Turn::Go(_)));
    }
}
