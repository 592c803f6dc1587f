//! The raft thread: a [`Core`] driven by events from clients and peers
//! and by ticks of the system clock.

use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use lockstep_engine::{encode_command, Engine, Reply};
use lockstep_store::{NodeStore, StoreError};
use slog::{crit, o, Logger};
use tokio::sync::oneshot;

use crate::core::{probe_noop, read_applied, Core, EventSink, PeerSender, SystemTime};
use crate::frame::PeerFrame;
use crate::pending::Answered;
use crate::status::NodeStatus;
use crate::transport::{self, Outbound};
use crate::{MembershipError, NodeConfig, NodeError, ProposeError};

/// Events drained into one Ready round: the group-commit batch size.
const MAX_EVENTS_PER_ROUND: usize = 4096;
/// Capacity of the raft thread's inbox.
const EVENT_QUEUE_LEN: usize = 65_536;
/// Exit code when storage fails: the node cannot go on safely.
const EXIT_STORAGE_FAILURE: i32 = 70;

pub(crate) enum Event {
    Propose {
        body: Bytes,
        reply: crate::pending::ProposalReply,
        /// How long the client waits beyond the node's request timeout
        /// (a lock wait).
        extra_wait: Duration,
    },
    Read {
        reply: crate::pending::ReadReply,
    },
    Peer(PeerFrame),
    Membership {
        change: crate::MembershipChange,
        reply: crate::core::ChangeReply,
    },
    Transfer {
        to: u64,
        reply: crate::core::ChangeReply,
    },
    /// A streamed snapshot's payload was fetched into the staging file
    /// (its length), or could not be.
    SnapshotStaged {
        message: Box<raft::eraftpb::Message>,
        outcome: Result<u64, String>,
    },
    Stop,
}

type Reader = dyn Fn(&[Bytes]) -> Result<(Reply, u64), StoreError> + Send + Sync;
type Prober = dyn Fn(&[Bytes]) -> Result<Option<(Reply, u64)>, StoreError> + Send + Sync;
type BackupTaker = dyn Fn() -> Result<Vec<u8>, StoreError> + Send + Sync;

/// The client side of a running node; cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    events: Sender<Event>,
    status: Arc<RwLock<NodeStatus>>,
    reader: Arc<Reader>,
    prober: Arc<Prober>,
    backup: Arc<BackupTaker>,
    delivered: Arc<crate::core::Delivered>,
    removed: Arc<std::sync::atomic::AtomicBool>,
    metrics: crate::RaftMetrics,
    request_timeout: Duration,
    /// A negative control for the fault tests: reads skip ReadIndex and
    /// may be stale. Only a debug build with the test switches can set it.
    barrier_free_reads: bool,
}

impl NodeHandle {
    /// Replicates `argv` and returns its reply once applied on this node,
    /// with the index of the entry that answered it.
    pub async fn propose(&self, argv: &[Bytes]) -> Result<Answered, ProposeError> {
        self.propose_waiting(argv, Duration::ZERO).await
    }

