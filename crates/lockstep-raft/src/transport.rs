//! TCP transport between peers.
//!
//! Each peer gets one outbound connection fed by a bounded queue; a full
//! queue drops frames, which raft tolerates (it retries). A broken
//! connection is re-dialled with capped exponential backoff. Every
//! connection starts with the dialler's node id, then carries
//! length-delimited frames no larger than the configured maximum.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::Sender;
use futures_util::{SinkExt, StreamExt};
use slog::{debug, info, warn, Logger};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, FramedWrite, LengthDelimitedCodec};

use hmac::{Hmac, Mac};
use prometheus::{IntCounter, IntGauge};
use sha2::Sha256;

use crate::frame::PeerFrame;
use crate::metrics::RaftMetrics;
use crate::node::Event;

const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Inbound peer connections accepted at once; a cluster has few peers, so
/// anything beyond this is not a peer.
const MAX_INBOUND_PEER_CONNECTIONS: usize = 64;

/// Frames larger than this go as chunks of this size (a snapshot), so no
/// frame on the wire is larger and a large message never blocks a link
/// in one write.
const CHUNK_BYTES: usize = 8 << 20;
/// A chunk frame: `3 flags:u8 bytes` (flags: 1 first, 2 last).
const TAG_CHUNK: u8 = 3;
/// The request that makes a connection a snapshot stream: `4 id:u64`
/// (see [`crate::snapshots`]).
const TAG_FETCH: u8 = 4;
/// A follower gives up on a snapshot stream that stalls this long (the
/// leader serves one stream at a time, so a request may queue).
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Called with a fetched payload's length, or why the fetch failed.
pub type FetchDone = Box<dyn FnOnce(Result<u64, String>) + Send>;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(CHUNK_BYTES + 16)
        .new_codec()
}

/// `frame` as the frames that go on the wire: itself, or chunks.
fn wire_frames(frame: Bytes) -> Vec<Bytes> {
    if frame.len() <= CHUNK_BYTES {
        return vec![frame];
    }
    let count = frame.len().div_ceil(CHUNK_BYTES);
    (0..count)
        .map(|n| {
            let part = &frame[n * CHUNK_BYTES..((n + 1) * CHUNK_BYTES).min(frame.len())];
            let flags = u8::from(n == 0) | (u8::from(n + 1 == count) << 1);
            let mut chunk = bytes::BytesMut::with_capacity(part.len() + 2);
            chunk.extend_from_slice(&[TAG_CHUNK, flags]);
            chunk.extend_from_slice(part);
            chunk.freeze()
        })
        .collect()
}

/// Sends frames to peers; cheap to clone. The set of peers follows the
/// membership: [`Outbound::set_peers`] dials new members and lets go of
/// removed ones.
#[derive(Clone)]
pub struct Outbound {
    inner: Arc<OutboundInner>,
}

struct OutboundInner {
    runtime: tokio::runtime::Handle,
    own_id: u64,
    queue_frames: usize,
    /// Per peer: its address, the queue its dial loop drains, its counters.
    queues: RwLock<BTreeMap<u64, PeerQueue>>,
    metrics: RaftMetrics,
    secret: Option<Arc<[u8]>>,
    tls: Option<crate::tls::PeerTls>,
    log: Logger,
}

/// A peer's address, the queue its dial loop drains, and its counters.
type PeerQueue = (String, mpsc::Sender<Bytes>, PeerCounters);

/// One peer's counters, looked up once (not per frame).
#[derive(Clone)]
struct PeerCounters {
    bytes: IntCounter,
    frames: IntCounter,
    dropped: IntCounter,
}

impl Outbound {
    /// Queues an encoded frame for `to`; returns false if it was dropped.
    pub fn send_encoded(&self, to: u64, frame: Bytes) -> bool {
        let queues = self.inner.queues.read().expect("peer queues");
        match queues.get(&to) {
            Some((_, queue, counters)) => {
                let len = frame.len() as u64;
                // A message in chunks goes whole or not at all (a missing
                // chunk makes the receiver drop the rest).
                let parts = wire_frames(frame);
                if queue.capacity() < parts.len() {
                    counters.dropped.inc();
                    return false;
                }
                for part in parts {
                    if queue.try_send(part).is_err() {
                        counters.dropped.inc();
                        return false;
                    }
                }
                counters.frames.inc();
                counters.bytes.inc_by(len);
                true
            }
            None => false,
        }
    }

