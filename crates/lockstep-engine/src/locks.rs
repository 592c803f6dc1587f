//! Native fair locks and counting semaphores with fencing tokens.
//!
//! A lock is one record (type `lock`) holding its holders (owner, token,
//! deadline), its FIFO queue of waiters and its LIMIT (1 for a mutex). A
//! token is the log index of the entry that granted it, so tokens of a name
//! strictly increase across all time and failovers, and `FENCE name`
//! returns the newest one. The record's deadline is its earliest holder or
//! waiter deadline: the leader's expiry entries then settle it (expired
//! holders leave, waiters whose wait ran out get nil, the queue advances).
//!
//! A waiter is the entry of its LOCK.ACQUIRE ... WAIT: that entry gets no
//! reply when applied ("parked"); the entry that later grants the lock or
//! ends the wait replies to it ("deferred" reply by request id). Nothing is
//! retried on the wire and nobody polls.

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::args::{integer, is, Args};
use crate::context::Context;
use crate::record::{Record, ValueType};
use crate::{Reply, RequestId};

/// Longest TTL or WAIT accepted, in ms (a year).
const MAX_MS: i64 = 365 * 24 * 3600 * 1000;
/// Waiters one lock may queue: a bound on the record's size.
pub const MAX_WAITERS: usize = 10_000;
/// Largest LIMIT of a semaphore.
const MAX_LIMIT: i64 = 10_000;

#[derive(Clone, Debug, PartialEq)]
pub enum LockCommand {
    Acquire {
        name: Bytes,
        owner: Bytes,
        ttl: u64,
        wait: Option<u64>,
        limit: u32,
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
}

#[derive(Clone, Debug, PartialEq)]
struct Waiter {
    owner: Bytes,
    ttl: u64,
    deadline: u64,
    request: RequestId,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct LockState {
    limit: u32,
    holders: Vec<Holder>,
    waiters: std::collections::VecDeque<Waiter>,
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u64(&mut self) -> Result<u64, StoreError> {
        let bytes = self.take(8)?;
        Ok(u64::from_be_bytes(bytes.try_into().expect("8 bytes")))
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes(bytes.try_into().expect("4 bytes")))
    }
    fn bytes(&mut self) -> Result<Bytes, StoreError> {
        let len = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }
    fn take(&mut self, len: usize) -> Result<&[u8], StoreError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.data.len());
        let end = end.ok_or_else(|| StoreError::corrupt("lock record", "truncated"))?;
        let slice = &self.data[self.at..end];
        self.at = end;
        Ok(slice)
    }
}