    /// Like [`NodeHandle::propose`] for a command whose reply may come from
    /// a later entry (a lock wait of up to `extra_wait`).
    pub async fn propose_waiting(
        &self,
        argv: &[Bytes],
        extra_wait: Duration,
    ) -> Result<Answered, ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::Propose {
            body: Bytes::from(encode_command(argv)),
            reply,
            extra_wait,
        })?;
        answer.await.map_err(|_| ProposeError::Stopped)?
    }

    /// Waits until this node has applied everything committed when the call
    /// began (ReadIndex), so a read after it is linearizable.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::Read { reply })?;
        answer.await.map_err(|_| ProposeError::Stopped)?
    }

    /// A linearizable read of a read-only command.
    pub async fn read(&self, argv: &[Bytes]) -> Result<Reply, ProposeError> {
        Ok(self.read_at(argv).await?.0)
    }

    /// A linearizable read, with the applied index of the state it read.
    pub async fn read_at(&self, argv: &[Bytes]) -> Result<(Reply, u64), ProposeError> {
        if !self.barrier_free_reads {
            self.read_barrier().await?;
        }
        Ok(self.read_local_at(argv))
    }

    /// A backup file of the keyspace at a linearizable point: after a read
    /// barrier, one consistent view of this node's applied state (at or
    /// after the barrier's index). The scan runs off the async threads.
    pub async fn backup(&self) -> Result<Vec<u8>, String> {
        self.read_barrier().await.map_err(|err| err.to_string())?;
        let take = self.backup.clone();
        tokio::task::spawn_blocking(move || take())
            .await
            .map_err(|err| err.to_string())?
            .map_err(|err| format!("storage: {err}"))
    }

    /// Whether conditional write `argv` would change nothing at this
    /// node's applied state (may be stale): then [`NodeHandle::noop_read`]
    /// is worth trying before a write.
    pub fn noop_local(&self, argv: &[Bytes]) -> bool {
        matches!((self.prober)(argv), Ok(Some(_)))
    }

    /// The reply of conditional write `argv` if, at a linearizable point
    /// (after a read barrier), it would change nothing; with the index of
    /// the state it was computed at. None: it would act, write it.
    pub async fn noop_read(&self, argv: &[Bytes]) -> Result<Option<(Reply, u64)>, ProposeError> {
        if !self.barrier_free_reads {
            self.read_barrier().await?;
        }
        Ok((self.prober)(argv).unwrap_or(None))
    }

    /// A read of this node's applied state, without a barrier (may be stale).
    pub fn read_local(&self, argv: &[Bytes]) -> Reply {
        self.read_local_at(argv).0
    }

    /// A read of this node's applied state, with the index it is at.
    pub fn read_local_at(&self, argv: &[Bytes]) -> (Reply, u64) {
        match (self.reader)(argv) {
            Ok(answer) => answer,
            Err(err) => (Reply::error(format!("ERR storage failure: {err}")), 0),
        }
    }

    /// The index through which this node has delivered the events of
    /// applied entries (published messages, changes); a reply computed at
    /// a later index waits for it, so that a client sees an event before
    /// any reply computed at or after it.
    pub fn delivered_index(&self) -> u64 {
        self.delivered.get()
    }

    /// Waits (at most `bound`) until this node has delivered the events of
    /// entries through `index`; whether it has.
    pub async fn wait_delivered(&self, index: u64, bound: Duration) -> bool {
        self.delivered.wait(index, bound).await
    }

    /// The replication core's metrics.
    pub fn metrics(&self) -> &crate::RaftMetrics {
        &self.metrics
    }

    /// Whether this node was removed from the cluster (it then serves no
    /// client).
    pub fn is_removed(&self) -> bool {
        self.removed.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn status(&self) -> NodeStatus {
        self.status.read().expect("status lock").clone()
    }

    /// Changes the membership (on the leader only); returns the index of
    /// the applied membership entry.
    pub async fn change_membership(
        &self,
        change: crate::MembershipChange,
    ) -> Result<u64, MembershipError> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::Membership { change, reply })?;
        answer.await.map_err(|_| ProposeError::Stopped)?
    }

    /// Moves leadership to voter `to` (from any node); returns the new
    /// leader's term once it leads, or times out.
    pub async fn transfer_leader(&self, to: u64) -> Result<u64, MembershipError> {
        let (reply, answer) = oneshot::channel();
        self.send(Event::Transfer { to, reply })?;
        answer.await.map_err(|_| ProposeError::Stopped)?
    }

    /// Serves reads from local state without ReadIndex: stale reads on
    /// purpose, so the fault tests can prove they would see them.
    #[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
    pub fn serve_reads_without_read_index(&mut self) {
        self.barrier_free_reads = true;
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    pub fn stop(&self) {
        let _ = self.events.send(Event::Stop);
    }

    fn send(&self, event: Event) -> Result<(), ProposeError> {
        match self.events.try_send(event) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ProposeError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(ProposeError::Stopped),
        }
    }
}

pub struct Node;

