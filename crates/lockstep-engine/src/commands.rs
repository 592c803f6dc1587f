//! Parsing and execution of every engine command.
//!
//! [`parse`] validates a command completely (arity, options, numbers) so a
//! node can refuse bad input before it reaches the log; [`execute`] runs a
//! parsed command against a [`Context`]. Both are deterministic.

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::args::{integer, is, Args};
use crate::collections::blocking::{self, BlockingPop};
use crate::collections::{self, CollectionCommand};
use crate::context::Context;
use crate::glob::glob_match;
use crate::layout::{self, prefix_end, VALUE, VALUE_KEY_HEADER};
use crate::locks::{self, LockCommand};
use crate::record::{Record, ValueType};
use crate::script::{self, ScriptCommand};
use crate::spec::{self, Access, CommandSpec};
use crate::transaction::{self, Transaction};
use crate::Reply;

/// When a SET-family or EXPIRE-family command wants the key to expire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Relative milliseconds from the entry's cluster time.
    In(i64),
    /// Absolute cluster time in milliseconds.
    At(i64),
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtlChange {
    Keep,
    Clear,
    Set(Expiry),
}

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

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Get(Bytes),
    Set {
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
        ttl: TtlChange,
        get: bool,
        /// Name the command was sent as, for error texts.
        name: &'static str,
        /// Reply 1/0 instead of OK/nil (SETNX).
        integer_reply: bool,
    },
    GetSet(Bytes, Bytes),
    GetDel(Bytes),
    GetEx(Bytes, Option<TtlChange>),
    MGet(Vec<Bytes>),
    MSet(Vec<(Bytes, Bytes)>, bool),
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
    IncrBy(Bytes, i64),
    Append(Bytes, Bytes),
    StrLen(Bytes),
    Keys(Bytes),
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
        type_filter: Option<Bytes>,
    },
    DbSize,
    FlushAll,
    Fence(Bytes),
    /// DEBUG DIGEST: a hash of everything the engine stores, to compare
    /// replicas at the same applied index.
    StateDigest,
    Time,
    Script(ScriptCommand),
    /// A whole MULTI/EXEC transaction (see `transaction`).
    Exec(Transaction),
    /// The versions of keys, for WATCH (internal: the server keeps them).
    Watch(Vec<Bytes>),
    /// PUBLISH / SPUBLISH: delivered by every node to its own subscribers.
    Publish {
        channel: Bytes,
        message: Bytes,
        sharded: bool,
    },
    /// BLPOP / BRPOP / BLMOVE / BRPOPLPUSH; with a wait id (BLOCK.WAIT)
    /// when the server lets it wait.
    Blocking {
        id: Option<Bytes>,
        pop: BlockingPop,
    },
    /// BLOCK.CANCEL id: the wait's timeout passed or its client left.
    BlockCancel(Bytes),
    /// LOCK.ACQUIRE / TRY / RELEASE / EXTEND / CANCEL / INFO.
    Lock(LockCommand),
    /// Hash, list, set and sorted set commands.
    Collection(CollectionCommand),
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

/// Whether a parsed command goes through the log.
pub fn access(command: &Command, spec: &CommandSpec) -> Access {
    match command {
        Command::Script(script) => script.access(),
        _ => spec.access,
    }
}

/// Largest relative or absolute expiry accepted, in ms: far enough for any
/// use, small enough that `ct + ttl` cannot overflow.
pub(crate) const MAX_EXPIRE_MS: i64 = i64::MAX / 4;

