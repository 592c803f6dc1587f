//! lockstep's ZooKeeper front end: ZooKeeper's client wire protocol on its
//! own port, over the same replicated znode namespace, leases and watches
//! that the RESP front end serves. A ZooKeeper client (kazoo, Curator,
//! zkCli.sh) and a Redis client see one namespace and one history.
//!
//! Every node serves every request: writes are proposals through the log
//! (a zxid is the entry's log index), reads are linearizable (ReadIndex),
//! so `sync` is one barrier. A session is a lease bound to its connection
//! (see [`session`]); watches are the node's znode watches keyed by the
//! connection.
//!
//! What this crate must not do: decide namespace semantics (the engine
//! does, through its ZNODE and LEASE commands) or touch raft state (it
//! asks the node handle). It is the only crate that knows jute.

mod connection;
pub mod jute;
mod ops;
pub mod proto;
pub mod session;
mod words;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lockstep_server::{ReloadingAcceptor, ServerContext, TlsFiles};

use slog::{error, info};
use tokio::net::TcpListener;
use tokio::sync::watch;
pub use words::WORDS as FOUR_LETTER_WORDS;

/// What `envi` and `srvr` report: the ZooKeeper release whose protocol
/// and behaviour this front end follows.
pub const ZOOKEEPER_VERSION: &str = "3.8.4-lockstep";

#[derive(Clone, Debug)]
pub struct ZkConfig {
    /// The port clients connect to (reported by `conf`).
    pub client_port: u16,
    /// The TLS port, when there is one (reported by `conf`).
    pub secure_client_port: Option<u16>,
    /// Members' ZooKeeper client addresses, by node id, as far as known
    /// (listed in /zookeeper/config).
    pub addrs: BTreeMap<u64, SocketAddr>,
    /// ZooKeeper's tickTime: the session bounds default to 2 and 20 ticks.
    pub tick_ms: u64,
    pub min_session_ms: u64,
    pub max_session_ms: u64,
    /// Largest request frame (ZooKeeper's jute.maxbuffer); a larger one
    /// closes the connection.
    pub max_frame: usize,
    /// Four-letter words that run (`*`: all).
    pub four_letter_words: Vec<String>,
    /// Mixed into session passwords: the cluster secret, when configured.
    pub secret: Vec<u8>,
    /// `user:base64(sha1(user:password))`: a client that authenticates as
    /// it is subject to no ACL (ZooKeeper's superDigest).
    pub super_digest: Option<String>,
}

impl Default for ZkConfig {
    fn default() -> Self {
        ZkConfig {
            client_port: 2181,
            secure_client_port: None,
            addrs: BTreeMap::new(),
            tick_ms: 2_000,
            min_session_ms: 4_000,
            max_session_ms: 40_000,
            max_frame: 0xfffff,
            four_letter_words: vec!["srvr".into(), "ruok".into(), "isro".into()],
            secret: Vec::new(),
            super_digest: None,
        }
    }
}

struct ConnInfo {
    remote: SocketAddr,
    session: u64,
    received: u64,
    sent: u64,
    since: Instant,
}

/// Counters and the connection list the four-letter words report.
#[derive(Default)]
pub struct Stats {
    connections: Mutex<BTreeMap<u64, ConnInfo>>,
    received: AtomicU64,
    sent: AtomicU64,
}

impl Stats {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<u64, ConnInfo>) -> R) -> R {
        f(&mut self.connections.lock().expect("zookeeper stats lock"))
    }

    fn connected(&self, id: u64, remote: SocketAddr, session: u64) {
        self.with(|c| {
            c.insert(
                id,
                ConnInfo {
                    remote,
                    session,
                    received: 0,
                    sent: 0,
                    since: Instant::now(),
                },
            )
        });
    }

    fn disconnected(&self, id: u64) {
        self.with(|c| c.remove(&id));
    }

    fn received(&self, id: u64) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.with(|c| c.get_mut(&id).map(|i| i.received += 1));
    }

    fn sent(&self, id: u64) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.with(|c| c.get_mut(&id).map(|i| i.sent += 1));
    }

    pub fn total_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn total_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn connection_count(&self) -> usize {
        self.with(|c| c.len())
    }

    fn connection_lines(&self) -> Vec<String> {
        self.with(|c| {
            c.values()
                .map(|i| {
                    format!(
                        "/{}[1](queued=0,recved={},sent={},sid=0x{:x},est={}ms)",
                        i.remote,
                        i.received,
                        i.sent,
                        i.session,
                        i.since.elapsed().as_millis()
                    )
                })
                .collect()
        })
    }
}

/// Serves ZooKeeper clients on `listener`, and over TLS on `secure`
/// (ZooKeeper's secureClientPort) when given, until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    secure: Option<(TcpListener, TlsFiles)>,
    context: Arc<ServerContext>,
    config: ZkConfig,
    shutdown: watch::Receiver<bool>,
) {
    let config = Arc::new(config);
    let stats = Arc::new(Stats::default());
    if let Some((listener, files)) = secure {
        match ReloadingAcceptor::start(files, context.log.clone(), shutdown.clone()) {
            Ok(acceptor) => {
                let (context, config, stats) = (context.clone(), config.clone(), stats.clone());
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    accept_loop(listener, Some(acceptor), context, config, stats, shutdown).await
                });
            }
            Err(err) => error!(context.log, "no zookeeper TLS listener"; "error" => err),
        }
    }
    accept_loop(listener, None, context, config, stats, shutdown).await;
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<ReloadingAcceptor>,
    context: Arc<ServerContext>,
    config: Arc<ZkConfig>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let secure = tls.is_some();
    info!(context.log, "accepting zookeeper clients";
        "addr" => ?listener.local_addr().ok(), "tls" => secure);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let Ok((stream, remote)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (context, config, stats) = (context.clone(), config.clone(), stats.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection::run(stream, remote, context, config, stats).await,
                Some(tls) => {
                    if let Some(stream) = tls.handshake(stream, remote, &context.log).await {
                        connection::run(stream, remote, context, config, stats).await;
                    }
                }
            }
        });
    }
    info!(context.log, "stopped accepting zookeeper clients"; "tls" => secure);
}
