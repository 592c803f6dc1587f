//! The znode namespace: ZooKeeper's data model on the replicated keyspace.
//!
//! Records: `z path` -> the node (its kind, stat, create counter, data);
//! `Z parent \0 name` -> nothing, one per child, so a create or delete
//! under a parent with many children writes one small record and rewrites
//! only the parent's stat, and CHILDREN pages through them in byte order.
//! `/` and the system nodes `/zookeeper`, `/zookeeper/quota` and
//! `/zookeeper/config` always exist (the root's record is written the
//! first time its children change; the system nodes are virtual: nothing
//! is created under them, and `/zookeeper/config` is read-only, as the
//! ZooKeeper front end fills its data with the membership).
//!
//! zxids are log indices, ctime and mtime the entry's cluster time. An
//! ephemeral node is attached to a lease and goes with it; a container is
//! removed in the entry that removes its last child; a TTL node that has
//! no children has a deadline (`Target::Znode`) at mtime + TTL, and the
//! leader's sweep removes it then. Every change is a `Znode` event
//! (ZooKeeper's watch event types) for the node's watchers and a change
//! in the feed.

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::args::{integer, is};
use crate::codec::{Reader, Writer};
use crate::context::Context;
use crate::expiry::Target;
use crate::layout::prefix_end;
use crate::leases::{self, Attachment};
use crate::znode_acl::{self, Acl, Identity};
use crate::{Event, Reply};

pub const NODE: u8 = b'z';
pub const CHILD: u8 = b'Z';
/// Format 2 added the ACL and its version; format 1 records read as open.
const FORMAT: u8 = 2;
/// Largest data of one node (ZooKeeper's jute.maxbuffer default).
pub const MAX_DATA: usize = 1 << 20;
/// Longest path accepted.
pub const MAX_PATH: usize = 4096;
/// Most children one CHILDREN reply lists; more needs COUNT / AFTER.
pub const MAX_CHILDREN_REPLY: usize = 100_000;
/// Most operations in one ZNODE.MULTI.
pub const MAX_MULTI_OPS: usize = 1_000;
const SYSTEM: &str = "/zookeeper";
/// The membership in ZooKeeper's dynamic-config format (read-only).
pub const CONFIG: &str = "/zookeeper/config";
const QUOTA: &str = "/zookeeper/quota";

/// Under `/zookeeper` (the node itself included): no creates, sets,
/// deletes or ACL changes.
fn is_system(path: &str) -> bool {
    path == SYSTEM || path.starts_with("/zookeeper/")
}

/// The names of a node's virtual children, in order.
fn virtual_children(path: &str) -> &'static [&'static str] {
    match path {
        "/" => &["zookeeper"],
        SYSTEM => &["config", "quota"],
        _ => &[],
    }
}

/// How many nodes are below `path`, virtual ones included: one pass over
/// the subtree's node records, as ZooKeeper's walk of its tree.
fn descendants(ctx: &Context<'_>, path: &str) -> Result<u64, StoreError> {
    let mut prefix = node_key(path);
    if path != "/" {
        prefix.push(b'/');
    }
    let mut count = 0u64;
    ctx.raw_scan(&prefix, &prefix_end(&prefix), &mut |key, _| {
        // The root's own record has the prefix `z/` as its key.
        count += u64::from(key != prefix.as_slice());
        true
    })?;
    let below = |path: &str| virtual_children(path).len() as u64;
    Ok(match path {
        "/" => count + below("/") + below(SYSTEM),
        SYSTEM => below(SYSTEM),
        _ => count,
    })
}

/// The virtual nodes, as ZooKeeper shows them.
fn system_node(path: &str) -> Option<Znode> {
    let mut node = Znode::empty();
    match path {
        "/" | SYSTEM | QUOTA => {}
        CONFIG => node.acl = znode_acl::anyone(znode_acl::READ),
        _ => return None,
    }
    Some(node)
}

