//! Strings: GET/SET and their variants, counters, ranges, bits, and the
//! compare-and-set commands (IFEQ family, DELIFEQ, DELEX, DIGEST,
//! PEXPIREIFEQ).

use bytes::Bytes;
use lockstep_store::StoreError;

use super::{
    expiry_option, is_expiry_option, resolve, string_body, Expiry, TtlChange, MAX_EXPIRE_MS,
};
use crate::args::{integer, is, parse_i64, Args};
use crate::context::Context;
use crate::notify;
use crate::record::Record;
use crate::Reply;

/// Longest string a command may build out of smaller ones (SETRANGE,
/// SETBIT, APPEND): the largest value a client may send, since every
/// value travels through the log and lives on every node.
pub const MAX_STRING_BYTES: usize = 64 << 20;

pub const NAMES: &[&str] = &[
    "get",
    "set",
    "setnx",
    "setex",
    "psetex",
    "getset",
    "getdel",
    "getex",
    "mget",
    "mset",
    "msetnx",
    "incr",
    "incrby",
    "decr",
    "decrby",
    "incrbyfloat",
    "append",
    "strlen",
    "getrange",
    "substr",
    "setrange",
    "getbit",
    "setbit",
    "bitcount",
    "delifeq",
    "delex",
    "digest",
    "pexpireifeq",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetCondition {
    Always,
    IfAbsent,
    IfPresent,
    /// The key exists and holds exactly this value (Redis 8.4 / Valkey IFEQ).
    IfEqual(Bytes),
    /// The key is absent or holds another value (IFNE).
    IfNotEqual(Bytes),
    /// The key exists and its value's DIGEST is this (IFDEQ).
    IfDigestEqual(Bytes),
    /// The key is absent or its value's DIGEST is another (IFDNE).
    IfDigestNotEqual(Bytes),
}

impl SetCondition {
    /// Whether a write may go ahead given the key's current string value;
    /// `Err` when the key holds another type and the condition compares.
    fn allows(&self, current: Option<&Record>) -> Result<bool, Reply> {
        let value = match (self, current) {
            (SetCondition::Always, _) => return Ok(true),
            (SetCondition::IfAbsent, current) => return Ok(current.is_none()),
            (SetCondition::IfPresent, current) => return Ok(current.is_some()),
            (_, None) => None,
            (_, Some(record)) => Some(string_body(record)?),
        };
        Ok(match self {
            SetCondition::IfEqual(expected) => value == Some(expected),
            SetCondition::IfNotEqual(expected) => value != Some(expected),
            SetCondition::IfDigestEqual(expected) => {
                value.is_some_and(|value| is(expected, &digest(value)))
            }
            SetCondition::IfDigestNotEqual(expected) => {
                value.is_none_or(|value| !is(expected, &digest(value)))
            }
            _ => unreachable!("handled above"),
        })
    }
}

/// DIGEST: XXH3-64 of the value, as 16 lowercase hex digits.
pub fn digest(value: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(value))
}

/// Parses an IFEQ / IFNE / IFDEQ / IFDNE option and its value.
fn compare_option(option: &[u8], value: &Bytes) -> Option<SetCondition> {
    if is(option, "ifeq") {
        Some(SetCondition::IfEqual(value.clone()))
    } else if is(option, "ifne") {
        Some(SetCondition::IfNotEqual(value.clone()))
    } else if is(option, "ifdeq") {
        Some(SetCondition::IfDigestEqual(value.clone()))
    } else if is(option, "ifdne") {
        Some(SetCondition::IfDigestNotEqual(value.clone()))
    } else {
        None
    }
}

fn is_compare_option(arg: &[u8]) -> bool {
    ["ifeq", "ifne", "ifdeq", "ifdne"]
        .iter()
        .any(|option| is(arg, option))
}

