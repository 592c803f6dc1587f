//! Per-connection state and command dispatch. Connection-level commands
//! are answered here; the coordination commands that need this node's
//! help (lease binding and coalesced renewals, blocking reads, round-robin
//! turns) are in `coordination`; everything else goes to the engine.

mod auth;
mod cluster;
mod config;
mod coordination;
mod feed;
mod observe;
mod tracking;
mod znode;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lockstep_engine::{Access, Reply};
use lockstep_raft::{ProposeError, Role};

use crate::encode::Protocol;
use crate::info;
use crate::pubsub::Kind;
use crate::subscriptions::{pubsub_command, Subscriptions};
use crate::transaction::TransactionState;
use crate::ServerContext;

/// Version reported to clients that gate features on Redis's version.
pub const REDIS_COMPAT_VERSION: &str = "7.4.0";

pub struct Session {
    id: u64,
    protocol: Protocol,
    /// READONLY: serve reads from local applied state, without ReadIndex.
    stale_reads: bool,
    transaction: TransactionState,
    /// Applied index when this connection's last write was answered: WAIT
    /// counts the nodes known to hold at least this much of the log.
    last_write_index: u64,
    subscriptions: Subscriptions,
    /// The command that ends the wait in progress (PARK.CANCEL), sent if
    /// the client leaves while waiting.
    pending_cancel: Option<Vec<Bytes>>,
    waits_started: u64,
    /// Leases this connection keeps alive (LEASE.BIND).
    bound_leases: std::collections::BTreeSet<u64>,
    /// SVC.PICK round-robin turns, per service.
    pick_turns: std::collections::HashMap<Bytes, u64>,
    /// CLIENT TRACKING's options while tracking is on.
    tracking: Option<crate::tracking::Options>,
    /// CLIENT CACHING YES|NO: the number of the command it applies to.
    caching: Option<u64>,
    /// Commands this connection ran.
    commands_run: u64,
    /// The log index the last reply was computed at (0: none): pushes
    /// caused by entries up to it go out before the reply.
    reply_index: u64,
    /// Whether the last reply answered this connection's own write.
    replied_to_write: bool,
    resp3: Arc<std::sync::atomic::AtomicBool>,
    /// CHANGES.SUBSCRIBE tasks, by pattern.
    feeds: std::collections::HashMap<Bytes, tokio::task::JoinHandle<()>>,
    /// The client's address, as MONITOR and SLOWLOG show it.
    addr: String,
    /// MONITOR was run: the connection only streams commands now.
    monitoring: bool,
    /// The user this connection authenticated as (None: not yet).
    user_name: Option<Bytes>,
    context: Arc<ServerContext>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for (_, task) in self.feeds.drain() {
            task.abort();
        }
    }
}

fn is(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// A wait without a timeout (BLPOP k 0) keeps its proposal this long.
const FOREVER: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);

/// Whether a command may keep its client waiting (a parked command or a
/// blocking read): the connection then watches for the client leaving.
pub fn may_wait(argv: &[Bytes]) -> bool {
    lockstep_engine::parking(argv).is_some() || coordination::blocks(argv)
}

pub fn propose_error(err: ProposeError, timeout_secs: u64) -> Reply {
    match err {
        ProposeError::NoLeader => Reply::error(format!(
            "CLUSTERDOWN no raft leader reachable within {timeout_secs}s; the command was not executed"
        )),
        ProposeError::Indeterminate => Reply::error(
            "TRYAGAIN outcome unknown: the command may or may not have been applied (leader lost or timed out)",
        ),
        ProposeError::Busy => Reply::error(
            "ERR too many pending requests on this node; the command was not executed",
        ),
        ProposeError::Stopped => Reply::error("ERR node is shutting down"),
    }
}

