//! The keyspace: existence, types, TTLs, iteration (KEYS, SCAN), DBSIZE,
//! FLUSHALL, RENAME, COPY, OBJECT, and lockstep's FENCE and DEBUG DIGEST.

use bytes::Bytes;
use lockstep_store::StoreError;

use super::{resolve, Expiry, MAX_EXPIRE_MS};
use crate::args::{integer, is, parse_i64, Args};
use crate::collections::blocking;
use crate::context::Context;
use crate::glob::glob_match;
use crate::layout::{prefix_end, VALUE, VALUE_KEY_HEADER};
use crate::notify;
use crate::record::{Record, ValueType};
use crate::Reply;

pub const NAMES: &[&str] = &[
    "del",
    "unlink",
    "exists",
    "touch",
    "type",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "ttl",
    "pttl",
    "expiretime",
    "pexpiretime",
    "persist",
    "keys",
    "scan",
    "dbsize",
    "flushall",
    "flushdb",
    "rename",
    "renamenx",
    "copy",
    "object",
    "fence",
    "debug",
    "time",
];

/// EXPIRE's NX / XX / GT / LT options; GT and LT treat "no TTL" as infinite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireCondition {
    pub nx: bool,
    pub xx: bool,
    pub gt: bool,
    pub lt: bool,
}