/// ZooKeeper's watch event types, as pushed to watchers.
pub const CREATED: &str = "NodeCreated";
pub const DELETED: &str = "NodeDeleted";
pub const DATA_CHANGED: &str = "NodeDataChanged";
pub const CHILDREN_CHANGED: &str = "NodeChildrenChanged";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Persistent,
    Ephemeral,
    Container,
    Ttl,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Persistent => 0,
            Kind::Ephemeral => 1,
            Kind::Container => 2,
            Kind::Ttl => 3,
        }
    }

    fn from_code(code: u8) -> Result<Self, StoreError> {
        Ok(match code {
            0 => Kind::Persistent,
            1 => Kind::Ephemeral,
            2 => Kind::Container,
            3 => Kind::Ttl,
            _ => return Err(StoreError::corrupt("znode", "unknown kind")),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Znode {
    pub kind: Kind,
    pub czxid: u64,
    pub mzxid: u64,
    pub pzxid: u64,
    pub ctime: u64,
    pub mtime: u64,
    pub version: u32,
    pub cversion: u32,
    pub num_children: u32,
    /// Creates of children ever: the next sequential suffix.
    pub next_sequence: u32,
    /// The lease of an ephemeral node (its session), else 0.
    pub owner: u64,
    pub ttl_ms: u64,
    /// Changes of the ACL (ZooKeeper's aversion).
    pub aversion: u32,
    pub acl: Vec<Acl>,
    /// No data at all (ZooKeeper's null), as opposed to empty data.
    pub null_data: bool,
    pub data: Bytes,
    /// Children that are not stored (the system nodes under `/` and
    /// `/zookeeper`): counted in the stat, never written.
    pub virtual_children: u32,
}

impl Znode {
    fn empty() -> Znode {
        Znode {
            kind: Kind::Persistent,
            czxid: 0,
            mzxid: 0,
            pzxid: 0,
            ctime: 0,
            mtime: 0,
            version: 0,
            cversion: 0,
            num_children: 0,
            next_sequence: 0,
            owner: 0,
            ttl_ms: 0,
            aversion: 0,
            acl: znode_acl::open(),
            null_data: false,
            data: Bytes::new(),
            virtual_children: 0,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80 + self.data.len());
        out.put_u8(FORMAT);
        out.put_u8(self.kind.code());
        for value in [self.czxid, self.mzxid, self.pzxid, self.ctime, self.mtime] {
            out.put_u64(value);
        }
        for value in [
            self.version,
            self.cversion,
            self.num_children,
            self.next_sequence,
        ] {
            out.put_u32(value);
        }
        out.put_u64(self.owner);
        out.put_u64(self.ttl_ms);
        out.put_u32(self.aversion);
        znode_acl::encode(&self.acl, &mut out);
        out.put_u8(self.null_data as u8);
        out.put_bytes(&self.data);
        out
    }

    pub fn decode(data: &[u8]) -> Result<Znode, StoreError> {
        let mut r = Reader::new(data, "znode");
        let format = r.u8()?;
        if format != FORMAT && format != 1 {
            return Err(StoreError::corrupt("znode", "unknown format"));
        }
        let node = Znode {
            kind: Kind::from_code(r.u8()?)?,
            czxid: r.u64()?,
            mzxid: r.u64()?,
            pzxid: r.u64()?,
            ctime: r.u64()?,
            mtime: r.u64()?,
            version: r.u32()?,
            cversion: r.u32()?,
            num_children: r.u32()?,
            next_sequence: r.u32()?,
            owner: r.u64()?,
            ttl_ms: r.u64()?,
            aversion: if format == 1 { 0 } else { r.u32()? },
            acl: if format == 1 {
                znode_acl::open()
            } else {
                znode_acl::decode(&mut r)?
            },
            null_data: format != 1 && r.u8()? != 0,
            data: r.bytes()?,
            virtual_children: 0,
        };
        r.finish()?;
        Ok(node)
    }

    /// ZooKeeper's Stat, as a map.
    fn stat(&self) -> Reply {
        let i = |v: u64| Reply::Integer(v as i64);
        Reply::Map(vec![
            (Reply::bulk("czxid"), i(self.czxid)),
            (Reply::bulk("mzxid"), i(self.mzxid)),
            (Reply::bulk("ctime"), i(self.ctime)),
            (Reply::bulk("mtime"), i(self.mtime)),
            (Reply::bulk("version"), i(self.version as u64)),
            (Reply::bulk("cversion"), i(self.cversion as u64)),
            (Reply::bulk("aversion"), i(self.aversion as u64)),
            (Reply::bulk("ephemeralOwner"), i(self.owner)),
            (Reply::bulk("dataLength"), i(self.data.len() as u64)),
            (
                Reply::bulk("numChildren"),
                i(u64::from(self.num_children) + u64::from(self.virtual_children)),
            ),
            (Reply::bulk("pzxid"), i(self.pzxid)),
        ])
    }

    /// When a TTL node with no children goes, if it is one.
    fn ttl_deadline(&self) -> Option<u64> {
        (self.kind == Kind::Ttl && self.num_children == 0)
            .then(|| self.mtime.saturating_add(self.ttl_ms))
    }
}

/// A ZooKeeper error: its code name (the reply's prefix) and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZError(pub &'static str, pub String);

impl ZError {
    fn reply(&self) -> Reply {
        Reply::error(format!("{} {}", self.0, self.1))
    }
}

fn no_node(path: &str) -> ZError {
    ZError("ZNONODE", format!("{path} does not exist"))
}

fn bad_arguments(why: String) -> ZError {
    ZError("ZBADARGUMENTS", why)
}

/// ZooKeeper's path rules; `sequential` allows the trailing `/` a
/// sequential create appends its suffix to.
pub fn validate_path(path: &[u8], sequential: bool) -> Result<&str, ZError> {
    let text =
        std::str::from_utf8(path).map_err(|_| bad_arguments("a path must be UTF-8".into()))?;
    let invalid = |why: &str| bad_arguments(format!("invalid path {text:?}: {why}"));
    if path.len() > MAX_PATH {
        return Err(invalid("longer than 4096 bytes"));
    }
    if !text.starts_with('/') {
        return Err(invalid("it must start with /"));
    }
    if text == "/" {
        return Ok(text);
    }
    let body = if sequential && text.ends_with('/') {
        &text[1..text.len() - 1]
    } else {
        &text[1..]
    };
    if text.ends_with('/') && !sequential {
        return Err(invalid("it must not end with /"));
    }
    if !body.is_empty() || !sequential {
        for segment in body.split('/') {
            if segment.is_empty() {
                return Err(invalid("empty segment"));
            }
            if segment == "." || segment == ".." {
                return Err(invalid("relative segment"));
            }
        }
    }
    if text.chars().any(|c| {
        c == '\u{0}'
            || ('\u{1}'..='\u{1f}').contains(&c)
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{fff0}'..='\u{ffff}').contains(&c)
    }) {
        return Err(invalid("control character"));
    }
    Ok(text)
}

/// The parent path and the last segment (`/a/b` -> `/a`, `b`).
fn split(path: &str) -> (&str, &str) {
    let at = path.rfind('/').expect("validated paths start with /");
    let parent = if at == 0 { "/" } else { &path[..at] };
    (parent, &path[at + 1..])
}

fn node_key(path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 1);
    out.push(NODE);
    out.extend_from_slice(path.as_bytes());
    out
}

fn children_prefix(parent: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + 2);
    out.push(CHILD);
    out.extend_from_slice(parent.as_bytes());
    out.push(0);
    out
}

fn child_key(parent: &str, name: &str) -> Vec<u8> {
    let mut out = children_prefix(parent);
    out.extend_from_slice(name.as_bytes());
    out
}

/// The node at `path`, if it exists.
pub fn load(ctx: &Context<'_>, path: &str) -> Result<Option<Znode>, StoreError> {
    let virtual_children = virtual_children(path).len() as u32;
    if let Some(bytes) = ctx.raw_get(&node_key(path))? {
        let mut node = Znode::decode(&bytes)?;
        node.virtual_children = virtual_children;
        return Ok(Some(node));
    }
    Ok(system_node(path).map(|mut node| {
        node.virtual_children = virtual_children;
        node
    }))
}

fn save(ctx: &mut Context<'_>, path: &str, node: &Znode) {
    ctx.raw_put(node_key(path), node.encode());
    if node.kind == Kind::Ttl {
        ctx.set_deadline(
            Target::Znode(Bytes::copy_from_slice(path.as_bytes())),
            node.ttl_deadline(),
        );
    }
}

fn event(ctx: &mut Context<'_>, path: &str, kind: &'static str) {
    ctx.push_event(Event::Znode {
        path: Bytes::copy_from_slice(path.as_bytes()),
        event: kind,
    });
}

/// What ZNODE.CREATE asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Create {
    pub path: Bytes,
    pub data: Bytes,
    pub kind: Kind,
    pub lease: u64,
    pub sequential: bool,
    pub ttl_ms: u64,
    /// Reply with the new node's stat too (ZooKeeper's create2).
    pub with_stat: bool,
    /// The new node's ACL (open if none is given).
    pub acl: Vec<Acl>,
    /// NODATA: ZooKeeper's null data (the data argument must be empty).
    pub null_data: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Create(Create),
    Set {
        path: Bytes,
        data: Bytes,
        version: Option<u32>,
        /// NODATA: ZooKeeper's null data.
        null_data: bool,
    },
    Delete {
        path: Bytes,
        version: Option<u32>,
    },
    Check {
        path: Bytes,
        version: Option<u32>,
    },
}

