//! The view one command has of the keyspace while it runs: reads go through
//! an overlay of the command's own writes, and the writes become one batch.
//!
//! Every value record is written through [`Context::store`] and removed
//! through [`Context::remove`]: the one place where a write's side effects
//! are kept in step whatever command made it: the engine's deadline set,
//! the lease a key is attached to, the change event observers wait for,
//! and the parked requests of a lock, election or barrier that another
//! command replaces or deletes (each still gets exactly one reply).

use bytes::Bytes;
use lockstep_store::{Overlay, StateBatch, StateRead, StoreError};

use std::collections::HashMap;

use crate::changes::{self, Change};
use crate::expiry::Target;
use crate::layout::value_key;
use crate::record::{Record, ValueType};
use crate::{leases, limits, managed, notify, Event, Reply, RequestId};

#[derive(Clone)]
pub struct Checkpoint<'a> {
    overlay: Overlay<'a>,
    events: usize,
    deferred: usize,
    deadlines: usize,
    history: History,
}

/// What this entry added to the change feed so far.
#[derive(Clone, Default)]
struct History {
    /// Changes recorded (the next one's number within the entry).
    count: u32,
    bytes: u64,
    /// Each key's string value as of its latest change in this entry (the
    /// next change's "before").
    latest: HashMap<Bytes, Option<Bytes>>,
}

pub struct Finished {
    pub batch: StateBatch,
    pub events: Vec<Event>,
    pub deferred: Vec<(RequestId, Reply)>,
    pub parked: bool,
    /// Deadlines this entry set (or cleared, `None`), in order.
    pub deadlines: Vec<(Target, Option<u64>)>,
    /// Native lock records written (true) or removed (false), in order.
    pub lock_records: Vec<(Bytes, bool)>,
}

pub struct Context<'a> {
    base: &'a dyn StateRead,
    overlay: Overlay<'a>,
    /// `notify-keyspace-events` at this entry.
    notify_flags: u32,
    history: History,
    /// What the entry makes happen outside the keyspace (published messages).
    events: Vec<Event>,
    /// Replies this entry gives to earlier, parked requests.
    deferred: Vec<(RequestId, Reply)>,
    /// Deadlines set or cleared, for the engine's in-memory set.
    deadlines: Vec<(Target, Option<u64>)>,
    /// Native lock records written (true) or removed (false), for the
    /// engine's count.
    lock_records: Vec<(Bytes, bool)>,
    /// The wait id of a `PARK` entry: the handle a parked request is
    /// cancelled by (see `parking`).
    wait_id: Option<Bytes>,
    /// The entry's request, while a top-level command may park it.
    park_request: Option<RequestId>,
    parked: bool,
    /// Log index of the entry being applied; 0 on the read path.
    pub index: u64,
    /// The last applied index of the state a read looks at (0 on the
    /// write path, where `index` is the entry's).
    pub applied: u64,
    /// Cluster time at which expiry is evaluated.
    pub ct: u64,
    /// The user a script runs as (`ACL.AS`): its calls are checked.
    pub acl_user: Option<crate::acl::User>,
}

impl<'a> Context<'a> {
    pub fn new(state: &'a dyn StateRead, index: u64, ct: u64) -> Result<Self, StoreError> {
        let mut ctx = Context {
            base: state,
            overlay: Overlay::new(state),
            notify_flags: 0,
            history: History::default(),
            events: Vec::new(),
            deferred: Vec::new(),
            deadlines: Vec::new(),
            lock_records: Vec::new(),
            wait_id: None,
            park_request: None,
            acl_user: None,
            parked: false,
            index,
            applied: 0,
            ct,
        };
        if index != 0 {
            ctx.notify_flags = limits::get(&ctx, limits::Limit::NotifyEvents)? as u32;
        }
        Ok(ctx)
    }

    /// A command's event on `key`, after it changed the key: published as
    /// Redis's keyspace notification (when `notify-keyspace-events` asks
    /// for its class) and kept in the change feed (`new` events only as a
    /// notification: the event that follows says what happened).
    pub fn notify(
        &mut self,
        class: u32,
        event: &'static str,
        key: &[u8],
    ) -> Result<(), StoreError> {
        if notify::publishes(self.notify_flags, class) {
            for (channel, message) in notify::messages(self.notify_flags, event, key) {
                self.publish(Bytes::from(channel), Bytes::from(message), false);
            }
        }
        if class == notify::NEW {
            return Ok(());
        }
        self.note_change(event, key)
    }

