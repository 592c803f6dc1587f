//! Parsing and execution of every engine command.
//!
//! [`parse`] validates a command completely (arity, options, numbers) so a
//! node can refuse bad input before it reaches the log; [`execute`] runs a
//! parsed command against a [`Context`]. Both are deterministic. Each
//! family keeps its own parse and execute: strings and compare-and-set in
//! `strings`, the keyspace (TTLs, SCAN, RENAME, ...) in `keys`, and the
//! other modules of the crate for collections, locks, scripts and
//! transactions; this module only dispatches.

mod keys;
pub(crate) mod strings;

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::acl::{self, AclCommand};
use crate::args::{integer, is};
use crate::barrier::{self, BarrierCommand};
use crate::changes::{self, ChangesCommand};
use crate::collections::blocking::{self, BlockingPop};
use crate::collections::{self, CollectionCommand};
use crate::context::Context;
use crate::election::{self, ElectionCommand};
use crate::leases::{self, LeaseCommand};
use crate::limits::{self, LimitsCommand};
use crate::locks::{self, LockCommand};
use crate::namespace::{self, ZnodeRequest};
use crate::record::{Record, ValueType};
use crate::registry::{self, RegistryCommand};
use crate::script::{self, ScriptCommand};
use crate::spec::{self, Access, CommandSpec};
use crate::transaction::{self, Transaction};
use crate::Reply;

pub use keys::KeyCommand;
pub use strings::StringCommand;

/// When a SET-family or EXPIRE-family command wants the key to expire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Relative milliseconds from the entry's cluster time.
    In(i64),
    /// Absolute cluster time in milliseconds.
    At(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtlChange {
    Keep,
    Clear,
    Set(Expiry),
}

/// Largest relative or absolute expiry accepted, in ms: far enough for any
/// use, small enough that `ct + ttl` cannot overflow.
pub(crate) const MAX_EXPIRE_MS: i64 = i64::MAX / 4;

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

/// The absolute cluster time an expiry means for this entry.
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

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Strings, counters, bits and compare-and-set.
    Str(StringCommand),
    /// The keyspace: DEL, TTLs, SCAN, RENAME, COPY, OBJECT, ...
    Key(KeyCommand),
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
    /// BLPOP / BRPOP / BLMOVE / BRPOPLPUSH (they wait only inside PARK).
    Blocking(BlockingPop),
    /// `PARK wait-id <command>`: the server's form of a command that may
    /// wait (see `parking`). `BLOCK.WAIT` is its older name.
    Park {
        id: Bytes,
        inner: Box<Command>,
    },
    /// `PARK.CANCEL wait-id` (older name `BLOCK.CANCEL`): the wait's
    /// timeout passed or its client left.
    ParkCancel(Bytes),
    /// LOCK.ACQUIRE / TRY / RELEASE / EXTEND / CANCEL / INFO.
    Lock(LockCommand),
    /// LEASE.GRANT / KEEPALIVE / REVOKE / TTL / LIST.
    Lease(LeaseCommand),
    /// ELECT.CAMPAIGN / LEADER / PROCLAIM / RESIGN / OBSERVE.
    Election(ElectionCommand),
    /// SVC.REGISTER / HEARTBEAT / DEREGISTER / DISCOVER / PICK / LIST.
    Registry(RegistryCommand),
    /// BARRIER.SET / WAIT / REMOVE / ENTER / LEAVE.
    Barrier(BarrierCommand),
    Limits(LimitsCommand),
    /// CHANGES.READ / CHANGES.INFO: the change feed.
    Changes(ChangesCommand),
    /// ZNODE.*: the namespace.
    Znode(ZnodeRequest),
    /// Hash, list, set and sorted set commands.
    Collection(CollectionCommand),
    /// ACL.*: users (see `acl`).
    Acl(AclCommand),
}