    /// Dials every peer in `peers` (this node skipped) not dialled yet or
    /// whose address changed; stops dialling the others.
    pub fn set_peers(&self, peers: &BTreeMap<u64, String>) {
        let inner = &self.inner;
        let mut queues = inner.queues.write().expect("peer queues");
        // Dropping a queue's sender ends its dial loop.
        queues.retain(|id, (addr, _, _)| peers.get(id) == Some(addr));
        for (&id, addr) in peers {
            if id == inner.own_id || queues.contains_key(&id) {
                continue;
            }
            let (tx, rx) = mpsc::channel(inner.queue_frames);
            let label = id.to_string();
            let counters = PeerCounters {
                bytes: inner.metrics.peer_sent_bytes.with_label_values(&[&label]),
                frames: inner.metrics.peer_sent_frames.with_label_values(&[&label]),
                dropped: inner
                    .metrics
                    .peer_dropped_frames
                    .with_label_values(&[&label]),
            };
            queues.insert(id, (addr.clone(), tx, counters));
            let log = inner.log.new(slog::o!("peer" => id));
            let connected = inner.metrics.peer_connected.with_label_values(&[&label]);
            let dialer = Dialer {
                own_id: inner.own_id,
                addr: addr.clone(),
                connected,
                secret: inner.secret.clone(),
                tls: inner.tls.clone(),
                log,
            };
            inner.runtime.spawn(dial_loop(dialer, rx));
        }
    }
}

impl Outbound {
    /// Fetches the snapshot payload of ticket `id` from peer `from` into
    /// the file `into` (replaced; synced, with its directory, once whole
    /// and checked). `done` runs off the async threads. False if `from` is
    /// not a peer this node knows.
    pub fn fetch_snapshot(&self, from: u64, id: u64, into: PathBuf, done: FetchDone) -> bool {
        let addr = {
            let queues = self.inner.queues.read().expect("peer queues");
            match queues.get(&from) {
                Some((addr, _, _)) => addr.clone(),
                None => return false,
            }
        };
        let inner = self.inner.clone();
        self.inner.runtime.spawn(async move {
            let outcome = fetch(&inner, &addr, id, &into).await;
            if outcome.is_err() {
                let _ = tokio::fs::remove_file(&into).await;
            }
            let _ = tokio::task::spawn_blocking(move || done(outcome)).await;
        });
        true
    }
}

async fn fetch(inner: &OutboundInner, addr: &str, id: u64, into: &Path) -> Result<u64, String> {
    use crate::snapshots::{check_end, FRAME_DATA, FRAME_END, FRAME_FAILED};
    let io = |what: &'static str| move |err: std::io::Error| format!("{what}: {err}");
    let stream = dial(
        addr,
        inner.own_id,
        inner.secret.as_deref(),
        inner.tls.as_ref(),
    )
    .await
    .map_err(|err| match err {
        DialError::Unreachable(err) => format!("dial {addr}: {err}"),
        DialError::Refused(reason) => reason,
    })?;
    let mut framed = Framed::new(stream, codec());
    let mut request = bytes::BytesMut::with_capacity(9);
    request.extend_from_slice(&[TAG_FETCH]);
    request.extend_from_slice(&id.to_be_bytes());
    framed
        .send(request.freeze())
        .await
        .map_err(io("snapshot request"))?;
    let file = tokio::fs::File::create(into)
        .await
        .map_err(io("staging file"))?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    let mut length = 0u64;
    let received = inner
        .metrics
        .snapshot_stream_bytes
        .with_label_values(&["received"]);
    loop {
        let frame = match tokio::time::timeout(STREAM_IDLE_TIMEOUT, framed.next()).await {
            Err(_) => return Err("snapshot stream stalled".into()),
            Ok(None) => return Err("snapshot stream ended early".into()),
            Ok(Some(frame)) => frame.map_err(io("snapshot stream"))?,
        };
        match frame.first() {
            Some(&FRAME_DATA) => {
                let piece = &frame[1..];
                hasher.update(piece);
                length += piece.len() as u64;
                received.inc_by(piece.len() as u64);
                out.write_all(piece).await.map_err(io("staging file"))?;
            }
            Some(&FRAME_END) => {
                check_end(&frame, length, hasher.digest128())?;
                out.flush().await.map_err(io("staging file"))?;
                out.into_inner()
                    .sync_all()
                    .await
                    .map_err(io("staging file"))?;
                if let Some(dir) = into.parent() {
                    let dir = tokio::fs::File::open(dir)
                        .await
                        .map_err(io("staging directory"))?;
                    dir.sync_all().await.map_err(io("staging directory"))?;
                }
                return Ok(length);
            }
            Some(&FRAME_FAILED) => {
                return Err(format!(
                    "the leader could not stream it: {}",
                    String::from_utf8_lossy(&frame[1..])
                ))
            }
            _ => return Err("bad snapshot stream frame".into()),
        }
    }
}