impl ExpireCondition {
    fn allows(self, current: Option<u64>, at: i64) -> bool {
        (!self.nx || current.is_none())
            && (!self.xx || current.is_some())
            && (!self.gt || current.is_some_and(|cur| at > cur as i64))
            && (!self.lt || current.is_none_or(|cur| at < cur as i64))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtlQuery {
    RemainingSeconds,
    RemainingMillis,
    DeadlineSeconds,
    DeadlineMillis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectQuery {
    Encoding,
    IdleTime,
    RefCount,
    Freq,
    Help,
}

#[derive(Clone, Debug, PartialEq)]
pub enum KeyCommand {
    Del(Vec<Bytes>),
    Exists(Vec<Bytes>),
    Type(Bytes),
    Expire {
        key: Bytes,
        expiry: Expiry,
        condition: ExpireCondition,
    },
    Ttl(Bytes, TtlQuery),
    Persist(Bytes),
    Keys(Bytes),
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
        type_filter: Option<Bytes>,
    },
    DbSize,
    FlushAll,
    /// RENAME / RENAMENX (`only_if_new`).
    Rename {
        from: Bytes,
        to: Bytes,
        only_if_new: bool,
    },
    Copy {
        from: Bytes,
        to: Bytes,
        replace: bool,
    },
    Object(ObjectQuery, Option<Bytes>),
    Fence(Bytes),
    /// DEBUG DIGEST: a hash of everything the engine stores, to compare
    /// replicas at the same applied index.
    StateDigest,
    Time,
}

/// Default and largest SCAN COUNT; a larger COUNT is clamped, not refused.
const DEFAULT_SCAN_COUNT: usize = 10;
const MAX_SCAN_COUNT: usize = 100_000;

pub fn parse(name: &'static str, args: &[Bytes]) -> Result<KeyCommand, Reply> {
    Ok(match name {
        "del" | "unlink" => KeyCommand::Del(args.to_vec()),
        "exists" | "touch" => KeyCommand::Exists(args.to_vec()),
        "type" => KeyCommand::Type(args[0].clone()),
        "expire" | "pexpire" | "expireat" | "pexpireat" => parse_expire(name, args)?,
        "ttl" => KeyCommand::Ttl(args[0].clone(), TtlQuery::RemainingSeconds),
        "pttl" => KeyCommand::Ttl(args[0].clone(), TtlQuery::RemainingMillis),
        "expiretime" => KeyCommand::Ttl(args[0].clone(), TtlQuery::DeadlineSeconds),
        "pexpiretime" => KeyCommand::Ttl(args[0].clone(), TtlQuery::DeadlineMillis),
        "persist" => KeyCommand::Persist(args[0].clone()),
        "keys" => KeyCommand::Keys(args[0].clone()),
        "scan" => parse_scan(args)?,
        "dbsize" => KeyCommand::DbSize,
        "flushall" | "flushdb" => {
            match args {
                [] => {}
                [mode] if is(mode, "sync") || is(mode, "async") => {}
                _ => return Err(Reply::syntax_error()),
            }
            KeyCommand::FlushAll
        }
        "rename" | "renamenx" => KeyCommand::Rename {
            from: args[0].clone(),
            to: args[1].clone(),
            only_if_new: name == "renamenx",
        },
        "copy" => {
            let mut replace = false;
            let mut rest = Args::new(&args[2..]);
            while let Some(option) = rest.next() {
                if is(option, "replace") {
                    replace = true;
                } else if is(option, "db") {
                    let db = rest.value()?;
                    if parse_i64(db).is_none() {
                        return Err(Reply::not_integer());
                    }
                    if db.as_ref() != b"0" {
                        return Err(Reply::error("ERR DB index is out of range"));
                    }
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            KeyCommand::Copy {
                from: args[0].clone(),
                to: args[1].clone(),
                replace,
            }
        }
        "object" => {
            let sub = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
            let query = match sub.as_str() {
                "encoding" => ObjectQuery::Encoding,
                "idletime" => ObjectQuery::IdleTime,
                "refcount" => ObjectQuery::RefCount,
                "freq" => ObjectQuery::Freq,
                "help" if args.len() == 1 => ObjectQuery::Help,
                _ => {
                    return Err(Reply::error(format!(
                        "ERR unknown subcommand or wrong number of arguments for '{}'. Try OBJECT HELP.",
                        String::from_utf8_lossy(&args[0])
                    )))
                }
            };
            if query != ObjectQuery::Help && args.len() != 2 {
                return Err(Reply::error(format!(
                    "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try OBJECT HELP."
                )));
            }
            KeyCommand::Object(query, args.get(1).cloned())
        }
        "fence" => KeyCommand::Fence(args[0].clone()),
        "debug" => {
            if !is(&args[0], "digest") || args.len() != 1 {
                return Err(Reply::error(
                    "ERR DEBUG subcommand not supported; lockstep has DEBUG DIGEST only",
                ));
            }
            KeyCommand::StateDigest
        }
        "time" => KeyCommand::Time,
        other => unreachable!("{other} is not a keyspace command"),
    })
}

fn parse_expire(name: &'static str, args: &[Bytes]) -> Result<KeyCommand, Reply> {
    let mut condition = ExpireCondition::default();
    for option in &args[2..] {
        if is(option, "nx") {
            condition.nx = true;
        } else if is(option, "xx") {
            condition.xx = true;
        } else if is(option, "gt") {
            condition.gt = true;
        } else if is(option, "lt") {
            condition.lt = true;
        } else {
            return Err(Reply::error(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(option)
            )));
        }
    }
    if condition.nx && (condition.xx || condition.gt || condition.lt) {
        return Err(Reply::error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if condition.gt && condition.lt {
        return Err(Reply::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    // Redis reads the options before the number.
    let amount = integer(&args[1])?;
    let millis = if name == "expire" || name == "expireat" {
        amount.checked_mul(1000)
    } else {
        Some(amount)
    };
    let millis = millis
        .filter(|ms| ms.abs() <= MAX_EXPIRE_MS)
        .ok_or_else(|| Reply::invalid_expire(name))?;
    let expiry = if name.ends_with("at") {
        Expiry::At(millis)
    } else {
        Expiry::In(millis)
    };
    Ok(KeyCommand::Expire {
        key: args[0].clone(),
        expiry,
        condition,
    })
}

fn parse_scan(args: &[Bytes]) -> Result<KeyCommand, Reply> {
    let cursor = std::str::from_utf8(&args[0])
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| Reply::error("ERR invalid cursor"))?;
    let mut pattern = None;
    let mut count = DEFAULT_SCAN_COUNT;
    let mut type_filter = None;
    let mut rest = Args::new(&args[1..]);
    while let Some(option) = rest.next() {
        if is(option, "match") {
            pattern = Some(rest.value()?.clone());
        } else if is(option, "count") {
            let value = integer(rest.value()?)?;
            if value < 1 {
                return Err(Reply::syntax_error());
            }
            count = (value as usize).min(MAX_SCAN_COUNT);
        } else if is(option, "type") {
            type_filter = Some(rest.value()?.clone());
        } else {
            return Err(Reply::syntax_error());
        }
    }
    Ok(KeyCommand::Scan {
        cursor,
        pattern,
        count,
        type_filter,
    })
}

pub fn execute(ctx: &mut Context<'_>, command: KeyCommand) -> Result<Reply, StoreError> {
    Ok(match command {
        KeyCommand::Del(keys) => {
            let mut removed = 0;
            for key in keys {
                if ctx.remove(&key)? {
                    ctx.notify(notify::GENERIC, "del", &key)?;
                    removed += 1;
                }
            }
            Reply::Integer(removed)
        }
        KeyCommand::Exists(keys) => {
            let mut found = 0;
            for key in keys {
                found += ctx.record(&key)?.is_some() as i64;
            }
            Reply::Integer(found)
        }
        KeyCommand::Type(key) => Reply::Status(
            ctx.record(&key)?
                .map_or("none", |record| record.value_type.name())
                .to_string(),
        ),
        KeyCommand::Expire {
            key,
            expiry,
            condition,
        } => {
            let Some(mut record) = ctx.record(&key)? else {
                return Ok(Reply::Integer(0));
            };
            let at = resolve(ctx, expiry);
            let allowed = condition.allows(record.expire_at, at);
            if !allowed {
                return Ok(Reply::Integer(0));
            }
            if at <= ctx.ct as i64 {
                ctx.remove(&key)?;
                ctx.notify(notify::GENERIC, "del", &key)?;
            } else {
                record.expire_at = Some(at as u64);
                record.modified = ctx.index;
                ctx.store(&key, record)?;
                ctx.notify(notify::GENERIC, "expire", &key)?;
            }
            Reply::Integer(1)
        }
        KeyCommand::Ttl(key, query) => match ctx.record(&key)? {
            None => Reply::Integer(-2),
            Some(Record {
                expire_at: None, ..
            }) => Reply::Integer(-1),
            Some(Record {
                expire_at: Some(at),
                ..
            }) => {
                let remaining = at.saturating_sub(ctx.ct) as i64;
                Reply::Integer(match query {
                    TtlQuery::RemainingSeconds => (remaining + 500) / 1000,
                    TtlQuery::RemainingMillis => remaining,
                    TtlQuery::DeadlineSeconds => at as i64 / 1000,
                    TtlQuery::DeadlineMillis => at as i64,
                })
            }
        },
        KeyCommand::Persist(key) => match ctx.record(&key)? {
            Some(mut record) if record.expire_at.is_some() => {
                record.expire_at = None;
                record.modified = ctx.index;
                ctx.store(&key, record)?;
                ctx.notify(notify::GENERIC, "persist", &key)?;
                Reply::Integer(1)
            }
            _ => Reply::Integer(0),
        },
        KeyCommand::Keys(pattern) => {
            let mut keys = Vec::new();
            let ct = ctx.ct;
            let mut failure = None;
            ctx.raw_scan(&[VALUE], &prefix_end(&[VALUE]), &mut |raw, value| {
                let key = &raw[VALUE_KEY_HEADER..];
                match Record::decode(value) {
                    Ok(record) => {
                        if record.is_live_at(ct) && glob_match(&pattern, key) {
                            keys.push(Reply::Bulk(Bytes::copy_from_slice(key)));
                        }
                        true
                    }
                    Err(err) => {
                        failure = Some(err);
                        false
                    }
                }
            })?;
            if let Some(err) = failure {
                return Err(err);
            }
            Reply::Array(keys)
        }
        KeyCommand::Scan {
            cursor,
            pattern,
            count,
            type_filter,
        } => scan(ctx, cursor, pattern, count, type_filter)?,
        KeyCommand::DbSize => {
            let mut live = 0;
            let ct = ctx.ct;
            ctx.raw_scan(&[VALUE], &prefix_end(&[VALUE]), &mut |_, value| {
                if Record::decode(value).is_ok_and(|record| record.is_live_at(ct)) {
                    live += 1;
                }
                true
            })?;
            Reply::Integer(live)
        }
        KeyCommand::FlushAll => {
            let mut doomed = Vec::new();
            ctx.raw_scan(&[VALUE], &prefix_end(&[VALUE]), &mut |key, _| {
                doomed.push(key[VALUE_KEY_HEADER..].to_vec());
                true
            })?;
            // One by one, so locks, elections, barriers and services answer
            // what is parked in them and leases let go of their keys.
            for key in doomed {
                if ctx.remove(&key)? {
                    // Redis publishes nothing for FLUSHALL; the feed says
                    // what went.
                    ctx.note_change("flushall", &key)?;
                }
            }
            Reply::ok()
        }
        KeyCommand::Rename {
            from,
            to,
            only_if_new,
        } => {
            let Some(record) = ctx.record(&from)? else {
                return Ok(Reply::error("ERR no such key"));
            };
            if record.value_type.is_managed() {
                return Ok(cannot_move_lock());
            }
            if from == to {
                return Ok(if only_if_new {
                    Reply::Integer(0)
                } else {
                    Reply::ok()
                });
            }
            if let Some(existing) = ctx.record(&to)? {
                if only_if_new {
                    return Ok(Reply::Integer(0));
                }
                if existing.value_type.is_managed() {
                    return Ok(cannot_move_lock());
                }
            }
            ctx.remove(&from)?;
            let arrived = place(ctx, &to, record)?;
            ctx.notify(notify::GENERIC, "rename_from", &from)?;
            ctx.notify(notify::GENERIC, "rename_to", &to)?;
            arrived.serve(ctx, &to)?;
            if only_if_new {
                Reply::Integer(1)
            } else {
                Reply::ok()
            }
        }
        KeyCommand::Copy { from, to, replace } => {
            if from == to {
                return Ok(Reply::error(
                    "ERR source and destination objects are the same",
                ));
            }
            let Some(record) = ctx.record(&from)? else {
                return Ok(Reply::Integer(0));
            };
            if record.value_type.is_managed() {
                return Ok(cannot_move_lock());
            }
            match ctx.record(&to)? {
                Some(_) if !replace => return Ok(Reply::Integer(0)),
                Some(existing) if existing.value_type.is_managed() => return Ok(cannot_move_lock()),
                _ => {}
            }
            let arrived = place(ctx, &to, record)?;
            ctx.notify(notify::GENERIC, "copy_to", &to)?;
            arrived.serve(ctx, &to)?;
            Reply::Integer(1)
        }
        KeyCommand::Object(query, key) => object(ctx, query, key)?,
        KeyCommand::Fence(key) => match ctx.record(&key)? {
            Some(record) => Reply::Integer(record.created as i64),
            None => Reply::Nil,
        },
        KeyCommand::StateDigest => {
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            ctx.raw_scan(&[], &[0xff], &mut |key, value| {
                for part in [key, value] {
                    hasher.update(&(part.len() as u64).to_be_bytes());
                    hasher.update(part);
                }
                true
            })?;
            Reply::Bulk(Bytes::from(format!("{:032x}", hasher.digest128())))
        }
        // Inside scripts: the entry's cluster time, the same on every node.
        KeyCommand::Time => Reply::Array(vec![
            Reply::Bulk(Bytes::from((ctx.ct / 1000).to_string())),
            Reply::Bulk(Bytes::from((ctx.ct % 1000 * 1000).to_string())),
        ]),
    })
}

fn cannot_move_lock() -> Reply {
    Reply::error(
        "ERR a lock, election, service or barrier cannot be renamed or copied: what waits in it belongs to its name",
    )
}

/// A value written by RENAME or COPY: a list serves the clients blocked on
/// its new name once the command's own events are out, as in Redis.
struct Arrived {
    is_list: bool,
}

impl Arrived {
    fn serve(self, ctx: &mut Context<'_>, to: &Bytes) -> Result<(), StoreError> {
        if self.is_list {
            blocking::failure_reply(blocking::serve(ctx, to).map(|()| Reply::ok()))?;
        }
        Ok(())
    }
}

/// Writes a moved or copied value at `to`, replacing what was there: a new
/// value there, so a new fencing token, with the source's TTL.
fn place(ctx: &mut Context<'_>, to: &Bytes, record: Record) -> Result<Arrived, StoreError> {
    ctx.remove(to)?;
    let is_list = record.value_type == ValueType::List;
    ctx.store(
        to,
        Record {
            created: ctx.index,
            modified: ctx.index,
            // A lease holds a name, not a value: the copy is not attached.
            lease: None,
            ..record
        },
    )?;
    Ok(Arrived { is_list })
}

/// OBJECT: lockstep keeps every value in one record, so the encoding is
/// the one Redis would pick for a value of that shape and size; idle time
/// is not tracked (0) and every value has one reference.
fn object(ctx: &Context<'_>, query: ObjectQuery, key: Option<Bytes>) -> Result<Reply, StoreError> {
    if query == ObjectQuery::Help {
        return Ok(Reply::Array(
            [
                "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "ENCODING <key>",
                "    Return the kind of internal representation used in order to store the value",
                "    associated with a <key>.",
                "FREQ <key>",
                "    Return the access frequency index of the <key>. The returned integer is",
                "    proportional to the logarithm of the recent access frequency of the key.",
                "IDLETIME <key>",
                "    Return the idle time of the <key>, that is the approximated number of",
                "    seconds elapsed since the last access to the key.",
                "REFCOUNT <key>",
                "    Return the number of references of the value associated with the specified",
                "    <key>.",
                "HELP",
                "    Print this help.",
            ]
            .iter()
            .map(|line| Reply::Status(line.to_string()))
            .collect(),
        ));
    }
    let key = key.expect("parsed with a key");
    let Some(record) = ctx.record(&key)? else {
        return Ok(Reply::Nil);
    };
    Ok(match query {
        ObjectQuery::Encoding => Reply::bulk(encoding(&record)?),
        ObjectQuery::IdleTime => Reply::Integer(0),
        ObjectQuery::RefCount => Reply::Integer(1),
        ObjectQuery::Freq => Reply::error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
        ObjectQuery::Help => unreachable!("answered above"),
    })
}

/// Redis's default thresholds: listpack up to 128 entries of at most 64
/// bytes, intset up to 512 integers.
fn encoding(record: &Record) -> Result<&'static str, StoreError> {
    const SMALL_ENTRIES: usize = 128;
    const SMALL_VALUE_BYTES: usize = 64;
    const INTSET_ENTRIES: usize = 512;
    if record.value_type.is_managed() {
        return Ok("raw");
    }
    if record.value_type == ValueType::String {
        let body = &record.body;
        return Ok(if body.len() <= 20 && parse_i64(body).is_some() {
            "int"
        } else if body.len() <= 44 {
            "embstr"
        } else {
            "raw"
        });
    }
    let items = crate::collections::items_of(record)?;
    let entries = match record.value_type {
        ValueType::Hash | ValueType::SortedSet => items.len() / 2,
        _ => items.len(),
    };
    let small =
        entries <= SMALL_ENTRIES && items.iter().all(|item| item.len() <= SMALL_VALUE_BYTES);
    Ok(match record.value_type {
        ValueType::Set
            if items.len() <= INTSET_ENTRIES && items.iter().all(|m| parse_i64(m).is_some()) =>
        {
            "intset"
        }
        ValueType::Set if small => "listpack",
        ValueType::Set => "hashtable",
        ValueType::Hash if small => "listpack",
        ValueType::Hash => "hashtable",
        ValueType::List if small => "listpack",
        ValueType::List => "quicklist",
        ValueType::SortedSet if small => "listpack",
        ValueType::SortedSet => "skiplist",
        ValueType::String
        | ValueType::Lock
        | ValueType::Election
        | ValueType::Service
        | ValueType::Barrier => "raw",
    })
}

/// SCAN walks keys in hash order; the cursor is the next hash to visit, so a
/// key present for the whole iteration is returned at least once.
fn scan(
    ctx: &mut Context<'_>,
    cursor: u64,
    pattern: Option<Bytes>,
    count: usize,
    type_filter: Option<Bytes>,
) -> Result<Reply, StoreError> {
    let mut start = vec![VALUE];
    start.extend_from_slice(&cursor.to_be_bytes());
    let mut candidates: Vec<(u64, Vec<u8>)> = Vec::new();
    ctx.raw_scan(&start, &prefix_end(&[VALUE]), &mut |raw, _| {
        let hash = u64::from_be_bytes(raw[1..9].try_into().expect("8-byte hash"));
        // Finish the hash group in progress so no key is split across pages.
        if candidates.len() >= count && candidates.last().is_some_and(|(h, _)| *h != hash) {
            return false;
        }
        candidates.push((hash, raw[VALUE_KEY_HEADER..].to_vec()));
        true
    })?;
    let reached_end = candidates.len() < count
        || candidates.len() == count && {
            // Peek whether anything follows the last group.
            let last = candidates.last().map(|(h, _)| *h).unwrap_or(u64::MAX);
            last == u64::MAX || {
                let mut next = vec![VALUE];
                next.extend_from_slice(&(last + 1).to_be_bytes());
                let mut more = false;
                ctx.raw_scan(&next, &prefix_end(&[VALUE]), &mut |_, _| {
                    more = true;
                    false
                })?;
                !more
            }
        };
    let next_cursor = match candidates.last() {
        Some((hash, _)) if !reached_end => hash.wrapping_add(1),
        _ => 0,
    };
    let mut keys = Vec::new();
    for (_, key) in candidates {
        let Some(record) = ctx.record(&key)? else {
            continue;
        };
        if pattern
            .as_ref()
            .is_some_and(|pattern| !glob_match(pattern, &key))
        {
            continue;
        }
        if type_filter
            .as_ref()
            .is_some_and(|wanted| !is(wanted, record.value_type.name()))
        {
            continue;
        }
        keys.push(Reply::Bulk(Bytes::from(key)));
    }
    Ok(Reply::Array(vec![
        Reply::Bulk(Bytes::from(next_cursor.to_string())),
        Reply::Array(keys),
    ]))
}
