//! Hashes, lists, sets and sorted sets with Redis's semantics and errors.
//!
//! A command is validated completely by [`parse`] (arity, numbers, options)
//! before it reaches the log; [`execute`] then reads the same arguments.

pub mod blocking;
mod stored;

use std::collections::VecDeque;

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::args::{integer, is, parse_i64};
use crate::context::Context;
use crate::Reply;
use stored::{load, save, Failure, Hash, List, Outcome, Set, SortedSet};

#[derive(Clone, Debug, PartialEq)]
pub struct CollectionCommand {
    name: &'static str,
    args: Vec<Bytes>,
}

pub const NAMES: &[&str] = &[
    "hset",
    "hmset",
    "hsetnx",
    "hget",
    "hmget",
    "hdel",
    "hexists",
    "hincrby",
    "hgetall",
    "hkeys",
    "hvals",
    "hlen",
    "lpush",
    "rpush",
    "lpushx",
    "rpushx",
    "lpop",
    "rpop",
    "llen",
    "lindex",
    "lrange",
    "lrem",
    "lset",
    "ltrim",
    "lmove",
    "rpoplpush",
    "sadd",
    "srem",
    "smembers",
    "sismember",
    "smismember",
    "scard",
    "zadd",
    "zrem",
    "zscore",
    "zincrby",
    "zcard",
    "zrank",
    "zrevrank",
    "zrange",
    "zrangebyscore",
    "zcount",
];

pub fn parse(name: &'static str, args: &[Bytes]) -> Result<CollectionCommand, Reply> {
    let arity = || Reply::wrong_arity(name);
    match name {
        "hset" | "hmset" if args.len().is_multiple_of(2) => return Err(arity()),
        "hincrby" => {
            integer(&args[2])?;
        }
        "lpop" | "rpop" => match args.len() {
            1 => {}
            2 => {
                let count = integer(&args[1])?;
                if count < 0 {
                    return Err(Reply::error("ERR value is out of range, must be positive"));
                }
            }
            _ => return Err(Reply::syntax_error()),
        },
        "lindex" => {
            integer(&args[1])?;
        }
        "lrange" | "ltrim" => {
            integer(&args[1])?;
            integer(&args[2])?;
        }
        "lrem" | "lset" => {
            integer(&args[1])?;
        }
        "lmove" => {
            side(&args[2])?;
            side(&args[3])?;
        }
        "zadd" => {
            zadd_options(args)?;
        }
        "zincrby" => {
            score(&args[1])?;
        }
        "zrank" | "zrevrank" => match args.len() {
            2 => {}
            3 if is(&args[2], "withscore") => {}
            _ => return Err(Reply::syntax_error()),
        },
        "zrange" => {
            zrange_options(args, false)?;
        }
        "zrangebyscore" => {
            zrange_options(args, true)?;
        }
        "zcount" => {
            bound(&args[1])?;
            bound(&args[2])?;
        }
        _ => {}
    }
    Ok(CollectionCommand {
        name,
        args: args.to_vec(),
    })
}

pub fn execute(ctx: &mut Context<'_>, command: CollectionCommand) -> Result<Reply, StoreError> {
    let args = &command.args;
    let outcome = match command.name {
        "hset" | "hmset" | "hsetnx" | "hget" | "hmget" | "hdel" | "hexists" | "hincrby"
        | "hgetall" | "hkeys" | "hvals" | "hlen" => hash(ctx, command.name, args),
        "sadd" | "srem" | "smembers" | "sismember" | "smismember" | "scard" => {
            set(ctx, command.name, args)
        }
        name if name.starts_with('z') => sorted_set(ctx, name, args),
        name => list(ctx, name, args),
    };
    match outcome {
        Ok(reply) | Err(Failure::Reply(reply)) => Ok(reply),
        Err(Failure::Store(err)) => Err(err),
    }
}

fn bulk(data: &Bytes) -> Reply {
    Reply::Bulk(data.clone())
}