    /// Records a change in the feed without a keyspace notification (for
    /// what Redis does not announce, such as FLUSHALL).
    pub fn note_change(&mut self, event: &'static str, key: &[u8]) -> Result<(), StoreError> {
        if self.index == 0 {
            return Ok(());
        }
        let key = Bytes::copy_from_slice(key);
        let now = self.record(&key)?;
        let after = now
            .as_ref()
            .filter(|record| record.value_type == ValueType::String)
            .map(|record| record.body.clone());
        let before = match self.history.latest.get(&key) {
            Some(latest) => latest.clone(),
            None => match self.base.get(&value_key(&key))? {
                Some(bytes) => Some(Record::decode(&bytes)?)
                    .filter(|r| r.value_type == ValueType::String && r.is_live_at(self.ct))
                    .map(|r| r.body),
                None => None,
            },
        };
        let change = Change {
            index: self.index,
            key: key.clone(),
            event: Bytes::from_static(event.as_bytes()),
            kind: Bytes::from_static(now.map_or("none", |r| r.value_type.name()).as_bytes()),
            before,
            after: after.clone(),
        };
        self.history.latest.insert(key, after);
        self.keep_change(&change);
        Ok(())
    }

    /// Records a znode's change in the feed: `after` is its data (`None`
    /// once deleted).
    pub fn note_znode_change(
        &mut self,
        event: &'static str,
        path: &[u8],
        before: Option<Bytes>,
        after: Option<Bytes>,
    ) {
        let change = Change {
            index: self.index,
            key: Bytes::copy_from_slice(path),
            event: Bytes::from_static(event.as_bytes()),
            kind: Bytes::from_static(if after.is_some() { b"znode" } else { b"none" }),
            before,
            after,
        };
        self.keep_change(&change);
    }

    fn keep_change(&mut self, change: &Change) {
        let record_key = changes::change_key(self.index, self.history.count);
        let data = change.encode();
        self.history.count += 1;
        self.history.bytes += (record_key.len() + data.len()) as u64;
        self.raw_put(record_key, data);
    }

    /// How many changes this entry recorded, and their bytes.
    pub fn recorded_changes(&self) -> (u64, u64) {
        (self.history.count as u64, self.history.bytes)
    }