/// Streams the payload of a prepared snapshot to a follower that asked
/// for it with `request` (`4 id:u64`).
async fn serve_fetch<S: AsyncRead + AsyncWrite + Unpin>(
    mut framed: Framed<S, LengthDelimitedCodec>,
    request: &[u8],
    snapshots: Option<&crate::snapshots::SnapshotServer>,
    metrics: &RaftMetrics,
) -> std::io::Result<()> {
    use crate::snapshots::{failed_frame, StreamRequest, STREAM_FRAMES_BUFFERED};
    let id = match request {
        [TAG_FETCH, id @ ..] if id.len() == 8 => u64::from_be_bytes(id.try_into().expect("8")),
        _ => return Ok(()),
    };
    let (out, mut frames) = mpsc::channel(STREAM_FRAMES_BUFFERED);
    let request = StreamRequest {
        out,
        sent: metrics.snapshot_stream_bytes.with_label_values(&["sent"]),
    };
    if !snapshots.is_some_and(|server| server.request(id, request)) {
        let refusal = failed_frame(&format!("snapshot {id} is not prepared here (any more)"));
        return framed.send(refusal).await;
    }
    while let Some(frame) = frames.recv().await {
        framed.send(frame).await?;
    }
    Ok(())
}

/// How peers prove who they are: the cluster secret, mutual TLS, both or
/// neither.
#[derive(Clone, Default)]
pub struct PeerSecurity {
    pub secret: Option<Arc<[u8]>>,
    pub tls: Option<crate::tls::PeerTls>,
}

pub fn start_outbound(
    runtime: &tokio::runtime::Handle,
    own_id: u64,
    queue_frames: usize,
    metrics: RaftMetrics,
    security: PeerSecurity,
    log: &Logger,
) -> Outbound {
    let PeerSecurity { secret, tls } = security;
    Outbound {
        inner: Arc::new(OutboundInner {
            runtime: runtime.clone(),
            own_id,
            queue_frames,
            queues: RwLock::new(BTreeMap::new()),
            metrics,
            secret,
            tls,
            log: log.clone(),
        }),
    }
}

/// What a dial loop needs besides its queue.
struct Dialer {
    own_id: u64,
    addr: String,
    connected: IntGauge,
    secret: Option<Arc<[u8]>>,
    tls: Option<crate::tls::PeerTls>,
    log: Logger,
}

/// A peer connection, plain or TLS.
trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}

/// Why a dial did not give a connection.
enum DialError {
    /// Nothing answered at the address.
    Unreachable(std::io::Error),
    /// Something answered but the TLS or peer handshake failed.
    Refused(String),
}

/// Connects to a peer and introduces this node (TLS first, if configured).
async fn dial(
    addr: &str,
    own_id: u64,
    secret: Option<&[u8]>,
    tls: Option<&crate::tls::PeerTls>,
) -> Result<Box<dyn PeerIo>, DialError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(DialError::Unreachable)?;
    let _ = stream.set_nodelay(true);
    let mut stream: Box<dyn PeerIo> = match tls {
        None => Box::new(stream),
        Some(tls) => {
            let connect = tls.connector.connect(server_name(addr), stream);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await {
                Ok(Ok(stream)) => Box::new(stream),
                Ok(Err(err)) => return Err(DialError::Refused(format!("TLS handshake: {err}"))),
                Err(_) => return Err(DialError::Refused("TLS handshake timed out".into())),
            }
        }
    };
    introduce(&mut stream, own_id, secret)
        .await
        .map_err(|err| DialError::Refused(format!("peer handshake: {err}")))?;
    Ok(stream)
}

