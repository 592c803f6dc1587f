//! Sets, with set algebra (SINTER, SUNION, SDIFF and their STORE forms,
//! SINTERCARD) and random members (SPOP, SRANDMEMBER) drawn from a
//! generator seeded by the entry, so every replica draws the same.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::stored::{load, save, save_result, Outcome, Set};
use super::{bulk, positive_count, Draw, Validation};
use crate::args::{integer, is, Args};
use crate::context::Context;
use crate::notify;
use crate::Reply;

pub const NAMES: &[&str] = &[
    "sadd",
    "srem",
    "smembers",
    "sismember",
    "smismember",
    "scard",
    "spop",
    "srandmember",
    "smove",
    "sinter",
    "sunion",
    "sdiff",
    "sinterstore",
    "sunionstore",
    "sdiffstore",
    "sintercard",
];

pub fn validate(name: &str, args: &[Bytes]) -> Validation {
    match name {
        "spop" | "srandmember" => match args.len() {
            1 => {}
            2 => {
                let count = if name == "spop" {
                    positive_count(&args[1])? as i64
                } else {
                    integer(&args[1])?
                };
                if count.unsigned_abs() > super::MAX_REPLY_ITEMS as u64 {
                    return Err(Reply::error(format!(
                        "ERR count is out of range (at most {})",
                        super::MAX_REPLY_ITEMS
                    )));
                }
            }
            _ => return Err(Reply::syntax_error()),
        },
        "sintercard" => {
            sintercard_args(args)?;
        }
        _ => {}
    }
    Ok(())
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit]: the keys and the limit.
fn sintercard_args(args: &[Bytes]) -> Result<(&[Bytes], usize), Reply> {
    let numkeys = integer(&args[0])?;
    if numkeys <= 0 {
        return Err(Reply::error("ERR numkeys should be greater than 0"));
    }
    let numkeys = numkeys as usize;
    if numkeys > args.len() - 1 {
        return Err(Reply::error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let keys = &args[1..1 + numkeys];
    let mut limit = 0;
    let mut rest = Args::new(&args[1 + numkeys..]);
    while let Some(option) = rest.next() {
        if !is(option, "limit") {
            return Err(Reply::syntax_error());
        }
        let value = integer(rest.value()?)?;
        if value < 0 {
            return Err(Reply::error("ERR LIMIT can't be negative"));
        }
        limit = value as usize;
    }
    Ok((keys, limit))
}

#[derive(Clone, Copy)]
enum Algebra {
    Inter,
    Union,
    Diff,
}

/// The result of combining the sets at `keys` (absent keys are empty).
fn combine(ctx: &Context<'_>, keys: &[Bytes], op: Algebra) -> Outcome<BTreeSet<Bytes>> {
    let mut sets = Vec::with_capacity(keys.len());
    for key in keys {
        sets.push(load::<Set>(ctx, key)?.1 .0);
    }
    let mut sets = sets.into_iter();
    let mut result = sets.next().unwrap_or_default();
    for set in sets {
        match op {
            Algebra::Inter => result.retain(|member| set.contains(member)),
            Algebra::Union => result.extend(set),
            Algebra::Diff => result.retain(|member| !set.contains(member)),
        }
    }
    Ok(result)
}

pub fn execute(ctx: &mut Context<'_>, name: &str, args: &[Bytes]) -> Outcome<Reply> {
    let algebra = match name {
        "sinter" | "sinterstore" => Some(Algebra::Inter),
        "sunion" | "sunionstore" => Some(Algebra::Union),
        "sdiff" | "sdiffstore" => Some(Algebra::Diff),
        _ => None,
    };
    if let Some(op) = algebra {
        if name.ends_with("store") {
            let result = combine(ctx, &args[1..], op)?;
            let len = result.len() as i64;
            let event = match op {
                Algebra::Inter => "sinterstore",
                Algebra::Union => "sunionstore",
                Algebra::Diff => "sdiffstore",
            };
            save_result(ctx, &args[0], &Set(result), (notify::SET, event))?;
            return Ok(Reply::Integer(len));
        }
        let result = combine(ctx, args, op)?;
        return Ok(Reply::Array(result.iter().map(bulk).collect()));
    }
    if name == "sintercard" {
        let (keys, limit) = sintercard_args(args)?;
        let count = combine(ctx, keys, Algebra::Inter)?.len();
        return Ok(Reply::Integer(
            if limit > 0 { count.min(limit) } else { count } as i64,
        ));
    }
    if name == "smove" {
        return smove(ctx, &args[0], &args[1], &args[2]);
    }
    let key = &args[0];
    let (record, mut set) = load::<Set>(ctx, key)?;
    Ok(match name {
        "sadd" => {
            let added = args[1..]
                .iter()
                .filter(|m| set.0.insert((*m).clone()))
                .count();
            if added > 0 {
                save(ctx, key, record, &set, (notify::SET, "sadd"))?;
            }
            Reply::Integer(added as i64)
        }
        "srem" => {
            let removed = args[1..].iter().filter(|m| set.0.remove(*m)).count();
            if removed > 0 {
                save(ctx, key, record, &set, (notify::SET, "srem"))?;
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
        "spop" => {
            let mut draw = Draw::new(ctx, key);
            let Some(count) = args.get(1) else {
                let Some(member) = draw.pick(&set.0).cloned() else {
                    return Ok(Reply::Nil);
                };
                set.0.remove(&member);
                save(ctx, key, record, &set, (notify::SET, "spop"))?;
                return Ok(bulk(&member));
            };
            let count = positive_count(count)?;
            let mut popped = Vec::with_capacity(count.min(set.0.len()));
            while popped.len() < count {
                let Some(member) = draw.pick(&set.0).cloned() else {
                    break;
                };
                set.0.remove(&member);
                popped.push(bulk(&member));
            }
            if !popped.is_empty() {
                save(ctx, key, record, &set, (notify::SET, "spop"))?;
            }
            Reply::Array(popped)
        }
        "srandmember" => {
            let mut draw = Draw::new(ctx, key);
            let Some(count) = args.get(1) else {
                return Ok(draw.pick(&set.0).map_or(Reply::Nil, bulk));
            };
            let count = integer(count)?;
            let members: Vec<&Bytes> = set.0.iter().collect();
            if members.is_empty() {
                return Ok(Reply::Array(Vec::new()));
            }
            if count < 0 {
                // Repeats allowed: |count| independent draws.
                let wanted = count.unsigned_abs() as usize;
                Reply::Array(
                    (0..wanted)
                        .map(|_| bulk(members[draw.below(members.len())]))
                        .collect(),
                )
            } else {
                // Distinct members: a partial shuffle.
                let wanted = (count as usize).min(members.len());
                let mut order: Vec<usize> = (0..members.len()).collect();
                for at in 0..wanted {
                    let other = at + draw.below(order.len() - at);
                    order.swap(at, other);
                }
                Reply::Array(order[..wanted].iter().map(|i| bulk(members[*i])).collect())
            }
        }
        other => unreachable!("{other} is not a set command"),
    })
}

fn smove(
    ctx: &mut Context<'_>,
    source: &Bytes,
    destination: &Bytes,
    member: &Bytes,
) -> Outcome<Reply> {
    let (source_record, mut source_set) = load::<Set>(ctx, source)?;
    if source_record.is_none() {
        return Ok(Reply::Integer(0));
    }
    // Both types are checked before anything moves.
    let (destination_record, mut destination_set) = load::<Set>(ctx, destination)?;
    if !source_set.0.contains(member) {
        return Ok(Reply::Integer(0));
    }
    if source == destination {
        return Ok(Reply::Integer(1));
    }
    source_set.0.remove(member);
    save(
        ctx,
        source,
        source_record,
        &source_set,
        (notify::SET, "srem"),
    )?;
    if destination_set.0.insert(member.clone()) {
        let event = (notify::SET, "sadd");
        save(
            ctx,
            destination,
            destination_record,
            &destination_set,
            event,
        )?;
    }
    Ok(Reply::Integer(1))
}