impl Session {
    pub fn new(id: u64, context: Arc<ServerContext>) -> Self {
        let subscriptions = Subscriptions::new(id, context.pubsub.clone());
        let resp3 = Arc::new(std::sync::atomic::AtomicBool::new(false));
        context.tracking.connect(
            id,
            crate::tracking::Target {
                mailbox: subscriptions.mailbox().clone(),
                resp3: resp3.clone(),
            },
        );
        let mut session = Session {
            id,
            protocol: Protocol::Resp2,
            stale_reads: false,
            transaction: TransactionState::default(),
            last_write_index: 0,
            subscriptions,
            pending_cancel: None,
            waits_started: 0,
            bound_leases: Default::default(),
            pick_turns: Default::default(),
            tracking: None,
            caching: None,
            commands_run: 0,
            reply_index: 0,
            replied_to_write: false,
            resp3,
            feeds: Default::default(),
            addr: context
                .clients
                .get(id)
                .map(|client| client.addr.to_string())
                .unwrap_or_default(),
            monitoring: false,
            user_name: None,
            context,
        };
        session.user_name = session.initial_user();
        if let Some(name) = &session.user_name {
            let shown = text(name);
            session
                .context
                .clients
                .update(id, |client| client.user = shown);
        }
        session
    }

    /// The log index the last reply was computed at, and whether it
    /// answered this connection's own write (see `reply_index`).
    pub fn reply_position(&self) -> (u64, bool) {
        (self.reply_index, self.replied_to_write)
    }

    pub fn context(&self) -> &Arc<ServerContext> {
        &self.context
    }

    /// Where this connection's pub/sub messages arrive, and the flag set
    /// when it fell too far behind (taken once, by the connection).
    pub fn take_messages(
        &mut self,
    ) -> Option<(
        tokio::sync::mpsc::Receiver<crate::pubsub::Push>,
        Arc<std::sync::atomic::AtomicBool>,
    )> {
        let receiver = self.subscriptions.take_receiver()?;
        Some((receiver, self.subscriptions.overflowed()))
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Runs one command (see `execute`, which counts and logs around it).
    async fn run_command(&mut self, name: &str, argv: &[Bytes]) -> (Reply, bool) {
        let name = name.to_string();
        self.commands_run += 1;
        self.reply_index = 0;
        self.replied_to_write = false;
        self.context.clients.count_command();
        let args = &argv[1..];
        if self.context.node.is_removed() && name != "quit" {
            return (cluster::removed_error(self.context.node.status().id), false);
        }
        let queues = self.transaction.in_multi()
            && !matches!(
                name.as_str(),
                "exec" | "discard" | "multi" | "watch" | "quit"
            );
        if let Some(denied) = self.check_permission(&name, argv, self.transaction.in_multi()) {
            if queues {
                return (self.transaction.queue(argv.to_vec(), Some(denied)), false);
            }
            return (denied, false);
        }
        if queues {
            let invalid = lockstep_engine::parse(argv).err();
            let queued = self.as_user(&name, argv).unwrap_or_else(|| argv.to_vec());
            return (self.transaction.queue(queued, invalid), false);
        }
        let subscribe_family = matches!(
            name.as_str(),
            "subscribe"
                | "unsubscribe"
                | "psubscribe"
                | "punsubscribe"
                | "ssubscribe"
                | "sunsubscribe"
        );
        if self.subscriptions.active()
            && self.protocol == Protocol::Resp2
            && !subscribe_family
            && !matches!(name.as_str(), "ping" | "quit" | "reset")
        {
            return (
                Reply::error(format!(
                    "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
                )),
                false,
            );
        }
        let reply = match name.as_str() {
            "quit" => return (Reply::ok(), true),
            "ping" if self.subscriptions.active() && self.protocol == Protocol::Resp2 => {
                Reply::Array(vec![
                    Reply::bulk("pong"),
                    Reply::Bulk(args.first().cloned().unwrap_or_default()),
                ])
            }
            "subscribe" | "psubscribe" | "ssubscribe" if args.is_empty() => {
                Reply::wrong_arity(&name)
            }
            "subscribe" => self.subscriptions.subscribe(Kind::Channel, args),
            "psubscribe" => self.subscriptions.subscribe(Kind::Pattern, args),
            "ssubscribe" => self.subscriptions.subscribe(Kind::Shard, args),
            "unsubscribe" => self.subscriptions.unsubscribe(Kind::Channel, args),
            "punsubscribe" => self.subscriptions.unsubscribe(Kind::Pattern, args),
            "sunsubscribe" => self.subscriptions.unsubscribe(Kind::Shard, args),
            "pubsub" => pubsub_command(&self.context.pubsub, args),
            "multi" => match args {
                [] => self.transaction.multi(),
                _ => Reply::wrong_arity("multi"),
            },
            "discard" => match args {
                [] => self.transaction.discard(),
                _ => Reply::wrong_arity("discard"),
            },
            "exec" => match args {
                [] => match self.transaction.exec() {
                    Ok(exec) => self.engine_command(&exec).await,
                    Err(reply) => reply,
                },
                _ => Reply::wrong_arity("exec"),
            },
            "watch" => self.watch(argv).await,
            "wait" | "waitaof" => self.wait(&name, args).await,
            "unwatch" => match args {
                [] => self.transaction.unwatch(),
                _ => Reply::wrong_arity("unwatch"),
            },
            "ping" => match args {
                [] => Reply::Status("PONG".into()),
                [message] => Reply::Bulk(message.clone()),
                _ => Reply::wrong_arity("ping"),
            },
            "echo" => match args {
                [message] => Reply::Bulk(message.clone()),
                _ => Reply::wrong_arity("echo"),
            },
            "select" => match args {
                [db] => match std::str::from_utf8(db).ok() {
                    Some("0") => Reply::ok(),
                    Some(other) if other.parse::<i64>().is_ok() => {
                        Reply::error("ERR DB index is out of range")
                    }
                    _ => Reply::not_integer(),
                },
                _ => Reply::wrong_arity("select"),
            },
            "hello" => match self.hello_auth(args) {
                Ok(()) => self.hello(args),
                Err(refused) => refused,
            },
            "auth" => self.auth(args),
            "acl" => self.acl(args).await,
            "client" => self.client(args),
            "command" => info::command(args),
            "info" => Reply::Bulk(Bytes::from(info::info(&self.context, args))),
            "role" => self.role(),
            "time" => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Reply::Array(vec![
                    Reply::bulk(now.as_secs().to_string()),
                    Reply::bulk(now.subsec_micros().to_string()),
                ])
            }
            "readonly" => {
                self.stale_reads = true;
                Reply::ok()
            }
            "readwrite" => {
                self.stale_reads = false;
                Reply::ok()
            }
            "config" => self.config(args).await,
            "changes.subscribe" => self.feed_subscribe(argv).await,
            "xread" => self.stream_read(argv).await,
            "znode.get" | "znode.exists" | "znode.children" if znode::watches(argv) => {
                self.watched_read(argv).await
            }
            "znode.watch" => self.persistent_watch(argv),
            "znode.unwatch" => self.unwatch(argv),
            "changes.unsubscribe" => self.feed_unsubscribe(argv),
            "slowlog" | "latency" | "monitor" => self.observe_command(&name, args),
            cluster if cluster == "cluster" || cluster.starts_with("cluster.") => {
                self.cluster_command(cluster, args).await
            }
            _ => match self.coordination(&name, argv).await {
                Some(reply) => reply,
                None => match self.as_user(&name, argv) {
                    Some(wrapped) => self.engine_command(&wrapped).await,
                    None => self.engine_command(argv).await,
                },
            },
        };
        (reply, false)
    }

