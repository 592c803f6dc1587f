//! BLPOP, BRPOP, BLMOVE and BRPOPLPUSH.
//!
//! A blocking pop that finds its lists empty is *parked* (see `parking`):
//! its waiter is stored under its wait id (`B` id -> waiter) and queued
//! under each of its keys (`w` key -> the key's queue of (index, wait id),
//! in log order). The entry whose push makes a list non-empty serves that
//! key's waiters in FIFO order and replies to them by request id. The
//! server sends `PARK.CANCEL id` when the timeout passes or the client
//! leaves; whichever entry applies first decides the outcome, on every
//! node alike.
//!
//! Every lookup here is a point read: a queue is one record, so waiters
//! served or cancelled long ago leave nothing that a later push or cancel
//! has to step over.

use bytes::Bytes;
use lockstep_store::StoreError;

use super::stored::{load, save, Failure, List, Outcome};
use super::{bulk, side, Side};
use crate::codec::{Reader, Writer};
use crate::context::Context;
use crate::notify;
use crate::parking::{self, ParkRef};
use crate::{Reply, RequestId};

const QUEUE: u8 = b'w';
/// Clients one key may have blocked on it: bounds the queue record.
pub const MAX_WAITERS_PER_KEY: usize = 10_000;

#[derive(Clone, Debug, PartialEq)]
pub struct BlockingPop {
    pub keys: Vec<Bytes>,
    pub from: Side,
    /// BLMOVE / BRPOPLPUSH: where the item goes.
    pub to: Option<(Bytes, Side)>,
}

/// Parses a blocking pop; returns it and its timeout in ms (0: forever).
pub fn parse(name: &str, args: &[Bytes]) -> Result<(BlockingPop, u64), Reply> {
    let (pop, timeout) = match name {
        "blpop" | "brpop" => (
            BlockingPop {
                keys: args[..args.len() - 1].to_vec(),
                from: if name == "blpop" {
                    Side::Left
                } else {
                    Side::Right
                },
                to: None,
            },
            &args[args.len() - 1],
        ),
        "blmove" => (
            BlockingPop {
                keys: vec![args[0].clone()],
                from: side(&args[2])?,
                to: Some((args[1].clone(), side(&args[3])?)),
            },
            &args[4],
        ),
        "brpoplpush" => (
            BlockingPop {
                keys: vec![args[0].clone()],
                from: Side::Right,
                to: Some((args[1].clone(), Side::Left)),
            },
            &args[2],
        ),
        other => unreachable!("{other} is not a blocking pop"),
    };
    Ok((pop, timeout_ms(timeout)?))
}

/// Redis's blocking timeout: seconds, decimals allowed, 0 = forever.
pub fn timeout_ms(arg: &[u8]) -> Result<u64, Reply> {
    let seconds: f64 = std::str::from_utf8(arg)
        .ok()
        .and_then(|text| text.parse().ok())
        .filter(|value: &f64| value.is_finite())
        .ok_or_else(|| Reply::error("ERR timeout is not a float or out of range"))?;
    if seconds < 0.0 {
        return Err(Reply::error("ERR timeout is negative"));
    }
    Ok((seconds * 1000.0).round() as u64)
}

fn queue_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(QUEUE);
    out.extend_from_slice(key);
    out
}

/// One key's blocked clients in arrival order: (entry index, wait id).
#[derive(Default)]
struct Queue(std::collections::VecDeque<(u64, Bytes)>);

impl Queue {
    fn load(ctx: &Context<'_>, key: &[u8]) -> Result<Queue, StoreError> {
        let Some(data) = ctx.raw_get(&queue_key(key))? else {
            return Ok(Queue::default());
        };
        let mut reader = Reader::new(&data, "blocked clients");
        let count = reader.count(12)?;
        let mut queue = std::collections::VecDeque::with_capacity(count);
        for _ in 0..count {
            let index = reader.u64()?;
            queue.push_back((index, reader.bytes()?));
        }
        reader.finish()?;
        Ok(Queue(queue))
    }