pub fn parse(argv: &[Bytes]) -> Result<(Command, &'static CommandSpec), Reply> {
    let Some(name) = argv.first() else {
        return Err(Reply::error("ERR empty command"));
    };
    let Some(spec) = spec::lookup(name) else {
        return Err(unknown_command(argv));
    };
    if !spec.arity_ok(argv.len()) {
        return Err(Reply::wrong_arity(spec.name));
    }
    let args = &argv[1..];
    let command = match spec.name {
        "get" => Command::Get(args[0].clone()),
        "set" => parse_set(args)?,
        "setnx" => Command::Set {
            key: args[0].clone(),
            value: args[1].clone(),
            condition: SetCondition::IfAbsent,
            ttl: TtlChange::Clear,
            get: false,
            name: "setnx",
            integer_reply: true,
        },
        "setex" | "psetex" => {
            let amount = integer(&args[1])?;
            let millis = if spec.name == "setex" {
                amount.checked_mul(1000)
            } else {
                Some(amount)
            };
            let millis = millis
                .filter(|ms| *ms > 0 && *ms <= MAX_EXPIRE_MS)
                .ok_or_else(|| Reply::invalid_expire(spec.name))?;
            Command::Set {
                key: args[0].clone(),
                value: args[2].clone(),
                condition: SetCondition::Always,
                ttl: TtlChange::Set(Expiry::In(millis)),
                get: false,
                name: spec.name,
                integer_reply: false,
            }
        }
        "getset" => Command::GetSet(args[0].clone(), args[1].clone()),
        "getdel" => Command::GetDel(args[0].clone()),
        "getex" => parse_getex(args)?,
        "mget" => Command::MGet(args.to_vec()),
        "mset" | "msetnx" => {
            if !args.len().is_multiple_of(2) {
                return Err(Reply::wrong_arity(spec.name));
            }
            let pairs = args
                .chunks(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect();
            Command::MSet(pairs, spec.name == "msetnx")
        }
        "del" | "unlink" => Command::Del(args.to_vec()),
        "exists" => Command::Exists(args.to_vec()),
        "type" => Command::Type(args[0].clone()),
        "expire" | "pexpire" | "expireat" | "pexpireat" => parse_expire(spec.name, args)?,
        "ttl" => Command::Ttl(args[0].clone(), TtlQuery::RemainingSeconds),
        "pttl" => Command::Ttl(args[0].clone(), TtlQuery::RemainingMillis),
        "expiretime" => Command::Ttl(args[0].clone(), TtlQuery::DeadlineSeconds),
        "pexpiretime" => Command::Ttl(args[0].clone(), TtlQuery::DeadlineMillis),
        "persist" => Command::Persist(args[0].clone()),
        "incr" => Command::IncrBy(args[0].clone(), 1),
        "decr" => Command::IncrBy(args[0].clone(), -1),
        "incrby" => Command::IncrBy(args[0].clone(), integer(&args[1])?),
        "decrby" => {
            let by = integer(&args[1])?;
            let negated = by
                .checked_neg()
                .ok_or_else(|| Reply::error("ERR decrement would overflow"))?;
            Command::IncrBy(args[0].clone(), negated)
        }
        "append" => Command::Append(args[0].clone(), args[1].clone()),
        "strlen" => Command::StrLen(args[0].clone()),
        "keys" => Command::Keys(args[0].clone()),
        "scan" => parse_scan(args)?,
        "dbsize" => Command::DbSize,
        "flushall" | "flushdb" => {
            match args {
                [] => {}
                [mode] if is(mode, "sync") || is(mode, "async") => {}
                _ => return Err(Reply::syntax_error()),
            }
            Command::FlushAll
        }
        "fence" => Command::Fence(args[0].clone()),
        "debug" => {
            if !is(&args[0], "digest") || args.len() != 1 {
                return Err(Reply::error(
                    "ERR DEBUG subcommand not supported; lockstep has DEBUG DIGEST only",
                ));
            }
            Command::StateDigest
        }
        "time" => Command::Time,
        "exec" => Command::Exec(transaction::parse_exec(args)?),
        "blpop" | "brpop" | "blmove" | "brpoplpush" => Command::Blocking {
            id: None,
            pop: blocking::parse(spec.name, args)?.0,
        },
        "block.wait" => {
            let (id, pop) = blocking::parse_wait(args)?;
            Command::Blocking { id: Some(id), pop }
        }
        "block.cancel" => Command::BlockCancel(args[0].clone()),
        name if name.starts_with("lock.") => Command::Lock(locks::parse(name, args)?),
        "publish" | "spublish" => Command::Publish {
            channel: args[0].clone(),
            message: args[1].clone(),
            sharded: spec.name == "spublish",
        },
        name if collections::NAMES.contains(&name) => {
            Command::Collection(collections::parse(spec.name, args)?)
        }
        "watch" => Command::Watch(args.to_vec()),
        "delifeq" => Command::DelIf(args[0].clone(), SetCondition::IfEqual(args[1].clone())),
        "delex" => match &args[1..] {
            [] => Command::DelIf(args[0].clone(), SetCondition::Always),
            [option, value] => Command::DelIf(
                args[0].clone(),
                compare_option(option, value).ok_or_else(Reply::syntax_error)?,
            ),
            _ => return Err(Reply::syntax_error()),
        },
        "digest" => Command::Digest(args[0].clone()),
        "pexpireifeq" => {
            let millis = integer(&args[2])?;
            if millis <= 0 || millis > MAX_EXPIRE_MS {
                return Err(Reply::invalid_expire(spec.name));
            }
            Command::PExpireIfEqual {
                key: args[0].clone(),
                value: args[1].clone(),
                millis,
            }
        }
        "eval" | "eval_ro" | "evalsha" | "evalsha_ro" | "script" => {
            Command::Script(script::parse(spec.name, args)?)
        }
        other => unreachable!("command {other} is in the table but not parsed"),
    };
    Ok((command, spec))
}

pub fn unknown_command(argv: &[Bytes]) -> Reply {
    let name = String::from_utf8_lossy(&argv[0]);
    let shown: Vec<String> = argv[1..]
        .iter()
        .take(16)
        .map(|arg| format!("'{}'", String::from_utf8_lossy(arg)))
        .collect();
    Reply::error(format!(
        "ERR unknown command '{}', with args beginning with: {}",
        truncate(&name, 128),
        shown.join(" ")
    ))
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

fn expiry_option(name: &'static str, option: &[u8], value: &[u8]) -> Result<Expiry, Reply> {
    let amount = integer(value)?;
    let invalid = || Reply::invalid_expire(name);
    let (millis, absolute) = if is(option, "ex") {
        (amount.checked_mul(1000), false)
    } else if is(option, "px") {
        (Some(amount), false)
    } else if is(option, "exat") {
        (amount.checked_mul(1000), true)
    } else {
        (Some(amount), true)
    };
    let millis = millis
        .filter(|ms| *ms > 0 && *ms <= MAX_EXPIRE_MS)
        .ok_or_else(invalid)?;
    Ok(if absolute {
        Expiry::At(millis)
    } else {
        Expiry::In(millis)
    })
}

fn is_expiry_option(arg: &[u8]) -> bool {
    ["ex", "px", "exat", "pxat"]
        .iter()
        .any(|option| is(arg, option))
}

fn parse_set(args: &[Bytes]) -> Result<Command, Reply> {
    let mut condition = SetCondition::Always;
    let mut ttl = TtlChange::Clear;
    let mut get = false;
    let mut ttl_given = false;
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
        } else {
            return Err(Reply::syntax_error());
        }
    }
    if let Some((option, value)) = pending_expiry {
        ttl = TtlChange::Set(expiry_option("set", option, value)?);
    }
    Ok(Command::Set {
        key: args[0].clone(),
        value: args[1].clone(),
        condition,
        ttl,
        get,
        name: "set",
        integer_reply: false,
    })
}

