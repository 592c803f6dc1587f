//! Parked requests: commands that wait (a lock, a blocking pop, a
//! candidacy, a barrier) without anyone polling.
//!
//! A command that must wait is *parked*: its entry gets no reply when
//! applied, and the waiter is kept in the record it waits on (the lock's
//! queue, the election's candidates, ...). The later entry that decides it
//! (a release, a push, a resignation, the sweep that finds its wait ran
//! out) replies to it by request id: a *deferred* reply. Exactly one reply
//! each.
//!
//! The server sends such a command as `PARK <wait-id> <command ...>`; the
//! wait id is the handle to cancel it by when its client leaves (or, for a
//! blocking pop, when its timeout passes): `PARK.CANCEL <wait-id>`.
//! `B wait-id` records which record the waiter sits in, so a cancel is a
//! point lookup, however many waits came and went before.

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::codec::{Reader, Writer};
use crate::collections::blocking;
use crate::context::Context;
use crate::{barrier, election, locks, Reply};

const WAIT_ID: u8 = b'B';

const KIND_POP: u8 = 0;
const KIND_LOCK: u8 = 1;
const KIND_ELECTION: u8 = 2;
const KIND_BARRIER: u8 = 3;

/// Where a parked request waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParkRef {
    /// A blocking pop: its whole waiter (it waits on several keys).
    Pop(Bytes),
    /// In the queue of the lock of this name.
    Lock(Bytes),
    /// Among the candidates of this election.
    Election(Bytes),
    /// At this barrier.
    Barrier(Bytes),
}

fn wait_id_key(id: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(id.len() + 1);
    out.push(WAIT_ID);
    out.extend_from_slice(id);
    out
}

/// Parks the request being applied in `at`: its entry owes no reply now,
/// and its wait id (if it came as `PARK id ...`) is noted so that a cancel
/// finds it. Returns that wait id (empty without one) for the waiter.
pub fn park(ctx: &mut Context<'_>, at: ParkRef) -> Bytes {
    let wait_id = ctx.wait_id().cloned().unwrap_or_default();
    if !wait_id.is_empty() {
        register(ctx, &wait_id, at);
    }
    ctx.park();
    wait_id
}

/// Notes that the request waiting under `id` sits in `at`.
pub fn register(ctx: &mut Context<'_>, id: &[u8], at: ParkRef) {
    let (kind, payload) = match &at {
        ParkRef::Pop(waiter) => (KIND_POP, waiter),
        ParkRef::Lock(name) => (KIND_LOCK, name),
        ParkRef::Election(name) => (KIND_ELECTION, name),
        ParkRef::Barrier(name) => (KIND_BARRIER, name),
    };
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.put_u8(kind);
    out.put_bytes(payload);
    ctx.raw_put(wait_id_key(id), out);
}

/// The wait under `id` ended (granted, cancelled, timed out).
pub fn forget(ctx: &mut Context<'_>, id: &[u8]) {
    if !id.is_empty() {
        ctx.raw_delete(wait_id_key(id));
    }
}

/// Where the request waiting under `id` sits, if it still waits.
pub fn lookup(ctx: &Context<'_>, id: &[u8]) -> Result<Option<ParkRef>, StoreError> {
    let Some(data) = ctx.raw_get(&wait_id_key(id))? else {
        return Ok(None);
    };
    let mut reader = Reader::new(&data, "parked request");
    let kind = reader.u8()?;
    let payload = reader.bytes()?;
    reader.finish()?;
    Ok(Some(match kind {
        KIND_POP => ParkRef::Pop(payload),
        KIND_LOCK => ParkRef::Lock(payload),
        KIND_ELECTION => ParkRef::Election(payload),
        KIND_BARRIER => ParkRef::Barrier(payload),
        _ => return Err(StoreError::corrupt("parked request", "unknown kind")),
    }))
}

/// `PARK.CANCEL id`: ends that wait with its timeout reply (nil). 1 if it
/// was still waiting, 0 if it had ended.
pub fn cancel(ctx: &mut Context<'_>, id: &Bytes) -> Result<Reply, StoreError> {
    let Some(at) = lookup(ctx, id)? else {
        return Ok(Reply::Integer(0));
    };
    let cancelled = match at {
        ParkRef::Pop(waiter) => blocking::cancel(ctx, id, &waiter)?,
        ParkRef::Lock(name) => locks::cancel_wait(ctx, &name, id)?,
        ParkRef::Election(name) => election::cancel_wait(ctx, &name, id)?,
        ParkRef::Barrier(name) => barrier::cancel_wait(ctx, &name, id)?,
    };
    forget(ctx, id);
    Ok(Reply::Integer(cancelled as i64))
}

/// How a command may park, for the server: `Some(wait)` if it may, where
/// `wait` is its longest wait in ms (`None`: no limit); `server_timeout`
/// when the server, not the log, ends the wait at that time (blocking
/// pops; every other wait has its deadline in the replicated state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parking {
    pub wait_ms: Option<u64>,
    pub server_timeout: bool,
}

/// Whether `argv` (a valid command) may park, and for how long.
pub fn parking(argv: &[Bytes]) -> Option<Parking> {
    let name = String::from_utf8_lossy(argv.first()?).to_ascii_lowercase();
    // The options of every waiting command are (name, value) pairs after
    // its fixed arguments.
    let option_ms = |from: usize| -> Option<u64> {
        argv.get(from..)?
            .chunks(2)
            .find(|pair| pair[0].eq_ignore_ascii_case(b"wait"))
            .and_then(|pair| std::str::from_utf8(pair.get(1)?).ok()?.parse().ok())
    };
    match name.as_str() {
        "blpop" | "brpop" | "blmove" | "brpoplpush" => {
            let ms = blocking::timeout_ms(argv.last()?).ok()?;
            Some(Parking {
                wait_ms: (ms > 0).then_some(ms),
                server_timeout: true,
            })
        }
        // Only with WAIT: without it LOCK.ACQUIRE answers at once.
        "lock.acquire" => option_ms(4).map(|ms| Parking {
            wait_ms: Some(ms),
            server_timeout: false,
        }),
        // These wait without limit unless WAIT says otherwise.
        "elect.campaign" | "barrier.enter" => Some(Parking {
            wait_ms: option_ms(4),
            server_timeout: false,
        }),
        "barrier.leave" => Some(Parking {
            wait_ms: option_ms(3),
            server_timeout: false,
        }),
        _ => None,
    }
}