fn hash(ctx: &mut Context<'_>, name: &str, args: &[Bytes]) -> Outcome<Reply> {
    let key = &args[0];
    let (record, mut hash) = load::<Hash>(ctx, key)?;
    let map = &mut hash.0;
    let reply = match name {
        "hset" | "hmset" => {
            let mut added = 0;
            for pair in args[1..].chunks(2) {
                added += map.insert(pair[0].clone(), pair[1].clone()).is_none() as i64;
            }
            save(ctx, key, record, &hash)?;
            return Ok(if name == "hset" {
                Reply::Integer(added)
            } else {
                Reply::ok()
            });
        }
        "hsetnx" => {
            if map.contains_key(&args[1]) {
                return Ok(Reply::Integer(0));
            }
            map.insert(args[1].clone(), args[2].clone());
            save(ctx, key, record, &hash)?;
            return Ok(Reply::Integer(1));
        }
        "hdel" => {
            let removed = args[1..]
                .iter()
                .filter(|f| map.remove(*f).is_some())
                .count();
            if removed > 0 {
                save(ctx, key, record, &hash)?;
            }
            return Ok(Reply::Integer(removed as i64));
        }
        "hincrby" => {
            let by = integer(&args[2])?;
            let current = match map.get(&args[1]) {
                None => 0,
                Some(value) => parse_i64(value)
                    .ok_or_else(|| Reply::error("ERR hash value is not an integer"))?,
            };
            let next = current
                .checked_add(by)
                .ok_or_else(|| Reply::error("ERR increment or decrement would overflow"))?;
            map.insert(args[1].clone(), Bytes::from(next.to_string()));
            save(ctx, key, record, &hash)?;
            return Ok(Reply::Integer(next));
        }
        "hget" => map.get(&args[1]).map_or(Reply::Nil, bulk),
        "hmget" => Reply::Array(
            args[1..]
                .iter()
                .map(|f| map.get(f).map_or(Reply::Nil, bulk))
                .collect(),
        ),
        "hexists" => Reply::Integer(map.contains_key(&args[1]) as i64),
        "hgetall" => Reply::Map(map.iter().map(|(f, v)| (bulk(f), bulk(v))).collect()),
        "hkeys" => Reply::Array(map.keys().map(bulk).collect()),
        "hvals" => Reply::Array(map.values().map(bulk).collect()),
        "hlen" => Reply::Integer(map.len() as i64),
        other => unreachable!("{other} is not a hash command"),
    };
    Ok(reply)
}