/// BITCOUNT's range unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitUnit {
    Byte,
    Bit,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StringCommand {
    Get(Bytes),
    Set {
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
        ttl: TtlChange,
        get: bool,
        /// Reply 1/0 instead of OK/nil (SETNX).
        integer_reply: bool,
        /// `LEASE id`: the key goes when that lease ends.
        lease: Option<u64>,
    },
    GetSet(Bytes, Bytes),
    GetDel(Bytes),
    GetEx(Bytes, Option<TtlChange>),
    MGet(Vec<Bytes>),
    MSet(Vec<(Bytes, Bytes)>, bool),
    IncrBy(Bytes, i64),
    IncrByFloat(Bytes, f64),
    Append(Bytes, Bytes),
    StrLen(Bytes),
    GetRange(Bytes, i64, i64),
    SetRange(Bytes, usize, Bytes),
    GetBit(Bytes, u64),
    SetBit(Bytes, u64, bool),
    BitCount(Bytes, Option<(i64, i64, BitUnit)>),
    /// DELEX / DELIFEQ: delete one key if the condition holds.
    DelIf(Bytes, SetCondition),
    Digest(Bytes),
    /// PEXPIREIFEQ key value ms: extend a lock's TTL only while it holds
    /// the caller's token.
    PExpireIfEqual {
        key: Bytes,
        value: Bytes,
        millis: i64,
    },
}

/// Parses a float argument as Redis's INCRBYFLOAT does (no spaces, no NaN).
pub fn parse_float(arg: &[u8]) -> Result<f64, Reply> {
    let invalid = || Reply::error("ERR value is not a valid float");
    let text = std::str::from_utf8(arg).map_err(|_| invalid())?;
    if text.is_empty() || text.trim() != text {
        return Err(invalid());
    }
    let value: f64 = match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        lower if lower.contains("nan") || lower.contains("inf") => return Err(invalid()),
        _ => text.parse().map_err(|_| invalid())?,
    };
    Ok(value)
}

/// A float result as INCRBYFLOAT prints it: fixed point, no trailing
/// zeros. Redis computes in long double and prints 17 decimals, which
/// rounds away the binary noise of sums like 0.1 + 0.2; lockstep computes
/// in double, whose 15 significant digits it keeps for the same effect.
pub fn format_float(value: f64) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    let rounded: f64 = format!("{value:.14e}").parse().unwrap_or(value);
    let fixed = format!("{rounded:.17}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    let shortest = rounded.to_string();
    // Prefer the shortest form when it is plain and no longer.
    let text = if !shortest.contains('e') && shortest.len() <= trimmed.len() {
        shortest
    } else {
        trimmed.to_string()
    };
    if text == "-0" {
        "0".to_string()
    } else {
        text
    }
}

fn offset_too_large() -> Reply {
    Reply::error("ERR bit offset is not an integer or out of range")
}

fn too_long() -> Reply {
    Reply::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
}

