//! Native fair locks and counting semaphores with fencing tokens.
//!
//! A lock is one record (type `lock`) holding its holders (owner, token,
//! deadline, lease), its FIFO queue of waiters and its LIMIT (1 for a
//! mutex). A token is the log index of the entry that granted it, so
//! tokens of a name strictly increase across all time and failovers, and
//! `FENCE name` returns the newest one. The record's deadline is its
//! earliest holder or waiter deadline (or the end of its lock-delay while
//! someone waits): the leader's sweeps then settle it (expired holders
//! leave, waiters whose wait ran out get nil, the queue advances).
//!
//! A waiter is a parked request (see `parking`): its entry gets no reply
//! when applied; the entry that later grants the lock or ends the wait
//! replies to it. Nothing is retried on the wire and nobody polls.
//!
//! A holder or waiter may be attached to a lease (`LEASE id`): it goes when
//! the lease ends. When a holder *fails* (its lease expires or its TTL
//! runs out, not when it releases) the lock is not granted again for the
//! lock-delay, the larger of the lease's and the lock's own (`LOCKDELAY`).

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::args::{integer, is, Args};
use crate::codec::{Reader, Writer};
use crate::context::Context;
use crate::leases::{self, Attachment};
use crate::notify;
use crate::parking::{self, ParkRef};
use crate::record::{Record, ValueType};
use crate::{Reply, RequestId};

/// Longest TTL or WAIT accepted, in ms (a year).
const MAX_MS: i64 = 365 * 24 * 3600 * 1000;
/// Waiters one lock may queue: a bound on the record's size.
pub const MAX_WAITERS: usize = 10_000;
/// Largest LIMIT of a semaphore.
const MAX_LIMIT: i64 = 10_000;
/// The record body's format: version 1 had no version byte (its first
/// byte is the high byte of LIMIT, always 0); version 2 adds leases, wait
/// ids and the lock-delay.
const STATE_V2: u8 = 2;

#[derive(Clone, Debug, PartialEq)]
pub enum LockCommand {
    Acquire {
        name: Bytes,
        owner: Bytes,
        ttl: u64,
        wait: Option<u64>,
        limit: u32,
        lease: Option<u64>,
        lock_delay: Option<u64>,
    },
    Release {
        name: Bytes,
        owner: Bytes,
    },
    Extend {
        name: Bytes,
        owner: Bytes,
        ttl: u64,
    },
    Cancel {
        name: Bytes,
        owner: Bytes,
    },
    Info(Bytes),
}

fn millis(arg: &[u8], what: &str) -> Result<u64, Reply> {
    let value = integer(arg)?;
    if value <= 0 || value > MAX_MS {
        return Err(Reply::error(format!(
            "ERR invalid {what}: must be a positive number of milliseconds up to {MAX_MS}"
        )));
    }
    Ok(value as u64)
}

