//! Leases (sessions): granted with a TTL, kept alive, revoked or expired
//! through the log, with everything attached to them ending in the same
//! entry.
//!
//! A lease's id is the index of the entry that granted it, so ids are
//! unique and increasing. Its deadline is an absolute cluster time, so a
//! failover neither resets nor shortens it (cluster time stands still
//! while there is no leader, which can only lengthen it). Attached to a
//! lease can be keys (`SET ... LEASE id`), lock holders and waiters
//! (`LOCK.ACQUIRE ... LEASE id`), election candidates, service instances
//! and barrier participants; when the lease ends every one of them goes,
//! and each waiter that frees is served in the same entry. A lease that
//! *expires* (rather than being revoked) also holds its locks back from
//! new holders for its lock-delay (Chubby, Consul).
//!
//! Records: `l id` the lease (TTL, deadline, lock-delay, name), `a id` what
//! is attached (apart, so a keepalive rewrites only the small header), and
//! `L chunk` the ids in one range of 65,536 indexes, for LEASE.LIST.

use bytes::Bytes;
use lockstep_store::{StateRead, StoreError};

use crate::args::{integer, is, Args};
use crate::codec::{Reader, Writer};
use crate::context::Context;
use crate::expiry::{Deadlines, Target};
use crate::layout::prefix_end;
use crate::limits::{self, Limit};
use crate::notify;
use crate::{barrier, election, locks, registry, Reply};

/// Shortest and longest lease TTL, ms.
pub const MIN_TTL_MS: i64 = 100;
pub const MAX_TTL_MS: i64 = 365 * 24 * 3600 * 1000;
/// Longest lock-delay, ms (Consul's limit).
pub const MAX_LOCK_DELAY_MS: i64 = 60_000;
/// Longest lease name.
pub const MAX_NAME_BYTES: usize = 256;
/// Most leases one LEASE.LIST page returns.
const MAX_LIST_COUNT: i64 = 1_000;

const LEASE: u8 = b'l';
const ATTACHED: u8 = b'a';
const CATALOG: u8 = b'L';
/// `mln` -> how many leases are alive.
const COUNT_KEY: &[u8] = b"mln";
const HEADER_V1: u8 = 1;
/// Ids per catalog chunk record.
const CHUNK_SHIFT: u32 = 16;

fn lease_key(id: u64) -> Vec<u8> {
    let mut out = vec![LEASE];
    out.put_u64(id);
    out
}

fn attached_key(id: u64) -> Vec<u8> {
    let mut out = vec![ATTACHED];
    out.put_u64(id);
    out
}

fn catalog_key(chunk: u64) -> Vec<u8> {
    let mut out = vec![CATALOG];
    out.put_u64(chunk);
    out
}

/// Something held by a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// A key written with `SET ... LEASE id`: deleted with the lease.
    Key(Bytes),
    /// A holder or waiter of a native lock: released / dequeued.
    Lock { name: Bytes, owner: Bytes },
    /// A candidate (or the leader) of an election: withdrawn / resigned.
    Candidate { election: Bytes },
    /// A registered instance: deregistered.
    Instance { service: Bytes, instance: Bytes },
    /// A double-barrier participant: leaves.
    Participant { barrier: Bytes, participant: Bytes },
    /// An ephemeral znode: deleted.
    Znode(Bytes),
}