async fn dial_loop(dialer: Dialer, mut rx: mpsc::Receiver<Bytes>) {
    let mut backoff = MIN_BACKOFF;
    let log = &dialer.log;
    let addr = &dialer.addr;
    loop {
        if rx.is_closed() {
            // The peer left the membership.
            return;
        }
        let dialled = dial(
            addr,
            dialer.own_id,
            dialer.secret.as_deref(),
            dialer.tls.as_ref(),
        )
        .await;
        match dialled {
            Err(DialError::Unreachable(err)) => {
                debug!(log, "peer dial failed"; "addr" => %addr, "error" => %err);
                // Frames queued while the peer is down are stale by the time
                // it returns; raft resends what matters.
                while rx.try_recv().is_ok() {}
            }
            Err(DialError::Refused(reason)) => {
                warn!(log, "peer refused the connection"; "addr" => %addr, "error" => %reason);
            }
            Ok(stream) => {
                info!(log, "peer connected"; "addr" => %addr);
                dialer.connected.set(1);
                backoff = MIN_BACKOFF;
                let closed = send_queued(stream, &mut rx).await;
                dialer.connected.set(0);
                if closed {
                    return;
                }
                warn!(log, "peer connection lost"; "addr" => %addr);
                continue;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The name a peer's certificate must carry: the host of its address.
fn server_name(addr: &str) -> rustls::pki_types::ServerName<'static> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(host.to_string()).unwrap_or_else(|_| {
        rustls::pki_types::ServerName::try_from("invalid.peer").expect("valid name")
    })
}

/// Sends what is queued on `stream` until the connection breaks (false)
/// or the queue closes (true: the peer left the membership).
async fn send_queued(stream: Box<dyn PeerIo>, rx: &mut mpsc::Receiver<Bytes>) -> bool {
    let mut sink = FramedWrite::new(stream, codec());
    loop {
        let Some(frame) = rx.recv().await else {
            return true;
        };
        // Batch whatever else is queued into one flush.
        let mut failed = sink.feed(frame).await.is_err();
        while !failed {
            match rx.try_recv() {
                Ok(next) => failed = sink.feed(next).await.is_err(),
                Err(_) => break,
            }
        }
        if failed || SinkExt::<Bytes>::flush(&mut sink).await.is_err() {
            return false;
        }
    }
}

/// Accepts peer connections and hands decoded frames to the raft thread;
/// a connection that asks for a snapshot gets it streamed from `snapshots`.
pub(crate) async fn serve_inbound(
    listener: TcpListener,
    events: Sender<Event>,
    max_frame_bytes: usize,
    metrics: RaftMetrics,
    security: PeerSecurity,
    snapshots: Option<Arc<crate::snapshots::SnapshotServer>>,
    log: Logger,
) {
    let PeerSecurity { secret, tls } = security;
    let labels = Arc::new(PeerLabels::default());
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND_PEER_CONNECTIONS));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(log, "peer accept failed"; "error" => %err);
                tokio::time::sleep(MIN_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            warn!(log, "refusing peer connection: too many"; "remote" => %remote);
            continue;
        };
        let events = events.clone();
        let log = log.clone();
        let metrics = metrics.clone();
        let secret = secret.clone();
        let labels = labels.clone();
        let tls = tls.clone();
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let peer = Inbound {
                events,
                max_frame_bytes,
                metrics: &metrics,
                labels: &labels,
                secret: secret.as_deref(),
                snapshots: snapshots.as_deref(),
                log: &log,
            };
            let served = match tls {
                None => read_peer(stream, peer).await,
                Some(tls) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => read_peer(stream, peer).await,
                        Ok(Err(err)) => {
                            metrics.peer_rejected.inc();
                            warn!(log, "refused a peer: TLS handshake failed"; "remote" => %remote, "error" => %err);
                            Ok(())
                        }
                        Err(_) => {
                            metrics.peer_rejected.inc();
                            warn!(log, "refused a peer: TLS handshake timed out"; "remote" => %remote);
                            Ok(())
                        }
                    }
                }
            };
            if let Err(err) = served {
                debug!(log, "peer connection closed"; "remote" => %remote, "reason" => %err);
            }
        });
    }
}

/// What an inbound peer connection is served with.
struct Inbound<'a> {
    events: Sender<Event>,
    max_frame_bytes: usize,
    metrics: &'a RaftMetrics,
    labels: &'a PeerLabels,
    secret: Option<&'a [u8]>,
    snapshots: Option<&'a crate::snapshots::SnapshotServer>,
    log: &'a Logger,
}

/// Peer ids that label metrics, at most [`MAX_PEER_LABELS`]; a connection
/// can claim any id, so the rest share one label.
#[derive(Default)]
struct PeerLabels(std::sync::Mutex<std::collections::BTreeSet<u64>>);

const MAX_PEER_LABELS: usize = 64;

impl PeerLabels {
    fn label(&self, id: u64) -> String {
        let mut seen = self.0.lock().expect("peer labels");
        if seen.contains(&id) || seen.len() < MAX_PEER_LABELS {
            seen.insert(id);
            id.to_string()
        } else {
            "other".into()
        }
    }
}

/// A peer must finish its handshake within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const NONCE_BYTES: usize = 16;

fn handshake_mac(secret: &[u8], nonce: &[u8], id: u64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"lockstep peer v1");
    mac.update(nonce);
    mac.update(&id.to_be_bytes());
    mac
}

