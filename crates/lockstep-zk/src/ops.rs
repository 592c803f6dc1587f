//! Each request, mapped onto the engine's namespace commands: writes are
//! proposals through the log, reads linearizable reads (ReadIndex), and
//! watches go to the node's watch table keyed by this connection.

use bytes::Bytes;
use lockstep_engine::Reply;
use lockstep_raft::ProposeError;
use lockstep_server::ZnodeWatchKind as Kind;

use crate::connection::Conn;
use crate::jute::Writer;
use crate::proto::{err, op, Acl, Create, CreateMode, Request, Stat};

/// A reply to one request: the index of the state it reflects (the reply
/// header's zxid), its error code and its body.
pub struct Answer {
    pub index: u64,
    pub err: i32,
    pub body: Writer,
}

impl Answer {
    fn ok(index: u64, body: Writer) -> Answer {
        Answer {
            index,
            err: err::OK,
            body,
        }
    }

    fn error(index: u64, code: i32) -> Answer {
        Answer {
            index,
            err: code,
            body: Writer::default(),
        }
    }
}

pub enum Outcome {
    Reply(Answer),
    /// Reply, then close (closeSession, an unknown op, a failed auth).
    ReplyAndClose(Answer),
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// A field of an engine map reply.
pub(crate) fn field<'a>(reply: &'a Reply, name: &str) -> Option<&'a Reply> {
    let Reply::Map(fields) = reply else {
        return None;
    };
    fields
        .iter()
        .find(|(k, _)| matches!(k, Reply::Bulk(key) if key.as_ref() == name.as_bytes()))
        .map(|(_, v)| v)
}

fn int(reply: &Reply, name: &str) -> i64 {
    match field(reply, name) {
        Some(Reply::Integer(v)) => *v,
        _ => 0,
    }
}

/// The engine's stat map as a jute stat.
pub fn stat_of(reply: &Reply) -> Stat {
    Stat {
        czxid: int(reply, "czxid"),
        mzxid: int(reply, "mzxid"),
        ctime: int(reply, "ctime"),
        mtime: int(reply, "mtime"),
        version: int(reply, "version") as i32,
        cversion: int(reply, "cversion") as i32,
        aversion: int(reply, "aversion") as i32,
        ephemeral_owner: int(reply, "ephemeralOwner"),
        data_length: int(reply, "dataLength") as i32,
        num_children: int(reply, "numChildren") as i32,
        pzxid: int(reply, "pzxid"),
    }
}

fn stat_body(reply: &Reply) -> Writer {
    let mut w = Writer::default();
    stat_of(reply).write(&mut w);
    w
}

fn error_code(reply: &Reply) -> Option<i32> {
    match reply {
        Reply::Error(text) => Some(crate::proto::code_of(text)),
        _ => None,
    }
}

fn version(v: i32) -> Bytes {
    b(&v.to_string())
}

fn push_acl(argv: &mut Vec<Bytes>, acl: &[Acl]) {
    for entry in acl {
        argv.push(b("ACL"));
        argv.push(b(
            &(entry.perms & lockstep_engine::znode_acl::ALL as i32).to_string()
        ));
        argv.push(entry.scheme.clone());
        argv.push(entry.id.clone());
    }
}