    async fn watch(&mut self, argv: &[Bytes]) -> Reply {
        if argv.len() < 2 {
            return Reply::wrong_arity("watch");
        }
        if let Err(reply) = self.transaction.can_watch() {
            return reply;
        }
        // The versions are read linearizably; EXEC compares them at apply.
        match self.engine_command(argv).await {
            Reply::Array(versions) => self.transaction.watch(&argv[1..], &versions),
            other => other,
        }
    }

    /// Ends the wait of a client that left: takes it out of the queue it
    /// waits in (or releases a lock granted as it left).
    pub async fn cancel_wait(&mut self) {
        let Some(cancel) = self.pending_cancel.take() else {
            return;
        };
        if let Err(err) = self.context.node.propose(&cancel).await {
            slog::warn!(self.context.log, "could not cancel a wait"; "error" => %err);
        }
    }

    /// The connection is closing: its waits end and its bound leases are
    /// no longer kept alive (they run out one TTL later unless bound
    /// again elsewhere).
    pub async fn finish(&mut self) {
        self.context.tracking.disconnect(self.id);
        self.context.znode_watches.disconnect(self.id);
        self.context.monitors.remove(self.id);
        self.cancel_wait().await;
        for id in std::mem::take(&mut self.bound_leases) {
            self.context.keepalives.unbind(id);
        }
    }