    fn save(&self, ctx: &mut Context<'_>, key: &[u8]) {
        if self.0.is_empty() {
            ctx.raw_delete(queue_key(key));
            return;
        }
        let mut out = Vec::with_capacity(4 + self.0.len() * 24);
        out.put_u32(self.0.len() as u32);
        for (index, id) in &self.0 {
            out.put_u64(*index);
            out.put_bytes(id);
        }
        ctx.raw_put(queue_key(key), out);
    }
}

/// A parked waiter: who to answer and what it asked for.
struct Waiter {
    id: Bytes,
    request: RequestId,
    index: u64,
    pop: BlockingPop,
}

impl Waiter {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_bytes(&self.id);
        out.put_u64(self.request.origin);
        out.put_u64(self.request.seq);
        out.put_u64(self.index);
        out.put_u8(self.pop.from as u8);
        match &self.pop.to {
            Some((destination, to)) => {
                out.put_u8(1);
                out.put_bytes(destination);
                out.put_u8(*to as u8);
            }
            None => out.put_u8(0),
        }
        out.put_u32(self.pop.keys.len() as u32);
        for key in &self.pop.keys {
            out.put_bytes(key);
        }
        out
    }

    fn decode(data: &[u8]) -> Result<Waiter, StoreError> {
        let mut reader = Reader::new(data, "blocked waiter");
        let id = reader.bytes()?;
        let origin = reader.u64()?;
        let seq = reader.u64()?;
        let index = reader.u64()?;
        let side_of = |byte: u8| {
            if byte == Side::Left as u8 {
                Side::Left
            } else {
                Side::Right
            }
        };
        let from = side_of(reader.u8()?);
        let to = if reader.u8()? == 1 {
            let destination = reader.bytes()?;
            Some((destination, side_of(reader.u8()?)))
        } else {
            None
        };
        let count = reader.count(4)?;
        let keys = (0..count)
            .map(|_| reader.bytes())
            .collect::<Result<Vec<_>, _>>()?;
        reader.finish()?;
        Ok(Waiter {
            id,
            request: RequestId { origin, seq },
            index,
            pop: BlockingPop { keys, from, to },
        })
    }

    fn timed_out_reply(&self) -> Reply {
        if self.pop.to.is_some() {
            Reply::Nil
        } else {
            Reply::NilArray
        }
    }
}

/// Pops for `pop` if one of its lists has an item.
fn try_pop(ctx: &mut Context<'_>, pop: &BlockingPop) -> Outcome<Option<Reply>> {
    for key in &pop.keys {
        let (record, list) = load::<List>(ctx, key)?;
        if let Some((destination, _)) = &pop.to {
            load::<List>(ctx, destination)?;
        }
        if list.0.is_empty() {
            continue;
        }
        return Ok(Some(take(ctx, key, record, list, pop)?));
    }
    Ok(None)
}

/// Pops one item of the non-empty `list` at `key` for `pop`, as the
/// command without B would: BLMOVE moves it as LMOVE does (and serves the
/// destination's waiters), BLPOP answers the key and the item.
fn take(
    ctx: &mut Context<'_>,
    key: &Bytes,
    record: Option<crate::record::Record>,
    mut list: List,
    pop: &BlockingPop,
) -> Outcome<Reply> {
    if let Some((destination, to)) = &pop.to {
        return super::lists::list_move(ctx, key, destination, pop.from, *to);
    }
    let item = super::pop(&mut list.0, pop.from).expect("a non-empty list");
    let event = (notify::LIST, super::lists::side_event(pop.from, "pop"));
    save(ctx, key, record, &list, event)?;
    Ok(Reply::Array(vec![bulk(key), bulk(&item)]))
}

