//! Ending what is due by cluster time: expired keys, lock holders whose TTL
//! ran out, waits that timed out.
//!
//! Which records have a deadline, and when, is kept in memory
//! ([`Deadlines`], owned by the [`crate::Engine`]): an ordered set of
//! (deadline, key) with a map from key to deadline. It is derived state:
//! every record carries its own deadline, so the set is rebuilt from the
//! keyspace when a node starts or installs a snapshot, and every applied
//! entry updates it with the deadlines its writes set or cleared. Replicas
//! at the same applied index therefore hold the same set, and a leader's
//! sweep entry (`Payload::Sweep`, no body) ends the same records on every
//! node: the earliest due ones, at most [`SWEEP_BATCH`] per entry, in
//! (deadline, key) order.
//!
//! Why in memory: an index kept in RocksDB must delete an entry whenever a
//! lock is released or a TTL changes, and RocksDB keeps each deletion as a
//! tombstone that every scan of that range steps over until compaction.
//! The leader's expiry check scanned that range every tick, so an idle
//! leader spent its time walking the tombstones of every lock released
//! before. The in-memory set costs a map update per write with a TTL, its
//! memory is proportional to the records that have a deadline now, and no
//! step ever depends on what was deleted before.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use lockstep_store::{StateRead, StoreError};

use crate::context::Context;
use crate::layout::{prefix_end, VALUE, VALUE_KEY_HEADER};
use crate::locks;
use crate::record::{Record, ValueType};

/// Records one sweep entry ends at most: bounds its batch and the time to
/// apply it; the leader proposes the next one as soon as it applies.
pub const SWEEP_BATCH: usize = 512;

/// The deadline of every record that has one, in deadline order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deadlines {
    by_time: BTreeSet<(u64, Bytes)>,
    of_key: HashMap<Bytes, u64>,
}

impl Deadlines {
    /// Rebuilds the set from the records in `state` (start, snapshots).
    pub fn load(state: &dyn StateRead) -> Result<Self, StoreError> {
        let mut deadlines = Deadlines::default();
        let mut failure = None;
        state.scan(&[VALUE], &prefix_end(&[VALUE]), &mut |raw, value| {
            match Record::deadline_of(value) {
                Ok(Some(at)) => {
                    deadlines.set(Bytes::copy_from_slice(&raw[VALUE_KEY_HEADER..]), Some(at));
                }
                Ok(None) => {}
                Err(err) => {
                    failure = Some(err);
                    return false;
                }
            }
            true
        })?;
        match failure {
            Some(err) => Err(err),
            None => Ok(deadlines),
        }
    }

    /// `key` now has this deadline, or none.
    pub fn set(&mut self, key: Bytes, deadline: Option<u64>) {
        if let Some(old) = self.of_key.get(&key) {
            if Some(*old) == deadline {
                return;
            }
            self.by_time.remove(&(*old, key.clone()));
            self.of_key.remove(&key);
        }
        if let Some(at) = deadline {
            self.by_time.insert((at, key.clone()));
            self.of_key.insert(key, at);
        }
    }

    /// The earliest deadline.
    pub fn first(&self) -> Option<u64> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// The keys due by `ct`, earliest first, at most `limit`.
    pub fn due(&self, ct: u64, limit: usize) -> Vec<(u64, Bytes)> {
        self.by_time
            .iter()
            .take_while(|(at, _)| *at <= ct)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Records that have a deadline.
    pub fn len(&self) -> usize {
        self.of_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.of_key.is_empty()
    }
}

/// Applies a sweep at `ctx.ct`: ends the records in `due`.
pub fn sweep(ctx: &mut Context<'_>, due: Vec<(u64, Bytes)>) -> Result<(), StoreError> {
    for (deadline, key) in due {
        let Some(record) = ctx.record_any(&key)? else {
            continue;
        };
        // The set follows every write, so the record has this deadline; a
        // record that does not would be left alone.
        if record.expire_at != Some(deadline) {
            continue;
        }
        if record.value_type == ValueType::Lock {
            locks::settle_expired(ctx, &key)?;
        } else {
            ctx.remove(&key)?;
        }
    }
    Ok(())
}