impl Attachment {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Attachment::Key(key) => {
                out.put_u8(1);
                out.put_bytes(key);
            }
            Attachment::Lock { name, owner } => {
                out.put_u8(2);
                out.put_bytes(name);
                out.put_bytes(owner);
            }
            Attachment::Candidate { election } => {
                out.put_u8(3);
                out.put_bytes(election);
            }
            Attachment::Instance { service, instance } => {
                out.put_u8(4);
                out.put_bytes(service);
                out.put_bytes(instance);
            }
            Attachment::Participant {
                barrier,
                participant,
            } => {
                out.put_u8(5);
                out.put_bytes(barrier);
                out.put_bytes(participant);
            }
            Attachment::Znode(path) => {
                out.put_u8(6);
                out.put_bytes(path);
            }
        }
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, StoreError> {
        Ok(match reader.u8()? {
            1 => Attachment::Key(reader.bytes()?),
            2 => Attachment::Lock {
                name: reader.bytes()?,
                owner: reader.bytes()?,
            },
            3 => Attachment::Candidate {
                election: reader.bytes()?,
            },
            4 => Attachment::Instance {
                service: reader.bytes()?,
                instance: reader.bytes()?,
            },
            5 => Attachment::Participant {
                barrier: reader.bytes()?,
                participant: reader.bytes()?,
            },
            6 => Attachment::Znode(reader.bytes()?),
            _ => return Err(StoreError::corrupt("lease attachments", "unknown kind")),
        })
    }

    fn reply(&self) -> Reply {
        let b = |data: &Bytes| Reply::Bulk(data.clone());
        Reply::Array(match self {
            Attachment::Key(key) => vec![Reply::bulk("key"), b(key)],
            Attachment::Lock { name, owner } => vec![Reply::bulk("lock"), b(name), b(owner)],
            Attachment::Candidate { election } => vec![Reply::bulk("candidate"), b(election)],
            Attachment::Instance { service, instance } => {
                vec![Reply::bulk("instance"), b(service), b(instance)]
            }
            Attachment::Participant {
                barrier,
                participant,
            } => vec![Reply::bulk("participant"), b(barrier), b(participant)],
            Attachment::Znode(path) => vec![Reply::bulk("znode"), b(path)],
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Lease {
    ttl_ms: u64,
    deadline: u64,
    lock_delay_ms: u64,
    name: Bytes,
}

impl Lease {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33 + self.name.len());
        out.put_u8(HEADER_V1);
        out.put_u64(self.ttl_ms);
        out.put_u64(self.deadline);
        out.put_u64(self.lock_delay_ms);
        out.put_bytes(&self.name);
        out
    }

    fn decode(data: &[u8]) -> Result<Self, StoreError> {
        let mut reader = Reader::new(data, "lease");
        if reader.u8()? != HEADER_V1 {
            return Err(StoreError::corrupt("lease", "unknown format version"));
        }
        let lease = Lease {
            ttl_ms: reader.u64()?,
            deadline: reader.u64()?,
            lock_delay_ms: reader.u64()?,
            name: reader.bytes()?,
        };
        reader.finish()?;
        Ok(lease)
    }
}

fn load(ctx: &Context<'_>, id: u64) -> Result<Option<Lease>, StoreError> {
    ctx.raw_get(&lease_key(id))?
        .map(|data| Lease::decode(&data))
        .transpose()
}

fn save(ctx: &mut Context<'_>, id: u64, lease: &Lease) {
    ctx.raw_put(lease_key(id), lease.encode());
    ctx.set_deadline(Target::Lease(id), Some(lease.deadline));
}

fn load_attachments(ctx: &Context<'_>, id: u64) -> Result<Vec<Attachment>, StoreError> {
    let Some(data) = ctx.raw_get(&attached_key(id))? else {
        return Ok(Vec::new());
    };
    let mut reader = Reader::new(&data, "lease attachments");
    let count = reader.count(5)?;
    let items = (0..count)
        .map(|_| Attachment::decode(&mut reader))
        .collect::<Result<Vec<_>, _>>()?;
    reader.finish()?;
    Ok(items)
}

fn save_attachments(ctx: &mut Context<'_>, id: u64, items: &[Attachment]) {
    if items.is_empty() {
        ctx.raw_delete(attached_key(id));
        return;
    }
    let mut out = Vec::new();
    out.put_u32(items.len() as u32);
    for item in items {
        item.encode(&mut out);
    }
    ctx.raw_put(attached_key(id), out);
}

fn count(ctx: &Context<'_>) -> Result<u64, StoreError> {
    Ok(ctx
        .raw_get(COUNT_KEY)?
        .and_then(|data| data.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

fn set_count(ctx: &mut Context<'_>, value: u64) {
    ctx.raw_put(COUNT_KEY.to_vec(), value.to_be_bytes().to_vec());
}

fn catalog(ctx: &Context<'_>, chunk: u64) -> Result<Vec<u64>, StoreError> {
    let Some(data) = ctx.raw_get(&catalog_key(chunk))? else {
        return Ok(Vec::new());
    };
    let mut reader = Reader::new(&data, "lease catalog");
    let count = reader.count(8)?;
    let ids = (0..count)
        .map(|_| reader.u64())
        .collect::<Result<Vec<_>, _>>()?;
    reader.finish()?;
    Ok(ids)
}

fn save_catalog(ctx: &mut Context<'_>, chunk: u64, ids: &[u64]) {
    if ids.is_empty() {
        ctx.raw_delete(catalog_key(chunk));
        return;
    }
    let mut out = Vec::with_capacity(4 + ids.len() * 8);
    out.put_u32(ids.len() as u32);
    for id in ids {
        out.put_u64(*id);
    }
    ctx.raw_put(catalog_key(chunk), out);
}

/// Whether lease `id` exists (a command attaching something checks first).
pub fn exists(ctx: &Context<'_>, id: u64) -> Result<bool, StoreError> {
    Ok(ctx.raw_get(&lease_key(id))?.is_some())
}

pub fn no_such_lease() -> Reply {
    Reply::error("ERR no such lease")
}

/// `Ok(Ok(()))` if `item` can be attached to lease `id`; the refusal as a
/// reply otherwise (no such lease, or it holds too much already).
pub fn check_attachable(ctx: &Context<'_>, id: u64) -> Result<Result<(), Reply>, StoreError> {
    if !exists(ctx, id)? {
        return Ok(Err(no_such_lease()));
    }
    let most = limits::get(ctx, Limit::LeaseItems)?;
    if load_attachments(ctx, id)?.len() as u64 >= most {
        return Ok(Err(Reply::error(format!(
            "ERR lease already holds {most} items (lease-max-items)"
        ))));
    }
    Ok(Ok(()))
}

/// Attaches `item` to lease `id` (once). Callers check
/// [`check_attachable`] first; an ended lease is ignored.
pub fn attach(ctx: &mut Context<'_>, id: u64, item: Attachment) -> Result<(), StoreError> {
    if !exists(ctx, id)? {
        return Ok(());
    }
    let mut items = load_attachments(ctx, id)?;
    if !items.contains(&item) {
        items.push(item);
        save_attachments(ctx, id, &items);
    }
    Ok(())
}

/// Takes `item` off lease `id` (nothing if it is not there or the lease
/// ended).
pub fn detach(ctx: &mut Context<'_>, id: u64, item: &Attachment) -> Result<(), StoreError> {
    let mut items = load_attachments(ctx, id)?;
    let before = items.len();
    items.retain(|held| held != item);
    if items.len() != before {
        save_attachments(ctx, id, &items);
    }
    Ok(())
}

/// Adds every lease's deadline to `deadlines` (at start).
pub fn load_deadlines(state: &dyn StateRead, deadlines: &mut Deadlines) -> Result<(), StoreError> {
    let mut failure = None;
    state.scan(&[LEASE], &prefix_end(&[LEASE]), &mut |raw, value| {
        let id = raw
            .get(1..9)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes);
        match (id, Lease::decode(value)) {
            (Some(id), Ok(lease)) => {
                deadlines.set(Target::Lease(id), Some(lease.deadline));
                true
            }
            (_, Err(err)) => {
                failure = Some(err);
                false
            }
            (None, _) => {
                failure = Some(StoreError::corrupt("lease", "bad key"));
                false
            }
        }
    })?;
    failure.map_or(Ok(()), Err)
}

#[derive(Clone, Debug, PartialEq)]
pub enum LeaseCommand {
    Grant {
        ttl_ms: u64,
        name: Bytes,
        lock_delay_ms: u64,
    },
    KeepAlive(Vec<u64>),
    Revoke(u64),
    Ttl {
        id: u64,
        attached: bool,
    },
    List {
        cursor: u64,
        count: usize,
    },
}

/// A lease id argument: a positive integer.
pub fn parse_id(arg: &[u8]) -> Result<u64, Reply> {
    match integer(arg)? {
        id if id > 0 => Ok(id as u64),
        _ => Err(Reply::error("ERR invalid lease id")),
    }
}

fn millis(arg: &[u8], what: &str, min: i64, max: i64) -> Result<u64, Reply> {
    let value = integer(arg)?;
    if value < min || value > max {
        return Err(Reply::error(format!(
            "ERR invalid {what}: must be between {min} and {max} milliseconds"
        )));
    }
    Ok(value as u64)
}

pub fn parse_lock_delay(arg: &[u8]) -> Result<u64, Reply> {
    millis(arg, "lock-delay", 0, MAX_LOCK_DELAY_MS)
}

pub fn parse(name: &str, args: &[Bytes]) -> Result<LeaseCommand, Reply> {
    Ok(match name {
        "lease.grant" => {
            let ttl_ms = millis(&args[0], "lease TTL", MIN_TTL_MS, MAX_TTL_MS)?;
            let mut lease_name = Bytes::new();
            let mut lock_delay_ms = 0;
            let mut rest = Args::new(&args[1..]);
            while let Some(option) = rest.next() {
                if is(option, "name") {
                    lease_name = rest.value()?.clone();
                    if lease_name.len() > MAX_NAME_BYTES {
                        return Err(Reply::error(format!(
                            "ERR lease name longer than {MAX_NAME_BYTES} bytes"
                        )));
                    }
                } else if is(option, "lockdelay") {
                    lock_delay_ms = parse_lock_delay(rest.value()?)?;
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            LeaseCommand::Grant {
                ttl_ms,
                name: lease_name,
                lock_delay_ms,
            }
        }
        "lease.keepalive" => LeaseCommand::KeepAlive(
            args.iter()
                .map(|arg| parse_id(arg))
                .collect::<Result<_, _>>()?,
        ),
        "lease.revoke" => LeaseCommand::Revoke(parse_id(&args[0])?),
        "lease.ttl" => LeaseCommand::Ttl {
            id: parse_id(&args[0])?,
            attached: match &args[1..] {
                [] => false,
                [option] if is(option, "attached") => true,
                _ => return Err(Reply::syntax_error()),
            },
        },
        "lease.list" => {
            let mut cursor = 0;
            let mut count = 100;
            let mut rest = Args::new(args);
            while let Some(option) = rest.next() {
                if is(option, "cursor") {
                    cursor = integer(rest.value()?)?.max(0) as u64;
                } else if is(option, "count") {
                    let value = integer(rest.value()?)?;
                    if value < 1 {
                        return Err(Reply::syntax_error());
                    }
                    count = value.min(MAX_LIST_COUNT) as usize;
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            LeaseCommand::List { cursor, count }
        }
        other => unreachable!("{other} is not a lease command"),
    })
}

fn remaining(lease: &Lease, ct: u64) -> i64 {
    lease.deadline.saturating_sub(ct) as i64
}

pub fn execute(ctx: &mut Context<'_>, command: LeaseCommand) -> Result<Reply, StoreError> {
    Ok(match command {
        LeaseCommand::Grant {
            ttl_ms,
            name,
            lock_delay_ms,
        } => {
            let alive = count(ctx)?;
            let most = limits::get(ctx, Limit::Leases)?;
            if alive >= most {
                return Ok(Reply::error(format!(
                    "ERR {most} leases are alive already (lease-max-alive)"
                )));
            }
            let id = ctx.index;
            let lease = Lease {
                ttl_ms,
                deadline: ctx.ct.saturating_add(ttl_ms),
                lock_delay_ms,
                name,
            };
            save(ctx, id, &lease);
            let chunk = id >> CHUNK_SHIFT;
            let mut ids = catalog(ctx, chunk)?;
            if let Err(at) = ids.binary_search(&id) {
                ids.insert(at, id);
            }
            save_catalog(ctx, chunk, &ids);
            set_count(ctx, alive + 1);
            Reply::Integer(id as i64)
        }
        LeaseCommand::KeepAlive(ids) => {
            let mut replies = Vec::with_capacity(ids.len());
            for id in ids {
                replies.push(match load(ctx, id)? {
                    Some(mut lease) => {
                        lease.deadline = ctx.ct.saturating_add(lease.ttl_ms);
                        save(ctx, id, &lease);
                        Reply::Integer(lease.ttl_ms as i64)
                    }
                    None => Reply::Integer(-2),
                });
            }
            Reply::Array(replies)
        }
        LeaseCommand::Revoke(id) => Reply::Integer(end(ctx, id, false)? as i64),
        LeaseCommand::Ttl { id, attached } => match load(ctx, id)? {
            None => Reply::Nil,
            Some(lease) => {
                let items = load_attachments(ctx, id)?;
                let mut fields = vec![
                    (Reply::bulk("id"), Reply::Integer(id as i64)),
                    (Reply::bulk("name"), Reply::Bulk(lease.name.clone())),
                    (
                        Reply::bulk("ttl"),
                        Reply::Integer(remaining(&lease, ctx.ct)),
                    ),
                    (
                        Reply::bulk("granted-ttl"),
                        Reply::Integer(lease.ttl_ms as i64),
                    ),
                    (
                        Reply::bulk("lock-delay"),
                        Reply::Integer(lease.lock_delay_ms as i64),
                    ),
                    (Reply::bulk("attached"), Reply::Integer(items.len() as i64)),
                ];
                if attached {
                    fields.push((
                        Reply::bulk("items"),
                        Reply::Array(items.iter().map(Attachment::reply).collect()),
                    ));
                }
                Reply::Map(fields)
            }
        },
        LeaseCommand::List { cursor, count } => {
            let mut found = Vec::new();
            let mut chunk = cursor >> CHUNK_SHIFT;
            let mut next = 0;
            // Walk the catalog's chunk records from the cursor's on; only
            // chunks with live leases exist.
            let mut chunks = Vec::new();
            let start = catalog_key(chunk);
            ctx.raw_scan(&start, &prefix_end(&[CATALOG]), &mut |raw, _| {
                if let Some(word) = raw.get(1..9).and_then(|w| w.try_into().ok()) {
                    chunks.push(u64::from_be_bytes(word));
                }
                chunks.len() < count
            })?;
            'chunks: for at in chunks {
                chunk = at;
                for id in catalog(ctx, chunk)? {
                    if id < cursor {
                        continue;
                    }
                    if found.len() == count {
                        next = id;
                        break 'chunks;
                    }
                    if let Some(lease) = load(ctx, id)? {
                        found.push(Reply::Array(vec![
                            Reply::Integer(id as i64),
                            Reply::Bulk(lease.name.clone()),
                            Reply::Integer(remaining(&lease, ctx.ct)),
                        ]));
                    }
                }
            }
            Reply::Array(vec![
                Reply::Bulk(Bytes::from(next.to_string())),
                Reply::Array(found),
            ])
        }
    })
}

/// The sweep found lease `id` due: it expires (unless a keepalive applied
/// since, which moved its deadline).
pub fn expire(ctx: &mut Context<'_>, id: u64) -> Result<(), StoreError> {
    match load(ctx, id)? {
        Some(lease) if lease.deadline > ctx.ct => {
            ctx.set_deadline(Target::Lease(id), Some(lease.deadline));
            Ok(())
        }
        Some(_) => end(ctx, id, true).map(|_| ()),
        None => {
            ctx.set_deadline(Target::Lease(id), None);
            Ok(())
        }
    }
}

/// Ends lease `id` and everything attached to it, in this entry; on
/// expiry (not revocation) its locks wait out its lock-delay. False if
/// there was no such lease.
fn end(ctx: &mut Context<'_>, id: u64, expired: bool) -> Result<bool, StoreError> {
    let Some(lease) = load(ctx, id)? else {
        return Ok(false);
    };
    let items = load_attachments(ctx, id)?;
    ctx.raw_delete(lease_key(id));
    ctx.raw_delete(attached_key(id));
    ctx.set_deadline(Target::Lease(id), None);
    let chunk = id >> CHUNK_SHIFT;
    let mut ids = catalog(ctx, chunk)?;
    ids.retain(|held| *held != id);
    save_catalog(ctx, chunk, &ids);
    let alive = count(ctx)?;
    set_count(ctx, alive.saturating_sub(1));
    let lock_delay = expired.then_some(lease.lock_delay_ms);
    for item in items {
        match item {
            Attachment::Key(key) => {
                if ctx.record_any(&key)?.is_some_and(|r| r.lease == Some(id)) && ctx.remove(&key)? {
                    // The key goes with its lease: expired with it, or
                    // deleted by the revocation.
                    if expired {
                        ctx.notify(notify::EXPIRED, "expired", &key)?;
                    } else {
                        ctx.notify(notify::GENERIC, "del", &key)?;
                    }
                }
            }
            Attachment::Lock { name, owner } => {
                locks::lease_ended(ctx, &name, &owner, id, lock_delay)?
            }
            Attachment::Candidate { election } => election::lease_ended(ctx, &election, id)?,
            Attachment::Instance { service, instance } => {
                registry::lease_ended(ctx, &service, &instance, id)?
            }
            Attachment::Participant {
                barrier,
                participant,
            } => barrier::lease_ended(ctx, &barrier, &participant, id)?,
            Attachment::Znode(path) => crate::namespace::lease_ended(ctx, &path, id)?,
        }
    }
    Ok(true)
}
