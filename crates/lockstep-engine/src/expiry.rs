//! Ending what is due by cluster time: expired keys and leases, lock
//! holders whose TTL ran out, waits that timed out, instances whose
//! heartbeat is late.
//!
//! Every deadline, and what it belongs to (a [`Target`]), is kept in memory
//! ([`Deadlines`], owned by the [`crate::Engine`]): an ordered set of
//! (deadline, target) with a map from target to deadline. It is derived
//! state: every record carries its own deadlines, so the set is rebuilt
//! from the keyspace when a node starts or installs a snapshot, and every
//! applied entry updates it with the deadlines its writes set or cleared.
//! Replicas at the same applied index therefore hold the same set, and a
//! leader's sweep entry (`Payload::Sweep`, no body) ends the same things
//! on every node: the earliest due ones, at most [`SWEEP_BATCH`] per
//! entry, in (deadline, target) order.
//!
//! Why in memory: an index kept in RocksDB must delete an entry whenever a
//! lock is released or a TTL changes, and RocksDB keeps each deletion as a
//! tombstone that every scan of that range steps over until compaction.
//! The leader's expiry check scanned that range every tick, so an idle
//! leader spent its time walking the tombstones of every lock released
//! before. The in-memory set costs a map update per deadline set, its
//! memory is proportional to the deadlines pending now, and no step ever
//! depends on what was deleted before.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use lockstep_store::{StateRead, StoreError};

use crate::context::Context;
use crate::layout::{prefix_end, VALUE, VALUE_KEY_HEADER};
use crate::record::{Record, ValueType};
use crate::{election, leases, locks, registry};

/// Deadlines one sweep entry ends at most: bounds its batch and the time to
/// apply it; the leader proposes the next one as soon as it applies.
pub const SWEEP_BATCH: usize = 512;

/// What a deadline belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// A value record's `expire_at`: its TTL, or a native lock's next
    /// holder or waiter deadline.
    Key(Bytes),
    /// A lease's expiry.
    Lease(u64),
    /// The earliest wait deadline in a record with parked requests (an
    /// election's candidates, a barrier's participants).
    Waits(Bytes),
    /// A registered instance's next health deadline (its TTL check, or
    /// its removal after staying critical): service, instance.
    Check(Bytes, Bytes),
    /// A TTL znode without children: path.
    Znode(Bytes),
}

/// Every pending deadline, in deadline order; and, for metrics, how many
/// are leases and which records are native locks (a lock record always
/// has a deadline: its holders' or waiters').
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deadlines {
    by_time: BTreeSet<(u64, Target)>,
    of_target: HashMap<Target, u64>,
    leases: usize,
    locks: std::collections::HashSet<Bytes>,
}

impl Deadlines {
    /// Rebuilds the set from `state` (start, snapshots): every value
    /// record's TTL and waits, every lease, every instance check.
    pub fn load(state: &dyn StateRead) -> Result<Self, StoreError> {
        let mut deadlines = Deadlines::default();
        let mut failure = None;
        state.scan(&[VALUE], &prefix_end(&[VALUE]), &mut |raw, value| {
            let key = Bytes::copy_from_slice(&raw[VALUE_KEY_HEADER..]);
            let found = Record::decode(value).and_then(|record| {
                if let Some(at) = record.expire_at {
                    deadlines.set(Target::Key(key.clone()), Some(at));
                }
                if record.value_type == ValueType::Lock {
                    deadlines.set_lock(key.clone(), true);
                }
                let waits = match record.value_type {
                    ValueType::Election => election::waits_deadline(&record.body)?,
                    ValueType::Barrier => crate::barrier::waits_deadline(&record.body)?,
                    _ => None,
                };
                deadlines.set(Target::Waits(key), waits);
                Ok(())
            });
            if let Err(err) = found {
                failure = Some(err);
                return false;
            }
            true
        })?;
        if let Some(err) = failure {
            return Err(err);
        }
        leases::load_deadlines(state, &mut deadlines)?;
        registry::load_deadlines(state, &mut deadlines)?;
        crate::namespace::load_deadlines(state, &mut deadlines)?;
        Ok(deadlines)
    }

    /// `target` now has this deadline, or none.
    pub fn set(&mut self, target: Target, deadline: Option<u64>) {
        let is_lease = matches!(target, Target::Lease(_));
        if let Some(old) = self.of_target.get(&target) {
            if Some(*old) == deadline {
                return;
            }
            self.by_time.remove(&(*old, target.clone()));
            self.of_target.remove(&target);
            self.leases -= usize::from(is_lease);
        }
        if let Some(at) = deadline {
            self.by_time.insert((at, target.clone()));
            self.of_target.insert(target, at);
            self.leases += usize::from(is_lease);
        }
    }

    /// The record `name` is (or no longer is) a native lock.
    pub fn set_lock(&mut self, name: Bytes, present: bool) {
        if present {
            self.locks.insert(name);
        } else {
            self.locks.remove(&name);
        }
    }

    /// Live leases (each has its expiry deadline).
    pub fn leases(&self) -> usize {
        self.leases
    }

    /// Native lock records: held, or with waiters.
    pub fn locks(&self) -> usize {
        self.locks.len()
    }

    /// The earliest deadline.
    pub fn first(&self) -> Option<u64> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// What is due by `ct`, earliest first, at most `limit`.
    pub fn due(&self, ct: u64, limit: usize) -> Vec<(u64, Target)> {
        self.by_time
            .iter()
            .take_while(|(at, _)| *at <= ct)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Pending deadlines.
    pub fn len(&self) -> usize {
        self.of_target.len()
    }

    pub fn is_empty(&self) -> bool {
        self.of_target.is_empty()
    }
}

/// Applies a sweep at `ctx.ct`: ends what is in `due`.
pub fn sweep(ctx: &mut Context<'_>, due: Vec<(u64, Target)>) -> Result<(), StoreError> {
    for (deadline, target) in due {
        match target {
            Target::Key(key) => {
                let Some(record) = ctx.record_any(&key)? else {
                    continue;
                };
                // The set follows every write, so the record has this
                // deadline; one that does not is left alone.
                if record.expire_at != Some(deadline) {
                    continue;
                }
                if record.value_type == ValueType::Lock {
                    locks::settle_expired(ctx, &key)?;
                } else {
                    ctx.remove(&key)?;
                }
            }
            Target::Lease(id) => leases::expire(ctx, id)?,
            Target::Waits(key) => match ctx.record_any(&key)?.map(|r| r.value_type) {
                Some(ValueType::Election) => election::settle(ctx, &key)?,
                Some(ValueType::Barrier) => crate::barrier::settle(ctx, &key)?,
                _ => ctx.set_deadline(Target::Waits(key), None),
            },
            Target::Check(service, instance) => registry::check(ctx, &service, &instance)?,
            Target::Znode(path) => crate::namespace::ttl_passed(ctx, &path)?,
        }
    }
    Ok(())
}
