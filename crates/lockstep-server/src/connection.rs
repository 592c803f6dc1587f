//! One client connection: frames in, replies out, in order.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use futures::{FutureExt, StreamExt};
use lockstep_engine::Reply;
use slog::debug;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_util::codec::FramedRead;

use crate::codec::{ProtocolError, RequestDecoder};
use crate::encode::{encode, Protocol};
use crate::pubsub::Push;
use crate::session::Session;
use crate::ServerContext;

/// What a client from another host gets while the default user needs no
/// password and protected mode is on.
const PROTECTED_MODE: &str = "DENIED lockstep is running in protected mode: the default user has no password, so only clients on the loopback interface are accepted. To accept this client, do one of: 1) give the default user a password (ACL SETUSER default on >password, or CONFIG SET requirepass, from a loopback client; or start the nodes with --requirepass); 2) start the nodes with --protected-mode no, once the network is closed to strangers. One of these is enough.";

/// Reply bytes gathered before a write even if more pipelined commands wait.
const MAX_UNFLUSHED_REPLY_BYTES: usize = 64 << 10;

/// A client connection's read side: bytes in, and whether the client has
/// left while a command of its waits.
pub trait ClientReader: AsyncRead + Unpin + Send {
    /// Resolves when the client has closed its side of the connection;
    /// never if it sends more data instead (read after the reply).
    fn closed(&mut self) -> impl std::future::Future<Output = ()> + Send;
}

impl ClientReader for tokio::net::tcp::OwnedReadHalf {
    async fn closed(&mut self) {
        let mut byte = [0u8; 1];
        peer_closed(self.peek(&mut byte).await).await
    }
}

/// A TLS connection's read side, with a second handle on its socket to
/// peek at (TLS records themselves cannot be peeked).
pub struct TlsReader<S> {
    pub inner: tokio::io::ReadHalf<S>,
    pub raw: TcpStream,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> AsyncRead for TlsReader<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> ClientReader for TlsReader<S> {
    async fn closed(&mut self) {
        let mut byte = [0u8; 1];
        peer_closed(self.raw.peek(&mut byte).await).await
    }
}

/// Serves a plaintext TCP client.
pub async fn run_tcp(
    stream: TcpStream,
    remote: SocketAddr,
    context: Arc<ServerContext>,
    permit: Option<OwnedSemaphorePermit>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(remote);
    let (reader, writer) = stream.into_split();
    run(reader, writer, remote, local, context, permit, shutdown).await
}

/// Serves one client connection, plaintext or TLS.
pub async fn run<R: ClientReader, W: AsyncWrite + Unpin + Send>(
    reader: R,
    mut writer: W,
    remote: SocketAddr,
    local: SocketAddr,
    context: Arc<ServerContext>,
    permit: Option<OwnedSemaphorePermit>,
    mut shutdown: watch::Receiver<bool>,
) {
    if permit.is_none() {
        let mut out = BytesMut::new();
        encode(
            Protocol::Resp2,
            &Reply::error("ERR max number of clients reached"),
            &mut out,
        );
        let _ = writer.write_all(&out).await;
        return;
    }
    if context.protected_mode && !remote.ip().is_loopback() {
        let default = context.acl.user(&context.node, b"default");
        if default.is_some_and(|user| user.enabled && user.nopass) {
            context.metrics.connections_rejected.inc();
            let mut out = BytesMut::new();
            encode(Protocol::Resp2, &Reply::error(PROTECTED_MODE), &mut out);
            let _ = writer.write_all(&out).await;
            return;
        }
    }
    let id = context.clients.register(remote, local);
    let kill = context
        .clients
        .get(id)
        .map(|client| client.kill)
        .unwrap_or_default();
    let mut session = Session::new(id, context.clone());
    let (mut messages, overflowed) = session
        .take_messages()
        .expect("a new session has its message receiver");
    let mut frames = FramedRead::new(reader, RequestDecoder::new(context.limits.clone()));
    let mut out = BytesMut::with_capacity(4096);
    let mut ready = None;
    loop {
        let next = match ready.take() {
            Some(next) => next,
            None => {
                // Nothing more is buffered: the client waits for replies.
                if !out.is_empty() {
                    if writer.write_all(&out).await.is_err() {
                        break;
                    }
                    out.clear();
                }
                tokio::select! {
                    next = frames.next() => next,
                    Some(push) = messages.recv() => {
                        if overflowed.load(std::sync::atomic::Ordering::Relaxed) {
                            debug!(context.log, "closing subscriber that fell behind"; "client" => id);
                            break;
                        }
                        // Idle: any later reply is computed after this
                        // push's entry was applied, so it goes out now.
                        encode(session.protocol(), &push.message, &mut out);
                        continue;
                    }
                    _ = shutdown.changed() => break,
                    _ = kill.notified() => break,
                }
            }
        };
        let argv = match next {
            None => break,
            Some(Ok(argv)) => argv,
            Some(Err(ProtocolError::Io(_))) => break,
            Some(Err(err @ ProtocolError::Invalid(_))) => {
                encode(
                    session.protocol(),
                    &Reply::error(format!("ERR {err}")),
                    &mut out,
                );
                debug!(context.log, "closing client after protocol error"; "client" => id, "error" => %err);
                break;
            }
        };
        let (reply, close) = if crate::session::may_wait(&argv) {
            // A client that leaves while waiting leaves the queue.
            let finished = tokio::select! {
                result = session.execute(argv) => Some(result),
                _ = frames.get_mut().closed() => None,
            };
            match finished {
                Some(result) => result,
                None => break,
            }
        } else {
            session.execute(argv).await
        };
        let after = pushes_around_reply(&session, &mut messages, &mut out).await;
        encode(session.protocol(), &reply, &mut out);
        for push in after {
            encode(session.protocol(), &push.message, &mut out);
        }
        if close {
            break;
        }
        if out.len() >= MAX_UNFLUSHED_REPLY_BYTES {
            if writer.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        // A pipelined command already buffered is served before flushing.
        ready = frames.next().now_or_never();
    }
    if !out.is_empty() {
        let _ = writer.write_all(&out).await;
    }
    session.finish().await;
    context.clients.unregister(id);
}

/// Longest a reply waits for this node to hand out the events of the
/// entries it was computed from (normally microseconds).
const DELIVERY_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Orders the connection's waiting pushes around the reply about to be
/// written: those caused by entries up to the reply's index go first (a
/// client sees an invalidation or a watch event before any reply that
/// reflects the change), the later ones after it. Returns the later ones.
async fn pushes_around_reply(
    session: &Session,
    messages: &mut tokio::sync::mpsc::Receiver<Push>,
    out: &mut BytesMut,
) -> Vec<Push> {
    let (index, own_write) = session.reply_position();
    if index > 0 {
        session
            .context()
            .node
            .wait_delivered(index, DELIVERY_WAIT)
            .await;
    }
    let noloop = own_write && session.noloop();
    let mut after = Vec::new();
    while let Ok(push) = messages.try_recv() {
        if noloop && push.index == index && push.invalidation.is_some() {
            continue;
        }
        if push.index <= index {
            encode(session.protocol(), &push.message, out);
        } else {
            after.push(push);
        }
    }
    after
}

/// Resolves at once if a peek found the connection closed; never if it
/// found data (that is read after the reply).
async fn peer_closed(peeked: std::io::Result<usize>) {
    match peeked {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending::<()>().await,
    }
}