    pub fn raw_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.overlay.get(key)
    }

    pub fn raw_put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.overlay.put(key, value);
    }

    pub fn raw_delete(&mut self, key: Vec<u8>) {
        self.overlay.delete(key);
    }

    /// Visits raw keys in `[start, end)`, the command's own writes included,
    /// until `visit` returns false.
    pub fn raw_scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.overlay.scan(start, end, visit)
    }

    /// The key's record even if expired (writes must clean up after it).
    pub fn record_any(&self, key: &[u8]) -> Result<Option<Record>, StoreError> {
        match self.raw_get(&value_key(key))? {
            Some(bytes) => Ok(Some(Record::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The key's record if it exists and has not expired at `ct`.
    pub fn record(&self, key: &[u8]) -> Result<Option<Record>, StoreError> {
        Ok(self
            .record_any(key)?
            .filter(|record| record.is_live_at(self.ct)))
    }

    /// The key's live record if it is of `value_type`; `Ok(None)` if there
    /// is none; WRONGTYPE (as the reply) if the key holds another type.
    pub fn typed_record(
        &self,
        key: &[u8],
        value_type: ValueType,
    ) -> Result<Result<Option<Record>, Reply>, StoreError> {
        Ok(match self.record(key)? {
            Some(record) if record.value_type != value_type => Err(Reply::wrong_type()),
            found => Ok(found),
        })
    }

    /// Writes `body` as the key's value: into `existing` (keeping its
    /// creation index, TTL and lease), or as a new record of `value_type`
    /// created by this entry.
    pub fn store_body(
        &mut self,
        key: &[u8],
        existing: Option<Record>,
        value_type: ValueType,
        body: Bytes,
    ) -> Result<(), StoreError> {
        let record = match existing {
            Some(record) => Record {
                modified: self.index,
                body,
                ..record
            },
            None => Record {
                value_type,
                created: self.index,
                modified: self.index,
                expire_at: None,
                lease: None,
                body,
            },
        };
        self.store(key, record)
    }

    /// Writes `record` for `key`. A record whose deadline has already
    /// passed is removed instead: it could never be read.
    pub fn store(&mut self, key: &[u8], record: Record) -> Result<(), StoreError> {
        if !record.is_live_at(self.ct) {
            self.remove(key)?;
            return Ok(());
        }
        let mut previous = self.record_any(key)?;
        if previous
            .as_ref()
            .is_some_and(|old| !old.is_live_at(self.ct) && !old.value_type.is_managed())
        {
            // Written over once its TTL passed: it expires first, as Redis
            // expires a key a write looks up. (A lock, election, service or
            // barrier settles its own deadlines.)
            self.remove(key)?;
            previous = None;
        }
        if let Some(old) = &previous {
            if old.value_type.is_managed() && old.value_type != record.value_type {
                managed::replaced(self, key, old)?;
            }
        }
        let old_lease = previous.as_ref().and_then(|old| old.lease);
        if old_lease != record.lease {
            if let Some(lease) = old_lease {
                leases::detach(
                    self,
                    lease,
                    &leases::Attachment::Key(Bytes::copy_from_slice(key)),
                )?;
            }
            if let Some(lease) = record.lease {
                leases::attach(
                    self,
                    lease,
                    leases::Attachment::Key(Bytes::copy_from_slice(key)),
                )?;
            }
        }
        let key_bytes = Bytes::copy_from_slice(key);
        self.deadlines
            .push((Target::Key(key_bytes.clone()), record.expire_at));
        let is_lock = record.value_type == ValueType::Lock;
        if is_lock
            || previous
                .as_ref()
                .is_some_and(|old| old.value_type == ValueType::Lock)
        {
            self.lock_records.push((key_bytes.clone(), is_lock));
        }
        self.events.push(Event::Changed { key: key_bytes });
        self.raw_put(value_key(key), record.encode());
        if previous.is_none() {
            self.notify(notify::NEW, "new", key)?;
        }
        Ok(())
    }

    /// Removes `key` (live or expired); returns whether a live key was
    /// removed. A lock, election, barrier or service goes with everything
    /// parked in it answered.
    pub fn remove(&mut self, key: &[u8]) -> Result<bool, StoreError> {
        let Some(old) = self.record_any(key)? else {
            return Ok(false);
        };
        if old.value_type.is_managed() {
            managed::replaced(self, key, &old)?;
        }
        self.erase(key, &old)?;
        let live = old.is_live_at(self.ct);
        if !live {
            self.notify(notify::EXPIRED, "expired", key)?;
        }
        Ok(live)
    }

    /// Removes a managed record that its own family has already emptied
    /// (nothing parked in it, no lease holding it).
    pub fn remove_own(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if let Some(old) = self.record_any(key)? {
            self.erase(key, &old)?;
        }
        Ok(())
    }

    fn erase(&mut self, key: &[u8], old: &Record) -> Result<(), StoreError> {
        let key_bytes = Bytes::copy_from_slice(key);
        if let Some(lease) = old.lease {
            leases::detach(self, lease, &leases::Attachment::Key(key_bytes.clone()))?;
        }
        self.deadlines.push((Target::Key(key_bytes.clone()), None));
        self.deadlines
            .push((Target::Waits(key_bytes.clone()), None));
        if old.value_type == ValueType::Lock {
            self.lock_records.push((key_bytes.clone(), false));
        }
        self.events.push(Event::Changed { key: key_bytes });
        self.raw_delete(value_key(key));
        Ok(())
    }

    /// Sets or clears a deadline that is not a value record's own TTL.
    pub fn set_deadline(&mut self, target: Target, deadline: Option<u64>) {
        self.deadlines.push((target, deadline));
    }

    /// The wait id this entry parks under, if it came as `PARK id ...`.
    pub fn wait_id(&self) -> Option<&Bytes> {
        self.wait_id.as_ref()
    }

    pub fn set_wait_id(&mut self, id: Option<Bytes>) {
        self.wait_id = id;
    }

    /// Writes a new string value created by this entry.
    pub fn store_string(
        &mut self,
        key: &[u8],
        body: Bytes,
        expire_at: Option<u64>,
    ) -> Result<(), StoreError> {
        let record = Record::string(body, self.index, expire_at);
        self.store(key, record)
    }

    /// The effects so far, to go back to with [`Context::restore`].
    pub fn checkpoint(&self) -> Checkpoint<'a> {
        Checkpoint {
            overlay: self.overlay.clone(),
            events: self.events.len(),
            deferred: self.deferred.len(),
            deadlines: self.deadlines.len(),
            history: self.history.clone(),
        }
    }

    pub fn restore(&mut self, checkpoint: Checkpoint<'a>) {
        self.overlay = checkpoint.overlay;
        self.events.truncate(checkpoint.events);
        self.deferred.truncate(checkpoint.deferred);
        self.deadlines.truncate(checkpoint.deadlines);
        self.history = checkpoint.history;
    }

    /// Lets the top-level command of this entry park it (reply later).
    pub fn allow_parking(&mut self, request: RequestId) {
        self.park_request = Some(request);
    }

    /// Scripts and transactions cannot wait: their commands never park.
    pub fn forbid_parking(&mut self) {
        self.park_request = None;
    }

    pub fn parkable_request(&self) -> Option<RequestId> {
        self.park_request
    }

    /// This entry's request gets its reply from a later entry.
    pub fn park(&mut self) {
        self.parked = true;
    }

    pub fn defer_reply(&mut self, request: RequestId, reply: Reply) {
        self.deferred.push((request, reply));
    }

    /// An effect for this node's watchers (see `Event`).
    pub fn push_event(&mut self, event: Event) {
        self.events.push(event);
    }

    pub fn publish(&mut self, channel: Bytes, message: Bytes, sharded: bool) {
        self.events.push(Event::Publish {
            channel,
            message,
            sharded,
        });
    }

    /// Everything the entry did.
    pub fn finish(self) -> Finished {
        Finished {
            batch: self.overlay.into_batch(),
            events: self.events,
            deferred: self.deferred,
            parked: self.parked,
            deadlines: self.deadlines,
            lock_records: self.lock_records,
        }
    }
}