/// A namespace command and who runs it: the identities its ACL checks
/// see (`AS scheme id`), or None for a trusted caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZnodeRequest {
    pub caller: Option<Vec<Identity>>,
    pub command: ZnodeCommand,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZnodeCommand {
    GetAcl(Bytes),
    SetAcl {
        path: Bytes,
        acl: Vec<Acl>,
        version: Option<u32>,
    },
    Op(Op),
    Multi(Vec<Op>),
    Get(Bytes),
    Exists(Bytes),
    /// With `descendants`, also how many nodes are below it (ZooKeeper's
    /// getAllChildrenNumber; needs READ).
    Stat {
        path: Bytes,
        descendants: bool,
    },
    Children {
        path: Bytes,
        stat: bool,
        /// The children's data too, in the order of their names.
        data: bool,
        after: Option<Bytes>,
        count: Option<usize>,
    },
}

fn version_arg(arg: &[u8]) -> Result<Option<u32>, Reply> {
    match integer(arg) {
        Ok(-1) => Ok(None),
        Ok(v) if (0..=i64::from(u32::MAX)).contains(&v) => Ok(Some(v as u32)),
        _ => Err(Reply::error(
            "ERR VERSION must be -1 (any) or a non-negative integer",
        )),
    }
}

fn data_arg(data: &Bytes) -> Result<Bytes, Reply> {
    if data.len() > MAX_DATA {
        return Err(Reply::error(format!(
            "ERR znode data is larger than {MAX_DATA} bytes"
        )));
    }
    Ok(data.clone())
}

fn path_arg(path: &Bytes, sequential: bool) -> Result<Bytes, Reply> {
    validate_path(path, sequential).map_err(|err| err.reply())?;
    Ok(path.clone())
}

/// Is `word` an operation of ZNODE.MULTI (it ends the previous one)?
fn is_op(word: &[u8]) -> bool {
    ["create", "set", "delete", "check"]
        .iter()
        .any(|op| is(word, op))
}

