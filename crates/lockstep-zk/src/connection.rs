//! One client connection: the connect handshake, then requests answered
//! one after another in arrival order (so a read runs after every earlier
//! write of the session has applied), and watch notifications written
//! before any reply computed at or after the change that fired them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use lockstep_engine::Reply;
use lockstep_server::{Mailbox, Push, ServerContext, ZnodeWatchKind as Kind};
use slog::debug;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc::Receiver;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use crate::jute::{Reader, Writer};
use crate::ops::{Answer, Outcome};
use crate::proto::{self, err, event, op, xid, BadRequest, Request, SetWatches};
use crate::session::{self, Refusal, ZkSession, PASSWORD_LEN};
use crate::words;
use crate::{Stats, ZkConfig};

/// Longest a client may take to send its connect request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a reply waits for this node to hand out the events of the
/// entries it was computed from (normally microseconds).
const DELIVERY_WAIT: Duration = Duration::from_millis(100);
/// Notifications remembered to send each (path, event) of an entry once,
/// however many of the connection's watches it fires.
const RECENT_EVENTS: usize = 64;

pub struct Conn {
    pub ctx: Arc<ServerContext>,
    pub session: ZkSession,
    /// This connection's id among the node's connections (watches).
    pub client_id: u64,
    pub mailbox: Mailbox,
    /// closeSession ended the session: nothing to unbind.
    pub closed_session: bool,
    pub remote: SocketAddr,
    /// Identities added with auth, as ACLs name them (`digest`,
    /// `user:base64(sha1(user:password))`).
    pub identities: Vec<(Bytes, Bytes)>,
    /// Authenticated as the configured super digest: no ACL applies.
    pub superuser: bool,
    pub config: Arc<ZkConfig>,
    recent: VecDeque<(u64, i32, Bytes)>,
    leaderless_since: Option<Instant>,
}

impl Conn {
    /// The newest index this node has applied and handed out.
    pub fn index(&self) -> u64 {
        self.ctx.node.delivered_index()
    }
}

/// ZooKeeper's digest identity: `user:base64(sha1("user:password"))`.
pub fn digest_id(user: &[u8], credentials: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let hash = sha1_smol::Sha1::from(credentials).digest().bytes();
    let mut id = user.to_vec();
    id.push(b':');
    id.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(hash)
            .as_bytes(),
    );
    id
}

fn framed(w: &Writer, out: &mut BytesMut) {
    out.extend_from_slice(&(w.out.len() as u32).to_be_bytes());
    out.extend_from_slice(&w.out);
}

fn event_type(name: &[u8]) -> Option<i32> {
    use lockstep_engine::watch_events::{CHILDREN_CHANGED, CREATED, DATA_CHANGED, DELETED};
    Some(match name {
        n if n == CREATED.as_bytes() => event::NODE_CREATED,
        n if n == DELETED.as_bytes() => event::NODE_DELETED,
        n if n == DATA_CHANGED.as_bytes() => event::NODE_DATA_CHANGED,
        n if n == CHILDREN_CHANGED.as_bytes() => event::NODE_CHILDREN_CHANGED,
        _ => return None,
    })
}

pub async fn run<S>(
    mut stream: S,
    remote: SocketAddr,
    ctx: Arc<ServerContext>,
    config: Arc<ZkConfig>,
    stats: Arc<Stats>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut first = [0u8; 4];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut first)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    if let Some(word) = words::lookup(&first) {
        let text = words::answer(word, &ctx, &config, &stats);
        let _ = stream.write_all(text.as_bytes()).await;
        let _ = stream.shutdown().await;
        return;
    }
    let len = i32::from_be_bytes(first);
    if len <= 0 || len as usize > config.max_frame {
        return;
    }
    let mut body = vec![0u8; len as usize];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut body)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    let Ok(connect) = proto::Connect::parse(&mut Reader::new(Bytes::from(body))) else {
        return;
    };
    let session = match session::open(&ctx, &config, &connect).await {
        Ok(session) => session,
        Err(Refusal::Expired) => {
            let mut out = BytesMut::new();
            framed(
                &proto::connect_response(0, 0, &[0; PASSWORD_LEN], false),
                &mut out,
            );
            let _ = stream.write_all(&out).await;
            return;
        }
        Err(Refusal::Close) => return,
    };
    let mut out = BytesMut::new();
    framed(
        &proto::connect_response(
            session.timeout.as_millis() as i32,
            session.id as i64,
            &session.password,
            session.read_only,
        ),
        &mut out,
    );
    if stream.write_all(&out).await.is_err() {
        if !session.read_only {
            ctx.keepalives.unbind(session.id);
        }
        return;
    }
    let client_id = ctx.reserve_client_id();
    stats.connected(client_id, remote, session.id);
    debug!(ctx.log, "zookeeper session"; "client" => client_id, "session" => format!("{:#x}", session.id),
        "timeout_ms" => session.timeout.as_millis() as u64, "read_only" => session.read_only);
    let (mailbox, messages, overflowed) = Mailbox::new();
    let mut conn = Conn {
        ctx: ctx.clone(),
        session,
        client_id,
        mailbox,
        closed_session: false,
        remote,
        identities: Vec::new(),
        superuser: false,
        config: config.clone(),
        recent: VecDeque::new(),
        leaderless_since: None,
    };
    let (reader, writer) = tokio::io::split(stream);
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(config.max_frame)
        .new_codec();
    let frames = FramedRead::new(reader, codec);
    serve(&mut conn, frames, writer, messages, overflowed, &stats).await;
    ctx.znode_watches.disconnect(client_id);
    if !conn.closed_session && !conn.session.read_only {
        ctx.keepalives.unbind(conn.session.id);
    }
    stats.disconnected(client_id);
}