/// A blocking pop as a command: pops at once if it can; otherwise parks
/// (only a top-level BLOCK.WAIT can) or answers nil.
pub fn execute(ctx: &mut Context<'_>, pop: BlockingPop) -> Outcome<Reply> {
    let id = ctx.wait_id().cloned();
    if let Some(reply) = try_pop(ctx, &pop)? {
        return Ok(reply);
    }
    let (Some(id), Some(request)) = (id, ctx.parkable_request()) else {
        return Ok(if pop.to.is_some() {
            Reply::Nil
        } else {
            Reply::NilArray
        });
    };
    if parking::lookup(ctx, &id)?.is_some() {
        return Ok(Reply::error("ERR this wait id is already in use"));
    }
    let mut queues = Vec::with_capacity(pop.keys.len());
    for key in &pop.keys {
        let queue = Queue::load(ctx, key)?;
        if queue.0.len() >= MAX_WAITERS_PER_KEY {
            return Ok(Reply::error(format!(
                "ERR too many clients blocked on this key (at most {MAX_WAITERS_PER_KEY})"
            )));
        }
        queues.push(queue);
    }
    let waiter = Waiter {
        id: id.clone(),
        request,
        index: ctx.index,
        pop,
    };
    for (key, mut queue) in waiter.pop.keys.iter().zip(queues) {
        // A key named twice is queued once.
        if queue
            .0
            .back()
            .is_none_or(|(index, _)| *index != waiter.index)
        {
            queue.0.push_back((waiter.index, id.clone()));
        }
        queue.save(ctx, key);
    }
    parking::register(ctx, &id, ParkRef::Pop(Bytes::from(waiter.encode())));
    ctx.park();
    Ok(Reply::Nil)
}

/// Takes `waiter` out of every queue it is in and forgets its wait id.
fn unregister(ctx: &mut Context<'_>, waiter: &Waiter) -> Result<(), StoreError> {
    for key in &waiter.pop.keys {
        let mut queue = Queue::load(ctx, key)?;
        queue.0.retain(|(index, _)| *index != waiter.index);
        queue.save(ctx, key);
    }
    parking::forget(ctx, &waiter.id);
    Ok(())
}

fn load_waiter(ctx: &Context<'_>, id: &[u8]) -> Result<Option<Waiter>, StoreError> {
    match parking::lookup(ctx, id)? {
        Some(ParkRef::Pop(waiter)) => Ok(Some(Waiter::decode(&waiter)?)),
        _ => Ok(None),
    }
}

/// Serves `key`'s waiters in FIFO order while the list has items.
pub fn serve(ctx: &mut Context<'_>, key: &Bytes) -> Outcome<()> {
    loop {
        let queue = Queue::load(ctx, key)?;
        let Some((_, id)) = queue.0.front().cloned() else {
            return Ok(());
        };
        let Some(waiter) = load_waiter(ctx, &id)? else {
            return Err(Failure::Store(StoreError::corrupt(
                "blocked waiter",
                "queued wait id without a waiter",
            )));
        };
        let (record, list) = load::<List>(ctx, key)?;
        if list.0.is_empty() {
            return Ok(());
        }
        unregister(ctx, &waiter)?;
        let reply = take(ctx, key, record, list, &waiter.pop)?;
        ctx.defer_reply(waiter.request, reply);
    }
}

/// Ends the wait of the pop parked under `id` with its timeout reply.
pub fn cancel(ctx: &mut Context<'_>, id: &[u8], waiter: &[u8]) -> Result<bool, StoreError> {
    let waiter = Waiter::decode(waiter)?;
    if waiter.id.as_ref() != id {
        return Err(StoreError::corrupt(
            "blocked waiter",
            "filed under another id",
        ));
    }
    unregister(ctx, &waiter)?;
    ctx.defer_reply(waiter.request, waiter.timed_out_reply());
    Ok(true)
}

pub fn failure_reply(outcome: Outcome<Reply>) -> Result<Reply, StoreError> {
    match outcome {
        Ok(reply) | Err(Failure::Reply(reply)) => Ok(reply),
        Err(Failure::Store(err)) => Err(err),
    }
}