/// The dialler's side of the handshake: its id, and with a cluster secret
/// the HMAC of the acceptor's nonce and that id (proof it knows the
/// secret, never the secret itself).
async fn introduce<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    own_id: u64,
    secret: Option<&[u8]>,
) -> std::io::Result<()> {
    let exchange = async {
        let Some(secret) = secret else {
            return stream.write_all(&own_id.to_be_bytes()).await;
        };
        let mut nonce = [0u8; NONCE_BYTES];
        stream.read_exact(&mut nonce).await?;
        let tag = handshake_mac(secret, &nonce, own_id)
            .finalize()
            .into_bytes();
        let mut hello = own_id.to_be_bytes().to_vec();
        hello.extend_from_slice(&tag);
        stream.write_all(&hello).await
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

/// The acceptor's side: the dialler's id, checked against the secret.
async fn admit<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: Option<&[u8]>,
) -> std::io::Result<u64> {
    let exchange = async {
        let mut id = [0u8; 8];
        let Some(secret) = secret else {
            stream.read_exact(&mut id).await?;
            return Ok(u64::from_be_bytes(id));
        };
        let mut nonce = [0u8; NONCE_BYTES];
        rand::Rng::fill(&mut rand::thread_rng(), &mut nonce[..]);
        stream.write_all(&nonce).await?;
        stream.read_exact(&mut id).await?;
        let from = u64::from_be_bytes(id);
        let mut tag = [0u8; 32];
        stream.read_exact(&mut tag).await?;
        handshake_mac(secret, &nonce, from)
            .verify_slice(&tag)
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("peer claiming id {from} does not know the cluster secret"),
                )
            })?;
        Ok(from)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

async fn read_peer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: Inbound<'_>,
) -> std::io::Result<()> {
    let Inbound {
        events,
        max_frame_bytes,
        metrics,
        labels,
        secret,
        snapshots,
        log,
    } = peer;
    let from = match admit(&mut stream, secret).await {
        Ok(from) => from,
        Err(err) => {
            metrics.peer_rejected.inc();
            warn!(log, "refused a peer connection"; "error" => %err);
            return Ok(());
        }
    };
    let received = metrics
        .peer_received_bytes
        .with_label_values(&[&labels.label(from)]);
    let mut frames = Framed::new(stream, codec());
    // A message arriving in chunks, at most `max_frame_bytes` in all.
    let mut assembling = bytes::BytesMut::new();
    while let Some(frame) = frames.next().await {
        let frame = frame?;
        received.inc_by(frame.len() as u64);
        if frame.first() == Some(&TAG_FETCH) {
            return serve_fetch(frames, &frame, snapshots, metrics).await;
        }
        let frame = if frame.first() == Some(&TAG_CHUNK) && frame.len() >= 2 {
            let flags = frame[1];
            if flags & 1 != 0 {
                assembling.clear();
            }
            if assembling.len() + frame.len() - 2 > max_frame_bytes {
                warn!(log, "peer message over the limit; closing"; "from" => from,
                    "limit" => max_frame_bytes);
                return Ok(());
            }
            assembling.extend_from_slice(&frame[2..]);
            if flags & 2 == 0 {
                continue;
            }
            assembling.split().freeze()
        } else {
            // A chunked message cut short is dropped (raft sends again).
            assembling.clear();
            frame.freeze()
        };
        match PeerFrame::decode(frame) {
            Ok(frame) => {
                if events.try_send(Event::Peer(frame)).is_err() {
                    debug!(log, "raft thread busy: dropping peer frame"; "from" => from);
                }
            }
            Err(err) => {
                warn!(log, "bad peer frame; closing"; "from" => from, "error" => %err);
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_frames_go_in_chunks_that_join_back() {
        let small = Bytes::from(vec![7u8; 100]);
        assert_eq!(wire_frames(small.clone()), vec![small]);
        let big: Vec<u8> = (0..(2 * CHUNK_BYTES + 5)).map(|n| n as u8).collect();
        let parts = wire_frames(Bytes::from(big.clone()));
        assert_eq!(parts.len(), 3);
        let flags: Vec<u8> = parts.iter().map(|part| part[1]).collect();
        assert_eq!(flags, vec![1, 0, 2]);
        assert!(parts
            .iter()
            .all(|part| part[0] == TAG_CHUNK && part.len() <= CHUNK_BYTES + 2));
        let joined: Vec<u8> = parts.iter().flat_map(|part| part[2..].to_vec()).collect();
        assert_eq!(joined, big);
    }
}