/// One operation from `args` (its name first); returns it and how many
/// arguments it took.
fn parse_op(args: &[Bytes], in_multi: bool) -> Result<(Op, usize), Reply> {
    let name = &args[0];
    let syntax = || Reply::syntax_error();
    let mut used = 1;
    let mut next = |optional: bool| -> Result<Option<&Bytes>, Reply> {
        match args.get(used) {
            Some(arg) if !(in_multi && optional && is_op(arg)) => {
                used += 1;
                Ok(Some(arg))
            }
            _ if optional => Ok(None),
            _ => Err(syntax()),
        }
    };
    let op = if is(name, "create") {
        let path = next(false)?.expect("required").clone();
        let data = data_arg(next(false)?.expect("required"))?;
        let mut create = Create {
            path,
            data,
            kind: Kind::Persistent,
            lease: 0,
            sequential: false,
            ttl_ms: 0,
            with_stat: false,
            acl: Vec::new(),
            null_data: false,
        };
        let mut kinds = 0;
        while let Some(option) = next(true)? {
            if is(option, "ephemeral") {
                let lease = next(false)?.expect("required");
                create.lease = integer(lease)
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| Reply::error("ERR invalid lease id"))?
                    as u64;
                create.kind = Kind::Ephemeral;
                kinds += 1;
            } else if is(option, "sequential") {
                create.sequential = true;
            } else if is(option, "stat") {
                create.with_stat = true;
            } else if is(option, "nodata") && create.data.is_empty() {
                create.null_data = true;
            } else if is(option, "acl") {
                let perms = next(false)?.expect("required").clone();
                let scheme = next(false)?.expect("required").clone();
                let id = next(false)?.expect("required").clone();
                create
                    .acl
                    .push(znode_acl::parse_entry(&perms, &scheme, &id)?);
            } else if is(option, "container") {
                create.kind = Kind::Container;
                kinds += 1;
            } else if is(option, "ttl") {
                let ttl = next(false)?.expect("required");
                create.ttl_ms = integer(ttl)
                    .ok()
                    .filter(|ms| *ms > 0 && *ms <= crate::commands::MAX_EXPIRE_MS)
                    .ok_or_else(|| {
                        Reply::error("ERR TTL must be a positive number of milliseconds")
                    })? as u64;
                create.kind = Kind::Ttl;
                kinds += 1;
            } else {
                return Err(syntax());
            }
        }
        if kinds > 1 {
            return Err(Reply::error(
                "ERR a znode is one of EPHEMERAL, CONTAINER or TTL",
            ));
        }
        if create.kind == Kind::Container && create.sequential {
            return Err(Reply::error("ERR a container cannot be SEQUENTIAL"));
        }
        create.path = path_arg(&create.path, create.sequential)?;
        Op::Create(create)
    } else if is(name, "set") {
        let path = path_arg(next(false)?.expect("required"), false)?;
        let data = data_arg(next(false)?.expect("required"))?;
        let (mut version, mut null_data) = (None, false);
        while let Some(option) = next(true)? {
            if is(option, "version") {
                version = version_arg(next(false)?.expect("required"))?;
            } else if is(option, "nodata") && data.is_empty() {
                null_data = true;
            } else {
                return Err(syntax());
            }
        }
        Op::Set {
            path,
            data,
            version,
            null_data,
        }
    } else if is(name, "delete") || is(name, "check") {
        let path = path_arg(next(false)?.expect("required"), false)?;
        let mut version = None;
        while let Some(option) = next(true)? {
            if is(option, "version") {
                version = version_arg(next(false)?.expect("required"))?;
            } else if is(name, "check") && version.is_none() && integer(option).is_ok() {
                // CHECK path version (ZooKeeper's order) is accepted too.
                version = version_arg(option)?;
            } else {
                return Err(syntax());
            }
        }
        if is(name, "delete") {
            Op::Delete { path, version }
        } else {
            Op::Check { path, version }
        }
    } else {
        return Err(Reply::error(format!(
            "ERR unknown ZNODE.MULTI operation '{}' (CREATE, SET, DELETE or CHECK)",
            String::from_utf8_lossy(name)
        )));
    };
    Ok((op, used))
}

pub fn parse(name: &str, args: &[Bytes]) -> Result<ZnodeRequest, Reply> {
    let (args, caller) = znode_acl::split_caller(args)?;
    if args.is_empty() && name != "znode.multi" {
        return Err(Reply::wrong_arity(name));
    }
    Ok(ZnodeRequest {
        caller,
        command: parse_command(name, args)?,
    })
}