fn parse_getex(args: &[Bytes]) -> Result<Command, Reply> {
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
    Ok(Command::GetEx(args[0].clone(), change))
}

fn parse_expire(name: &'static str, args: &[Bytes]) -> Result<Command, Reply> {
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
    Ok(Command::Expire {
        key: args[0].clone(),
        expiry,
        condition,
    })
}

/// Default and largest SCAN COUNT; a larger COUNT is clamped, not refused.
const DEFAULT_SCAN_COUNT: usize = 10;
const MAX_SCAN_COUNT: usize = 100_000;

fn parse_scan(args: &[Bytes]) -> Result<Command, Reply> {
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
    Ok(Command::Scan {
        cursor,
        pattern,
        count,
        type_filter,
    })
}

fn resolve(ctx: &Context<'_>, expiry: Expiry) -> i64 {
    match expiry {
        Expiry::In(ms) => (ctx.ct as i64).saturating_add(ms),
        Expiry::At(at) => at,
    }
}

fn string_body(record: &Record) -> Result<&Bytes, Reply> {
    match record.value_type {
        ValueType::String => Ok(&record.body),
        _ => Err(Reply::wrong_type()),
    }
}

/// Runs a parsed command. `Err` is a storage failure (fatal for the node);
/// command-level failures are `Ok(Reply::Error(..))`.
pub fn execute(ctx: &mut Context<'_>, command: Command) -> Result<Reply, StoreError> {
    Ok(match command {
        Command::Get(key) => match ctx.record(&key)? {
            None => Reply::Nil,
            Some(record) => match string_body(&record) {
                Ok(body) => Reply::Bulk(body.clone()),
                Err(reply) => reply,
            },
        },
        Command::Set {
            key,
            value,
            condition,
            ttl,
            get,
            name: _,
            integer_reply,
        } => {
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
                        ctx.remove(&key)?;
                    }
                    _ => ctx.store_string(&key, value, expire_at.map(|at| at as u64))?,
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
        Command::GetSet(key, value) => {
            let old = match ctx.record(&key)? {
                Some(record) => match string_body(&record) {
                    Ok(body) => Reply::Bulk(body.clone()),
                    Err(reply) => return Ok(reply),
                },
                None => Reply::Nil,
            };
            ctx.store_string(&key, value, None)?;
            old
        }
        Command::GetDel(key) => match ctx.record(&key)? {
            None => Reply::Nil,
            Some(record) => match string_body(&record) {
                Ok(body) => {
                    let body = body.clone();
                    ctx.remove(&key)?;
                    Reply::Bulk(body)
                }
                Err(reply) => reply,
            },
        },
        Command::GetEx(key, change) => match ctx.record(&key)? {
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
                        }
                    }
                    Some(TtlChange::Set(expiry)) => {
                        let at = resolve(ctx, expiry);
                        if at <= ctx.ct as i64 {
                            ctx.remove(&key)?;
                        } else {
                            record.expire_at = Some(at as u64);
                            record.modified = ctx.index;
                            ctx.store(&key, record)?;
                        }
                    }
                }
                Reply::Bulk(body)
            }
        },
        Command::MGet(keys) => {
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
        Command::MSet(pairs, only_if_none_exist) => {
            if only_if_none_exist {
                for (key, _) in &pairs {
                    if ctx.record(key)?.is_some() {
                        return Ok(Reply::Integer(0));
                    }
                }
            }
            for (key, value) in pairs {
                ctx.store_string(&key, value, None)?;
            }
            if only_if_none_exist {
                Reply::Integer(1)
            } else {
                Reply::ok()
            }
        }
        Command::Del(keys) => {
            let mut removed = 0;
            for key in keys {
                removed += ctx.remove(&key)? as i64;
            }
            Reply::Integer(removed)
        }
        Command::Exists(keys) => {
            let mut found = 0;
            for key in keys {
                found += ctx.record(&key)?.is_some() as i64;
            }
            Reply::Integer(found)
        }
        Command::Type(key) => Reply::Status(
            ctx.record(&key)?
                .map_or("none", |record| record.value_type.name())
                .to_string(),
        ),
        Command::Expire {
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
            } else {
                record.expire_at = Some(at as u64);
                record.modified = ctx.index;
                ctx.store(&key, record)?;
            }
            Reply::Integer(1)
        }
        Command::Ttl(key, query) => match ctx.record(&key)? {
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
        Command::Persist(key) => match ctx.record(&key)? {
            Some(mut record) if record.expire_at.is_some() => {
                record.expire_at = None;
                record.modified = ctx.index;
                ctx.store(&key, record)?;
                Reply::Integer(1)
            }
            _ => Reply::Integer(0),
        },
        Command::IncrBy(key, by) => {
            let existing = ctx.record(&key)?;
            let (current, expire_at) = match &existing {
                None => (0, None),
                Some(record) => {
                    let body = match string_body(record) {
                        Ok(body) => body,
                        Err(reply) => return Ok(reply),
                    };
                    match crate::args::parse_i64(body) {
                        Some(value) => (value, record.expire_at),
                        None => return Ok(Reply::not_integer()),
                    }
                }
            };
            let Some(next) = current.checked_add(by) else {
                return Ok(Reply::error("ERR increment or decrement would overflow"));
            };
            ctx.store_string(&key, Bytes::from(next.to_string()), expire_at)?;
            Reply::Integer(next)
        }
        Command::Append(key, suffix) => {
            let existing = ctx.record(&key)?;
            let (mut body, expire_at) = match &existing {
                None => (Vec::new(), None),
                Some(record) => match string_body(record) {
                    Ok(body) => (body.to_vec(), record.expire_at),
                    Err(reply) => return Ok(reply),
                },
            };
            body.extend_from_slice(&suffix);
            let len = body.len() as i64;
            ctx.store_string(&key, Bytes::from(body), expire_at)?;
            Reply::Integer(len)
        }
        Command::StrLen(key) => match ctx.record(&key)? {
            None => Reply::Integer(0),
            Some(record) => match string_body(&record) {
                Ok(body) => Reply::Integer(body.len() as i64),
                Err(reply) => reply,
            },
        },
        Command::Keys(pattern) => {
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
        Command::Scan {
            cursor,
            pattern,
            count,
            type_filter,
        } => scan(ctx, cursor, pattern, count, type_filter)?,
        Command::DbSize => {
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
        Command::FlushAll => {
            let mut doomed = Vec::new();
            for prefix in [VALUE, layout::EXPIRY] {
                ctx.raw_scan(&[prefix], &prefix_end(&[prefix]), &mut |key, _| {
                    doomed.push(key.to_vec());
                    true
                })?;
            }
            for key in doomed {
                ctx.raw_delete(key);
            }
            Reply::ok()
        }
        Command::StateDigest => {
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
        Command::Fence(key) => match ctx.record(&key)? {
            Some(record) => Reply::Integer(record.created as i64),
            None => Reply::Nil,
        },
        // Inside scripts: the entry's cluster time, the same on every node.
        Command::Time => Reply::Array(vec![
            Reply::Bulk(Bytes::from((ctx.ct / 1000).to_string())),
            Reply::Bulk(Bytes::from((ctx.ct % 1000 * 1000).to_string())),
        ]),
        Command::Script(script) => script::execute(ctx, script)?,
        Command::Exec(tx) => transaction::execute(ctx, tx)?,
        Command::Publish {
            channel,
            message,
            sharded,
        } => {
            ctx.publish(channel, message, sharded);
            // The node replaces this with its local receiver count.
            Reply::Integer(0)
        }
        Command::Collection(command) => collections::execute(ctx, command)?,
        Command::Lock(command) => locks::execute(ctx, command)?,
        Command::Blocking { id, pop } => blocking::failure_reply(blocking::execute(ctx, id, pop))?,
        Command::BlockCancel(id) => blocking::cancel(ctx, &id)?,
        Command::Watch(keys) => {
            let mut versions = Vec::with_capacity(keys.len());
            for key in keys {
                versions.push(Reply::Integer(transaction::version(ctx, &key)? as i64));
            }
            Reply::Array(versions)
        }
        Command::DelIf(key, condition) => {
            let existing = ctx.record(&key)?;
            if existing.is_none() {
                return Ok(Reply::Integer(0));
            }
            match condition.allows(existing.as_ref()) {
                Ok(true) => Reply::Integer(ctx.remove(&key)? as i64),
                Ok(false) => Reply::Integer(0),
                Err(reply) => reply,
            }
        }
        Command::Digest(key) => match ctx.record(&key)? {
            None => Reply::Nil,
            Some(record) => match string_body(&record) {
                Ok(body) => Reply::Bulk(Bytes::from(digest(body))),
                Err(reply) => reply,
            },
        },
        Command::PExpireIfEqual { key, value, millis } => match ctx.record(&key)? {
            Some(mut record) => match string_body(&record) {
                Ok(body) if *body == value => {
                    record.expire_at = Some(ctx.ct.saturating_add(millis as u64));
                    record.modified = ctx.index;
                    ctx.store(&key, record)?;
                    Reply::Integer(1)
                }
                Ok(_) => Reply::Integer(0),
                Err(reply) => reply,
            },
            None => Reply::Integer(0),
        },
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
