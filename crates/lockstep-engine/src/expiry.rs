//! Ending what is due by cluster time: expired keys, lock holders whose TTL
//! ran out, waits that timed out.
//!
//! Every record with a deadline has an entry `e deadline:u64 key` in the
//! expiry index, added when the deadline is set. Entries are never deleted
//! ahead of time: a key deleted or given another deadline leaves its old
//! entry, which is dropped when it comes due and the record no longer has
//! that deadline. The leader's sweep entries consume the index in order,
//! from a replicated cursor (the last index key consumed), a bounded number
//! per entry, and every replica finds the same due entries in its own
//! index.
//!
//! Why this shape: in an LSM store a deleted key stays behind as a
//! tombstone until compaction, and a scan steps over every tombstone in its
//! range. Deleting index entries early (at every lock release) filled the
//! range ahead of the live entries with tombstones that every expiry check
//! walked again. Now all deletions in the index lie behind the cursor, and
//! a seek from the cursor lands on the first live entry.
//!
//! Invariant: an index entry is only added with a deadline later than the
//! current cluster time, which is at or after every consumed deadline, so
//! it always lies after the cursor ([`Context::store`] removes a record
//! whose deadline has passed instead of storing it).

use bytes::Bytes;
use lockstep_store::{StateRead, StoreError};

use crate::context::Context;
use crate::layout::{expiry_key, prefix_end, EXPIRY, META_SWEEP_CURSOR};
use crate::locks;
use crate::record::ValueType;

/// Index entries one sweep entry consumes at most: bounds its size of
/// batch and time to apply; the leader proposes the next one right after.
pub const SWEEP_BATCH: usize = 512;

/// Where a scan of the index starts: just after the cursor.
fn scan_start(cursor: Option<Vec<u8>>) -> Vec<u8> {
    match cursor {
        Some(mut key) => {
            key.push(0);
            key
        }
        None => vec![EXPIRY],
    }
}

fn deadline_of(index_key: &[u8]) -> Result<u64, StoreError> {
    index_key
        .get(1..9)
        .and_then(|word| word.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::corrupt("expiry index", "key shorter than its deadline"))
}

/// The earliest deadline not yet consumed, if any.
pub fn next_deadline(state: &dyn StateRead) -> Result<Option<u64>, StoreError> {
    let start = scan_start(state.get(META_SWEEP_CURSOR)?);
    let mut first = None;
    state.scan(&start, &prefix_end(&[EXPIRY]), &mut |key, _| {
        first = Some(key.to_vec());
        false
    })?;
    first.map(|key| deadline_of(&key)).transpose()
}

/// Applies a sweep at `ctx.ct`: consumes up to [`SWEEP_BATCH`] index
/// entries due by then, ending each record that still has that deadline.
pub fn sweep(ctx: &mut Context<'_>) -> Result<(), StoreError> {
    let start = scan_start(ctx.raw_get(META_SWEEP_CURSOR)?);
    let end = expiry_key(ctx.ct.saturating_add(1), b"");
    let mut due = Vec::new();
    ctx.raw_scan(&start, &end, &mut |key, _| {
        due.push(key.to_vec());
        due.len() < SWEEP_BATCH
    })?;
    let Some(last) = due.last().cloned() else {
        return Ok(());
    };
    for index_key in due {
        let deadline = deadline_of(&index_key)?;
        let key = Bytes::copy_from_slice(&index_key[9..]);
        let record = ctx.record_any(&key)?;
        if let Some(record) = record.filter(|record| record.expire_at == Some(deadline)) {
            if record.value_type == ValueType::Lock {
                locks::settle_expired(ctx, &key)?;
            } else {
                ctx.remove(&key)?;
            }
        }
        ctx.raw_delete(index_key);
    }
    ctx.raw_put(META_SWEEP_CURSOR.to_vec(), last);
    Ok(())
}