pub fn parse(name: &'static str, args: &[Bytes]) -> Result<StringCommand, Reply> {
    Ok(match name {
        "get" => StringCommand::Get(args[0].clone()),
        "set" => parse_set(args)?,
        "setnx" => StringCommand::Set {
            key: args[0].clone(),
            value: args[1].clone(),
            condition: SetCondition::IfAbsent,
            ttl: TtlChange::Clear,
            get: false,
            integer_reply: true,
            lease: None,
        },
        "setex" | "psetex" => {
            let amount = integer(&args[1])?;
            let millis = if name == "setex" {
                amount.checked_mul(1000)
            } else {
                Some(amount)
            };
            let millis = millis
                .filter(|ms| *ms > 0 && *ms <= MAX_EXPIRE_MS)
                .ok_or_else(|| Reply::invalid_expire(name))?;
            StringCommand::Set {
                key: args[0].clone(),
                value: args[2].clone(),
                condition: SetCondition::Always,
                ttl: TtlChange::Set(Expiry::In(millis)),
                get: false,
                integer_reply: false,
                lease: None,
            }
        }
        "getset" => StringCommand::GetSet(args[0].clone(), args[1].clone()),
        "getdel" => StringCommand::GetDel(args[0].clone()),
        "getex" => parse_getex(args)?,
        "mget" => StringCommand::MGet(args.to_vec()),
        "mset" | "msetnx" => {
            if !args.len().is_multiple_of(2) {
                return Err(Reply::wrong_arity(name));
            }
            let pairs = args
                .chunks(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect();
            StringCommand::MSet(pairs, name == "msetnx")
        }
        "incr" => StringCommand::IncrBy(args[0].clone(), 1),
        "decr" => StringCommand::IncrBy(args[0].clone(), -1),
        "incrby" => StringCommand::IncrBy(args[0].clone(), integer(&args[1])?),
        "decrby" => {
            let by = integer(&args[1])?;
            let negated = by
                .checked_neg()
                .ok_or_else(|| Reply::error("ERR decrement would overflow"))?;
            StringCommand::IncrBy(args[0].clone(), negated)
        }
        "incrbyfloat" => StringCommand::IncrByFloat(args[0].clone(), parse_float(&args[1])?),
        "append" => StringCommand::Append(args[0].clone(), args[1].clone()),
        "strlen" => StringCommand::StrLen(args[0].clone()),
        "getrange" | "substr" => {
            StringCommand::GetRange(args[0].clone(), integer(&args[1])?, integer(&args[2])?)
        }
        "setrange" => {
            let offset = integer(&args[1])?;
            if offset < 0 {
                return Err(Reply::error("ERR offset is out of range"));
            }
            let offset = offset as usize;
            if !args[2].is_empty() && offset.saturating_add(args[2].len()) > MAX_STRING_BYTES {
                return Err(too_long());
            }
            StringCommand::SetRange(args[0].clone(), offset, args[2].clone())
        }
        "getbit" | "setbit" => {
            let offset = parse_i64(&args[1])
                .filter(|offset| *offset >= 0 && ((*offset as u64) >> 3) < MAX_STRING_BYTES as u64)
                .ok_or_else(offset_too_large)? as u64;
            if name == "getbit" {
                StringCommand::GetBit(args[0].clone(), offset)
            } else {
                let value = match args[2].as_ref() {
                    b"0" => false,
                    b"1" => true,
                    _ => return Err(Reply::error("ERR bit is not an integer or out of range")),
                };
                StringCommand::SetBit(args[0].clone(), offset, value)
            }
        }
        "bitcount" => {
            let range = match &args[1..] {
                [] => None,
                [start, end] => Some((integer(start)?, integer(end)?, BitUnit::Byte)),
                [start, end, unit] => {
                    let unit = if is(unit, "byte") {
                        BitUnit::Byte
                    } else if is(unit, "bit") {
                        BitUnit::Bit
                    } else {
                        return Err(Reply::syntax_error());
                    };
                    Some((integer(start)?, integer(end)?, unit))
                }
                _ => return Err(Reply::syntax_error()),
            };
            StringCommand::BitCount(args[0].clone(), range)
        }
        "delifeq" => StringCommand::DelIf(args[0].clone(), SetCondition::IfEqual(args[1].clone())),
        "delex" => match &args[1..] {
            [] => StringCommand::DelIf(args[0].clone(), SetCondition::Always),
            [option, value] => StringCommand::DelIf(
                args[0].clone(),
                compare_option(option, value).ok_or_else(Reply::syntax_error)?,
            ),
            _ => return Err(Reply::syntax_error()),
        },
        "digest" => StringCommand::Digest(args[0].clone()),
        "pexpireifeq" => {
            let millis = integer(&args[2])?;
            if millis <= 0 || millis > MAX_EXPIRE_MS {
                return Err(Reply::invalid_expire(name));
            }
            StringCommand::PExpireIfEqual {
                key: args[0].clone(),
                value: args[1].clone(),
                millis,
            }
        }
        other => unreachable!("{other} is not a string command"),
    })
}

fn parse_set(args: &[Bytes]) -> Result<StringCommand, Reply> {
    let mut condition = SetCondition::Always;
    let mut ttl = TtlChange::Clear;
    let mut get = false;
    let mut ttl_given = false;
    let mut lease = None;
    // Redis reports syntax errors before it validates numbers.
    let mut pending_expiry: Option<(&Bytes, &Bytes)> = None;
    let mut rest = Args::new(&args[2..]);
    while let Some(option) = rest.next() {
        let unconditional = condition == SetCondition::Always;
        if is(option, "nx") && (unconditional || condition == SetCondition::IfAbsent) {
            condition = SetCondition::IfAbsent;
        } else if is(option, "xx") && (unconditional || condition == SetCondition::IfPresent) {
            condition = SetCondition::IfPresent;
        } else if is_compare_option(option) && unconditional {
            let value = rest.value()?;
            condition = compare_option(option, value).expect("checked option");
        } else if is(option, "get") {
            get = true;
        } else if is(option, "keepttl") && !ttl_given {
            ttl = TtlChange::Keep;
            ttl_given = true;
        } else if is_expiry_option(option) && !ttl_given {
            pending_expiry = Some((option, rest.value()?));
            ttl_given = true;
        } else if is(option, "lease") && lease.is_none() {
            lease = Some(rest.value()?);
        } else {
            return Err(Reply::syntax_error());
        }
    }
    if let Some((option, value)) = pending_expiry {
        ttl = TtlChange::Set(expiry_option("set", option, value)?);
    }
    let lease = lease.map(|id| crate::leases::parse_id(id)).transpose()?;
    Ok(StringCommand::Set {
        key: args[0].clone(),
        value: args[1].clone(),
        condition,
        ttl,
        get,
        integer_reply: false,
        lease,
    })
}

fn parse_getex(args: &[Bytes]) -> Result<StringCommand, Reply> {
    let mut change = None;
    let mut rest = Args::new(&args[1..]);
    while let Some(option) = rest.next() {
        if change.is_some() {
            return Err(Reply::syntax_error());
        }
        if is(option, "persist") {
            change = Some(TtlChange::Clear);
        } else if is_expiry_option(option) {
            let value = rest.value()?;
            change = Some(TtlChange::Set(expiry_option("getex", option, value)?));
        } else {
            return Err(Reply::syntax_error());
        }
    }
    Ok(StringCommand::GetEx(args[0].clone(), change))
}

/// Redis's index rules for GETRANGE and BITCOUNT: negative counts from the
/// end, both ends clamped, an empty range when start passes end.
fn clamp_range(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return None;
    }
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let end = if end < 0 { (len + end).max(0) } else { end }.min(len - 1);
    (start <= end && start < len).then_some((start as usize, end as usize))
}