async fn serve<S: AsyncRead + AsyncWrite>(
    conn: &mut Conn,
    mut frames: FramedRead<ReadHalf<S>, LengthDelimitedCodec>,
    mut writer: WriteHalf<S>,
    mut messages: Receiver<Push>,
    overflowed: Arc<std::sync::atomic::AtomicBool>,
    stats: &Stats,
) {
    let mut out = BytesMut::new();
    loop {
        let silence = conn.session.timeout;
        tokio::select! {
            biased;
            push = messages.recv() => {
                let Some(push) = push else { return };
                conn.notification(&push, &mut out);
                while let Ok(push) = messages.try_recv() {
                    conn.notification(&push, &mut out);
                }
            }
            frame = tokio::time::timeout(silence, frames.next()) => {
                // A client silent for its whole timeout is gone (ZooKeeper
                // clients ping every third of it).
                let frame = match frame {
                    Ok(Some(Ok(frame))) => frame,
                    Ok(Some(Err(err))) => {
                        debug!(conn.ctx.log, "zookeeper connection closed: unreadable frame";
                            "client" => conn.client_id, "error" => %err);
                        return;
                    }
                    Ok(None) => return,
                    Err(_) => {
                        debug!(conn.ctx.log, "zookeeper connection closed: silent for the session timeout";
                            "client" => conn.client_id);
                        return;
                    }
                };
                stats.received(conn.client_id);
                let close = conn.request(frame.freeze(), &mut messages, &mut out).await;
                stats.sent(conn.client_id);
                if close {
                    let _ = writer.write_all(&out).await;
                    return;
                }
            }
        }
        if overflowed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if !out.is_empty() {
            if writer.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

impl Conn {
    /// Writes a watch notification, once per (entry, event, path).
    fn notification(&mut self, push: &Push, out: &mut BytesMut) {
        let Reply::Push(parts) = &push.message else {
            return;
        };
        let [_, Reply::Bulk(name), Reply::Bulk(path), ..] = parts.as_slice() else {
            return;
        };
        let Some(kind) = event_type(name) else {
            return;
        };
        let key = (push.index, kind, path.clone());
        if self.recent.contains(&key) {
            return;
        }
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(key);
        framed(&proto::notification(kind, path), out);
    }

    /// Answers one request frame; true when the connection must close.
    async fn request(
        &mut self,
        frame: Bytes,
        messages: &mut Receiver<Push>,
        out: &mut BytesMut,
    ) -> bool {
        let mut r = Reader::new(frame);
        let (Ok(request_xid), Ok(op_code)) = (r.int(), r.int()) else {
            return true;
        };
        let request = match proto::parse(op_code, &mut r) {
            Ok(request) => request,
            Err(BadRequest::Unknown(_)) => {
                debug!(self.ctx.log, "zookeeper connection closed: unknown op";
                    "client" => self.client_id, "op" => op_code);
                framed(
                    &proto::reply_header(request_xid, self.index() as i64, err::UNIMPLEMENTED),
                    out,
                );
                return true;
            }
            Err(BadRequest::Malformed(why)) => {
                debug!(self.ctx.log, "zookeeper connection closed: malformed request";
                    "client" => self.client_id, "op" => op_code, "why" => ?why);
                return true;
            }
        };
        let outcome = match request {
            Request::Ping => {
                // A read-only session ends once the node is back in a
                // quorum (a ZooKeeper server leaving read-only mode drops
                // its clients too), so the client reconnects read-write; a
                // read-write one when the node lost the leader or the
                // session is gone.
                let why = if self.session.read_only {
                    (self.ctx.node.status().leader_id != 0).then_some("read-only mode ended")
                } else if self.lost_leader() {
                    Some("no leader")
                } else if self.session_ended() {
                    Some("the session ended")
                } else {
                    None
                };
                if let Some(why) = why {
                    debug!(self.ctx.log, "zookeeper connection closed at a ping"; "why" => why,
                        "client" => self.client_id, "session" => format!("{:#x}", self.session.id));
                    return true;
                }
                Ok(Outcome::Reply(Answer {
                    index: self.index(),
                    err: err::OK,
                    body: Writer::default(),
                }))
            }
            Request::Auth { scheme, auth } => Ok(self.auth(scheme, auth)),
            Request::SetWatches(watches) => self.set_watches(watches, out).await,
            Request::AddWatch { path, mode } => Ok(Outcome::Reply(self.add_watch(path, mode))),
            Request::WhoAmI => Ok(Outcome::Reply(self.who_am_i())),
            other => self.handle(other).await,
        };
        let (answer, close) = match outcome {
            Ok(Outcome::Reply(answer)) => (answer, false),
            Ok(Outcome::ReplyAndClose(answer)) => (answer, true),
            Err(err) => {
                // The client reconnects (to this node or another) and
                // retries, as after any lost connection.
                debug!(self.ctx.log, "zookeeper connection closed: the cluster did not answer";
                    "client" => self.client_id, "op" => op_code, "error" => %err);
                return true;
            }
        };
        // Pushes of entries up to the reply's index go before it.
        self.ctx
            .node
            .wait_delivered(answer.index, DELIVERY_WAIT)
            .await;
        let mut after = Vec::new();
        while let Ok(push) = messages.try_recv() {
            if push.index <= answer.index {
                self.notification(&push, out);
            } else {
                after.push(push);
            }
        }
        // A reply carries its request's xid, whatever the client chose for
        // auth and setWatches (kazoo sends the special -4 and -8, the Java
        // client numbers its setWatches like any request and drops the
        // connection on a reply out of order); a ping's is always -2.
        let reply_xid = match op_code {
            op::PING => xid::PING,
            _ => request_xid,
        };
        let mut w = proto::reply_header(reply_xid, answer.index as i64, answer.err);
        w.out.extend_from_slice(&answer.body.out);
        framed(&w, out);
        for push in after {
            self.notification(&push, out);
        }
        close
    }

    /// A node that has known no leader for a third of the session timeout
    /// stops answering pings: its renewals cannot commit, so the client
    /// must move to a node that can keep its session.
    fn lost_leader(&mut self) -> bool {
        if self.ctx.node.status().leader_id != 0 {
            self.leaderless_since = None;
            return false;
        }
        let since = *self.leaderless_since.get_or_insert_with(Instant::now);
        since.elapsed() > self.session.timeout / 3
    }

    /// Whether the session's lease is gone from this node's state (it
    /// expired while this connection could not renew it): checked on
    /// every ping (a local read). The client then reconnects and learns
    /// that the session expired.
    fn session_ended(&self) -> bool {
        let argv = [
            Bytes::from_static(b"LEASE.TTL"),
            Bytes::from(self.session.id.to_string()),
        ];
        matches!(self.ctx.node.read_local(&argv), Reply::Nil)
    }

    fn auth(&mut self, scheme: Bytes, auth: Bytes) -> Outcome {
        let failed = || {
            Outcome::ReplyAndClose(Answer {
                index: 0,
                err: err::AUTH_FAILED,
                body: Writer::default(),
            })
        };
        if scheme.as_ref() != b"digest" {
            return failed();
        }
        let Some(colon) = auth.iter().position(|b| *b == b':') else {
            return failed();
        };
        let id = Bytes::from(digest_id(&auth[..colon], &auth));
        if self.config.super_digest.as_deref().map(str::as_bytes) == Some(&id[..]) {
            self.superuser = true;
        }
        if !self
            .identities
            .iter()
            .any(|(s, i)| s == &scheme && i == &id)
        {
            self.identities.push((scheme, id));
        }
        Outcome::Reply(Answer {
            index: 0,
            err: err::OK,
            body: Writer::default(),
        })
    }

    fn who_am_i(&self) -> Answer {
        // ZooKeeper reports a digest identity by its user name, and the
        // added identities before the address.
        let mut ids: Vec<(Bytes, Bytes)> = self
            .identities
            .iter()
            .map(|(scheme, id)| {
                let user = id.split(|b| *b == b':').next().unwrap_or(&[]);
                (scheme.clone(), Bytes::copy_from_slice(user))
            })
            .collect();
        ids.push((
            Bytes::from_static(b"ip"),
            Bytes::from(self.remote.ip().to_string()),
        ));
        let mut w = Writer::default();
        w.int(ids.len() as i32);
        for (scheme, user) in &ids {
            w.string(scheme).string(user);
        }
        Answer {
            index: self.index(),
            err: err::OK,
            body: w,
        }
    }

    fn add_watch(&mut self, path: Bytes, mode: i32) -> Answer {
        let index = self.index();
        let kind = match mode {
            0 => Kind::Persistent,
            1 => Kind::Recursive,
            _ => {
                return Answer {
                    index,
                    err: err::BAD_ARGUMENTS,
                    body: Writer::default(),
                }
            }
        };
        if lockstep_engine::validate_znode_path(&path).is_err() {
            return Answer {
                index,
                err: err::BAD_ARGUMENTS,
                body: Writer::default(),
            };
        }
        let registered =
            self.ctx
                .znode_watches
                .register(self.client_id, &self.mailbox, path, kind, Some(index));
        if registered.is_none() {
            return Answer {
                index,
                err: err::BAD_ARGUMENTS,
                body: Writer::default(),
            };
        }
        // The body is ZooKeeper's ErrorResponse: the Java client reads it.
        let mut body = Writer::default();
        body.int(err::OK);
        Answer {
            index,
            err: err::OK,
            body,
        }
    }

    /// setWatches / setWatches2 after a reconnect: each watch is set again,
    /// or fires at once if what it watches changed after `relative_zxid`
    /// (ZooKeeper's rules: a data watch on a node gone or modified since,
    /// an exists watch on a node that now exists, a child watch on a node
    /// gone or whose children changed since).
    async fn set_watches(
        &mut self,
        watches: SetWatches,
        out: &mut BytesMut,
    ) -> Result<Outcome, lockstep_raft::ProposeError> {
        self.barrier().await?;
        let relative = watches.relative_zxid.max(0) as u64;
        let mut index = self.index();
        let lists = [
            (Kind::Data, watches.data),
            (Kind::Exists, watches.exist),
            (Kind::Child, watches.child),
        ];
        for (kind, paths) in lists {
            for path in paths {
                if lockstep_engine::validate_znode_path(&path).is_err() {
                    continue;
                }
                let Some(id) = self.ctx.znode_watches.register(
                    self.client_id,
                    &self.mailbox,
                    path.clone(),
                    kind,
                    None,
                ) else {
                    continue;
                };
                let argv = [Bytes::from_static(b"ZNODE.STAT"), path.clone()];
                let (reply, at) = self.ctx.node.read_local_at(&argv);
                index = index.max(at);
                let exists = !matches!(reply, Reply::Error(_));
                let stat = crate::ops::stat_of(&reply);
                let fire = match kind {
                    Kind::Data if !exists => Some(event::NODE_DELETED),
                    Kind::Data if stat.mzxid as u64 > relative => Some(event::NODE_DATA_CHANGED),
                    Kind::Exists if exists => Some(event::NODE_CREATED),
                    Kind::Child if !exists => Some(event::NODE_DELETED),
                    Kind::Child if stat.pzxid as u64 > relative => {
                        Some(event::NODE_CHILDREN_CHANGED)
                    }
                    _ => None,
                };
                match fire {
                    Some(event_type) => {
                        self.ctx.znode_watches.cancel(id);
                        framed(&proto::notification(event_type, &path), out);
                    }
                    None => self.ctx.znode_watches.arm(id, at),
                }
            }
        }
        for (kind, paths) in [
            (Kind::Persistent, watches.persistent),
            (Kind::Recursive, watches.recursive),
        ] {
            for path in paths {
                if lockstep_engine::validate_znode_path(&path).is_ok() {
                    self.ctx.znode_watches.register(
                        self.client_id,
                        &self.mailbox,
                        path,
                        kind,
                        Some(index),
                    );
                }
            }
        }
        Ok(Outcome::Reply(Answer {
            index,
            err: err::OK,
            body: Writer::default(),
        }))
    }
}
