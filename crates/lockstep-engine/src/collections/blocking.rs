//! BLPOP, BRPOP, BLMOVE and BRPOPLPUSH.
//!
//! A blocking pop that finds its lists empty is *parked*: its waiter is
//! stored under its wait id (`B` id -> waiter) and queued under each of
//! its keys (`w` key -> the key's queue of (index, wait id), in log
//! order). The entry whose push makes a list non-empty serves that key's
//! waiters in FIFO order and replies to them by request id. The server
//! gives each wait an id and sends `BLOCK.CANCEL id` when the timeout
//! passes or the client leaves; whichever entry applies first decides the
//! outcome, on every node alike.
//!
//! Every lookup here is a point read: a queue is one record, so waiters
//! served or cancelled long ago leave nothing that a later push or cancel
//! has to step over.

use bytes::Bytes;
use lockstep_store::StoreError;

use super::stored::{load, save, Failure, List, Outcome};
use super::{bulk, pop, side, Side};
use crate::context::Context;
use crate::{Reply, RequestId};

const QUEUE: u8 = b'w';
const WAIT_ID: u8 = b'B';
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
        let mut cursor = Cursor { data: &data, at: 0 };
        let count = u32::from_be_bytes(cursor.take(4)?.try_into().expect("4 bytes"));
        let mut queue = std::collections::VecDeque::with_capacity(count.min(1024) as usize);
        for _ in 0..count {
            let index = cursor.word()?;
            queue.push_back((index, cursor.text()?));
        }
        Ok(Queue(queue))
    }

    fn save(&self, ctx: &mut Context<'_>, key: &[u8]) {
        if self.0.is_empty() {
            ctx.raw_delete(queue_key(key));
            return;
        }
        let mut out = Vec::with_capacity(4 + self.0.len() * 24);
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (index, id) in &self.0 {
            out.extend_from_slice(&index.to_be_bytes());
            put(&mut out, id);
        }
        ctx.raw_put(queue_key(key), out);
    }
}

fn wait_id_key(id: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(id.len() + 1);
    out.push(WAIT_ID);
    out.extend_from_slice(id);
    out
}

/// A parked waiter: who to answer and what it asked for.
struct Waiter {
    id: Bytes,
    request: RequestId,
    index: u64,
    pop: BlockingPop,
}

struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], StoreError> {
        let slice = self
            .data
            .get(self.at..self.at + len)
            .ok_or_else(|| StoreError::Corrupt {
                what: "blocked waiter",
                detail: "truncated".into(),
            })?;
        self.at += len;
        Ok(slice)
    }

    fn word(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn text(&mut self) -> Result<Bytes, StoreError> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }
}