/// A string's value and deadline.
type StringValue = (Bytes, Option<u64>);

/// The key's string value and TTL, or WRONGTYPE as the reply.
fn current_string(
    ctx: &Context<'_>,
    key: &[u8],
) -> Result<Result<Option<StringValue>, Reply>, StoreError> {
    Ok(match ctx.record(key)? {
        None => Ok(None),
        Some(record) => match string_body(&record) {
            Ok(body) => Ok(Some((body.clone(), record.expire_at))),
            Err(reply) => Err(reply),
        },
    })
}

macro_rules! string_or_reply {
    ($ctx:expr, $key:expr) => {
        match current_string($ctx, $key)? {
            Ok(current) => current,
            Err(reply) => return Ok(reply),
        }
    };
}

pub fn execute(ctx: &mut Context<'_>, command: StringCommand) -> Result<Reply, StoreError> {
    Ok(match command {
        StringCommand::Get(key) => match string_or_reply!(ctx, &key) {
            Some((body, _)) => Reply::Bulk(body),
            None => Reply::Nil,
        },
        StringCommand::Set {
            key,
            value,
            condition,
            ttl,
            get,
            integer_reply,
            lease,
        } => {
            if let Some(lease) = lease {
                if let Err(reply) = crate::leases::check_attachable(ctx, lease)? {
                    return Ok(reply);
                }
            }
            let existing = ctx.record(&key)?;
            let old_value = match &existing {
                Some(record) if get => match string_body(record) {
                    Ok(body) => Reply::Bulk(body.clone()),
                    Err(reply) => return Ok(reply),
                },
                _ => Reply::Nil,
            };
            let allowed = match condition.allows(existing.as_ref()) {
                Ok(allowed) => allowed,
                Err(reply) => return Ok(reply),
            };
            if allowed {
                let expire_at = match ttl {
                    TtlChange::Keep => existing
                        .as_ref()
                        .and_then(|record| record.expire_at)
                        .map(|at| at as i64),
                    TtlChange::Clear => None,
                    TtlChange::Set(expiry) => Some(resolve(ctx, expiry)),
                };
                match expire_at {
                    // An absolute deadline already past: Redis deletes the key.
                    Some(at) if at <= ctx.ct as i64 => {
                        if ctx.remove(&key)? {
                            ctx.notify(notify::GENERIC, "del", &key)?;
                        }
                    }
                    _ => {
                        let mut record =
                            Record::string(value, ctx.index, expire_at.map(|at| at as u64));
                        record.lease = lease;
                        ctx.store(&key, record)?;
                        ctx.notify(notify::STRING, "set", &key)?;
                        if matches!(ttl, TtlChange::Set(_)) {
                            ctx.notify(notify::GENERIC, "expire", &key)?;
                        }
                    }
                }
            }
            if integer_reply {
                Reply::Integer(allowed as i64)
            } else if get {
                old_value
            } else if allowed {
                Reply::ok()
            } else {
                Reply::Nil
            }
        }
        StringCommand::GetSet(key, value) => {
            let old = match string_or_reply!(ctx, &key) {
                Some((body, _)) => Reply::Bulk(body),
                None => Reply::Nil,
            };
            ctx.store_string(&key, value, None)?;
            ctx.notify(notify::STRING, "set", &key)?;
            old
        }
        StringCommand::GetDel(key) => match string_or_reply!(ctx, &key) {
            None => Reply::Nil,
            Some((body, _)) => {
                ctx.remove(&key)?;
                ctx.notify(notify::GENERIC, "del", &key)?;
                Reply::Bulk(body)
            }
        },
        StringCommand::GetEx(key, change) => match ctx.record(&key)? {
            None => Reply::Nil,
            Some(mut record) => {
                let body = match string_body(&record) {
                    Ok(body) => body.clone(),
                    Err(reply) => return Ok(reply),
                };
                match change {
                    None | Some(TtlChange::Keep) => {}
                    Some(TtlChange::Clear) => {
                        if record.expire_at.is_some() {
                            record.expire_at = None;
                            record.modified = ctx.index;
                            ctx.store(&key, record)?;
                            ctx.notify(notify::GENERIC, "persist", &key)?;
                        }
                    }
                    Some(TtlChange::Set(expiry)) => {
                        let at = resolve(ctx, expiry);
                        if at <= ctx.ct as i64 {
                            ctx.remove(&key)?;
                            ctx.notify(notify::GENERIC, "del", &key)?;
                        } else {
                            record.expire_at = Some(at as u64);
                            record.modified = ctx.index;
                            ctx.store(&key, record)?;
                            ctx.notify(notify::GENERIC, "expire", &key)?;
                        }
                    }
                }
                Reply::Bulk(body)
            }
        },
        StringCommand::MGet(keys) => {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(match ctx.record(&key)? {
                    Some(record) => match string_body(&record) {
                        Ok(body) => Reply::Bulk(body.clone()),
                        Err(_) => Reply::Nil,
                    },
                    None => Reply::Nil,
                });
            }
            Reply::Array(values)
        }
        StringCommand::MSet(pairs, only_if_none_exist) => {
            if only_if_none_exist {
                for (key, _) in &pairs {
                    if ctx.record(key)?.is_some() {
                        return Ok(Reply::Integer(0));
                    }
                }
            }
            for (key, value) in pairs {
                ctx.store_string(&key, value, None)?;
                ctx.notify(notify::STRING, "set", &key)?;
            }
            if only_if_none_exist {
                Reply::Integer(1)
            } else {
                Reply::ok()
            }
        }
        StringCommand::IncrBy(key, by) => {
            let (current, expire_at) = match string_or_reply!(ctx, &key) {
                None => (0, None),
                Some((body, expire_at)) => match parse_i64(&body) {
                    Some(value) => (value, expire_at),
                    None => return Ok(Reply::not_integer()),
                },
            };
            let Some(next) = current.checked_add(by) else {
                return Ok(Reply::error("ERR increment or decrement would overflow"));
            };
            ctx.store_string(&key, Bytes::from(next.to_string()), expire_at)?;
            ctx.notify(notify::STRING, "incrby", &key)?;
            Reply::Integer(next)
        }
        StringCommand::IncrByFloat(key, by) => {
            let (current, expire_at) = match string_or_reply!(ctx, &key) {
                None => (0.0, None),
                Some((body, expire_at)) => match parse_float(&body) {
                    Ok(value) => (value, expire_at),
                    Err(reply) => return Ok(reply),
                },
            };
            let next = current + by;
            if !next.is_finite() {
                return Ok(Reply::error("ERR increment would produce NaN or Infinity"));
            }
            let text = Bytes::from(format_float(next));
            ctx.store_string(&key, text.clone(), expire_at)?;
            ctx.notify(notify::STRING, "incrbyfloat", &key)?;
            Reply::Bulk(text)
        }
        StringCommand::Append(key, suffix) => {
            let (body, expire_at) = string_or_reply!(ctx, &key).unwrap_or_default();
            if body.len() + suffix.len() > MAX_STRING_BYTES {
                return Ok(too_long());
            }
            let mut body = body.to_vec();
            body.extend_from_slice(&suffix);
            let len = body.len() as i64;
            ctx.store_string(&key, Bytes::from(body), expire_at)?;
            ctx.notify(notify::STRING, "append", &key)?;
            Reply::Integer(len)
        }
        StringCommand::StrLen(key) => {
            let body = string_or_reply!(ctx, &key).map(|(body, _)| body);
            Reply::Integer(body.map_or(0, |body| body.len() as i64))
        }
        StringCommand::GetRange(key, start, end) => {
            let body = string_or_reply!(ctx, &key).map(|(body, _)| body);
            let body = body.unwrap_or_default();
            match clamp_range(body.len(), start, end) {
                Some((start, end)) => Reply::Bulk(body.slice(start..=end)),
                None => Reply::Bulk(Bytes::new()),
            }
        }
        StringCommand::SetRange(key, offset, value) => {
            let current = string_or_reply!(ctx, &key);
            let (body, expire_at) = match current {
                None if value.is_empty() => return Ok(Reply::Integer(0)),
                None => (Bytes::new(), None),
                Some(current) => current,
            };
            if value.is_empty() {
                return Ok(Reply::Integer(body.len() as i64));
            }
            let mut body = body.to_vec();
            let end = offset + value.len();
            if body.len() < end {
                body.resize(end, 0);
            }
            body[offset..end].copy_from_slice(&value);
            let len = body.len() as i64;
            ctx.store_string(&key, Bytes::from(body), expire_at)?;
            ctx.notify(notify::STRING, "setrange", &key)?;
            Reply::Integer(len)
        }
        StringCommand::GetBit(key, offset) => {
            let body = string_or_reply!(ctx, &key).map(|(body, _)| body);
            Reply::Integer(body.map_or(0, |body| bit(&body, offset) as i64))
        }
        StringCommand::SetBit(key, offset, value) => {
            let current = string_or_reply!(ctx, &key);
            let existed = current.is_some();
            let (body, expire_at) = current.unwrap_or_default();
            let old = bit(&body, offset);
            let mut body = body.to_vec();
            let byte = (offset / 8) as usize;
            // As Redis: a bit set to what it was, in a key that neither
            // appears nor grows, is no write (and no event).
            if existed && body.len() > byte && old == value {
                return Ok(Reply::Integer(old as i64));
            }
            if body.len() <= byte {
                body.resize(byte + 1, 0);
            }
            let mask = 0x80u8 >> (offset % 8);
            if value {
                body[byte] |= mask;
            } else {
                body[byte] &= !mask;
            }
            ctx.store_string(&key, Bytes::from(body), expire_at)?;
            ctx.notify(notify::STRING, "setbit", &key)?;
            Reply::Integer(old as i64)
        }
        StringCommand::BitCount(key, range) => {
            let body = string_or_reply!(ctx, &key).map(|(body, _)| body);
            let body = body.unwrap_or_default();
            Reply::Integer(bit_count(&body, range) as i64)
        }
        StringCommand::DelIf(key, condition) => {
            let existing = ctx.record(&key)?;
            if existing.is_none() {
                return Ok(Reply::Integer(0));
            }
            match condition.allows(existing.as_ref()) {
                Ok(true) => {
                    let removed = ctx.remove(&key)?;
                    if removed {
                        ctx.notify(notify::GENERIC, "del", &key)?;
                    }
                    Reply::Integer(removed as i64)
                }
                Ok(false) => Reply::Integer(0),
                Err(reply) => reply,
            }
        }
        StringCommand::Digest(key) => match string_or_reply!(ctx, &key) {
            None => Reply::Nil,
            Some((body, _)) => Reply::Bulk(Bytes::from(digest(&body))),
        },
        StringCommand::PExpireIfEqual { key, value, millis } => match ctx.record(&key)? {
            Some(mut record) => match string_body(&record) {
                Ok(body) if *body == value => {
                    record.expire_at = Some(ctx.ct.saturating_add(millis as u64));
                    record.modified = ctx.index;
                    ctx.store(&key, record)?;
                    ctx.notify(notify::GENERIC, "expire", &key)?;
                    Reply::Integer(1)
                }
                Ok(_) => Reply::Integer(0),
                Err(reply) => reply,
            },
            None => Reply::Integer(0),
        },
    })
}

