//! Accept loop and shared server state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockstep_raft::NodeHandle;
use slog::{info, warn, Logger};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::clients::Clients;
use crate::connection;
use crate::keepalive::Keepalives;
use crate::pubsub::PubSub;
use crate::tracking::Tracking;
use crate::watchers::Watchers;
use crate::znode_watches::ZnodeWatches;
use crate::Limits;

/// Where applied entries' events go on this node: published messages to
/// subscribers, record changes to blocked readers. The replication core
/// calls [`Events::deliver`] after each write.
#[derive(Default)]
pub struct Events {
    pub pubsub: Arc<PubSub>,
    pub watchers: Arc<Watchers>,
    pub tracking: Arc<Tracking>,
    pub znode_watches: Arc<ZnodeWatches>,
    pub acl: Arc<crate::acl::AclCache>,
}

impl Events {
    /// Delivers one event of the entry at `index`; returns how many
    /// subscribers received a published message.
    pub fn deliver(&self, index: u64, event: &lockstep_engine::Event) -> usize {
        match event {
            lockstep_engine::Event::Changed { key } => {
                self.watchers.changed(index, key);
                self.tracking.changed(index, key);
                0
            }
            lockstep_engine::Event::Znode { path, event } => {
                self.znode_watches.deliver(index, path, event);
                0
            }
            lockstep_engine::Event::AclChanged { user } => {
                self.acl.invalidate(user);
                0
            }
            lockstep_engine::Event::Replaced => {
                self.acl.clear();
                0
            }
            lockstep_engine::Event::MembershipChanged => {
                // ZooKeeper clients watch the membership as the data of
                // /zookeeper/config (Curator's ensemble tracker does).
                self.znode_watches.deliver(
                    index,
                    &bytes::Bytes::from_static(lockstep_engine::ZNODE_CONFIG_PATH.as_bytes()),
                    lockstep_engine::watch_events::DATA_CHANGED,
                );
                0
            }
            publish => self.pubsub.deliver(index, publish),
        }
    }
}

/// Everything connections share.
pub struct ServerContext {
    pub node: NodeHandle,
    pub limits: Limits,
    /// Client (RESP) address of every node, for ROLE and INFO.
    pub client_addrs: BTreeMap<u64, SocketAddr>,
    /// This node's subscribers.
    pub pubsub: Arc<PubSub>,
    /// Readers blocked until a record changes.
    pub watchers: Arc<Watchers>,
    /// Client-side caching.
    pub tracking: Arc<Tracking>,
    /// Watches on znodes.
    pub znode_watches: Arc<ZnodeWatches>,
    /// Users and ACL LOG.
    pub acl: Arc<crate::acl::AclCache>,
    /// Refuse non-loopback clients while the default user needs no
    /// password (Redis's protected mode).
    pub protected_mode: bool,
    /// Coalesced lease renewals.
    pub keepalives: Keepalives,
    /// The keys with a `SET ... NX` in flight from this node.
    pub(crate) flights: Arc<crate::flights::Flights>,
    pub started: Instant,
    pub(crate) clients: Clients,
    /// Every metric of this node (the core's included).
    pub metrics: Arc<crate::metrics::ServerMetrics>,
    pub(crate) slowlog: crate::metrics::SlowLog,
    pub(crate) latency: crate::metrics::LatencyMonitor,
    pub(crate) monitors: crate::metrics::Monitors,
    pub(crate) readiness: crate::http::Readiness,
    /// Storage sizes for /metrics, if the store can tell.
    pub store_stats: Option<StoreStats>,
    pub log: Logger,
}

/// Reads the store's sizes: (column family, property, bytes).
pub type StoreStats = Arc<dyn Fn() -> Vec<(String, String, u64)> + Send + Sync>;

impl ServerContext {
    /// Must run inside the tokio runtime (it starts the renewal service).
    pub fn new(
        node: NodeHandle,
        limits: Limits,
        client_addrs: BTreeMap<u64, SocketAddr>,
        events: &Events,
        log: Logger,
    ) -> Self {
        let metrics = crate::metrics::ServerMetrics::new(node.metrics());
        ServerContext {
            keepalives: Keepalives::start(node.clone(), log.new(slog::o!("part" => "keepalive"))),
            node,
            limits,
            client_addrs,
            pubsub: events.pubsub.clone(),
            watchers: events.watchers.clone(),
            tracking: events.tracking.clone(),
            znode_watches: events.znode_watches.clone(),
            acl: events.acl.clone(),
            protected_mode: true,
            flights: Default::default(),
            started: Instant::now(),
            clients: Clients::default(),
            metrics,
            slowlog: Default::default(),
            latency: Default::default(),
            monitors: Default::default(),
            readiness: Default::default(),
            store_stats: None,
            log,
        }
    }

    /// Reports the store's sizes on /metrics.
    pub fn with_store_stats(mut self, stats: StoreStats) -> Self {
        self.store_stats = Some(stats);
        self
    }

    /// An id for a connection of another front end (the ZooKeeper one),
    /// unique among this node's connections.
    pub fn reserve_client_id(&self) -> u64 {
        self.clients.reserve_id()
    }

    /// The client (RESP) address of node `id`: as replicated with the
    /// membership, else as configured.
    pub fn client_addr(&self, status: &lockstep_raft::NodeStatus, id: u64) -> Option<SocketAddr> {
        status
            .client_addr(id)
            .and_then(|addr| addr.parse().ok())
            .or_else(|| self.client_addrs.get(&id).copied())
    }
}

/// Pause after a failed accept (e.g. out of file descriptors) before retrying.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

/// The next client on `listener` (None once `shutdown` turns true), with
/// a connection slot if one is free (a client without one is told so and
/// closed); counted in the metrics.
pub(crate) async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    context: &ServerContext,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(
    tokio::net::TcpStream,
    std::net::SocketAddr,
    Option<tokio::sync::OwnedSemaphorePermit>,
)> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return None,
        };
        match accepted {
            Ok((stream, remote)) => {
                let permit = slots.clone().try_acquire_owned().ok();
                if permit.is_some() {
                    context.metrics.connections_total.inc();
                } else {
                    context.metrics.connections_rejected.inc();
                }
                return Some((stream, remote, permit));
            }
            Err(err) => {
                warn!(context.log, "accept failed"; "error" => %err);
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
            }
        }
    }
}

/// Serves clients on `listener` until `shutdown` turns true. A safe state to
/// stop in: every command either was answered or is still in the node,
/// whose outcome the client learns as a closed connection (unknown).
pub async fn serve(
    listener: TcpListener,
    context: Arc<ServerContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(context.limits.max_connections));
    info!(context.log, "accepting clients"; "addr" => ?listener.local_addr().ok());
    while let Some((stream, remote, permit)) =
        accept(&listener, &slots, &context, &mut shutdown).await
    {
        let context = context.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            connection::run_tcp(stream, remote, context, permit, shutdown).await;
        });
    }
    info!(context.log, "stopped accepting clients");
}
