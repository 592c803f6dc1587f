//! The view one command has of the keyspace while it runs: reads go through
//! an overlay of the command's own writes, and the writes become one batch.

use bytes::Bytes;
use lockstep_store::{Overlay, StateBatch, StateRead, StoreError};

use crate::layout::value_key;
use crate::record::Record;
use crate::{Event, Reply, RequestId};

#[derive(Clone)]
pub struct Checkpoint<'a> {
    overlay: Overlay<'a>,
    events: usize,
    deferred: usize,
    deadlines: usize,
}

pub struct Finished {
    pub batch: StateBatch,
    pub events: Vec<Event>,
    pub deferred: Vec<(RequestId, Reply)>,
    pub parked: bool,
    /// Keys whose deadline this entry set (or cleared, `None`), in order.
    pub deadlines: Vec<(Bytes, Option<u64>)>,
}

pub struct Context<'a> {
    overlay: Overlay<'a>,
    /// What the entry makes happen outside the keyspace (published messages).
    events: Vec<Event>,
    /// Replies this entry gives to earlier, parked requests.
    deferred: Vec<(RequestId, Reply)>,
    /// Deadlines set or cleared, for the engine's in-memory set.
    deadlines: Vec<(Bytes, Option<u64>)>,
    /// The entry's request, while a top-level command may park it.
    park_request: Option<RequestId>,
    parked: bool,
    /// Log index of the entry being applied; 0 on the read path.
    pub index: u64,
    /// Cluster time at which expiry is evaluated.
    pub ct: u64,
}

impl<'a> Context<'a> {
    pub fn new(state: &'a dyn StateRead, index: u64, ct: u64) -> Self {
        Context {
            overlay: Overlay::new(state),
            events: Vec::new(),
            deferred: Vec::new(),
            deadlines: Vec::new(),
            park_request: None,
            parked: false,
            index,
            ct,
        }
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

    /// Writes `record` for `key`, noting its deadline (see `expiry`). A
    /// record whose deadline has already passed is removed instead: it
    /// could never be read.
    pub fn store(&mut self, key: &[u8], record: Record) -> Result<(), StoreError> {
        if !record.is_live_at(self.ct) {
            self.remove(key)?;
            return Ok(());
        }
        self.deadlines
            .push((Bytes::copy_from_slice(key), record.expire_at));
        self.raw_put(value_key(key), record.encode());
        Ok(())
    }

    /// Removes `key` (live or expired); returns whether a live key was removed.
    pub fn remove(&mut self, key: &[u8]) -> Result<bool, StoreError> {
        let Some(old) = self.record_any(key)? else {
            return Ok(false);
        };
        self.forget(key);
        Ok(old.is_live_at(self.ct))
    }

    /// Deletes `key`'s record without reading it (FLUSHALL).
    pub fn forget(&mut self, key: &[u8]) {
        self.deadlines.push((Bytes::copy_from_slice(key), None));
        self.raw_delete(value_key(key));
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
        }
    }

    pub fn restore(&mut self, checkpoint: Checkpoint<'a>) {
        self.overlay = checkpoint.overlay;
        self.events.truncate(checkpoint.events);
        self.deferred.truncate(checkpoint.deferred);
        self.deadlines.truncate(checkpoint.deadlines);
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
        }
    }
}