fn bit(body: &[u8], offset: u64) -> bool {
    let byte = (offset / 8) as usize;
    body.get(byte)
        .is_some_and(|value| value & (0x80 >> (offset % 8)) != 0)
}

fn bit_count(body: &[u8], range: Option<(i64, i64, BitUnit)>) -> u64 {
    match range {
        None => body.iter().map(|b| b.count_ones() as u64).sum(),
        Some((start, end, BitUnit::Byte)) => match clamp_range(body.len(), start, end) {
            Some((start, end)) => body[start..=end]
                .iter()
                .map(|b| b.count_ones() as u64)
                .sum(),
            None => 0,
        },
        Some((start, end, BitUnit::Bit)) => {
            let bits = body.len().saturating_mul(8);
            match clamp_range(bits, start, end) {
                Some((start, end)) => {
                    (start..=end).filter(|at| bit(body, *at as u64)).count() as u64
                }
                None => 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_incrbyfloat_does() {
        assert_eq!(format_float(3000.0), "3000");
        assert_eq!(format_float(10.6), "10.6");
        assert_eq!(format_float(-0.5), "-0.5");
        assert_eq!(format_float(1e20), "100000000000000000000");
        assert_eq!(format_float(1e-20), "0");
        assert_eq!(format_float(0.1 + 0.2), "0.3");
        assert_eq!(format_float(1000.1 + 0.0), "1000.1");
        assert!(parse_float(b" 1").is_err());
        assert!(parse_float(b"nan").is_err());
        assert_eq!(parse_float(b"5.0e3"), Ok(5000.0));
    }

    #[test]
    fn ranges_clamp_as_redis() {
        assert_eq!(clamp_range(5, 0, -1), Some((0, 4)));
        assert_eq!(clamp_range(5, -100, 100), Some((0, 4)));
        assert_eq!(clamp_range(5, 3, 1), None);
        assert_eq!(clamp_range(0, 0, -1), None);
        assert_eq!(clamp_range(5, -1, -1), Some((4, 4)));
        assert_eq!(clamp_range(1, -1, -100), None);
    }
}