fn parse_command(name: &str, args: &[Bytes]) -> Result<ZnodeCommand, Reply> {
    let sub = name.trim_start_matches("znode.");
    Ok(match sub {
        "getacl" => {
            if args.len() != 1 {
                return Err(Reply::syntax_error());
            }
            ZnodeCommand::GetAcl(path_arg(&args[0], false)?)
        }
        "setacl" => {
            let path = path_arg(&args[0], false)?;
            let (mut acl, mut version) = (Vec::new(), None);
            let mut rest = args[1..].iter();
            while let Some(option) = rest.next() {
                let mut value = || rest.next().ok_or_else(Reply::syntax_error);
                if is(option, "acl") {
                    let (perms, scheme, id) = (value()?, value()?, value()?);
                    acl.push(znode_acl::parse_entry(perms, scheme, id)?);
                } else if is(option, "version") {
                    version = version_arg(value()?)?;
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            if acl.is_empty() {
                return Err(Reply::error(
                    "ERR ZNODE.SETACL needs at least one ACL entry",
                ));
            }
            ZnodeCommand::SetAcl { path, acl, version }
        }
        "create" | "set" | "delete" => {
            let mut argv = vec![Bytes::copy_from_slice(sub.as_bytes())];
            argv.extend_from_slice(args);
            let (op, used) = parse_op(&argv, false)?;
            if used != argv.len() {
                return Err(Reply::syntax_error());
            }
            ZnodeCommand::Op(op)
        }
        "multi" => {
            let mut ops = Vec::new();
            let mut at = 0;
            while at < args.len() {
                let (op, used) = parse_op(&args[at..], true)?;
                ops.push(op);
                at += used;
                if ops.len() > MAX_MULTI_OPS {
                    return Err(Reply::error(format!(
                        "ERR at most {MAX_MULTI_OPS} operations in one ZNODE.MULTI"
                    )));
                }
            }
            ZnodeCommand::Multi(ops)
        }
        "get" | "exists" | "stat" => {
            let path = path_arg(&args[0], false)?;
            let mut descendants = false;
            match &args[1..] {
                [] => {}
                [watch] if sub != "stat" && is(watch, "watch") => {}
                [option] if sub == "stat" && is(option, "descendants") => descendants = true,
                _ => return Err(Reply::syntax_error()),
            }
            match sub {
                "get" => ZnodeCommand::Get(path),
                "exists" => ZnodeCommand::Exists(path),
                _ => ZnodeCommand::Stat { path, descendants },
            }
        }
        "children" => {
            let path = path_arg(&args[0], false)?;
            let (mut stat, mut data, mut after, mut count) = (false, false, None, None);
            let mut rest = args[1..].iter();
            while let Some(option) = rest.next() {
                if is(option, "watch") {
                } else if is(option, "stat") {
                    stat = true;
                } else if is(option, "data") {
                    data = true;
                } else if is(option, "after") {
                    after = Some(rest.next().ok_or_else(Reply::syntax_error)?.clone());
                } else if is(option, "count") {
                    let n = rest.next().ok_or_else(Reply::syntax_error)?;
                    count = Some(
                        integer(n)
                            .ok()
                            .filter(|n| (1..=MAX_CHILDREN_REPLY as i64).contains(n))
                            .ok_or_else(|| {
                                Reply::error(format!(
                                    "ERR COUNT must be between 1 and {MAX_CHILDREN_REPLY}"
                                ))
                            })? as usize,
                    );
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            ZnodeCommand::Children {
                path,
                stat,
                data,
                after,
                count,
            }
        }
        other => unreachable!("znode.{other} is not a namespace command"),
    })
}

fn text(path: &Bytes) -> &str {
    std::str::from_utf8(path).expect("validated")
}

/// ZooKeeper's NOAUTH unless `caller` may do `perm` on `node`.
fn check_acl(path: &str, node: &Znode, caller: Caller<'_>, perm: u32) -> Result<(), ZError> {
    if znode_acl::allows(&node.acl, caller, perm) {
        Ok(())
    } else {
        Err(ZError(
            "ZNOAUTH",
            format!("not authorized to {} {path}", znode_acl::letters(perm)),
        ))
    }
}

type Caller<'a> = Option<&'a [Identity]>;

fn check_version(path: &str, node: &Znode, version: Option<u32>) -> Result<(), ZError> {
    match version {
        Some(expected) if expected != node.version => Err(ZError(
            "ZBADVERSION",
            format!("{path} is at version {}, not {expected}", node.version),
        )),
        _ => Ok(()),
    }
}

fn create(
    ctx: &mut Context<'_>,
    create: &Create,
    caller: Caller<'_>,
) -> Result<Result<(String, Znode), ZError>, StoreError> {
    let given = text(&create.path);
    if given == "/" && !create.sequential {
        return Ok(Err(ZError("ZNODEEXISTS", "/ exists".into())));
    }
    let (parent_path, _) = split(given);
    let parent_path = if create.sequential && given.ends_with('/') && given.len() > 1 {
        &given[..given.len() - 1]
    } else {
        parent_path
    };
    let Some(mut parent) = load(ctx, parent_path)? else {
        return Ok(Err(no_node(parent_path)));
    };
    if let Err(err) = check_acl(parent_path, &parent, caller, znode_acl::CREATE) {
        return Ok(Err(err));
    }
    let acl = if create.acl.is_empty() {
        znode_acl::open()
    } else {
        match znode_acl::validate(create.acl.clone(), caller) {
            Ok(acl) => acl,
            Err(why) => return Ok(Err(ZError("ZINVALIDACL", why))),
        }
    };
    if parent.kind == Kind::Ephemeral {
        return Ok(Err(ZError(
            "ZNOCHILDRENFOREPHEMERALS",
            format!("{parent_path} is ephemeral and cannot have children"),
        )));
    }
    if is_system(parent_path) {
        return Ok(Err(bad_arguments("/zookeeper is reserved".into())));
    }
    let path = if create.sequential {
        format!("{given}{:010}", parent.next_sequence)
    } else {
        given.to_string()
    };
    if load(ctx, &path)?.is_some() {
        return Ok(Err(ZError("ZNODEEXISTS", format!("{path} exists"))));
    }
    if create.kind == Kind::Ephemeral {
        if let Err(reply) = leases::check_attachable(ctx, create.lease)? {
            let Reply::Error(why) = reply else {
                unreachable!("a refusal is an error")
            };
            return Ok(Err(ZError(
                "ZSESSIONEXPIRED",
                format!("lease {}: {why}", create.lease),
            )));
        }
    }
    let node = Znode {
        kind: create.kind,
        czxid: ctx.index,
        mzxid: ctx.index,
        pzxid: ctx.index,
        ctime: ctx.ct,
        mtime: ctx.ct,
        version: 0,
        cversion: 0,
        num_children: 0,
        next_sequence: 0,
        owner: create.lease,
        ttl_ms: create.ttl_ms,
        aversion: 0,
        acl,
        null_data: create.null_data,
        data: create.data.clone(),
        virtual_children: 0,
    };
    save(ctx, &path, &node);
    let (_, name) = split(&path);
    ctx.raw_put(child_key(parent_path, name), Vec::new());
    parent.next_sequence = parent.next_sequence.wrapping_add(1);
    parent.cversion = parent.cversion.wrapping_add(1);
    parent.num_children += 1;
    parent.pzxid = ctx.index;
    if parent_path != SYSTEM {
        save(ctx, parent_path, &parent);
    }
    if create.kind == Kind::Ephemeral {
        leases::attach(
            ctx,
            create.lease,
            Attachment::Znode(Bytes::copy_from_slice(path.as_bytes())),
        )?;
    }
    event(ctx, &path, CREATED);
    event(ctx, parent_path, CHILDREN_CHANGED);
    ctx.note_znode_change(
        "znode.create",
        path.as_bytes(),
        None,
        Some(node.data.clone()),
    );
    Ok(Ok((path, node)))
}

/// Removes the node at `path` (it exists and has no children) and keeps
/// its parent's stat; a container left empty goes too.
/// Removes a node; a container parent left without children is noted in
/// `emptied` (see [`remove_emptied`]).
fn remove(
    ctx: &mut Context<'_>,
    path: &str,
    node: &Znode,
    emptied: &mut Vec<String>,
) -> Result<(), StoreError> {
    ctx.raw_delete(node_key(path));
    let (parent_path, name) = split(path);
    ctx.raw_delete(child_key(parent_path, name));
    if node.kind == Kind::Ttl {
        ctx.set_deadline(Target::Znode(Bytes::copy_from_slice(path.as_bytes())), None);
    }
    if node.kind == Kind::Ephemeral {
        leases::detach(
            ctx,
            node.owner,
            &Attachment::Znode(Bytes::copy_from_slice(path.as_bytes())),
        )?;
    }
    event(ctx, path, DELETED);
    event(ctx, parent_path, CHILDREN_CHANGED);
    ctx.note_znode_change(
        "znode.delete",
        path.as_bytes(),
        Some(node.data.clone()),
        None,
    );
    if let Some(mut parent) = load(ctx, parent_path)? {
        parent.cversion = parent.cversion.wrapping_add(1);
        parent.num_children = parent.num_children.saturating_sub(1);
        parent.pzxid = ctx.index;
        if parent.kind == Kind::Container && parent.num_children == 0 {
            emptied.push(parent_path.to_string());
        }
        save(ctx, parent_path, &parent);
    }
    Ok(())
}

/// Containers left without children go once the whole command has run,
/// not inside it: a multi may delete a container's last child and then
/// the container itself (ZooKeeper's deleteall does), or give it a new
/// child. A container whose removal empties its own container parent
/// takes that one along.
fn remove_emptied(ctx: &mut Context<'_>, mut emptied: Vec<String>) -> Result<(), StoreError> {
    while let Some(path) = emptied.pop() {
        if let Some(node) = load(ctx, &path)? {
            if node.kind == Kind::Container && node.num_children == 0 {
                remove(ctx, &path, &node, &mut emptied)?;
            }
        }
    }
    Ok(())
}

fn delete(
    ctx: &mut Context<'_>,
    path: &Bytes,
    version: Option<u32>,
    caller: Caller<'_>,
    emptied: &mut Vec<String>,
) -> Result<Result<(), ZError>, StoreError> {
    let path = text(path);
    if path == "/" || is_system(path) {
        return Ok(Err(bad_arguments(format!("{path} cannot be deleted"))));
    }
    let Some(node) = load(ctx, path)? else {
        return Ok(Err(no_node(path)));
    };
    if caller.is_some() {
        let (parent_path, _) = split(path);
        if let Some(parent) = load(ctx, parent_path)? {
            if let Err(err) = check_acl(parent_path, &parent, caller, znode_acl::DELETE) {
                return Ok(Err(err));
            }
        }
    }
    if let Err(err) = check_version(path, &node, version) {
        return Ok(Err(err));
    }
    if node.num_children > 0 {
        return Ok(Err(ZError(
            "ZNOTEMPTY",
            format!("{path} has {} children", node.num_children),
        )));
    }
    remove(ctx, path, &node, emptied)?;
    Ok(Ok(()))
}

fn set(
    ctx: &mut Context<'_>,
    path: &Bytes,
    data: &Bytes,
    null_data: bool,
    version: Option<u32>,
    caller: Caller<'_>,
) -> Result<Result<Znode, ZError>, StoreError> {
    let path = text(path);
    let Some(mut node) = load(ctx, path)? else {
        return Ok(Err(no_node(path)));
    };
    if let Err(err) = check_acl(path, &node, caller, znode_acl::WRITE) {
        return Ok(Err(err));
    }
    if is_system(path) {
        return Ok(Err(bad_arguments("/zookeeper is reserved".into())));
    }
    if let Err(err) = check_version(path, &node, version) {
        return Ok(Err(err));
    }
    let before = std::mem::replace(&mut node.data, data.clone());
    node.null_data = null_data;
    node.version = node.version.wrapping_add(1);
    node.mzxid = ctx.index;
    node.mtime = ctx.ct;
    save(ctx, path, &node);
    event(ctx, path, DATA_CHANGED);
    ctx.note_znode_change(
        "znode.set",
        path.as_bytes(),
        Some(before),
        Some(data.clone()),
    );
    Ok(Ok(node))
}

/// Runs one operation: its reply on success, its error otherwise.
fn run(
    ctx: &mut Context<'_>,
    op: &Op,
    caller: Caller<'_>,
    emptied: &mut Vec<String>,
) -> Result<Result<Reply, ZError>, StoreError> {
    Ok(match op {
        Op::Create(c) => create(ctx, c, caller)?.map(|(path, node)| {
            if c.with_stat {
                Reply::Map(vec![
                    (Reply::bulk("path"), Reply::bulk(path)),
                    (Reply::bulk("stat"), node.stat()),
                ])
            } else {
                Reply::bulk(path)
            }
        }),
        Op::Set {
            path,
            data,
            version,
            null_data,
        } => set(ctx, path, data, *null_data, *version, caller)?.map(|node| node.stat()),
        Op::Delete { path, version } => {
            delete(ctx, path, *version, caller, emptied)?.map(|()| Reply::ok())
        }
        Op::Check { path, version } => {
            let name = text(path);
            match load(ctx, name)? {
                None => Err(no_node(name)),
                Some(node) => check_acl(name, &node, caller, znode_acl::READ)
                    .and_then(|()| check_version(name, &node, *version))
                    .map(|()| Reply::ok()),
            }
        }
    })
}

/// Loads `path` for a read that needs `perm`: the node, or the error.
fn readable(
    ctx: &Context<'_>,
    path: &str,
    caller: Caller<'_>,
    perm: u32,
) -> Result<Result<Znode, ZError>, StoreError> {
    Ok(match load(ctx, path)? {
        None => Err(no_node(path)),
        Some(node) => check_acl(path, &node, caller, perm).map(|()| node),
    })
}

pub fn execute(ctx: &mut Context<'_>, request: ZnodeRequest) -> Result<Reply, StoreError> {
    let caller = request.caller.as_deref();
    Ok(match request.command {
        ZnodeCommand::GetAcl(path) => {
            match readable(ctx, text(&path), caller, znode_acl::READ | znode_acl::ADMIN)? {
                Err(err) => err.reply(),
                Ok(node) => Reply::Map(vec![
                    (Reply::bulk("acl"), znode_acl::reply(&node.acl)),
                    (Reply::bulk("stat"), node.stat()),
                ]),
            }
        }
        ZnodeCommand::SetAcl { path, acl, version } => {
            let name = text(&path);
            if is_system(name) {
                return Ok(bad_arguments("/zookeeper is reserved".into()).reply());
            }
            let mut node = match readable(ctx, name, caller, znode_acl::ADMIN)? {
                Err(err) => return Ok(err.reply()),
                Ok(node) => node,
            };
            if let Some(expected) = version.filter(|v| *v != node.aversion) {
                return Ok(ZError(
                    "ZBADVERSION",
                    format!(
                        "{name}'s ACL is at version {}, not {expected}",
                        node.aversion
                    ),
                )
                .reply());
            }
            node.acl = match znode_acl::validate(acl, caller) {
                Ok(acl) => acl,
                Err(why) => return Ok(ZError("ZINVALIDACL", why).reply()),
            };
            node.aversion = node.aversion.wrapping_add(1);
            save(ctx, name, &node);
            node.stat()
        }
        ZnodeCommand::Op(op) => {
            let mut emptied = Vec::new();
            match run(ctx, &op, caller, &mut emptied)? {
                Ok(reply) => {
                    remove_emptied(ctx, emptied)?;
                    reply
                }
                Err(err) => err.reply(),
            }
        }
        ZnodeCommand::Multi(ops) => {
            // All or nothing: a failing operation undoes the earlier ones.
            let checkpoint = ctx.checkpoint();
            let mut results = Vec::with_capacity(ops.len());
            let mut failed = false;
            let mut emptied = Vec::new();
            for op in &ops {
                if failed {
                    results.push(
                        ZError(
                            "ZRUNTIMEINCONSISTENCY",
                            "not run: an earlier operation failed".into(),
                        )
                        .reply(),
                    );
                    continue;
                }
                match run(ctx, op, caller, &mut emptied)? {
                    Ok(reply) => results.push(reply),
                    Err(err) => {
                        failed = true;
                        results.push(err.reply());
                    }
                }
            }
            if !failed {
                remove_emptied(ctx, emptied)?;
            } else {
                ctx.restore(checkpoint);
                // The earlier ones report ok, as ZooKeeper's results do.
                for result in results.iter_mut() {
                    if !result.is_error() {
                        *result = Reply::ok();
                    }
                }
            }
            Reply::Array(results)
        }
        ZnodeCommand::Get(path) => match readable(ctx, text(&path), caller, znode_acl::READ)? {
            Err(err) => err.reply(),
            Ok(node) => Reply::Map(vec![
                (
                    Reply::bulk("data"),
                    if node.null_data {
                        Reply::Nil
                    } else {
                        Reply::Bulk(node.data.clone())
                    },
                ),
                (Reply::bulk("stat"), node.stat()),
            ]),
        },
        ZnodeCommand::Exists(path) => match load(ctx, text(&path))? {
            None => Reply::Nil,
            Some(node) => node.stat(),
        },
        ZnodeCommand::Stat {
            path,
            descendants: false,
        } => match load(ctx, text(&path))? {
            None => no_node(text(&path)).reply(),
            Some(node) => node.stat(),
        },
        ZnodeCommand::Stat {
            path,
            descendants: true,
        } => {
            let name = text(&path);
            let node = match readable(ctx, name, caller, znode_acl::READ)? {
                Err(err) => return Ok(err.reply()),
                Ok(node) => node,
            };
            let Reply::Map(mut fields) = node.stat() else {
                unreachable!("a stat is a map")
            };
            let count = descendants(ctx, name)?;
            fields.push((Reply::bulk("descendants"), Reply::Integer(count as i64)));
            Reply::Map(fields)
        }
        ZnodeCommand::Children {
            path,
            stat,
            data,
            after,
            count,
        } => {
            let name = text(&path);
            let node = match readable(ctx, name, caller, znode_acl::READ)? {
                Err(err) => return Ok(err.reply()),
                Ok(node) => node,
            };
            let limit = count.unwrap_or(MAX_CHILDREN_REPLY);
            let prefix = children_prefix(name);
            let mut start = prefix.clone();
            if let Some(after) = &after {
                start.extend_from_slice(after);
                start.push(0);
            }
            // Up to one more than a page of stored names, then the
            // virtual ones after `after`: the page is the first `limit` of
            // both, in order, and there is more if anything is left over.
            let mut children = Vec::new();
            ctx.raw_scan(&start, &prefix_end(&prefix), &mut |key, _| {
                children.push(Bytes::copy_from_slice(&key[prefix.len()..]));
                children.len() <= limit
            })?;
            children.extend(
                virtual_children(name)
                    .iter()
                    .filter(|v| after.as_ref().is_none_or(|a| a.as_ref() < v.as_bytes()))
                    .map(|v| Bytes::from_static(v.as_bytes())),
            );
            children.sort();
            let more = children.len() > limit;
            children.truncate(limit);
            if more && count.is_none() {
                return Ok(Reply::error(format!(
                    "ERR {name} has more than {MAX_CHILDREN_REPLY} children: page with COUNT n and AFTER name"
                )));
            }
            let names = Reply::Array(children.iter().cloned().map(Reply::Bulk).collect());
            if !stat && !data && count.is_none() {
                return Ok(names);
            }
            let mut fields = vec![(Reply::bulk("children"), names)];
            if data {
                let mut values = Vec::with_capacity(children.len());
                for child in &children {
                    let child_path = if name == "/" {
                        format!("/{}", String::from_utf8_lossy(child))
                    } else {
                        format!("{name}/{}", String::from_utf8_lossy(child))
                    };
                    values.push(match load(ctx, &child_path)? {
                        Some(node) if node.null_data => Reply::Nil,
                        Some(node) => Reply::Bulk(node.data),
                        None => Reply::Nil,
                    });
                }
                fields.push((Reply::bulk("data"), Reply::Array(values)));
            }
            if stat {
                let mut shown = node.clone();
                if name == "/" {
                    shown.num_children += 1;
                }
                fields.push((Reply::bulk("stat"), shown.stat()));
            }
            if count.is_some() {
                let next = match (more, children.last()) {
                    (true, Some(last)) => Reply::Bulk(last.clone()),
                    _ => Reply::Nil,
                };
                fields.push((Reply::bulk("next"), next));
            }
            Reply::Map(fields)
        }
    })
}

/// The lease of an ephemeral node ended: the node goes.
pub fn lease_ended(ctx: &mut Context<'_>, path: &Bytes, lease: u64) -> Result<(), StoreError> {
    let Ok(path) = std::str::from_utf8(path) else {
        return Ok(());
    };
    if let Some(node) = load(ctx, path)? {
        if node.kind == Kind::Ephemeral && node.owner == lease && node.num_children == 0 {
            let mut emptied = Vec::new();
            remove(ctx, path, &node, &mut emptied)?;
            remove_emptied(ctx, emptied)?;
        }
    }
    Ok(())
}

/// A TTL node's deadline passed: it goes if it still has no children and
/// was not modified since.
pub fn ttl_passed(ctx: &mut Context<'_>, path: &Bytes) -> Result<(), StoreError> {
    let Ok(path) = std::str::from_utf8(path) else {
        return Ok(());
    };
    match load(ctx, path)? {
        Some(node) if node.ttl_deadline().is_some_and(|at| at <= ctx.ct) => {
            let mut emptied = Vec::new();
            remove(ctx, path, &node, &mut emptied)?;
            remove_emptied(ctx, emptied)
        }
        Some(node) => {
            ctx.set_deadline(
                Target::Znode(Bytes::copy_from_slice(path.as_bytes())),
                node.ttl_deadline(),
            );
            Ok(())
        }
        None => {
            ctx.set_deadline(Target::Znode(Bytes::copy_from_slice(path.as_bytes())), None);
            Ok(())
        }
    }
}

/// Adds every TTL node's deadline to `deadlines` (at start).
pub fn load_deadlines(
    state: &dyn lockstep_store::StateRead,
    deadlines: &mut crate::expiry::Deadlines,
) -> Result<(), StoreError> {
    let mut failure = None;
    state.scan(
        &[NODE],
        &prefix_end(&[NODE]),
        &mut |key, value| match Znode::decode(value) {
            Ok(node) => {
                if let Some(at) = node.ttl_deadline() {
                    deadlines.set(Target::Znode(Bytes::copy_from_slice(&key[1..])), Some(at));
                }
                true
            }
            Err(err) => {
                failure = Some(err);
                false
            }
        },
    )?;
    match failure {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_zookeepers_rules() {
        for good in ["/", "/a", "/a/b", "/a-b/c.d", "/zookeeper", "/é"] {
            assert!(validate_path(good.as_bytes(), false).is_ok(), "{good}");
        }
        for bad in [
            "", "a", "/a/", "//a", "/a//b", "/a/./b", "/a/..", "/a\u{1}", "/a\u{0}",
        ] {
            assert!(validate_path(bad.as_bytes(), false).is_err(), "{bad:?}");
        }
        assert!(
            validate_path(b"/dir/", true).is_ok(),
            "sequential under a dir"
        );
        assert!(validate_path(b"/dir/", false).is_err());
        assert!(validate_path(&[b'/', 0xff], false).is_err(), "not UTF-8");
        assert_eq!(split("/a/b"), ("/a", "b"));
        assert_eq!(split("/a"), ("/", "a"));
    }

    #[test]
    fn nodes_round_trip_and_truncation_is_an_error() {
        let mut node = Znode::empty();
        node.kind = Kind::Ttl;
        node.ttl_ms = 5;
        node.data = Bytes::from_static(b"data");
        let bytes = node.encode();
        assert_eq!(Znode::decode(&bytes).unwrap(), node);
        for cut in 0..bytes.len() {
            assert!(Znode::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
    }
}