fn put(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

impl Waiter {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, &self.id);
        out.extend_from_slice(&self.request.origin.to_be_bytes());
        out.extend_from_slice(&self.request.seq.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.push(self.pop.from as u8);
        match &self.pop.to {
            Some((destination, to)) => {
                out.push(1);
                put(&mut out, destination);
                out.push(*to as u8);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(self.pop.keys.len() as u32).to_be_bytes());
        for key in &self.pop.keys {
            put(&mut out, key);
        }
        out
    }

    fn decode(data: &[u8]) -> Result<Waiter, StoreError> {
        let mut cursor = Cursor { data, at: 0 };
        let id = cursor.text()?;
        let origin = cursor.word()?;
        let seq = cursor.word()?;
        let index = cursor.word()?;
        let side_of = |byte: u8| {
            if byte == Side::Left as u8 {
                Side::Left
            } else {
                Side::Right
            }
        };
        let from = side_of(cursor.take(1)?[0]);
        let to = if cursor.take(1)?[0] == 1 {
            let destination = cursor.text()?;
            Some((destination, side_of(cursor.take(1)?[0])))
        } else {
            None
        };
        let count = u32::from_be_bytes(cursor.take(4)?.try_into().expect("4 bytes"));
        let keys = (0..count)
            .map(|_| cursor.text())
            .collect::<Result<Vec<_>, _>>()?;
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
        let (record, mut list) = load::<List>(ctx, key)?;
        if let Some((destination, _)) = &pop.to {
            load::<List>(ctx, destination)?;
        }
        let Some(item) = super::pop(&mut list.0, pop.from) else {
            continue;
        };
        save(ctx, key, record, &list)?;
        return Ok(Some(match &pop.to {
            Some((destination, to)) => {
                push(ctx, destination, *to, item.clone())?;
                bulk(&item)
            }
            None => Reply::Array(vec![bulk(key), bulk(&item)]),
        }));
    }
    Ok(None)
}

fn push(ctx: &mut Context<'_>, key: &Bytes, to: Side, item: Bytes) -> Outcome<()> {
    let (record, mut list) = load::<List>(ctx, key)?;
    match to {
        Side::Left => list.0.push_front(item),
        Side::Right => list.0.push_back(item),
    }
    save(ctx, key, record, &list)?;
    serve(ctx, key)
}

/// A blocking pop as a command: pops at once if it can; otherwise parks
/// (only a top-level BLOCK.WAIT can) or answers nil.
pub fn execute(ctx: &mut Context<'_>, id: Option<Bytes>, pop: BlockingPop) -> Outcome<Reply> {
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
    if ctx.raw_get(&wait_id_key(&id))?.is_some() {
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
    ctx.raw_put(wait_id_key(&id), waiter.encode());
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
    ctx.raw_delete(wait_id_key(&waiter.id));
    Ok(())
}

fn load_waiter(ctx: &Context<'_>, id: &[u8]) -> Result<Option<Waiter>, StoreError> {
    ctx.raw_get(&wait_id_key(id))?
        .map(|data| Waiter::decode(&data))
        .transpose()
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
        let (record, mut list) = load::<List>(ctx, key)?;
        let Some(item) = pop(&mut list.0, waiter.pop.from) else {
            return Ok(());
        };
        save(ctx, key, record, &list)?;
        unregister(ctx, &waiter)?;
        let reply = match &waiter.pop.to {
            Some((destination, to)) => {
                push(ctx, destination, *to, item.clone())?;
                bulk(&item)
            }
            None => Reply::Array(vec![bulk(key), bulk(&item)]),
        };
        ctx.defer_reply(waiter.request, reply);
    }
}

/// BLOCK.CANCEL id: ends a wait with its timeout reply (nil).
pub fn cancel(ctx: &mut Context<'_>, id: &[u8]) -> Result<Reply, StoreError> {
    let Some(waiter) = load_waiter(ctx, id)? else {
        return Ok(Reply::Integer(0));
    };
    unregister(ctx, &waiter)?;
    ctx.defer_reply(waiter.request, waiter.timed_out_reply());
    Ok(Reply::Integer(1))
}

pub fn failure_reply(outcome: Outcome<Reply>) -> Result<Reply, StoreError> {
    match outcome {
        Ok(reply) | Err(Failure::Reply(reply)) => Ok(reply),
        Err(Failure::Store(err)) => Err(err),
    }
}

/// The wait id and blocking pop of `BLOCK.WAIT id <blocking command...>`.
pub fn parse_wait(args: &[Bytes]) -> Result<(Bytes, BlockingPop), Reply> {
    let id = args[0].clone();
    let inner = &args[1..];
    let name = String::from_utf8_lossy(&inner[0]).to_ascii_lowercase();
    let arity_ok = match name.as_str() {
        "blpop" | "brpop" => inner.len() >= 3,
        "blmove" => inner.len() == 6,
        "brpoplpush" => inner.len() == 4,
        _ => {
            return Err(Reply::error(
                "ERR BLOCK.WAIT wraps BLPOP, BRPOP, BLMOVE or BRPOPLPUSH",
            ))
        }
    };
    if !arity_ok {
        return Err(Reply::wrong_arity(&name));
    }
    Ok((id, parse(&name, &inner[1..])?.0))
}
