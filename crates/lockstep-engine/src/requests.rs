//! Which requests have applied, so a retried or duplicated proposal applies
//! at most once.
//!
//! Each entry carries its origin's settled floor: the origin will never
//! propose a sequence number below it again. Per origin the keyspace keeps
//! the highest floor seen and a bitmap of the applied sequence numbers at or
//! above it, in chunks of [`SEQS_PER_CHUNK`]. A request below the floor is a
//! duplicate of an answered request or one its client already gave up on,
//! and is dropped. Chunks fall away as the floor rises, so the record stays
//! as small as the origin's window of requests in flight, and a round of
//! entries from one origin rewrites one chunk instead of adding a record per
//! request.

use lockstep_store::{StateRead, StoreError};

use crate::context::Context;
use crate::layout::{applied_chunk_key, settled_floor_key};
use crate::RequestId;

/// Sequence numbers per bitmap chunk.
pub const SEQS_PER_CHUNK: u64 = 4096;
const CHUNK_BYTES: usize = (SEQS_PER_CHUNK / 8) as usize;

/// Records `request` as applied. False if it must not apply: it applied
/// before, or its origin had settled it (answered or abandoned) already.
pub fn remember(
    ctx: &mut Context<'_>,
    request: RequestId,
    settled_below: u64,
) -> Result<bool, StoreError> {
    let floor_key = settled_floor_key(request.origin);
    let stored_floor = match ctx.raw_get(&floor_key)? {
        Some(bytes) => u64::from_be_bytes(
            bytes
                .try_into()
                .map_err(|_| StoreError::corrupt("keyspace", "settled floor is not 8 bytes"))?,
        ),
        None => 0,
    };
    let floor = stored_floor.max(settled_below);
    if floor > stored_floor {
        forget_chunks_below(ctx, request.origin, stored_floor, floor)?;
        ctx.raw_put(floor_key, floor.to_be_bytes().to_vec());
    }
    if request.seq < floor {
        return Ok(false);
    }
    let chunk_key = applied_chunk_key(request.origin, request.seq / SEQS_PER_CHUNK);
    let mut bits = match ctx.raw_get(&chunk_key)? {
        Some(bits) if bits.len() == CHUNK_BYTES => bits,
        Some(_) => {
            return Err(StoreError::corrupt(
                "keyspace",
                "applied-request chunk has the wrong size",
            ))
        }
        None => vec![0; CHUNK_BYTES],
    };
    let bit = (request.seq % SEQS_PER_CHUNK) as usize;
    let mask = 1u8 << (bit % 8);
    if bits[bit / 8] & mask != 0 {
        return Ok(false);
    }
    bits[bit / 8] |= mask;
    ctx.raw_put(chunk_key, bits);
    Ok(true)
}

/// Deletes the chunks that lie wholly below `new_floor`; those below the
/// old floor's chunk went when it was reached.
fn forget_chunks_below(
    ctx: &mut Context<'_>,
    origin: u64,
    old_floor: u64,
    new_floor: u64,
) -> Result<(), StoreError> {
    let first = old_floor / SEQS_PER_CHUNK;
    let end = new_floor / SEQS_PER_CHUNK;
    if first == end {
        return Ok(());
    }
    let mut doomed = Vec::new();
    ctx.raw_scan(
        &applied_chunk_key(origin, first),
        &applied_chunk_key(origin, end),
        &mut |key, _| {
            doomed.push(key.to_vec());
            true
        },
    )?;
    for key in doomed {
        ctx.raw_delete(key);
    }
    Ok(())
}

/// A sequence number above every one `origin` has a record of (its floor
/// and applied chunks): a new cluster restored from a backup starts its
/// nodes' request ids above it, so none is mistaken for an old one.
pub fn request_seq_bound(state: &dyn StateRead, origin: u64) -> Result<u64, StoreError> {
    let mut bound = match state.get(&settled_floor_key(origin))? {
        Some(bytes) if bytes.len() == 8 => {
            u64::from_be_bytes(bytes.try_into().expect("8 bytes")) + 1
        }
        _ => 0,
    };
    let first = applied_chunk_key(origin, 0);
    let end = match origin.checked_add(1) {
        Some(next) => applied_chunk_key(next, 0),
        None => crate::layout::prefix_end(&first[..1]),
    };
    let mut last = Vec::new();
    state.scan(&first, &end, &mut |key, _| {
        last = key.to_vec();
        true
    })?;
    if last.len() == 17 {
        let chunk = u64::from_be_bytes(last[9..17].try_into().expect("8 bytes"));
        bound = bound.max((chunk + 1).saturating_mul(SEQS_PER_CHUNK));
    }
    Ok(bound)
}