pub fn parse(name: &str, args: &[Bytes]) -> Result<LockCommand, Reply> {
    Ok(match name {
        "lock.acquire" | "lock.try" => {
            let ttl = millis(&args[2], "ttl")?;
            let mut wait = None;
            let mut limit = 1;
            let mut lease = None;
            let mut lock_delay = None;
            let mut rest = Args::new(&args[3..]);
            while let Some(option) = rest.next() {
                if is(option, "wait") && name == "lock.acquire" {
                    wait = Some(millis(rest.value()?, "wait")?);
                } else if is(option, "limit") {
                    let value = integer(rest.value()?)?;
                    if !(1..=MAX_LIMIT).contains(&value) {
                        return Err(Reply::error(format!(
                            "ERR invalid limit: must be between 1 and {MAX_LIMIT}"
                        )));
                    }
                    limit = value as u32;
                } else if is(option, "lease") {
                    lease = Some(leases::parse_id(rest.value()?)?);
                } else if is(option, "lockdelay") {
                    lock_delay = Some(leases::parse_lock_delay(rest.value()?)?);
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            LockCommand::Acquire {
                name: args[0].clone(),
                owner: args[1].clone(),
                ttl,
                wait,
                limit,
                lease,
                lock_delay,
            }
        }
        "lock.release" => LockCommand::Release {
            name: args[0].clone(),
            owner: args[1].clone(),
        },
        "lock.extend" => LockCommand::Extend {
            name: args[0].clone(),
            owner: args[1].clone(),
            ttl: millis(&args[2], "ttl")?,
        },
        "lock.cancel" => LockCommand::Cancel {
            name: args[0].clone(),
            owner: args[1].clone(),
        },
        "lock.info" => LockCommand::Info(args[0].clone()),
        other => unreachable!("{other} is not a lock command"),
    })
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Holder {
    owner: Bytes,
    token: u64,
    deadline: u64,
    lease: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
struct Waiter {
    owner: Bytes,
    ttl: u64,
    deadline: u64,
    request: RequestId,
    lease: Option<u64>,
    /// The handle of its parked request (empty if it came without PARK).
    wait_id: Bytes,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct LockState {
    limit: u32,
    /// The lock's own lock-delay (the largest LOCKDELAY an acquirer gave).
    lock_delay_ms: u64,
    /// No grant before this cluster time (a failed holder's lock-delay).
    delay_until: u64,
    holders: Vec<Holder>,
    waiters: std::collections::VecDeque<Waiter>,
}

fn check_waiter_ttl(ttl: u64) -> Result<(), StoreError> {
    // Parsing never lets a larger TTL in; granting adds it to the cluster
    // time.
    if ttl > crate::commands::MAX_EXPIRE_MS as u64 {
        return Err(StoreError::corrupt(
            "lock record",
            "waiter ttl out of range",
        ));
    }
    Ok(())
}

impl LockState {
    fn decode(body: &[u8]) -> Result<Self, StoreError> {
        let mut r = Reader::new(body, "lock record");
        let v2 = body.first() == Some(&STATE_V2);
        if v2 {
            r.u8()?;
        }
        let limit = r.u32()?;
        let (lock_delay_ms, delay_until) = if v2 { (r.u64()?, r.u64()?) } else { (0, 0) };
        let holders = (0..r.count(20)?)
            .map(|_| {
                Ok(Holder {
                    owner: r.bytes()?,
                    token: r.u64()?,
                    deadline: r.u64()?,
                    lease: if v2 { r.optional()? } else { None },
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let waiters = (0..r.count(44)?)
            .map(|_| {
                let owner = r.bytes()?;
                let ttl = r.u64()?;
                check_waiter_ttl(ttl)?;
                let deadline = r.u64()?;
                let request = RequestId {
                    origin: r.u64()?,
                    seq: r.u64()?,
                };
                let (lease, wait_id) = if v2 {
                    (r.optional()?, r.bytes()?)
                } else {
                    (None, Bytes::new())
                };
                Ok(Waiter {
                    owner,
                    ttl,
                    deadline,
                    request,
                    lease,
                    wait_id,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        r.finish()?;
        Ok(LockState {
            limit,
            lock_delay_ms,
            delay_until,
            holders,
            waiters,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_u8(STATE_V2);
        out.put_u32(self.limit);
        out.put_u64(self.lock_delay_ms);
        out.put_u64(self.delay_until);
        out.put_u32(self.holders.len() as u32);
        for holder in &self.holders {
            out.put_bytes(&holder.owner);
            out.put_u64(holder.token);
            out.put_u64(holder.deadline);
            out.put_optional(holder.lease);
        }
        out.put_u32(self.waiters.len() as u32);
        for waiter in &self.waiters {
            out.put_bytes(&waiter.owner);
            out.put_u64(waiter.ttl);
            out.put_u64(waiter.deadline);
            out.put_u64(waiter.request.origin);
            out.put_u64(waiter.request.seq);
            out.put_optional(waiter.lease);
            out.put_bytes(&waiter.wait_id);
        }
        out
    }

    /// A waiter leaves with nil (timed out, cancelled, its lease ended).
    fn dismiss(ctx: &mut Context<'_>, name: &[u8], waiter: &Waiter) -> Result<(), StoreError> {
        ctx.defer_reply(waiter.request, Reply::Nil);
        parking::forget(ctx, &waiter.wait_id);
        detach(ctx, name, &waiter.owner, waiter.lease)
    }

    /// Drops expired holders (they failed: the lock-delay starts), ends
    /// waits that ran out (nil), and grants free slots to waiters in FIFO
    /// order once the lock-delay has passed.
    fn settle(&mut self, ctx: &mut Context<'_>, name: &[u8]) -> Result<(), StoreError> {
        let ct = ctx.ct;
        let (expired, held): (Vec<Holder>, Vec<Holder>) = std::mem::take(&mut self.holders)
            .into_iter()
            .partition(|holder| holder.deadline <= ct);
        self.holders = held;
        for holder in expired {
            self.delay_until = self
                .delay_until
                .max(holder.deadline.saturating_add(self.lock_delay_ms));
            detach(ctx, name, &holder.owner, holder.lease)?;
        }
        let (timed_out, waiting): (Vec<Waiter>, Vec<Waiter>) = self
            .waiters
            .drain(..)
            .partition(|waiter| waiter.deadline <= ct);
        self.waiters = waiting.into();
        for waiter in timed_out {
            Self::dismiss(ctx, name, &waiter)?;
        }
        while self.holders.len() < self.limit as usize && ct >= self.delay_until {
            let Some(waiter) = self.waiters.pop_front() else {
                break;
            };
            let token = ctx.index;
            self.holders.push(Holder {
                owner: waiter.owner,
                token,
                deadline: ct + waiter.ttl,
                lease: waiter.lease,
            });
            parking::forget(ctx, &waiter.wait_id);
            ctx.defer_reply(waiter.request, Reply::Integer(token as i64));
        }
        Ok(())
    }

    fn next_deadline(&self, ct: u64) -> Option<u64> {
        let holders = self.holders.iter().map(|h| h.deadline);
        let waiters = self.waiters.iter().map(|w| w.deadline);
        let delay = (!self.waiters.is_empty() && self.delay_until > ct).then_some(self.delay_until);
        holders.chain(waiters).chain(delay).min()
    }

    fn is_empty(&self) -> bool {
        self.holders.is_empty() && self.waiters.is_empty()
    }
}

fn detach(
    ctx: &mut Context<'_>,
    name: &[u8],
    owner: &Bytes,
    lease: Option<u64>,
) -> Result<(), StoreError> {
    if let Some(lease) = lease {
        let item = Attachment::Lock {
            name: Bytes::copy_from_slice(name),
            owner: owner.clone(),
        };
        leases::detach(ctx, lease, &item)?;
    }
    Ok(())
}

/// Loads a lock; another type is WRONGTYPE.
fn load(
    ctx: &Context<'_>,
    name: &[u8],
) -> Result<Result<Option<(Record, LockState)>, Reply>, StoreError> {
    match ctx.record_any(name)? {
        None => Ok(Ok(None)),
        Some(record) if record.value_type == ValueType::Lock => {
            let state = LockState::decode(&record.body)?;
            Ok(Ok(Some((record, state))))
        }
        Some(record) if !record.is_live_at(ctx.ct) => Ok(Ok(None)),
        Some(_) => Ok(Err(Reply::wrong_type())),
    }
}

/// Writes a lock back, or removes it once nobody holds or waits. A lock
/// in its lock-delay with nobody waiting keeps no record: the delay only
/// matters to waiters, and a new acquirer then finds the lock free.
fn save(
    ctx: &mut Context<'_>,
    name: &[u8],
    existing: Option<Record>,
    state: &LockState,
) -> Result<(), StoreError> {
    let Some(deadline) = state.next_deadline(ctx.ct) else {
        if existing.is_some() {
            ctx.remove_own(name)?;
            ctx.notify(notify::GENERIC, "del", name)?;
        }
        return Ok(());
    };
    let newest_token = state.holders.iter().map(|h| h.token).max();
    let created = newest_token
        .or(existing.as_ref().map(|r| r.created))
        .unwrap_or(ctx.index);
    let record = Record {
        value_type: ValueType::Lock,
        created,
        modified: ctx.index,
        expire_at: Some(deadline),
        lease: None,
        body: Bytes::from(state.encode()),
    };
    ctx.store(name, record)?;
    ctx.notify(notify::MODULE, "lock", name)
}

/// Settles a lock whose deadline passed (from the leader's sweeps).
pub fn settle_expired(ctx: &mut Context<'_>, name: &[u8]) -> Result<(), StoreError> {
    if let Ok(Some((record, mut state))) = load(ctx, name)? {
        state.settle(ctx, name)?;
        save(ctx, name, Some(record), &state)?;
    }
    Ok(())
}

/// The lock is deleted or overwritten by another command: its waiters
/// get nil, its holders' and waiters' leases let go of it.
pub fn discard(ctx: &mut Context<'_>, name: &[u8], old: &Record) -> Result<(), StoreError> {
    let state = LockState::decode(&old.body)?;
    for holder in &state.holders {
        detach(ctx, name, &holder.owner, holder.lease)?;
    }
    for waiter in &state.waiters {
        LockState::dismiss(ctx, name, waiter)?;
    }
    Ok(())
}

/// PARK.CANCEL of a waiter: it leaves the queue with nil.
pub fn cancel_wait(ctx: &mut Context<'_>, name: &[u8], wait_id: &[u8]) -> Result<bool, StoreError> {
    let Ok(Some((record, mut state))) = load(ctx, name)? else {
        return Ok(false);
    };
    let Some(at) = state
        .waiters
        .iter()
        .position(|w| w.wait_id.as_ref() == wait_id)
    else {
        return Ok(false);
    };
    let waiter = state.waiters.remove(at).expect("position is in range");
    LockState::dismiss(ctx, name, &waiter)?;
    state.settle(ctx, name)?;
    save(ctx, name, Some(record), &state)?;
    Ok(true)
}

/// Lease `lease` ended: `owner` stops holding or waiting. On expiry
/// (`lock_delay` given) the lock then waits out the lock-delay.
pub fn lease_ended(
    ctx: &mut Context<'_>,
    name: &[u8],
    owner: &[u8],
    lease: u64,
    lock_delay: Option<u64>,
) -> Result<(), StoreError> {
    let Ok(Some((record, mut state))) = load(ctx, name)? else {
        return Ok(());
    };
    let before = state.holders.len();
    state
        .holders
        .retain(|h| !(h.owner.as_ref() == owner && h.lease == Some(lease)));
    if state.holders.len() < before {
        if let Some(delay) = lock_delay {
            let delay = delay.max(state.lock_delay_ms);
            state.delay_until = state.delay_until.max(ctx.ct.saturating_add(delay));
        }
    }
    let (gone, staying): (Vec<Waiter>, Vec<Waiter>) = state
        .waiters
        .drain(..)
        .partition(|w| w.owner.as_ref() == owner && w.lease == Some(lease));
    state.waiters = staying.into();
    for waiter in gone {
        ctx.defer_reply(waiter.request, Reply::Nil);
        parking::forget(ctx, &waiter.wait_id);
    }
    state.settle(ctx, name)?;
    save(ctx, name, Some(record), &state)
}

pub fn execute(ctx: &mut Context<'_>, command: LockCommand) -> Result<Reply, StoreError> {
    let name = match &command {
        LockCommand::Acquire { name, .. }
        | LockCommand::Release { name, .. }
        | LockCommand::Extend { name, .. }
        | LockCommand::Cancel { name, .. }
        | LockCommand::Info(name) => name.clone(),
    };
    let (record, mut state) = match load(ctx, &name)? {
        Err(reply) => return Ok(reply),
        Ok(Some((record, state))) => (Some(record), state),
        Ok(None) => (None, LockState::default()),
    };
    let before = state.clone();
    // The read path (index 0) settles only to report; it never writes.
    state.settle(ctx, &name)?;
    let reply = match command {
        LockCommand::Acquire {
            owner,
            ttl,
            wait,
            limit,
            lease,
            lock_delay,
            ..
        } => {
            if state.is_empty() {
                state.limit = limit;
            }
            if state.limit != limit {
                return Ok(Reply::error(format!(
                    "ERR lock has LIMIT {}, not {limit}",
                    state.limit
                )));
            }
            if let Some(lease) = lease {
                if let Err(reply) = leases::check_attachable(ctx, lease)? {
                    return Ok(reply);
                }
            }
            if let Some(delay) = lock_delay {
                state.lock_delay_ms = state.lock_delay_ms.max(delay);
            }
            let may_grant = ctx.ct >= state.delay_until;
            let mut holds_or_waits = true;
            let reply = if let Some(holder) = state.holders.iter_mut().find(|h| h.owner == owner) {
                // Acquiring again is idempotent: same token, TTL renewed.
                holder.deadline = ctx.ct + ttl;
                Reply::Integer(holder.token as i64)
            } else if may_grant
                && state.holders.len() < state.limit as usize
                && state.waiters.is_empty()
            {
                let token = ctx.index;
                state.holders.push(Holder {
                    owner: owner.clone(),
                    token,
                    deadline: ctx.ct + ttl,
                    lease,
                });
                Reply::Integer(token as i64)
            } else if let (Some(wait), Some(request)) = (wait, ctx.parkable_request()) {
                if state.waiters.iter().any(|w| w.owner == owner) {
                    return Ok(Reply::error(
                        "ERR this owner is already waiting for the lock",
                    ));
                }
                if state.waiters.len() >= MAX_WAITERS {
                    return Ok(Reply::error(format!(
                        "ERR lock already has {MAX_WAITERS} waiters"
                    )));
                }
                let wait_id = parking::park(ctx, ParkRef::Lock(name.clone()));
                state.waiters.push_back(Waiter {
                    owner: owner.clone(),
                    ttl,
                    deadline: ctx.ct + wait,
                    request,
                    lease,
                    wait_id,
                });
                Reply::Nil
            } else {
                holds_or_waits = false;
                Reply::Nil
            };
            if let (Some(lease), true) = (lease, holds_or_waits) {
                let item = Attachment::Lock {
                    name: name.clone(),
                    owner,
                };
                leases::attach(ctx, lease, item)?;
            }
            reply
        }
        LockCommand::Release { owner, .. } => {
            let released: Vec<Holder> = state
                .holders
                .iter()
                .filter(|h| h.owner == owner)
                .cloned()
                .collect();
            state.holders.retain(|h| h.owner != owner);
            for holder in &released {
                detach(ctx, &name, &holder.owner, holder.lease)?;
            }
            state.settle(ctx, &name)?;
            Reply::Integer(!released.is_empty() as i64)
        }
        LockCommand::Extend { owner, ttl, .. } => {
            match state.holders.iter_mut().find(|h| h.owner == owner) {
                Some(holder) => {
                    holder.deadline = ctx.ct + ttl;
                    Reply::Integer(1)
                }
                None => Reply::Integer(0),
            }
        }
        LockCommand::Cancel { owner, .. } => {
            let before_len = state.waiters.len() + state.holders.len();
            let (gone, staying): (Vec<Waiter>, Vec<Waiter>) =
                state.waiters.drain(..).partition(|w| w.owner == owner);
            state.waiters = staying.into();
            for waiter in &gone {
                LockState::dismiss(ctx, &name, waiter)?;
            }
            let released: Vec<Holder> = state
                .holders
                .iter()
                .filter(|h| h.owner == owner)
                .cloned()
                .collect();
            state.holders.retain(|h| h.owner != owner);
            for holder in &released {
                detach(ctx, &name, &holder.owner, holder.lease)?;
            }
            state.settle(ctx, &name)?;
            Reply::Integer((state.waiters.len() + state.holders.len() < before_len) as i64)
        }
        LockCommand::Info(_) => {
            if state.is_empty() {
                Reply::Nil
            } else {
                let holders = state
                    .holders
                    .iter()
                    .map(|h| {
                        Reply::Array(vec![
                            Reply::Bulk(h.owner.clone()),
                            Reply::Integer(h.token as i64),
                            Reply::Integer(h.deadline.saturating_sub(ctx.ct) as i64),
                        ])
                    })
                    .collect();
                let first = state.holders.first();
                Reply::Map(vec![
                    (
                        Reply::bulk("owner"),
                        first.map_or(Reply::Nil, |h| Reply::Bulk(h.owner.clone())),
                    ),
                    (
                        Reply::bulk("token"),
                        first.map_or(Reply::Nil, |h| Reply::Integer(h.token as i64)),
                    ),
                    (
                        Reply::bulk("ttl"),
                        first.map_or(Reply::Integer(-2), |h| {
                            Reply::Integer(h.deadline.saturating_sub(ctx.ct) as i64)
                        }),
                    ),
                    (Reply::bulk("limit"), Reply::Integer(state.limit as i64)),
                    (Reply::bulk("holders"), Reply::Array(holders)),
                    (
                        Reply::bulk("waiters"),
                        Reply::Integer(state.waiters.len() as i64),
                    ),
                    (
                        Reply::bulk("lock-delay"),
                        Reply::Integer(state.delay_until.saturating_sub(ctx.ct) as i64),
                    ),
                ])
            }
        }
    };
    if ctx.index != 0 && state != before {
        save(ctx, &name, record, &state)?;
    }
    Ok(reply)
}
