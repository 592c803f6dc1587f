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
    /// Coalesced lease renewals.
    pub keepalives: Keepalives,
    pub started: Instant,
    pub(crate) clients: Clients,
    pub log: Logger,
}

impl ServerContext {
    /// Must run inside the tokio runtime (it starts the renewal service).
    pub fn new(
        node: NodeHandle,
        limits: Limits,
        client_addrs: BTreeMap<u64, SocketAddr>,
        events: &Events,
        log: Logger,
    ) -> Self {
        ServerContext {
            keepalives: Keepalives::start(node.clone(), log.new(slog::o!("part" => "keepalive"))),
            node,
            limits,
            client_addrs,
            pubsub: events.pubsub.clone(),
            watchers: events.watchers.clone(),
            tracking: events.tracking.clone(),
            znode_watches: events.znode_watches.clone(),
            started: Instant::now(),
            clients: Clients::default(),
            log,
        }
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
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(context.log, "accept failed"; "error" => %err);
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                continue;
            }
        };
        let permit = slots.clone().try_acquire_owned().ok();
        let context = context.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            connection::run(stream, remote, context, permit, shutdown).await;
        });
    }
    info!(context.log, "stopped accepting clients");
}