impl Node {
    /// Starts a node: bootstraps an empty store with the configured voters,
    /// starts the peer transport on `runtime` and the raft thread.
    pub fn start<S: NodeStore>(
        mut config: NodeConfig,
        store: Arc<S>,
        peer_listener: tokio::net::TcpListener,
        runtime: &tokio::runtime::Handle,
        sink: EventSink,
        log: &Logger,
    ) -> Result<(NodeHandle, JoinHandle<()>), NodeError> {
        let id = config.id;
        config.background_snapshots = true;
        let tick_interval = config.tick;
        let log = log.new(o!("component" => "raft"));
        let metrics = crate::RaftMetrics::default();
        let peer_tls = match &config.peer_tls {
            Some(files) => Some(files.load().map_err(|err| {
                NodeError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, err))
            })?),
            None => None,
        };
        let security = transport::PeerSecurity {
            secret: config
                .cluster_secret
                .as_ref()
                .map(|secret| secret.0.clone()),
            tls: peer_tls,
        };
        let outbound = transport::start_outbound(
            runtime,
            config.id,
            config.peer_queue_frames,
            metrics.clone(),
            security.clone(),
            &log,
        );
        let mut core = Core::open(
            config,
            store.clone(),
            Box::new(outbound),
            Arc::new(SystemTime),
            sink,
            &log,
        )?;
        core.use_metrics(metrics.clone());
        let (events_tx, events_rx) = crossbeam_channel::bounded(EVENT_QUEUE_LEN);
        core.use_inbox(events_tx.clone());
        runtime.spawn(transport::serve_inbound(
            peer_listener,
            events_tx.clone(),
            core.config_max_frame(),
            metrics.clone(),
            security,
            core.snapshot_server(),
            log.clone(),
        ));
        let engine = Engine::new();
        let backup_store = store.clone();
        let backup: Arc<BackupTaker> = Arc::new(move || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_millis() as u64)
                .unwrap_or(0);
            crate::backup::take_backup(&*backup_store, now)
        });
        let probe_store = store.clone();
        let prober: Arc<Prober> = Arc::new(move |argv: &[Bytes]| probe_noop(&*probe_store, argv));
        let reader: Arc<Reader> =
            Arc::new(move |argv: &[Bytes]| read_applied(&*store, &engine, argv));
        let handle = NodeHandle {
            events: events_tx,
            status: core.status_cell(),
            reader,
            prober,
            backup,
            delivered: core.delivered_cell(),
            removed: core.removed_cell(),
            metrics,
            request_timeout: core.request_timeout(),
            barrier_free_reads: false,
        };
        let mut driver = Driver {
            core,
            events: events_rx,
            tick: tick_interval,
        };
        let thread = std::thread::Builder::new()
            .name(format!("raft-{id}"))
            .spawn(move || driver.run())?;
        Ok((handle, thread))
    }
}

/// Runs a core on the raft thread: events as they come, ticks on time.
struct Driver<S: NodeStore> {
    core: Core<S>,
    events: Receiver<Event>,
    tick: Duration,
}

impl<S: NodeStore> Driver<S> {
    fn run(&mut self) {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(wait) {
                Ok(event) => {
                    if !self.core.handle(event) {
                        break;
                    }
                    for _ in 0..MAX_EVENTS_PER_ROUND {
                        match self.events.try_recv() {
                            Ok(event) => {
                                if !self.core.handle(event) {
                                    return self.core.shutdown();
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            let mut result = Ok(());
            if now >= next_tick {
                next_tick = now + self.tick;
                result = self.core.tick();
            }
            if let Err(err) = result.and_then(|()| self.core.round()) {
                crit!(self.core.log(), "storage failure; stopping node"; "error" => %err);
                std::process::exit(EXIT_STORAGE_FAILURE);
            }
        }
        self.core.shutdown();
    }
}

impl PeerSender for Outbound {
    fn send(&self, to: u64, frame: Bytes) -> bool {
        self.send_encoded(to, frame)
    }
    fn fetch_snapshot(
        &self,
        from: u64,
        id: u64,
        into: std::path::PathBuf,
        done: transport::FetchDone,
    ) -> bool {
        Outbound::fetch_snapshot(self, from, id, into, done)
    }
    fn set_peers(&self, peers: &std::collections::BTreeMap<u64, String>) {
        Outbound::set_peers(self, peers)
    }
}
