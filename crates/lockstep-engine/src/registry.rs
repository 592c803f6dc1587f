//! A service registry with Consul's health model: instances register with
//! an address, metadata, tags and a weight, a TTL health check and/or a
//! lease; heartbeats renew the check and report a status and a load; an
//! instance whose check runs out turns critical, and one critical for
//! longer than its deregister-after is removed, both by the leader's
//! sweeps at cluster time, so watchers see each transition.
//!
//! Records: the service (type `service`, at the service's name) holds each
//! instance's registration and status: its `modified` index is the
//! answer's index for blocking discovery, and it changes only when the
//! set of instances or a status does. Each instance's heartbeat state
//! (time, check deadline, load, note) is a small record of its own
//! (`h`), so a heartbeat touches only that. `r` lists the services.

use std::collections::BTreeMap;

use bytes::Bytes;
use lockstep_store::{StateRead, StoreError};

use crate::args::{integer, is, Args};
use crate::codec::{Reader, Writer};
use crate::context::Context;
use crate::expiry::{Deadlines, Target};
use crate::layout::prefix_end;
use crate::leases::{self, Attachment};
use crate::limits::{self, Limit};
use crate::notify;
use crate::record::{Record, ValueType};
use crate::Reply;

/// Longest heartbeat note, bytes.
pub const MAX_NOTE_BYTES: usize = 4096;
/// Longest check TTL or deregister-after, ms.
const MAX_MS: i64 = 365 * 24 * 3600 * 1000;
/// Shortest check TTL, ms.
const MIN_TTL_MS: i64 = 100;
const FORMAT_V1: u8 = 1;
const HEALTH: u8 = b'h';
const CATALOG: &[u8] = b"r";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Passing,
    Warning,
    Critical,
}

impl Status {
    fn parse(arg: &[u8]) -> Result<Status, Reply> {
        if is(arg, "passing") {
            Ok(Status::Passing)
        } else if is(arg, "warning") {
            Ok(Status::Warning)
        } else if is(arg, "critical") {
            Ok(Status::Critical)
        } else {
            Err(Reply::error(
                "ERR invalid status: must be passing, warning or critical",
            ))
        }
    }

    fn code(self) -> u8 {
        match self {
            Status::Passing => 0,
            Status::Warning => 1,
            Status::Critical => 2,
        }
    }