/// The engine's ACL reply (`[letters, scheme, id]` each) as jute.
fn acl_of(reply: &Reply) -> Vec<Acl> {
    let Some(Reply::Array(entries)) = field(reply, "acl") else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| match entry {
            Reply::Array(parts) => match parts.as_slice() {
                [Reply::Bulk(perms), Reply::Bulk(scheme), Reply::Bulk(id)] => Some(Acl {
                    perms: lockstep_engine::znode_acl::parse_perms(perms).unwrap_or(0) as i32,
                    scheme: scheme.clone(),
                    id: id.clone(),
                }),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Replaces a field of an engine map reply.
fn set_field(reply: &mut Reply, name: &str, value: Reply) {
    if let Reply::Map(fields) = reply {
        for (key, slot) in fields.iter_mut() {
            if matches!(key, Reply::Bulk(k) if k.as_ref() == name.as_bytes()) {
                *slot = value;
                return;
            }
        }
    }
}

impl Conn {
    /// The membership in ZooKeeper's dynamic-config format, as
    /// /zookeeper/config holds it: `server.id=host:peer-port:peer-port:role`
    /// and `;client-host:client-port` where this node knows the member's
    /// ZooKeeper address; `version=0` as a static ZooKeeper ensemble shows.
    pub fn membership_config(&self) -> String {
        let status = self.ctx.node.status();
        let mut out = String::new();
        let members = status
            .voters
            .iter()
            .map(|id| (*id, "participant"))
            .chain(status.learners.iter().map(|id| (*id, "observer")));
        let mut members: Vec<(u64, &str)> = members.collect();
        members.sort_unstable();
        for (id, role) in members {
            let peer = status
                .members
                .addrs
                .get(&id)
                .map(|a| a.peer.clone())
                .unwrap_or_default();
            let Some((host, port)) = peer.rsplit_once(':') else {
                continue;
            };
            out.push_str(&format!("server.{id}={host}:{port}:{port}:{role}"));
            if let Some(client) = self.config.addrs.get(&id) {
                out.push_str(&format!(";{client}"));
            }
            out.push('\n');
        }
        out.push_str("version=0");
        out
    }

    /// A getData reply with what the front end knows better than the
    /// engine: the data of /zookeeper/config.
    fn system_data(&self, path: &[u8], mut reply: Reply) -> Reply {
        if path != lockstep_engine::ZNODE_CONFIG_PATH.as_bytes() {
            return reply;
        }
        let text = self.membership_config();
        if let Reply::Map(fields) = &mut reply {
            for (key, value) in fields.iter_mut() {
                if matches!(key, Reply::Bulk(k) if k.as_ref() == b"stat") {
                    set_field(value, "dataLength", Reply::Integer(text.len() as i64));
                }
            }
        }
        set_field(&mut reply, "data", Reply::Bulk(Bytes::from(text)));
        reply
    }

    /// The argv of a create, or its error code.
    fn create_argv(&self, op_code: i32, c: &Create, in_multi: bool) -> Result<Vec<Bytes>, i32> {
        let mode = CreateMode::from_flags(c.flags).ok_or(err::BAD_ARGUMENTS)?;
        if (op_code == op::CREATE_TTL) != mode.ttl
            || (op_code == op::CREATE_CONTAINER && !mode.container)
        {
            return Err(err::BAD_ARGUMENTS);
        }
        if c.acl.is_empty() {
            return Err(err::INVALID_ACL);
        }
        let mut argv = vec![
            b("ZNODE.CREATE"),
            c.path.clone(),
            c.data.clone().unwrap_or_default(),
        ];
        if c.data.is_none() {
            argv.push(b("NODATA"));
        }
        push_acl(&mut argv, &c.acl);
        if in_multi {
            argv[0] = b("create");
        }
        if mode.ephemeral {
            argv.push(b("EPHEMERAL"));
            argv.push(b(&self.session.id.to_string()));
        }
        if mode.sequential {
            argv.push(b("SEQUENTIAL"));
        }
        if mode.container {
            argv.push(b("CONTAINER"));
        }
        if mode.ttl {
            if c.ttl <= 0 {
                return Err(err::BAD_ARGUMENTS);
            }
            argv.push(b("TTL"));
            argv.push(b(&c.ttl.to_string()));
        }
        if op_code != op::CREATE {
            argv.push(b("STAT"));
        }
        Ok(argv)
    }

    /// `argv` with this session's identities for the engine's ACL
    /// checks (none for the super user: trusted).
    pub fn as_caller(&self, argv: &[Bytes]) -> Vec<Bytes> {
        let mut out = argv.to_vec();
        if !self.superuser && argv[0].starts_with(b"ZNODE.") {
            out.extend([b("AS"), b("ip"), b(&self.remote.ip().to_string())]);
            for (scheme, id) in &self.identities {
                out.extend([b("AS"), scheme.clone(), id.clone()]);
            }
        }
        out
    }

    async fn write(&mut self, argv: &[Bytes]) -> Result<(Reply, u64), ProposeError> {
        let argv = self.as_caller(argv);
        let answered = self.ctx.node.propose(&argv).await?;
        Ok((answered.reply, answered.index))
    }

    /// A linearizable read; in read-only mode, this node's state as it is.
    async fn read(&mut self, argv: &[Bytes]) -> Result<(Reply, u64), ProposeError> {
        let argv = self.as_caller(argv);
        if self.session.read_only {
            return Ok(self.ctx.node.read_local_at(&argv));
        }
        self.ctx.node.read_at(&argv).await
    }

    /// Waits until this node has applied everything committed before now
    /// (nothing to wait for in read-only mode: no leader to ask).
    pub async fn barrier(&self) -> Result<(), ProposeError> {
        if self.session.read_only {
            return Ok(());
        }
        self.ctx.node.read_barrier().await
    }

    /// A read that may leave a one-shot watch: registered before the read
    /// and armed with its index (nothing between is missed), dropped when
    /// the read failed (`keep_on` says which errors still keep it: an
    /// exists watch stays on a missing node).
    async fn watched_read(
        &mut self,
        argv: &[Bytes],
        watch: Option<Kind>,
        keep_on_no_node: bool,
    ) -> Result<(Reply, u64), ProposeError> {
        let path = argv[1].clone();
        let id = match watch {
            Some(kind) => {
                self.ctx
                    .znode_watches
                    .register(self.client_id, &self.mailbox, path, kind, None)
            }
            None => None,
        };
        let result = self.read(argv).await;
        if let Some(id) = id {
            match &result {
                Ok((reply, index)) => {
                    let keep = match reply {
                        Reply::Error(_) => {
                            keep_on_no_node && error_code(reply) == Some(err::NO_NODE)
                        }
                        _ => true,
                    };
                    if keep && *index > 0 {
                        self.ctx.znode_watches.arm(id, *index);
                    } else {
                        self.ctx.znode_watches.cancel(id);
                    }
                }
                Err(_) => self.ctx.znode_watches.cancel(id),
            }
        }
        result
    }

    /// Answers `request`. An error means the node could not serve it (no
    /// leader, outcome unknown): the connection closes without a reply and
    /// the client reconnects, as to a ZooKeeper server that lost quorum.
    pub async fn handle(&mut self, request: Request) -> Result<Outcome, ProposeError> {
        if self.session.read_only && request.is_write() {
            return Ok(Outcome::Reply(Answer::error(
                self.index(),
                err::NOT_READONLY,
            )));
        }
        let reply = match request {
            Request::Create {
                op: op_code,
                create,
            } => {
                let argv = match self.create_argv(op_code, &create, false) {
                    Ok(argv) => argv,
                    Err(code) => return Ok(Outcome::Reply(Answer::error(self.index(), code))),
                };
                let (reply, index) = self.write(&argv).await?;
                if let Some(code) = error_code(&reply) {
                    return Ok(Outcome::Reply(Answer::error(index, code)));
                }
                let mut w = Writer::default();
                write_created(&reply, &mut w);
                Answer::ok(index, w)
            }
            Request::Delete { path, version: v } => {
                let argv = [b("ZNODE.DELETE"), path, b("VERSION"), version(v)];
                let (reply, index) = self.write(&argv).await?;
                match error_code(&reply) {
                    Some(code) => Answer::error(index, code),
                    None => Answer::ok(index, Writer::default()),
                }
            }
            Request::SetData {
                path,
                data,
                version: v,
            } => {
                let mut argv = vec![
                    b("ZNODE.SET"),
                    path,
                    data.clone().unwrap_or_default(),
                    b("VERSION"),
                    version(v),
                ];
                if data.is_none() {
                    argv.push(b("NODATA"));
                }
                let (reply, index) = self.write(&argv).await?;
                match error_code(&reply) {
                    Some(code) => Answer::error(index, code),
                    None => Answer::ok(index, stat_body(&reply)),
                }
            }
            Request::Exists { path, watch } => {
                let argv = [b("ZNODE.EXISTS"), path];
                let (reply, index) = self
                    .watched_read(&argv, watch.then_some(Kind::Exists), true)
                    .await?;
                match reply {
                    Reply::Nil => Answer::error(index, err::NO_NODE),
                    reply => match error_code(&reply) {
                        Some(code) => Answer::error(index, code),
                        None => Answer::ok(index, stat_body(&reply)),
                    },
                }
            }
            Request::GetData { path, watch } => {
                let argv = [b("ZNODE.GET"), path];
                let (reply, index) = self
                    .watched_read(&argv, watch.then_some(Kind::Data), false)
                    .await?;
                match error_code(&reply) {
                    Some(code) => Answer::error(index, code),
                    None => {
                        let reply = self.system_data(&argv[1], reply);
                        let mut w = Writer::default();
                        write_data(&reply, &mut w);
                        Answer::ok(index, w)
                    }
                }
            }
            Request::GetChildren {
                path,
                watch,
                with_stat,
            } => {
                let mut argv = vec![b("ZNODE.CHILDREN"), path];
                if with_stat {
                    argv.push(b("STAT"));
                }
                let (reply, index) = self
                    .watched_read(&argv, watch.then_some(Kind::Child), false)
                    .await?;
                match error_code(&reply) {
                    Some(code) => Answer::error(index, code),
                    None => Answer::ok(index, children_body(&reply)),
                }
            }
            Request::GetAcl { path } => {
                let argv = [b("ZNODE.GETACL"), path];
                let (reply, index) = self.read(&argv).await?;
                match error_code(&reply) {
                    Some(code) => Answer::error(index, code),
                    None => {
                        let mut w = Writer::default();
                        Acl::write_list(&acl_of(&reply), &mut w);
                        if let Some(stat) = field(&reply, "stat") {
                            stat_of(stat).write(&mut w);
                        }
                        Answer::ok(index, w)
                    }
                }
            }
            Request::SetAcl {
                path,
                acl,
                version: v,
            } => {
                if acl.is_empty() {
                    return Ok(Outcome::Reply(Answer::error(
                        self.index(),
                        err::INVALID_ACL,
                    )));
                }
                let mut argv = vec![b("ZNODE.SETACL"), path];
                push_acl(&mut argv, &acl);
                argv.extend([b("VERSION"), version(v)]);
                let (reply, index) = self.write(&argv).await?;
                match error_code(&reply) {
                    Some(code) => Answer::error(index, code),
                    None => Answer::ok(index, stat_body(&reply)),
                }
            }
            Request::GetAllChildrenNumber { path } => {
                let (reply, index) = self
                    .read(&[b("ZNODE.STAT"), path, b("DESCENDANTS")])
                    .await?;
                match error_code(&reply) {
                    Some(code) => Answer::error(index, code),
                    None => {
                        let mut w = Writer::default();
                        w.int(int(&reply, "descendants") as i32);
                        Answer::ok(index, w)
                    }
                }
            }
            Request::Sync { path } => {
                self.barrier().await?;
                let mut w = Writer::default();
                w.string(&path);
                Answer::ok(self.index(), w)
            }
            Request::Ping => Answer::ok(self.index(), Writer::default()),
            Request::Check { path, version: v } => {
                let argv = [b("ZNODE.MULTI"), b("check"), path, b("VERSION"), version(v)];
                let (reply, index) = self.write(&argv).await?;
                let code = match &reply {
                    Reply::Array(results) => {
                        results.first().and_then(error_code).unwrap_or(err::OK)
                    }
                    other => error_code(other).unwrap_or(err::OK),
                };
                Answer::error(index, code)
            }
            Request::Multi(ops) => return self.multi(ops).await.map(Outcome::Reply),
            Request::MultiRead(ops) => return self.multi_read(ops).await.map(Outcome::Reply),
            Request::CheckWatches { path, kind } => self.watches_op(&path, kind, false),
            Request::RemoveWatches { path, kind } => self.watches_op(&path, kind, true),
            Request::GetEphemerals { prefix } => {
                let argv = [
                    b("LEASE.TTL"),
                    b(&self.session.id.to_string()),
                    b("ATTACHED"),
                ];
                let (reply, index) = self.read(&argv).await?;
                let mut paths: Vec<Bytes> = Vec::new();
                if let Some(Reply::Array(items)) = field(&reply, "items") {
                    for item in items {
                        if let Reply::Array(parts) = item {
                            if let [Reply::Bulk(kind), Reply::Bulk(path), ..] = parts.as_slice() {
                                if kind.as_ref() == b"znode" && path.starts_with(&prefix) {
                                    paths.push(path.clone());
                                }
                            }
                        }
                    }
                }
                paths.sort();
                let mut w = Writer::default();
                w.strings(paths.iter().map(|p| p.as_ref()));
                Answer::ok(index, w)
            }
            Request::CloseSession if self.session.read_only => {
                // Nothing replicated to end: a new read-only session has no
                // lease, an existing one runs out on the majority's side.
                self.closed_session = true;
                return Ok(Outcome::ReplyAndClose(Answer::ok(
                    self.index(),
                    Writer::default(),
                )));
            }
            Request::CloseSession => {
                let argv = [b("LEASE.REVOKE"), b(&self.session.id.to_string())];
                let (_, index) = self.write(&argv).await?;
                self.closed_session = true;
                return Ok(Outcome::ReplyAndClose(Answer::ok(index, Writer::default())));
            }
            other => unreachable!("handled by the connection: {other:?}"),
        };
        Ok(Outcome::Reply(reply))
    }

    /// checkWatches / removeWatches: ZooKeeper's watcher types are 1
    /// (children), 2 (data: getData and exists) and 3 (any, persistent
    /// ones included). No such watch is NOWATCHER.
    fn watches_op(&mut self, path: &Bytes, kind: i32, remove: bool) -> Answer {
        let kinds: &[Kind] = match kind {
            1 => &[Kind::Child],
            2 => &[Kind::Data, Kind::Exists],
            3 => &[
                Kind::Child,
                Kind::Data,
                Kind::Exists,
                Kind::Persistent,
                Kind::Recursive,
            ],
            _ => return Answer::error(self.index(), err::BAD_ARGUMENTS),
        };
        let watches = &self.ctx.znode_watches;
        let found: usize = kinds
            .iter()
            .map(|k| {
                if remove {
                    watches.unwatch(self.client_id, path, *k)
                } else {
                    watches.held(self.client_id, path, *k)
                }
            })
            .sum();
        let code = if found > 0 { err::OK } else { err::NO_WATCHER };
        Answer::error(self.index(), code)
    }

    async fn multi(&mut self, ops: Vec<Request>) -> Result<Answer, ProposeError> {
        let mut argv = vec![b("ZNODE.MULTI")];
        let mut kinds = Vec::with_capacity(ops.len());
        for request in &ops {
            match request {
                Request::Create {
                    op: op_code,
                    create,
                } => {
                    match self.create_argv(*op_code, create, true) {
                        Ok(more) => argv.extend(more),
                        Err(code) => return Ok(self.failed_multi(ops.len(), kinds.len(), code)),
                    }
                    kinds.push(*op_code);
                }
                Request::SetData {
                    path,
                    data,
                    version: v,
                } => {
                    argv.extend([
                        b("set"),
                        path.clone(),
                        data.clone().unwrap_or_default(),
                        b("VERSION"),
                        version(*v),
                    ]);
                    if data.is_none() {
                        argv.push(b("NODATA"));
                    }
                    kinds.push(op::SET_DATA);
                }
                Request::Delete { path, version: v } => {
                    argv.extend([b("delete"), path.clone(), b("VERSION"), version(*v)]);
                    kinds.push(op::DELETE);
                }
                Request::Check { path, version: v } => {
                    argv.extend([b("check"), path.clone(), b("VERSION"), version(*v)]);
                    kinds.push(op::CHECK);
                }
                _ => unreachable!("parse admits only writes in a multi"),
            }
        }
        if ops.is_empty() {
            let mut w = Writer::default();
            w.int(-1).boolean(true).int(-1);
            return Ok(Answer::ok(self.index(), w));
        }
        let (reply, index) = self.write(&argv).await?;
        let results = match reply {
            Reply::Array(results) => results,
            other => {
                // The whole request was refused before running (a bad path).
                let code = error_code(&other).unwrap_or(err::BAD_ARGUMENTS);
                return Ok(Answer {
                    index,
                    ..self.failed_multi(ops.len(), 0, code)
                });
            }
        };
        let mut w = Writer::default();
        if results.iter().any(|r| matches!(r, Reply::Error(_))) {
            for result in &results {
                let code = error_code(result).unwrap_or(err::OK);
                w.int(op::ERROR).boolean(false).int(code).int(code);
            }
        } else {
            for (kind, result) in kinds.iter().zip(&results) {
                w.int(*kind).boolean(false).int(err::OK);
                match *kind {
                    op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                        write_created(result, &mut w)
                    }
                    op::SET_DATA => stat_of(result).write(&mut w),
                    _ => {}
                }
            }
        }
        w.int(-1).boolean(true).int(-1);
        Ok(Answer::ok(index, w))
    }

    /// A multi refused before it ran: ok for the operations before the
    /// failing one, its code, then runtime inconsistency, as ZooKeeper's.
    fn failed_multi(&self, count: usize, failing: usize, code: i32) -> Answer {
        let mut w = Writer::default();
        for at in 0..count {
            let this = match at.cmp(&failing) {
                std::cmp::Ordering::Less => err::OK,
                std::cmp::Ordering::Equal => code,
                std::cmp::Ordering::Greater => err::RUNTIME_INCONSISTENCY,
            };
            w.int(op::ERROR).boolean(false).int(this).int(this);
        }
        w.int(-1).boolean(true).int(-1);
        Answer::ok(self.index(), w)
    }

    async fn multi_read(&mut self, ops: Vec<Request>) -> Result<Answer, ProposeError> {
        self.barrier().await?;
        let mut w = Writer::default();
        let mut index = self.index();
        for request in ops {
            let (kind, argv) = match request {
                Request::GetData { path, .. } => (op::GET_DATA, vec![b("ZNODE.GET"), path]),
                Request::GetChildren { path, .. } => {
                    (op::GET_CHILDREN, vec![b("ZNODE.CHILDREN"), path])
                }
                _ => unreachable!("parse admits only reads in a multiRead"),
            };
            let (reply, at) = self.ctx.node.read_local_at(&self.as_caller(&argv));
            index = index.max(at);
            if let Some(code) = error_code(&reply) {
                w.int(op::ERROR).boolean(false).int(code).int(code);
                continue;
            }
            w.int(kind).boolean(false).int(err::OK);
            if kind == op::GET_DATA {
                write_data(&self.system_data(&argv[1], reply), &mut w);
            } else {
                w.out.extend_from_slice(&children_body(&reply).out);
            }
        }
        w.int(-1).boolean(true).int(-1);
        Ok(Answer::ok(index, w))
    }
}

/// A create's body from the engine's reply: the path (create), or the
/// path and the stat (create2, createContainer, createTTL: STAT asked).
fn write_created(reply: &Reply, w: &mut Writer) {
    match reply {
        Reply::Bulk(path) => {
            w.string(path);
        }
        map => {
            if let Some(Reply::Bulk(path)) = field(map, "path") {
                w.string(path);
            }
            if let Some(stat) = field(map, "stat") {
                stat_of(stat).write(w);
            }
        }
    }
}

/// getData's body: the data (a null buffer for null data) and the stat.
fn write_data(reply: &Reply, w: &mut Writer) {
    match field(reply, "data") {
        Some(Reply::Bulk(data)) => w.buffer(data),
        _ => w.int(-1),
    };
    if let Some(stat) = field(reply, "stat") {
        stat_of(stat).write(w);
    }
}

/// getChildren's body (names), or getChildren2's (names and stat).
fn children_body(reply: &Reply) -> Writer {
    let mut w = Writer::default();
    let names = match reply {
        Reply::Array(names) => names.as_slice(),
        map => match field(map, "children") {
            Some(Reply::Array(names)) => names.as_slice(),
            _ => &[],
        },
    };
    let names: Vec<&[u8]> = names
        .iter()
        .filter_map(|n| match n {
            Reply::Bulk(name) => Some(name.as_ref()),
            _ => None,
        })
        .collect();
    w.strings(names.into_iter());
    if let Some(stat) = field(reply, "stat") {
        stat_of(stat).write(&mut w);
    }
    w
}
