//! Hashes.

use bytes::Bytes;

use super::stored::{load, save, Hash, Outcome};
use super::{bulk, Validation};
use crate::args::{integer, parse_i64};
use crate::commands::strings::{format_float, parse_float};
use crate::context::Context;
use crate::notify;
use crate::Reply;

pub const NAMES: &[&str] = &[
    "hset",
    "hmset",
    "hsetnx",
    "hget",
    "hmget",
    "hdel",
    "hexists",
    "hincrby",
    "hincrbyfloat",
    "hgetall",
    "hkeys",
    "hvals",
    "hlen",
    "hstrlen",
];

pub fn validate(name: &str, args: &[Bytes]) -> Validation {
    match name {
        "hset" | "hmset" if args.len().is_multiple_of(2) => return Err(Reply::wrong_arity(name)),
        "hincrby" => {
            integer(&args[2])?;
        }
        "hincrbyfloat" if !parse_float(&args[2])?.is_finite() => {
            return Err(Reply::error("ERR value is NaN or Infinity"));
        }
        _ => {}
    }
    Ok(())
}

pub fn execute(ctx: &mut Context<'_>, name: &str, args: &[Bytes]) -> Outcome<Reply> {
    let key = &args[0];
    let (record, mut hash) = load::<Hash>(ctx, key)?;
    let map = &mut hash.0;
    let reply = match name {
        "hset" | "hmset" => {
            let mut added = 0;
            for pair in args[1..].chunks(2) {
                added += map.insert(pair[0].clone(), pair[1].clone()).is_none() as i64;
            }
            save(ctx, key, record, &hash, (notify::HASH, "hset"))?;
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
            save(ctx, key, record, &hash, (notify::HASH, "hset"))?;
            return Ok(Reply::Integer(1));
        }
        "hdel" => {
            let removed = args[1..]
                .iter()
                .filter(|f| map.remove(*f).is_some())
                .count();
            if removed > 0 {
                save(ctx, key, record, &hash, (notify::HASH, "hdel"))?;
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
            save(ctx, key, record, &hash, (notify::HASH, "hincrby"))?;
            return Ok(Reply::Integer(next));
        }
        "hincrbyfloat" => {
            let by = parse_float(&args[2])?;
            let current = match map.get(&args[1]) {
                None => 0.0,
                Some(value) => {
                    parse_float(value).map_err(|_| Reply::error("ERR hash value is not a float"))?
                }
            };
            let next = current + by;
            if !next.is_finite() {
                return Err(Reply::error("ERR increment would produce NaN or Infinity").into());
            }
            let text = Bytes::from(format_float(next));
            map.insert(args[1].clone(), text.clone());
            save(ctx, key, record, &hash, (notify::HASH, "hincrbyfloat"))?;
            return Ok(Reply::Bulk(text));
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
        "hstrlen" => Reply::Integer(map.get(&args[1]).map_or(0, |v| v.len() as i64)),
        other => unreachable!("{other} is not a hash command"),
    };
    Ok(reply)
}