    /// A command that may wait, sent as `PARK id <command>` so it can be
    /// cancelled by id: by this node when the client leaves, or when its
    /// timeout passes if the server keeps the time (blocking pops); every
    /// other wait ends by its deadline in the replicated state.
    async fn parked(&mut self, argv: &[Bytes], parking: lockstep_engine::Parking) -> Reply {
        let node = self.context.node.clone();
        self.waits_started += 1;
        let id = Bytes::from(format!(
            "{}-{}-{}",
            node.status().id,
            self.id,
            self.waits_started
        ));
        let mut wrapped = vec![Bytes::from_static(b"PARK"), id.clone()];
        wrapped.extend(argv.iter().cloned());
        let cancel = vec![Bytes::from_static(b"PARK.CANCEL"), id];
        self.pending_cancel = Some(cancel.clone());
        let wait = parking
            .wait_ms
            .map_or(FOREVER, std::time::Duration::from_millis);
        let proposal = node.propose_waiting(&wrapped, wait);
        tokio::pin!(proposal);
        let result = match parking.wait_ms {
            Some(ms) if parking.server_timeout => {
                tokio::select! {
                    result = &mut proposal => result,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(ms)) => {
                        if let Err(err) = node.propose(&cancel).await {
                            slog::warn!(self.context.log, "could not end a wait"; "error" => %err);
                        }
                        proposal.await
                    }
                }
            }
            _ => proposal.await,
        };
        self.pending_cancel = None;
        match self.answered(result) {
            Ok(reply) => reply,
            Err(err) => propose_error(err, node.request_timeout().as_secs()),
        }
    }

    /// A write's reply; remembers the index of the entry that gave it, so
    /// WAIT counts the replicas that stored this write, not an older one.
    fn answered(
        &mut self,
        result: Result<lockstep_raft::Answered, ProposeError>,
    ) -> Result<Reply, ProposeError> {
        let answered = result?;
        self.last_write_index = self.last_write_index.max(answered.index);
        self.reply_index = answered.index;
        Ok(answered.reply)
    }

    /// WAIT numreplicas timeout / WAITAOF numlocal numreplicas timeout.
    async fn wait(&self, name: &str, args: &[Bytes]) -> Reply {
        let expected = if name == "wait" { 2 } else { 3 };
        if args.len() != expected {
            return Reply::wrong_arity(name);
        }
        let mut numbers = Vec::with_capacity(expected);
        for arg in args {
            match std::str::from_utf8(arg)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
            {
                Some(n) => numbers.push(n),
                None => return Reply::not_integer(),
            }
        }
        let timeout = numbers[expected - 1];
        if timeout < 0 {
            return Reply::error("ERR timeout is negative");
        }
        let wanted = numbers[expected - 2].max(0) as usize;
        let deadline = (timeout > 0)
            .then(|| std::time::Instant::now() + std::time::Duration::from_millis(timeout as u64));
        let mut holding = self.replicas_holding(self.last_write_index);
        while holding < wanted && deadline.is_none_or(|at| std::time::Instant::now() < at) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            holding = self.replicas_holding(self.last_write_index);
        }
        if name == "wait" {
            Reply::Integer(holding as i64)
        } else {
            // Every acknowledged write is fsynced locally before the reply.
            Reply::Array(vec![Reply::Integer(1), Reply::Integer(holding as i64)])
        }
    }

    /// Other nodes known to have durably stored the log up to `index`: on
    /// the leader, peers whose matched index reached it; elsewhere, what a
    /// commit proves (a majority stored it, so at least a majority minus
    /// this node).
    fn replicas_holding(&self, index: u64) -> usize {
        let status = self.context.node.status();
        if status.role == Role::Leader {
            status
                .progress
                .iter()
                .filter(|peer| peer.id != status.id && peer.matched >= index)
                .count()
        } else if status.commit_index >= index && !status.voters.is_empty() {
            status.voters.len() / 2
        } else {
            0
        }
    }

    async fn engine_command(&mut self, argv: &[Bytes]) -> Reply {
        // Validate before touching the log: a bad command never costs an entry.
        let (access, may_be_noop, exclusive) = match lockstep_engine::parse(argv) {
            Ok((command, spec)) => (
                lockstep_engine::access(&command, spec),
                lockstep_engine::may_be_noop(&command),
                lockstep_engine::exclusive_key(&command).cloned(),
            ),
            Err(reply) => return reply,
        };
        let node = self.context.node.clone();
        let result = match access {
            Access::Write => {
                if let Some(parking) = lockstep_engine::parking(argv) {
                    return self.parked(argv, parking).await;
                }
                let _flight = if may_be_noop {
                    match self
                        .conditional_write(&node, argv, exclusive.as_ref())
                        .await
                    {
                        Ok(flight) => flight,
                        Err(reply) => return reply,
                    }
                } else {
                    None
                };
                let result = node.propose(argv).await;
                self.replied_to_write = true;
                self.answered(result)
            }
            Access::Read => {
                self.track_read(argv);
                let read = if self.stale_reads {
                    Ok(node.read_local_at(argv))
                } else {
                    node.read_at(argv).await
                };
                read.map(|(reply, index)| {
                    self.reply_index = index;
                    reply
                })
            }
        };
        result.unwrap_or_else(|err| propose_error(err, node.request_timeout().as_secs()))
    }

    /// A conditional write that would change nothing (a held lock's SET
    /// NX) is answered by a linearizable read, not an entry (see the
    /// engine's `noop`): tried when this node's own state already says so.
    /// Otherwise it is to be written, after any attempt in flight on its
    /// exclusive key (see `flights`), holding the returned guard until
    /// answered. Err: the reply.
    async fn conditional_write(
        &mut self,
        node: &lockstep_raft::NodeHandle,
        argv: &[Bytes],
        exclusive: Option<&Bytes>,
    ) -> Result<Option<crate::flights::FlightGuard>, Reply> {
        let metrics = self.context.metrics.clone();
        let counted = &metrics.conditional_writes;
        let mut waits = 0;
        loop {
            if node.noop_local(argv) {
                match node.noop_read(argv).await {
                    Ok(Some((reply, index))) => {
                        self.reply_index = index;
                        counted.read.inc();
                        return Err(reply);
                    }
                    Ok(None) => {}
                    Err(err) => return Err(propose_error(err, node.request_timeout().as_secs())),
                }
            }
            let Some(key) = exclusive.filter(|_| waits < crate::flights::MAX_WAITS) else {
                counted.logged.inc();
                return Ok(None);
            };
            match self.context.flights.join(key) {
                crate::flights::Turn::Go(guard) => {
                    counted.logged.inc();
                    return Ok(Some(guard));
                }
                crate::flights::Turn::Wait(mut done) => {
                    counted.waited.inc();
                    waits += 1;
                    // Ends (Err) when the attempt in flight is answered.
                    let _ = done.changed().await;
                }
            }
        }
    }

    fn hello(&mut self, args: &[Bytes]) -> Reply {
        let mut protocol = self.protocol;
        if let Some(version) = args.first() {
            protocol = match std::str::from_utf8(version)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
            {
                Some(2) => Protocol::Resp2,
                Some(3) => Protocol::Resp3,
                Some(_) => return Reply::error("NOPROTO unsupported protocol version"),
                None => {
                    return Reply::error("ERR Protocol version is not an integer or out of range")
                }
            };
            let mut rest = args[1..].iter();
            while let Some(option) = rest.next() {
                if is(option, "auth") {
                    if rest.next().is_none() || rest.next().is_none() {
                        return Reply::syntax_error();
                    }
                } else if is(option, "setname") {
                    let Some(name) = rest.next() else {
                        return Reply::syntax_error();
                    };
                    let name = text(name);
                    if name.contains(' ') {
                        return Reply::error(
                            "ERR Client names cannot contain spaces, newlines or special characters.",
                        );
                    }
                    self.context
                        .clients
                        .update(self.id, |client| client.name = name);
                } else {
                    return Reply::error(format!(
                        "ERR Syntax error in HELLO option '{}'",
                        text(option)
                    ));
                }
            }
        }
        self.protocol = protocol;
        self.resp3.store(
            protocol == Protocol::Resp3,
            std::sync::atomic::Ordering::Relaxed,
        );
        let proto = if protocol == Protocol::Resp3 { 3 } else { 2 };
        self.context
            .clients
            .update(self.id, |client| client.protocol = proto);
        Reply::Map(vec![
            (Reply::bulk("server"), Reply::bulk("redis")),
            (Reply::bulk("version"), Reply::bulk(REDIS_COMPAT_VERSION)),
            (Reply::bulk("proto"), Reply::Integer(proto as i64)),
            (Reply::bulk("id"), Reply::Integer(self.id as i64)),
            (Reply::bulk("mode"), Reply::bulk("standalone")),
            (Reply::bulk("role"), Reply::bulk("master")),
            (Reply::bulk("modules"), Reply::Array(Vec::new())),
        ])
    }

    fn client(&mut self, args: &[Bytes]) -> Reply {
        let Some(sub) = args.first() else {
            return Reply::wrong_arity("client");
        };
        let sub_name = text(sub).to_ascii_lowercase();
        let clients = &self.context.clients;
        match (sub_name.as_str(), &args[1..]) {
            ("id", []) => Reply::Integer(self.id as i64),
            ("setname", [name]) => {
                let name = text(name);
                if name.bytes().any(|b| b <= b' ' || b > b'~') {
                    return Reply::error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                clients.update(self.id, |client| client.name = name);
                Reply::ok()
            }
            ("getname", []) => match clients.get(self.id) {
                Some(client) if !client.name.is_empty() => Reply::bulk(client.name),
                _ => Reply::Nil,
            },
            ("setinfo", [attribute, value]) => {
                let value = text(value);
                if value.bytes().any(|b| b <= b' ' || b > b'~') {
                    return Reply::error(format!(
                        "ERR {} cannot contain spaces, newlines or special characters.",
                        text(attribute)
                    ));
                }
                if is(attribute, "lib-name") {
                    clients.update(self.id, |client| client.lib_name = value);
                } else if is(attribute, "lib-ver") {
                    clients.update(self.id, |client| client.lib_ver = value);
                } else {
                    return Reply::error(format!("ERR Unrecognized option '{}'", text(attribute)));
                }
                Reply::ok()
            }
            ("list", _) => {
                let lines: Vec<String> = clients.all().iter().map(|c| c.line() + "\n").collect();
                Reply::Bulk(Bytes::from(lines.concat()))
            }
            ("info", []) => match clients.get(self.id) {
                Some(client) => Reply::Bulk(Bytes::from(client.line() + "\n")),
                None => Reply::Nil,
            },
            ("kill", rest) => self.client_kill(rest),
            ("no-evict" | "no-touch", [_]) | ("capa", [_, ..]) => Reply::ok(),
            ("tracking" | "caching", _) | ("getredir" | "trackinginfo", []) => {
                self.tracking_command(&sub_name, &args[1..])
            }
            ("id" | "setname" | "getname" | "setinfo" | "info", _) => Reply::error(format!(
                "ERR wrong number of arguments for 'client|{sub_name}' command"
            )),
            _ => Reply::error(format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                text(sub)
            )),
        }
    }

    /// ROLE in Redis's shape: the leader is the master, followers replicas.
    fn role(&self) -> Reply {
        let status = self.context.node.status();
        if status.role == Role::Leader {
            let replicas = status
                .progress
                .iter()
                .filter(|peer| peer.id != status.id)
                .map(|peer| {
                    let (host, port) = self
                        .context
                        .client_addr(&status, peer.id)
                        .map(|addr| (addr.ip().to_string(), addr.port().to_string()))
                        .unwrap_or_default();
                    Reply::Array(vec![
                        Reply::bulk(host),
                        Reply::bulk(port),
                        Reply::bulk(peer.matched.to_string()),
                    ])
                })
                .collect();
            Reply::Array(vec![
                Reply::bulk("master"),
                Reply::Integer(status.applied_index as i64),
                Reply::Array(replicas),
            ])
        } else {
            let (host, port) = self
                .context
                .client_addr(&status, status.leader_id)
                .map(|addr| (addr.ip().to_string(), addr.port() as i64))
                .unwrap_or((String::new(), -1));
            let state = if status.leader_id == 0 {
                "connect"
            } else {
                "connected"
            };
            Reply::Array(vec![
                Reply::bulk("slave"),
                Reply::bulk(host),
                Reply::Integer(port),
                Reply::bulk(state),
                Reply::Integer(status.applied_index as i64),
            ])
        }
    }
}
