//! Lists (the blocking pops are in `blocking`).

use std::collections::VecDeque;

use bytes::Bytes;

use super::stored::{load, save, List, Outcome};
use super::{blocking, bulk, pop, positive_count, range, side, Side, Validation};
use crate::args::{integer, is, Args};
use crate::context::Context;
use crate::notify;
use crate::Reply;

pub const NAMES: &[&str] = &[
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
    "lpos",
    "linsert",
];

pub fn validate(name: &str, args: &[Bytes]) -> Validation {
    match name {
        "lpop" | "rpop" => match args.len() {
            1 => {}
            2 => {
                positive_count(&args[1])?;
            }
            _ => return Err(Reply::wrong_arity(name)),
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
        "lpos" => {
            lpos_options(&args[2..])?;
        }
        "linsert" => {
            insert_side(&args[1])?;
        }
        _ => {}
    }
    Ok(())
}

pub fn execute(ctx: &mut Context<'_>, name: &str, args: &[Bytes]) -> Outcome<Reply> {
    let key = &args[0];
    if name == "lmove" || name == "rpoplpush" {
        let (from, to) = if name == "lmove" {
            (side(&args[2])?, side(&args[3])?)
        } else {
            (Side::Right, Side::Left)
        };
        return list_move(ctx, key, &args[1], from, to);
    }
    if name == "linsert" {
        return linsert(ctx, args);
    }
    let (record, mut list) = load::<List>(ctx, key)?;
    let items = &mut list.0;
    let reply = match name {
        "lpos" => {
            let options = lpos_options(&args[2..])?;
            return Ok(lpos(items, &args[1], options));
        }
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
            let event = if name.starts_with('l') {
                "lpush"
            } else {
                "rpush"
            };
            save(ctx, key, record, &list, (notify::LIST, event))?;
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
            let event = (notify::LIST, side_event(from, "pop"));
            let Some(count) = args.get(1) else {
                let popped = pop(items, from);
                if popped.is_some() {
                    save(ctx, key, record, &list, event)?;
                }
                return Ok(popped.as_ref().map_or(Reply::Nil, bulk));
            };
            if record.is_none() {
                return Ok(Reply::NilArray);
            }
            let count = positive_count(count)?;
            let popped: Vec<Reply> = (0..count)
                .map_while(|_| pop(items, from))
                .map(|item| bulk(&item))
                .collect();
            if !popped.is_empty() {
                save(ctx, key, record, &list, event)?;
            }
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
                save(ctx, key, record, &list, (notify::LIST, "lrem"))?;
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
            save(ctx, key, record, &list, (notify::LIST, "lset"))?;
            return Ok(Reply::ok());
        }
        "ltrim" => {
            let kept: VecDeque<Bytes> =
                match range(items.len(), integer(&args[1])?, integer(&args[2])?) {
                    Some((start, stop)) => items.range(start..=stop).cloned().collect(),
                    None => VecDeque::new(),
                };
            *items = kept;
            if record.is_some() {
                save(ctx, key, record, &list, (notify::LIST, "ltrim"))?;
            }
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

pub(super) fn list_move(
    ctx: &mut Context<'_>,
    source: &Bytes,
    destination: &Bytes,
    from: Side,
    to: Side,
) -> Outcome<Reply> {
    let (source_record, mut source_list) = load::<List>(ctx, source)?;
    if source_record.is_none() {
        return Ok(Reply::Nil);
    }
    // The destination's type is checked before anything moves.
    load::<List>(ctx, destination)?;
    let Some(item) = pop(&mut source_list.0, from) else {
        return Ok(Reply::Nil);
    };
    let popped = (notify::LIST, side_event(from, "pop"));
    let pushed = (notify::LIST, side_event(to, "push"));
    let push = |list: &mut List| match to {
        Side::Left => list.0.push_front(item.clone()),
        Side::Right => list.0.push_back(item.clone()),
    };
    // As Redis: the push (its events first), then the pop's.
    if source == destination {
        push(&mut source_list);
        save(ctx, source, source_record, &source_list, pushed)?;
        ctx.notify(popped.0, popped.1, source)?;
    } else {
        let (destination_record, mut destination_list) = load::<List>(ctx, destination)?;
        push(&mut destination_list);
        save(
            ctx,
            destination,
            destination_record,
            &destination_list,
            pushed,
        )?;
        save(ctx, source, source_record, &source_list, popped)?;
    }
    blocking::serve(ctx, destination)?;
    Ok(bulk(&item))
}

/// `lpop`, `rpush`, ...: a list event's name for a side.
pub fn side_event(side: Side, verb: &str) -> &'static str {
    match (side, verb) {
        (Side::Left, "pop") => "lpop",
        (Side::Right, "pop") => "rpop",
        (Side::Left, _) => "lpush",
        (Side::Right, _) => "rpush",
    }
}

/// LPOS's RANK, COUNT and MAXLEN.
struct LposOptions {
    rank: i64,
    count: Option<usize>,
    max_len: usize,
}

fn lpos_options(args: &[Bytes]) -> Result<LposOptions, Reply> {
    let mut options = LposOptions {
        rank: 1,
        count: None,
        max_len: 0,
    };
    let mut rest = Args::new(args);
    while let Some(option) = rest.next() {
        if is(option, "rank") {
            let rank = integer(rest.value()?)?;
            if rank == 0 {
                return Err(Reply::error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
            if rank == i64::MIN {
                return Err(Reply::error("ERR value is out of range"));
            }
            options.rank = rank;
        } else if is(option, "count") {
            let count = integer(rest.value()?)?;
            if count < 0 {
                return Err(Reply::error("ERR COUNT can't be negative"));
            }
            options.count = Some(count as usize);
        } else if is(option, "maxlen") {
            let max_len = integer(rest.value()?)?;
            if max_len < 0 {
                return Err(Reply::error("ERR MAXLEN can't be negative"));
            }
            options.max_len = max_len as usize;
        } else {
            return Err(Reply::syntax_error());
        }
    }
    Ok(options)
}

/// LPOS: positions of `element`, skipping `rank - 1` matches (from the
/// tail for a negative rank), comparing at most MAXLEN items.
fn lpos(items: &VecDeque<Bytes>, element: &Bytes, options: LposOptions) -> Reply {
    let len = items.len();
    let limit = if options.max_len == 0 {
        len
    } else {
        options.max_len.min(len)
    };
    let wanted = match options.count {
        Some(0) => usize::MAX,
        Some(count) => count,
        None => 1,
    };
    let mut skip = options.rank.unsigned_abs() - 1;
    let mut found = Vec::new();
    for step in 0..limit {
        let at = if options.rank > 0 {
            step
        } else {
            len - 1 - step
        };
        if items[at] != *element {
            continue;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        found.push(Reply::Integer(at as i64));
        if found.len() >= wanted {
            break;
        }
    }
    match options.count {
        Some(_) => Reply::Array(found),
        None => found.pop().unwrap_or(Reply::Nil),
    }
}

fn insert_side(arg: &[u8]) -> Result<bool, Reply> {
    if is(arg, "before") {
        Ok(true)
    } else if is(arg, "after") {
        Ok(false)
    } else {
        Err(Reply::syntax_error())
    }
}

/// LINSERT key BEFORE|AFTER pivot element.
fn linsert(ctx: &mut Context<'_>, args: &[Bytes]) -> Outcome<Reply> {
    let before = insert_side(&args[1])?;
    let (record, mut list) = load::<List>(ctx, &args[0])?;
    if record.is_none() {
        return Ok(Reply::Integer(0));
    }
    let Some(at) = list.0.iter().position(|item| *item == args[2]) else {
        return Ok(Reply::Integer(-1));
    };
    list.0
        .insert(if before { at } else { at + 1 }, args[3].clone());
    let len = list.0.len() as i64;
    save(ctx, &args[0], record, &list, (notify::LIST, "linsert"))?;
    Ok(Reply::Integer(len))
}