fn set(ctx: &mut Context<'_>, name: &str, args: &[Bytes]) -> Outcome<Reply> {
    let key = &args[0];
    let (record, mut set) = load::<Set>(ctx, key)?;
    Ok(match name {
        "sadd" => {
            let added = args[1..]
                .iter()
                .filter(|m| set.0.insert((*m).clone()))
                .count();
            if added > 0 {
                save(ctx, key, record, &set)?;
            }
            Reply::Integer(added as i64)
        }
        "srem" => {
            let removed = args[1..].iter().filter(|m| set.0.remove(*m)).count();
            if removed > 0 {
                save(ctx, key, record, &set)?;
            }
            Reply::Integer(removed as i64)
        }
        "smembers" => Reply::Array(set.0.iter().map(bulk).collect()),
        "sismember" => Reply::Integer(set.0.contains(&args[1]) as i64),
        "smismember" => Reply::Array(
            args[1..]
                .iter()
                .map(|m| Reply::Integer(set.0.contains(m) as i64))
                .collect(),
        ),
        "scard" => Reply::Integer(set.0.len() as i64),
        other => unreachable!("{other} is not a set command"),
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Side {
    Left,
    Right,
}

fn side(arg: &[u8]) -> Result<Side, Reply> {
    if is(arg, "left") {
        Ok(Side::Left)
    } else if is(arg, "right") {
        Ok(Side::Right)
    } else {
        Err(Reply::syntax_error())
    }
}

/// Redis's index rules: negative counts from the end; the range is clamped.
fn range(len: usize, start: i64, stop: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len).then_some((start as usize, stop as usize))
}

fn pop(list: &mut VecDeque<Bytes>, from: Side) -> Option<Bytes> {
    match from {
        Side::Left => list.pop_front(),
        Side::Right => list.pop_back(),
    }
}

fn list(ctx: &mut Context<'_>, name: &str, args: &[Bytes]) -> Outcome<Reply> {
    let key = &args[0];
    if name == "lmove" || name == "rpoplpush" {
        let (from, to) = if name == "lmove" {
            (side(&args[2])?, side(&args[3])?)
        } else {
            (Side::Right, Side::Left)
        };
        return list_move(ctx, key, &args[1], from, to);
    }
    let (record, mut list) = load::<List>(ctx, key)?;
    let items = &mut list.0;
    let reply = match name {
        "lpush" | "rpush" | "lpushx" | "rpushx" => {
            if name.ends_with('x') && record.is_none() {
                return Ok(Reply::Integer(0));
            }
            for item in &args[1..] {
                if name.starts_with('l') {
                    items.push_front(item.clone());
                } else {
                    items.push_back(item.clone());
                }
            }
            let len = items.len() as i64;
            save(ctx, key, record, &list)?;
            // Blocked clients are served after the push, as in Redis.
            blocking::serve(ctx, key)?;
            return Ok(Reply::Integer(len));
        }
        "lpop" | "rpop" => {
            let from = if name == "lpop" {
                Side::Left
            } else {
                Side::Right
            };
            let Some(count) = args.get(1) else {
                let popped = pop(items, from);
                save(ctx, key, record, &list)?;
                return Ok(popped.as_ref().map_or(Reply::Nil, bulk));
            };
            if record.is_none() {
                return Ok(Reply::NilArray);
            }
            let count = integer(count)? as usize;
            let popped: Vec<Reply> = (0..count)
                .map_while(|_| pop(items, from))
                .map(|item| bulk(&item))
                .collect();
            save(ctx, key, record, &list)?;
            return Ok(Reply::Array(popped));
        }
        "lrem" => {
            let count = integer(&args[1])?;
            let target = &args[2];
            let limit = if count == 0 {
                usize::MAX
            } else {
                count.unsigned_abs() as usize
            };
            let positions: Vec<usize> = if count >= 0 {
                items
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| *v == target)
                    .map(|(i, _)| i)
                    .take(limit)
                    .collect()
            } else {
                items
                    .iter()
                    .enumerate()
                    .rev()
                    .filter(|(_, v)| *v == target)
                    .map(|(i, _)| i)
                    .take(limit)
                    .collect()
            };
            let mut doomed = positions.clone();
            doomed.sort_unstable_by(|a, b| b.cmp(a));
            for at in doomed {
                items.remove(at);
            }
            if !positions.is_empty() {
                save(ctx, key, record, &list)?;
            }
            return Ok(Reply::Integer(positions.len() as i64));
        }
        "lset" => {
            if record.is_none() {
                return Ok(Reply::error("ERR no such key"));
            }
            let index = integer(&args[1])?;
            let at = if index < 0 {
                items.len() as i64 + index
            } else {
                index
            };
            let Some(slot) = usize::try_from(at).ok().and_then(|at| items.get_mut(at)) else {
                return Ok(Reply::error("ERR index out of range"));
            };
            *slot = args[2].clone();
            save(ctx, key, record, &list)?;
            return Ok(Reply::ok());
        }
        "ltrim" => {
            let kept: VecDeque<Bytes> =
                match range(items.len(), integer(&args[1])?, integer(&args[2])?) {
                    Some((start, stop)) => items.range(start..=stop).cloned().collect(),
                    None => VecDeque::new(),
                };
            *items = kept;
            save(ctx, key, record, &list)?;
            return Ok(Reply::ok());
        }
        "llen" => Reply::Integer(items.len() as i64),
        "lindex" => {
            let index = integer(&args[1])?;
            let at = if index < 0 {
                items.len() as i64 + index
            } else {
                index
            };
            usize::try_from(at)
                .ok()
                .and_then(|at| items.get(at))
                .map_or(Reply::Nil, bulk)
        }
        "lrange" => match range(items.len(), integer(&args[1])?, integer(&args[2])?) {
            Some((start, stop)) => Reply::Array(items.range(start..=stop).map(bulk).collect()),
            None => Reply::Array(Vec::new()),
        },
        other => unreachable!("{other} is not a list command"),
    };
    Ok(reply)
}

fn list_move(
    ctx: &mut Context<'_>,
    source: &Bytes,
    destination: &Bytes,
    from: Side,
    to: Side,
) -> Outcome<Reply> {
    let (source_record, mut source_list) = load::<List>(ctx, source)?;
    // The destination's type is checked before anything moves.
    load::<List>(ctx, destination)?;
    let Some(item) = pop(&mut source_list.0, from) else {
        return Ok(Reply::Nil);
    };
    save(ctx, source, source_record, &source_list)?;
    let (destination_record, mut destination_list) = load::<List>(ctx, destination)?;
    match to {
        Side::Left => destination_list.0.push_front(item.clone()),
        Side::Right => destination_list.0.push_back(item.clone()),
    }
    save(ctx, destination, destination_record, &destination_list)?;
    blocking::serve(ctx, destination)?;
    Ok(bulk(&item))
}

fn score(arg: &[u8]) -> Result<f64, Reply> {
    let invalid = || Reply::error("ERR value is not a valid float");
    let text = std::str::from_utf8(arg).map_err(|_| invalid())?;
    let value = match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        lower if lower.contains("nan") || lower.contains("inf") => return Err(invalid()),
        _ => text.trim().parse::<f64>().map_err(|_| invalid())?,
    };
    if text.trim() != text || value.is_nan() {
        return Err(invalid());
    }
    Ok(value)
}