    fn from_code(code: u8) -> Result<Status, StoreError> {
        match code {
            0 => Ok(Status::Passing),
            1 => Ok(Status::Warning),
            2 => Ok(Status::Critical),
            _ => Err(StoreError::corrupt("service record", "unknown status")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    RoundRobin,
    Random,
    Weighted,
    LeastLoaded,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RegistryCommand {
    Register {
        service: Bytes,
        instance: Bytes,
        address: Bytes,
        ttl_ms: Option<u64>,
        lease: Option<u64>,
        meta: Vec<(Bytes, Bytes)>,
        tags: Vec<Bytes>,
        weight: u32,
        deregister_after_ms: Option<u64>,
    },
    Heartbeat {
        service: Bytes,
        instance: Bytes,
        status: Status,
        load: Option<i64>,
        note: Option<Bytes>,
    },
    Deregister {
        service: Bytes,
        instance: Bytes,
    },
    Discover {
        service: Bytes,
        statuses: Vec<Status>,
        tag: Option<Bytes>,
    },
    Pick {
        service: Bytes,
        strategy: Strategy,
        /// `STRATEGY sticky key`: the key.
        sticky: Option<Bytes>,
        tag: Option<Bytes>,
        /// Which turn this is (the server counts per connection).
        cursor: u64,
    },
    List,
}

fn millis(arg: &[u8], what: &str, min: i64) -> Result<u64, Reply> {
    let value = integer(arg)?;
    if value < min || value > MAX_MS {
        return Err(Reply::error(format!(
            "ERR invalid {what}: must be between {min} and {MAX_MS} milliseconds"
        )));
    }
    Ok(value as u64)
}

pub fn parse(name: &str, args: &[Bytes]) -> Result<RegistryCommand, Reply> {
    Ok(match name {
        "svc.register" => {
            let mut ttl_ms = None;
            let mut lease = None;
            let mut meta = Vec::new();
            let mut tags = Vec::new();
            let mut weight = 1;
            let mut deregister_after_ms = None;
            let mut rest = &args[3..];
            while let Some((option, tail)) = rest.split_first() {
                let value = |n: usize| tail.get(n).ok_or_else(Reply::syntax_error);
                if is(option, "ttl") {
                    ttl_ms = Some(millis(value(0)?, "check TTL", MIN_TTL_MS)?);
                    rest = &tail[1..];
                } else if is(option, "lease") {
                    lease = Some(leases::parse_id(value(0)?)?);
                    rest = &tail[1..];
                } else if is(option, "weight") {
                    let w = integer(value(0)?)?;
                    if !(0..=1_000_000).contains(&w) {
                        return Err(Reply::error(
                            "ERR invalid weight: must be between 0 and 1000000",
                        ));
                    }
                    weight = w as u32;
                    rest = &tail[1..];
                } else if is(option, "deregister") {
                    deregister_after_ms = Some(millis(value(0)?, "deregister-after", 0)?);
                    rest = &tail[1..];
                } else if is(option, "meta") {
                    // META k v [k v ...] up to the next option.
                    let mut at = 0;
                    while at + 1 < tail.len() && !is_option(&tail[at]) {
                        meta.push((tail[at].clone(), tail[at + 1].clone()));
                        at += 2;
                    }
                    if at == 0 {
                        return Err(Reply::syntax_error());
                    }
                    rest = &tail[at..];
                } else if is(option, "tags") {
                    let mut at = 0;
                    while at < tail.len() && !is_option(&tail[at]) {
                        tags.push(tail[at].clone());
                        at += 1;
                    }
                    if at == 0 {
                        return Err(Reply::syntax_error());
                    }
                    rest = &tail[at..];
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            if args[1].is_empty() {
                return Err(Reply::error("ERR an instance id cannot be empty"));
            }
            RegistryCommand::Register {
                service: args[0].clone(),
                instance: args[1].clone(),
                address: args[2].clone(),
                ttl_ms,
                lease,
                meta,
                tags,
                weight,
                deregister_after_ms,
            }
        }
        "svc.heartbeat" => {
            let mut status = Status::Passing;
            let mut load = None;
            let mut note = None;
            let mut rest = Args::new(&args[2..]);
            while let Some(option) = rest.next() {
                if is(option, "status") {
                    status = Status::parse(rest.value()?)?;
                } else if is(option, "load") {
                    load = Some(integer(rest.value()?)?);
                } else if is(option, "note") {
                    let text = rest.value()?.clone();
                    if text.len() > MAX_NOTE_BYTES {
                        return Err(Reply::error(format!(
                            "ERR note longer than {MAX_NOTE_BYTES} bytes"
                        )));
                    }
                    note = Some(text);
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            RegistryCommand::Heartbeat {
                service: args[0].clone(),
                instance: args[1].clone(),
                status,
                load,
                note,
            }
        }
        "svc.deregister" => RegistryCommand::Deregister {
            service: args[0].clone(),
            instance: args[1].clone(),
        },
        "svc.discover" => {
            let mut statuses = Vec::new();
            let mut tag = None;
            let mut rest = Args::new(&args[1..]);
            while let Some(option) = rest.next() {
                if is(option, "status") {
                    for part in rest.value()?.split(|b| *b == b',') {
                        statuses.push(Status::parse(part)?);
                    }
                } else if is(option, "tag") {
                    tag = Some(rest.value()?.clone());
                } else if is(option, "after") {
                    // The server waits; the engine answers one read.
                    integer(rest.value()?)?;
                } else if is(option, "wait") {
                    if integer(rest.value()?)? < 0 {
                        return Err(Reply::error("ERR timeout is negative"));
                    }
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            RegistryCommand::Discover {
                service: args[0].clone(),
                statuses,
                tag,
            }
        }
        "svc.pick" => {
            let mut strategy = Strategy::RoundRobin;
            let mut sticky = None;
            let mut tag = None;
            let mut cursor = 0;
            let mut rest = Args::new(&args[1..]);
            while let Some(option) = rest.next() {
                if is(option, "strategy") {
                    let value = rest.value()?;
                    if is(value, "round-robin") {
                        strategy = Strategy::RoundRobin;
                    } else if is(value, "random") {
                        strategy = Strategy::Random;
                    } else if is(value, "weighted") {
                        strategy = Strategy::Weighted;
                    } else if is(value, "least-loaded") {
                        strategy = Strategy::LeastLoaded;
                    } else if is(value, "sticky") {
                        sticky = Some(rest.value()?.clone());
                    } else {
                        return Err(Reply::error(
                            "ERR invalid strategy: round-robin, random, weighted, least-loaded or sticky <key>",
                        ));
                    }
                } else if is(option, "tag") {
                    tag = Some(rest.value()?.clone());
                } else if is(option, "cursor") {
                    cursor = integer(rest.value()?)?.max(0) as u64;
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            RegistryCommand::Pick {
                service: args[0].clone(),
                strategy,
                sticky,
                tag,
                cursor,
            }
        }
        "svc.list" => RegistryCommand::List,
        other => unreachable!("{other} is not a registry command"),
    })
}

fn is_option(arg: &[u8]) -> bool {
    ["ttl", "lease", "meta", "tags", "weight", "deregister"]
        .iter()
        .any(|option| is(arg, option))
}

#[derive(Clone, Debug, PartialEq)]
struct Instance {
    address: Bytes,
    meta: Vec<(Bytes, Bytes)>,
    tags: Vec<Bytes>,
    weight: u32,
    ttl_ms: Option<u64>,
    lease: Option<u64>,
    deregister_after_ms: Option<u64>,
    registered: u64,
    status: Status,
    /// Cluster time the status last changed (critical: since when).
    status_since: u64,
}

/// The frequently written part of an instance (`h` record).
#[derive(Clone, Debug, PartialEq)]
struct Health {
    heartbeat_ct: u64,
    /// The instance's check TTL, so a heartbeat need not read the service.
    ttl_ms: Option<u64>,
    check_deadline: Option<u64>,
    status: Status,
    status_since: u64,
    deregister_after_ms: Option<u64>,
    load: i64,
    note: Bytes,
}

type Instances = BTreeMap<Bytes, Instance>;

fn decode_service(body: &[u8]) -> Result<Instances, StoreError> {
    let mut r = Reader::new(body, "service record");
    if r.u8()? != FORMAT_V1 {
        return Err(StoreError::corrupt(
            "service record",
            "unknown format version",
        ));
    }
    let mut instances = BTreeMap::new();
    for _ in 0..r.count(50)? {
        let id = r.bytes()?;
        let address = r.bytes()?;
        let meta = (0..r.count(8)?)
            .map(|_| Ok((r.bytes()?, r.bytes()?)))
            .collect::<Result<_, StoreError>>()?;
        let tags = (0..r.count(4)?)
            .map(|_| r.bytes())
            .collect::<Result<_, StoreError>>()?;
        let instance = Instance {
            address,
            meta,
            tags,
            weight: r.u32()?,
            ttl_ms: r.optional()?,
            lease: r.optional()?,
            deregister_after_ms: r.optional()?,
            registered: r.u64()?,
            status: Status::from_code(r.u8()?)?,
            status_since: r.u64()?,
        };
        instances.insert(id, instance);
    }
    r.finish()?;
    Ok(instances)
}

fn encode_service(instances: &Instances) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    out.put_u32(instances.len() as u32);
    for (id, i) in instances {
        out.put_bytes(id);
        out.put_bytes(&i.address);
        out.put_u32(i.meta.len() as u32);
        for (k, v) in &i.meta {
            out.put_bytes(k);
            out.put_bytes(v);
        }
        out.put_u32(i.tags.len() as u32);
        for tag in &i.tags {
            out.put_bytes(tag);
        }
        out.put_u32(i.weight);
        out.put_optional(i.ttl_ms);
        out.put_optional(i.lease);
        out.put_optional(i.deregister_after_ms);
        out.put_u64(i.registered);
        out.put_u8(i.status.code());
        out.put_u64(i.status_since);
    }
    out
}

fn health_key(service: &[u8], instance: &[u8]) -> Vec<u8> {
    let mut out = vec![HEALTH];
    out.put_bytes(service);
    out.extend_from_slice(instance);
    out
}

impl Health {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_V1];
        out.put_u64(self.heartbeat_ct);
        out.put_optional(self.ttl_ms);
        out.put_optional(self.check_deadline);
        out.put_u8(self.status.code());
        out.put_u64(self.status_since);
        out.put_optional(self.deregister_after_ms);
        out.put_u64(self.load as u64);
        out.put_bytes(&self.note);
        out
    }

    fn decode(data: &[u8]) -> Result<Health, StoreError> {
        let mut r = Reader::new(data, "instance health");
        if r.u8()? != FORMAT_V1 {
            return Err(StoreError::corrupt(
                "instance health",
                "unknown format version",
            ));
        }
        let health = Health {
            heartbeat_ct: r.u64()?,
            ttl_ms: r.optional()?,
            check_deadline: r.optional()?,
            status: Status::from_code(r.u8()?)?,
            status_since: r.u64()?,
            deregister_after_ms: r.optional()?,
            load: r.i64()?,
            note: r.bytes()?,
        };
        r.finish()?;
        Ok(health)
    }

    /// When the sweep must look at this instance next: its check running
    /// out, or (critical) its removal.
    fn next_deadline(&self) -> Option<u64> {
        match self.status {
            Status::Critical => self
                .deregister_after_ms
                .map(|after| self.status_since.saturating_add(after)),
            _ => self.check_deadline,
        }
    }
}

fn load_health(
    ctx: &Context<'_>,
    service: &[u8],
    instance: &[u8],
) -> Result<Option<Health>, StoreError> {
    ctx.raw_get(&health_key(service, instance))?
        .map(|data| Health::decode(&data))
        .transpose()
}

fn save_health(ctx: &mut Context<'_>, service: &[u8], instance: &[u8], health: &Health) {
    ctx.raw_put(health_key(service, instance), health.encode());
    ctx.set_deadline(
        Target::Check(
            Bytes::copy_from_slice(service),
            Bytes::copy_from_slice(instance),
        ),
        health.next_deadline(),
    );
}

fn forget_health(ctx: &mut Context<'_>, service: &[u8], instance: &[u8]) {
    ctx.raw_delete(health_key(service, instance));
    ctx.set_deadline(
        Target::Check(
            Bytes::copy_from_slice(service),
            Bytes::copy_from_slice(instance),
        ),
        None,
    );
}

fn load(
    ctx: &Context<'_>,
    service: &[u8],
) -> Result<Result<(Option<Record>, Instances), Reply>, StoreError> {
    Ok(match ctx.typed_record(service, ValueType::Service)? {
        Ok(Some(record)) => {
            let instances = decode_service(&record.body)?;
            Ok((Some(record), instances))
        }
        Ok(None) => Ok((None, Instances::new())),
        Err(reply) => Err(reply),
    })
}

/// The services and their instance counts.
fn catalog(ctx: &Context<'_>) -> Result<BTreeMap<Bytes, u64>, StoreError> {
    let Some(data) = ctx.raw_get(CATALOG)? else {
        return Ok(BTreeMap::new());
    };
    let mut r = Reader::new(&data, "service catalog");
    let mut services = BTreeMap::new();
    for _ in 0..r.count(12)? {
        let name = r.bytes()?;
        services.insert(name, r.u64()?);
    }
    r.finish()?;
    Ok(services)
}

fn save_catalog(ctx: &mut Context<'_>, services: &BTreeMap<Bytes, u64>) {
    let mut out = Vec::new();
    out.put_u32(services.len() as u32);
    for (name, count) in services {
        out.put_bytes(name);
        out.put_u64(*count);
    }
    ctx.raw_put(CATALOG.to_vec(), out);
}

fn save(
    ctx: &mut Context<'_>,
    service: &[u8],
    existing: Option<Record>,
    instances: &Instances,
) -> Result<(), StoreError> {
    let mut services = catalog(ctx)?;
    let name = Bytes::copy_from_slice(service);
    if instances.is_empty() {
        if existing.is_some() {
            ctx.remove_own(service)?;
            ctx.notify(notify::GENERIC, "del", service)?;
        }
        services.remove(&name);
    } else {
        let body = Bytes::from(encode_service(instances));
        ctx.store_body(service, existing, ValueType::Service, body)?;
        ctx.notify(notify::MODULE, "service", service)?;
        services.insert(name, instances.len() as u64);
    }
    save_catalog(ctx, &services);
    Ok(())
}

fn attachment(service: &[u8], instance: &[u8]) -> Attachment {
    Attachment::Instance {
        service: Bytes::copy_from_slice(service),
        instance: Bytes::copy_from_slice(instance),
    }
}

/// An instance leaves: its health record and its lease attachment go.
fn drop_instance(
    ctx: &mut Context<'_>,
    service: &[u8],
    id: &[u8],
    instance: &Instance,
) -> Result<(), StoreError> {
    forget_health(ctx, service, id);
    if let Some(lease) = instance.lease {
        leases::detach(ctx, lease, &attachment(service, id))?;
    }
    Ok(())
}

fn instance_reply(id: &Bytes, i: &Instance, health: Option<&Health>, ct: u64) -> Reply {
    let b = |data: &Bytes| Reply::Bulk(data.clone());
    Reply::Map(vec![
        (Reply::bulk("instance"), b(id)),
        (Reply::bulk("address"), b(&i.address)),
        (Reply::bulk("status"), Reply::bulk(i.status.name())),
        (Reply::bulk("weight"), Reply::Integer(i.weight as i64)),
        (
            Reply::bulk("load"),
            Reply::Integer(health.map_or(0, |h| h.load)),
        ),
        (
            Reply::bulk("heartbeat-age"),
            Reply::Integer(health.map_or(0, |h| ct.saturating_sub(h.heartbeat_ct)) as i64),
        ),
        (
            Reply::bulk("note"),
            health.map_or(Reply::Bulk(Bytes::new()), |h| b(&h.note)),
        ),
        (Reply::bulk("index"), Reply::Integer(i.registered as i64)),
        (
            Reply::bulk("lease"),
            i.lease.map_or(Reply::Nil, |l| Reply::Integer(l as i64)),
        ),
        (
            Reply::bulk("meta"),
            Reply::Map(i.meta.iter().map(|(k, v)| (b(k), b(v))).collect()),
        ),
        (
            Reply::bulk("tags"),
            Reply::Array(i.tags.iter().map(b).collect()),
        ),
    ])
}

fn hash_of(parts: &[&[u8]]) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.digest()
}

pub fn execute(ctx: &mut Context<'_>, command: RegistryCommand) -> Result<Reply, StoreError> {
    match command {
        RegistryCommand::Register {
            service,
            instance,
            address,
            ttl_ms,
            lease,
            meta,
            tags,
            weight,
            deregister_after_ms,
        } => {
            let (record, mut instances) = match load(ctx, &service)? {
                Ok(loaded) => loaded,
                Err(reply) => return Ok(reply),
            };
            if let Some(lease) = lease {
                if let Err(reply) = leases::check_attachable(ctx, lease)? {
                    return Ok(reply);
                }
            }
            let size: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                + tags.iter().map(|t| t.len()).sum::<usize>();
            let most = limits::get(ctx, Limit::MetaBytes)?;
            if size as u64 > most {
                return Ok(Reply::error(format!(
                    "ERR metadata and tags exceed {most} bytes (svc-max-meta-bytes)"
                )));
            }
            let new = !instances.contains_key(&instance);
            let most = limits::get(ctx, Limit::Instances)?;
            if new && instances.len() as u64 >= most {
                return Ok(Reply::error(format!(
                    "ERR service already has {most} instances (svc-max-instances)"
                )));
            }
            let most = limits::get(ctx, Limit::Services)?;
            if new && instances.is_empty() && catalog(ctx)?.len() as u64 >= most {
                return Ok(Reply::error(format!(
                    "ERR {most} services are registered already (svc-max-services)"
                )));
            }
            let previous = instances.get(&instance).cloned();
            if let Some(old) = &previous {
                if old.lease != lease {
                    if let Some(old_lease) = old.lease {
                        leases::detach(ctx, old_lease, &attachment(&service, &instance))?;
                    }
                }
            }
            if let Some(lease) = lease {
                leases::attach(ctx, lease, attachment(&service, &instance))?;
            }
            // Registering (again) counts as a passing heartbeat.
            let status_since = match &previous {
                Some(old) if old.status == Status::Passing => old.status_since,
                _ => ctx.ct,
            };
            instances.insert(
                instance.clone(),
                Instance {
                    address,
                    meta,
                    tags,
                    weight,
                    ttl_ms,
                    lease,
                    deregister_after_ms,
                    registered: previous.as_ref().map_or(ctx.index, |old| old.registered),
                    status: Status::Passing,
                    status_since,
                },
            );
            let health = Health {
                heartbeat_ct: ctx.ct,
                ttl_ms,
                check_deadline: ttl_ms.map(|ttl| ctx.ct.saturating_add(ttl)),
                status: Status::Passing,
                status_since,
                deregister_after_ms,
                load: 0,
                note: Bytes::new(),
            };
            save_health(ctx, &service, &instance, &health);
            save(ctx, &service, record, &instances)?;
            Ok(Reply::Integer(new as i64))
        }
        RegistryCommand::Heartbeat {
            service,
            instance,
            status,
            load: reported_load,
            note,
        } => {
            let Some(mut health) = load_health(ctx, &service, &instance)? else {
                return Ok(Reply::Integer(0));
            };
            if status != health.status {
                // A status change is a change of the answer: the service
                // record (and its index) changes too.
                if let Ok((Some(record), mut instances)) = load(ctx, &service)? {
                    if let Some(i) = instances.get_mut(&instance) {
                        i.status = status;
                        i.status_since = ctx.ct;
                        save(ctx, &service, Some(record), &instances)?;
                    }
                }
                health.status = status;
                health.status_since = ctx.ct;
            }
            health.heartbeat_ct = ctx.ct;
            health.check_deadline = health.ttl_ms.map(|ttl| ctx.ct.saturating_add(ttl));
            if let Some(value) = reported_load {
                health.load = value;
            }
            if let Some(text) = note {
                health.note = text;
            }
            save_health(ctx, &service, &instance, &health);
            Ok(Reply::Integer(1))
        }
        RegistryCommand::Deregister { service, instance } => {
            let (record, mut instances) = match load(ctx, &service)? {
                Ok(loaded) => loaded,
                Err(reply) => return Ok(reply),
            };
            let Some(gone) = instances.remove(&instance) else {
                return Ok(Reply::Integer(0));
            };
            drop_instance(ctx, &service, &instance, &gone)?;
            save(ctx, &service, record, &instances)?;
            Ok(Reply::Integer(1))
        }
        RegistryCommand::Discover {
            service,
            statuses,
            tag,
        } => {
            let (record, instances) = match load(ctx, &service)? {
                Ok(loaded) => loaded,
                Err(reply) => return Ok(reply),
            };
            let mut listed = Vec::new();
            for (id, i) in &instances {
                if !statuses.is_empty() && !statuses.contains(&i.status) {
                    continue;
                }
                if tag.as_ref().is_some_and(|t| !i.tags.contains(t)) {
                    continue;
                }
                let health = load_health(ctx, &service, id)?;
                listed.push(instance_reply(id, i, health.as_ref(), ctx.ct));
            }
            Ok(Reply::Map(vec![
                (
                    Reply::bulk("index"),
                    Reply::Integer(record.map_or(0, |r| r.modified) as i64),
                ),
                (Reply::bulk("instances"), Reply::Array(listed)),
            ]))
        }
        RegistryCommand::Pick {
            service,
            strategy,
            sticky,
            tag,
            cursor,
        } => {
            let (_, instances) = match load(ctx, &service)? {
                Ok(loaded) => loaded,
                Err(reply) => return Ok(reply),
            };
            let healthy: Vec<(&Bytes, &Instance)> = instances
                .iter()
                .filter(|(_, i)| i.status == Status::Passing)
                .filter(|(_, i)| tag.as_ref().is_none_or(|t| i.tags.contains(t)))
                .collect();
            if healthy.is_empty() {
                return Ok(Reply::Nil);
            }
            let seed = hash_of(&[&ctx.ct.to_be_bytes(), &cursor.to_be_bytes(), &service]);
            let at = if let Some(key) = &sticky {
                // Rendezvous hashing: stable while the set changes little.
                (0..healthy.len())
                    .max_by_key(|&n| hash_of(&[key, healthy[n].0]))
                    .expect("not empty")
            } else {
                match strategy {
                    Strategy::RoundRobin => (cursor % healthy.len() as u64) as usize,
                    Strategy::Random => (seed % healthy.len() as u64) as usize,
                    Strategy::Weighted => {
                        let total: u64 = healthy.iter().map(|(_, i)| i.weight as u64).sum();
                        if total == 0 {
                            (seed % healthy.len() as u64) as usize
                        } else {
                            let mut point = seed % total;
                            healthy
                                .iter()
                                .position(|(_, i)| {
                                    let w = i.weight as u64;
                                    if point < w {
                                        true
                                    } else {
                                        point -= w;
                                        false
                                    }
                                })
                                .unwrap_or(0)
                        }
                    }
                    Strategy::LeastLoaded => {
                        let mut loads = Vec::with_capacity(healthy.len());
                        for (id, _) in &healthy {
                            loads.push(load_health(ctx, &service, id)?.map_or(0, |h| h.load));
                        }
                        let least = *loads.iter().min().expect("not empty");
                        // Among equally loaded instances, take turns.
                        let ties: Vec<usize> =
                            (0..loads.len()).filter(|&n| loads[n] == least).collect();
                        ties[(cursor % ties.len() as u64) as usize]
                    }
                }
            };
            let (id, i) = healthy[at];
            let health = load_health(ctx, &service, id)?;
            Ok(instance_reply(id, i, health.as_ref(), ctx.ct))
        }
        RegistryCommand::List => Ok(Reply::Map(
            catalog(ctx)?
                .into_iter()
                .map(|(name, count)| (Reply::Bulk(name), Reply::Integer(count as i64)))
                .collect(),
        )),
    }
}

/// The sweep found an instance's deadline due: a late heartbeat turns it
/// critical; a critical instance past its deregister-after is removed.
pub fn check(ctx: &mut Context<'_>, service: &[u8], instance: &[u8]) -> Result<(), StoreError> {
    let Some(mut health) = load_health(ctx, service, instance)? else {
        return Ok(());
    };
    let Ok((Some(record), mut instances)) = load(ctx, service)? else {
        return Ok(());
    };
    let ct = ctx.ct;
    let Some(i) = instances.get_mut(instance) else {
        forget_health(ctx, service, instance);
        return Ok(());
    };
    if health.status != Status::Critical && health.check_deadline.is_some_and(|at| at <= ct) {
        let since = health.check_deadline.expect("checked");
        health.status = Status::Critical;
        health.status_since = since;
        i.status = Status::Critical;
        i.status_since = since;
    }
    let remove = health.status == Status::Critical
        && health
            .deregister_after_ms
            .is_some_and(|after| health.status_since.saturating_add(after) <= ct);
    if remove {
        let gone = instances.remove(instance).expect("present");
        drop_instance(ctx, service, instance, &gone)?;
    } else {
        save_health(ctx, service, instance, &health);
    }
    save(ctx, service, Some(record), &instances)
}

/// Lease `lease` ended: the instance it held is deregistered.
pub fn lease_ended(
    ctx: &mut Context<'_>,
    service: &[u8],
    instance: &[u8],
    lease: u64,
) -> Result<(), StoreError> {
    let Ok((Some(record), mut instances)) = load(ctx, service)? else {
        return Ok(());
    };
    if instances
        .get(instance)
        .is_some_and(|i| i.lease == Some(lease))
    {
        instances.remove(instance);
        forget_health(ctx, service, instance);
        save(ctx, service, Some(record), &instances)?;
    }
    Ok(())
}

/// The service is deleted or overwritten: its instances' health records
/// and lease attachments go.
pub fn discard(ctx: &mut Context<'_>, service: &[u8], old: &Record) -> Result<(), StoreError> {
    for (id, instance) in decode_service(&old.body)? {
        drop_instance(ctx, service, &id, &instance)?;
    }
    let mut services = catalog(ctx)?;
    if services.remove(service).is_some() {
        save_catalog(ctx, &services);
    }
    Ok(())
}

/// Adds every instance's health deadline to `deadlines` (at start).
pub fn load_deadlines(state: &dyn StateRead, deadlines: &mut Deadlines) -> Result<(), StoreError> {
    let mut failure = None;
    state.scan(&[HEALTH], &prefix_end(&[HEALTH]), &mut |raw, value| {
        let parsed = (|| {
            let mut r = Reader::new(&raw[1..], "instance health key");
            let service = r.bytes()?;
            let instance = Bytes::copy_from_slice(&raw[1 + 4 + service.len()..]);
            let health = Health::decode(value)?;
            Ok::<_, StoreError>((service, instance, health))
        })();
        match parsed {
            Ok((service, instance, health)) => {
                deadlines.set(Target::Check(service, instance), health.next_deadline());
                true
            }
            Err(err) => {
                failure = Some(err);
                false
            }
        }
    })?;
    failure.map_or(Ok(()), Err)
}