impl LockState {
    fn decode(body: &[u8]) -> Result<Self, StoreError> {
        let mut r = Reader { data: body, at: 0 };
        let limit = r.u32()?;
        let holders = (0..r.u32()?)
            .map(|_| {
                Ok(Holder {
                    owner: r.bytes()?,
                    token: r.u64()?,
                    deadline: r.u64()?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let waiters = (0..r.u32()?)
            .map(|_| {
                let owner = r.bytes()?;
                let ttl = r.u64()?;
                // Parsing never lets a larger TTL in; granting adds it to
                // the cluster time.
                if ttl > crate::commands::MAX_EXPIRE_MS as u64 {
                    return Err(StoreError::corrupt(
                        "lock record",
                        "waiter ttl out of range",
                    ));
                }
                Ok(Waiter {
                    owner,
                    ttl,
                    deadline: r.u64()?,
                    request: RequestId {
                        origin: r.u64()?,
                        seq: r.u64()?,
                    },
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(LockState {
            limit,
            holders,
            waiters,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let put_bytes = |out: &mut Vec<u8>, data: &[u8]| {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(data);
        };
        out.extend_from_slice(&self.limit.to_be_bytes());
        out.extend_from_slice(&(self.holders.len() as u32).to_be_bytes());
        for holder in &self.holders {
            put_bytes(&mut out, &holder.owner);
            out.extend_from_slice(&holder.token.to_be_bytes());
            out.extend_from_slice(&holder.deadline.to_be_bytes());
        }
        out.extend_from_slice(&(self.waiters.len() as u32).to_be_bytes());
        for waiter in &self.waiters {
            put_bytes(&mut out, &waiter.owner);
            out.extend_from_slice(&waiter.ttl.to_be_bytes());
            out.extend_from_slice(&waiter.deadline.to_be_bytes());
            out.extend_from_slice(&waiter.request.origin.to_be_bytes());
            out.extend_from_slice(&waiter.request.seq.to_be_bytes());
        }
        out
    }

    /// Drops expired holders, ends waits that ran out (nil), and grants
    /// free slots to waiters in FIFO order.
    fn settle(&mut self, ctx: &mut Context<'_>) {
        let ct = ctx.ct;
        self.holders.retain(|holder| holder.deadline > ct);
        let (timed_out, waiting): (Vec<Waiter>, Vec<Waiter>) = self
            .waiters
            .drain(..)
            .partition(|waiter| waiter.deadline <= ct);
        self.waiters = waiting.into();
        for waiter in timed_out {
            ctx.defer_reply(waiter.request, Reply::Nil);
        }
        while self.holders.len() < self.limit as usize {
            let Some(waiter) = self.waiters.pop_front() else {
                break;
            };
            let token = ctx.index;
            self.holders.push(Holder {
                owner: waiter.owner,
                token,
                deadline: ct + waiter.ttl,
            });
            ctx.defer_reply(waiter.request, Reply::Integer(token as i64));
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        let holders = self.holders.iter().map(|h| h.deadline);
        let waiters = self.waiters.iter().map(|w| w.deadline);
        holders.chain(waiters).min()
    }
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

/// Writes a lock back, or removes it once nobody holds or waits.
fn save(
    ctx: &mut Context<'_>,
    name: &[u8],
    existing: Option<Record>,
    state: &LockState,
) -> Result<(), StoreError> {
    let Some(deadline) = state.next_deadline() else {
        if existing.is_some() {
            ctx.remove(name)?;
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
        body: Bytes::from(state.encode()),
    };
    ctx.store(name, record)
}

/// Settles a lock whose deadline passed (from the leader's expiry entries).
pub fn settle_expired(ctx: &mut Context<'_>, name: &[u8]) -> Result<(), StoreError> {
    if let Ok(Some((record, mut state))) = load(ctx, name)? {
        state.settle(ctx);
        save(ctx, name, Some(record), &state)?;
    }
    Ok(())
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
    state.settle(ctx);
    let reply = match command {
        LockCommand::Acquire {
            owner,
            ttl,
            wait,
            limit,
            ..
        } => {
            if state.holders.is_empty() && state.waiters.is_empty() {
                state.limit = limit;
            }
            if state.limit != limit {
                return Ok(Reply::error(format!(
                    "ERR lock has LIMIT {}, not {limit}",
                    state.limit
                )));
            }
            if let Some(holder) = state.holders.iter_mut().find(|h| h.owner == owner) {
                // Acquiring again is idempotent: same token, TTL renewed.
                holder.deadline = ctx.ct + ttl;
                Reply::Integer(holder.token as i64)
            } else if state.holders.len() < state.limit as usize && state.waiters.is_empty() {
                let token = ctx.index;
                state.holders.push(Holder {
                    owner,
                    token,
                    deadline: ctx.ct + ttl,
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
                state.waiters.push_back(Waiter {
                    owner,
                    ttl,
                    deadline: ctx.ct + wait,
                    request,
                });
                ctx.park();
                Reply::Nil
            } else {
                Reply::Nil
            }
        }
        LockCommand::Release { owner, .. } => {
            let held = state.holders.len();
            state.holders.retain(|h| h.owner != owner);
            let released = state.holders.len() < held;
            state.settle(ctx);
            Reply::Integer(released as i64)
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
            let mut cancelled = Vec::new();
            state.waiters.retain(|w| {
                let keep = w.owner != owner;
                if !keep {
                    cancelled.push(w.request);
                }
                keep
            });
            for request in cancelled {
                ctx.defer_reply(request, Reply::Nil);
            }
            state.holders.retain(|h| h.owner != owner);
            state.settle(ctx);
            Reply::Integer((state.waiters.len() + state.holders.len() < before_len) as i64)
        }
        LockCommand::Info(_) => {
            if state.holders.is_empty() && state.waiters.is_empty() {
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
                ])
            }
        }
    };
    // The read path (index 0) settles only to report; it never writes.
    if ctx.index != 0 && state != before {
        save(ctx, &name, record, &state)?;
    }
    Ok(reply)
}