/// A ZRANGEBYSCORE bound: `x`, `(x` (exclusive), `-inf`, `+inf`.
#[derive(Clone, Copy)]
struct Bound {
    value: f64,
    exclusive: bool,
}

fn bound(arg: &[u8]) -> Result<Bound, Reply> {
    let invalid = || Reply::error("ERR min or max is not a float");
    match arg.strip_prefix(b"(") {
        Some(rest) => Ok(Bound {
            value: score(rest).map_err(|_| invalid())?,
            exclusive: true,
        }),
        None => Ok(Bound {
            value: score(arg).map_err(|_| invalid())?,
            exclusive: false,
        }),
    }
}

fn above(score: f64, min: Bound) -> bool {
    if min.exclusive {
        score > min.value
    } else {
        score >= min.value
    }
}

fn below(score: f64, max: Bound) -> bool {
    if max.exclusive {
        score < max.value
    } else {
        score <= max.value
    }
}

#[derive(Default)]
struct ZaddOptions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
    pairs: Vec<(f64, Bytes)>,
}

fn zadd_options(args: &[Bytes]) -> Result<ZaddOptions, Reply> {
    let mut options = ZaddOptions::default();
    let mut at = 1;
    while at < args.len() {
        let arg = &args[at];
        match () {
            _ if is(arg, "nx") => options.nx = true,
            _ if is(arg, "xx") => options.xx = true,
            _ if is(arg, "gt") => options.gt = true,
            _ if is(arg, "lt") => options.lt = true,
            _ if is(arg, "ch") => options.ch = true,
            _ if is(arg, "incr") => options.incr = true,
            _ => break,
        }
        at += 1;
    }
    let rest = &args[at..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(Reply::syntax_error());
    }
    if options.nx && options.xx {
        return Err(Reply::error(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (options.gt && options.lt) || (options.nx && (options.gt || options.lt)) {
        return Err(Reply::error(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if options.incr && rest.len() != 2 {
        return Err(Reply::error(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    for pair in rest.chunks(2) {
        options.pairs.push((score(&pair[0])?, pair[1].clone()));
    }
    Ok(options)
}

struct RangeOptions {
    by_score: Option<(Bound, Bound)>,
    rev: bool,
    limit: Option<(i64, i64)>,
    with_scores: bool,
}

fn zrange_options(args: &[Bytes], by_score: bool) -> Result<RangeOptions, Reply> {
    let mut options = RangeOptions {
        by_score: None,
        rev: false,
        limit: None,
        with_scores: false,
    };
    let mut score_range = by_score;
    let mut at = 3;
    while at < args.len() {
        let arg = &args[at];
        if is(arg, "withscores") {
            options.with_scores = true;
        } else if is(arg, "byscore") && !by_score {
            score_range = true;
        } else if is(arg, "rev") && !by_score {
            options.rev = true;
        } else if is(arg, "limit") && at + 2 < args.len() {
            options.limit = Some((integer(&args[at + 1])?, integer(&args[at + 2])?));
            at += 2;
        } else {
            return Err(Reply::syntax_error());
        }
        at += 1;
    }
    if score_range {
        let (min, max) = if options.rev {
            (bound(&args[2])?, bound(&args[1])?)
        } else {
            (bound(&args[1])?, bound(&args[2])?)
        };
        options.by_score = Some((min, max));
    } else {
        integer(&args[1])?;
        integer(&args[2])?;
        if options.limit.is_some() {
            return Err(Reply::error(
                "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
            ));
        }
    }
    Ok(options)
}

fn format_score(value: f64) -> Bytes {
    Bytes::from(if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        value.to_string()
    })
}

fn sorted_set(ctx: &mut Context<'_>, name: &str, args: &[Bytes]) -> Outcome<Reply> {
    let key = &args[0];
    let (record, mut zset) = load::<SortedSet>(ctx, key)?;
    let reply = match name {
        "zadd" => {
            let options = zadd_options(args)?;
            let mut added = 0;
            let mut changed = 0;
            let mut incremented = None;
            for (given, member) in options.pairs {
                let current = zset.scores.get(&member).copied();
                if (options.nx && current.is_some()) || (options.xx && current.is_none()) {
                    continue;
                }
                let next = match (options.incr, current) {
                    (true, Some(old)) => old + given,
                    _ => given,
                };
                if next.is_nan() {
                    return Err(Reply::error("ERR resulting score is not a number (NaN)").into());
                }
                if let Some(old) = current {
                    if (options.gt && next <= old) || (options.lt && next >= old) {
                        continue;
                    }
                    if next != old {
                        changed += 1;
                    }
                } else {
                    added += 1;
                }
                zset.scores.insert(member, next);
                incremented = Some(next);
            }
            if added + changed > 0 {
                zset.prepare();
                save(ctx, key, record, &zset)?;
            }
            return Ok(if options.incr {
                incremented.map_or(Reply::Nil, Reply::Double)
            } else if options.ch {
                Reply::Integer(added + changed)
            } else {
                Reply::Integer(added)
            });
        }
        "zincrby" => {
            let by = score(&args[1])?;
            let next = zset.scores.get(&args[2]).copied().unwrap_or(0.0) + by;
            if next.is_nan() {
                return Err(Reply::error("ERR resulting score is not a number (NaN)").into());
            }
            zset.scores.insert(args[2].clone(), next);
            zset.prepare();
            save(ctx, key, record, &zset)?;
            return Ok(Reply::Double(next));
        }
        "zrem" => {
            let removed = args[1..]
                .iter()
                .filter(|m| zset.scores.remove(*m).is_some())
                .count();
            if removed > 0 {
                zset.prepare();
                save(ctx, key, record, &zset)?;
            }
            return Ok(Reply::Integer(removed as i64));
        }
        "zscore" => zset
            .scores
            .get(&args[1])
            .map_or(Reply::Nil, |s| Reply::Double(*s)),
        "zcard" => Reply::Integer(zset.scores.len() as i64),
        "zcount" => {
            let (min, max) = (bound(&args[1])?, bound(&args[2])?);
            let count = zset
                .scores
                .values()
                .filter(|s| above(**s, min) && below(**s, max))
                .count();
            Reply::Integer(count as i64)
        }
        "zrank" | "zrevrank" => {
            let mut ordered = zset.ordered();
            if name == "zrevrank" {
                ordered.reverse();
            }
            match ordered.iter().position(|(member, _)| **member == args[1]) {
                None => Reply::Nil,
                Some(rank) if args.len() == 3 => Reply::Array(vec![
                    Reply::Integer(rank as i64),
                    Reply::Double(ordered[rank].1),
                ]),
                Some(rank) => Reply::Integer(rank as i64),
            }
        }
        "zrange" | "zrangebyscore" => {
            let options = zrange_options(args, name == "zrangebyscore")?;
            let mut ordered = zset.ordered();
            if options.rev {
                ordered.reverse();
            }
            let selected: Vec<(&Bytes, f64)> = match options.by_score {
                Some((min, max)) => {
                    let matching = ordered
                        .into_iter()
                        .filter(|(_, s)| above(*s, min) && below(*s, max));
                    match options.limit {
                        Some((offset, count)) if offset >= 0 => {
                            let count = if count < 0 {
                                usize::MAX
                            } else {
                                count as usize
                            };
                            matching.skip(offset as usize).take(count).collect()
                        }
                        Some(_) => Vec::new(),
                        None => matching.collect(),
                    }
                }
                None => match range(ordered.len(), integer(&args[1])?, integer(&args[2])?) {
                    Some((start, stop)) => ordered[start..=stop].to_vec(),
                    None => Vec::new(),
                },
            };
            let mut out = Vec::with_capacity(selected.len() * 2);
            for (member, value) in selected {
                out.push(bulk(member));
                if options.with_scores {
                    out.push(Reply::Bulk(format_score(value)));
                }
            }
            Reply::Array(out)
        }
        other => unreachable!("{other} is not a sorted set command"),
    };
    Ok(reply)
}