/// Whether a parsed command goes through the log.
pub fn access(command: &Command, spec: &CommandSpec) -> Access {
    match command {
        Command::Script(script) => script.access(),
        Command::Acl(AclCommand::As(_, inner)) => match inner.as_ref() {
            Command::Script(script) => script.access(),
            _ => Access::Write,
        },
        _ => spec.access,
    }
}

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
        name if strings::NAMES.contains(&name) => Command::Str(strings::parse(name, args)?),
        name if keys::NAMES.contains(&name) => Command::Key(keys::parse(name, args)?),
        "exec" => Command::Exec(transaction::parse_exec(args)?),
        "blpop" | "brpop" | "blmove" | "brpoplpush" => {
            Command::Blocking(blocking::parse(spec.name, args)?.0)
        }
        "park" | "block.wait" => {
            let (inner, inner_spec) = parse(&args[1..])?;
            if crate::parking::parking(&args[1..]).is_none() {
                return Err(Reply::error(format!(
                    "ERR {} cannot wait; PARK wraps a command that may",
                    inner_spec.name.to_ascii_uppercase()
                )));
            }
            Command::Park {
                id: args[0].clone(),
                inner: Box::new(inner),
            }
        }
        "park.cancel" | "block.cancel" => Command::ParkCancel(args[0].clone()),
        name if name.starts_with("lock.") => Command::Lock(locks::parse(name, args)?),
        name if name.starts_with("lease.") => Command::Lease(leases::parse(name, args)?),
        name if name.starts_with("elect.") => Command::Election(election::parse(name, args)?),
        name if name.starts_with("svc.") => Command::Registry(registry::parse(name, args)?),
        name if name.starts_with("barrier.") => Command::Barrier(barrier::parse(name, args)?),
        "config.set" | "config.get" => Command::Limits(limits::parse(spec.name, args)?),
        "changes.read" | "changes.info" | "xrange" | "xread" => {
            Command::Changes(changes::parse(spec.name, args)?)
        }
        name if name.starts_with("znode.") => Command::Znode(namespace::parse(name, args)?),
        name if name.starts_with("acl.") => Command::Acl(acl::parse(name, args)?),
        "publish" | "spublish" => Command::Publish {
            channel: args[0].clone(),
            message: args[1].clone(),
            sharded: spec.name == "spublish",
        },
        name if collections::handles(name) => {
            Command::Collection(collections::parse(spec.name, args)?)
        }
        "watch" => Command::Watch(args.to_vec()),
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

/// Runs a parsed command. `Err` is a storage failure (fatal for the node);
/// command-level failures are `Ok(Reply::Error(..))`.
pub fn execute(ctx: &mut Context<'_>, command: Command) -> Result<Reply, StoreError> {
    Ok(match command {
        Command::Str(command) => strings::execute(ctx, command)?,
        Command::Key(command) => keys::execute(ctx, command)?,
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
        Command::Lease(command) => leases::execute(ctx, command)?,
        Command::Election(command) => election::execute(ctx, command)?,
        Command::Registry(command) => registry::execute(ctx, command)?,
        Command::Barrier(command) => barrier::execute(ctx, command)?,
        Command::Limits(command) => limits::execute(ctx, command)?,
        Command::Changes(command) => changes::execute(ctx, command)?,
        Command::Znode(command) => namespace::execute(ctx, command)?,
        Command::Acl(command) => acl::execute(ctx, command)?,
        Command::Blocking(pop) => blocking::failure_reply(blocking::execute(ctx, pop))?,
        Command::Park { id, inner } => {
            if id.is_empty() {
                return Ok(Reply::error("ERR a wait id cannot be empty"));
            }
            ctx.set_wait_id(Some(id));
            let reply = execute(ctx, *inner);
            ctx.set_wait_id(None);
            reply?
        }
        Command::ParkCancel(id) => crate::parking::cancel(ctx, &id)?,
        Command::Watch(keys) => {
            let mut versions = Vec::with_capacity(keys.len());
            for key in keys {
                versions.push(Reply::Integer(transaction::version(ctx, &key)? as i64));
            }
            Reply::Array(versions)
        }
    })
}
