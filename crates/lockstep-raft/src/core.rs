//! The replication core: one raft-rs `RawNode` with its Ready handling,
//! proposals, ReadIndex reads, apply and leadership duties.

mod membership;
mod staging;

pub(crate) use membership::ChangeReply;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lockstep_engine::{
    encode_command, encode_header, Engine, Event as AppliedEvent, LogEntry, Payload, Reply,
    RequestId,
};
use lockstep_store::{Applied, NodeStore, Overlay, StateRead, StoreError};
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType};
use raft::{RawNode, ReadOnlyOption, StateRole, Storage};
use rand::rngs::StdRng;
use rand::Rng;
use slog::{info, o, warn, Logger};
use tokio::sync::oneshot;

use crate::clock::LeaderClock;
use crate::frame::PeerFrame;
use crate::members::Members;
use crate::metrics::RaftMetrics;
use crate::node::Event;
use crate::pending::{Answered, Pending, PendingProposal, PendingRead, Submission};
use crate::snapshots::SnapshotServer;
use crate::status::{NodeStatus, PeerProgress, Role};
use crate::{NodeConfig, NodeError, ProposeError};

/// A proposal or read not resolved after this long is sent again (safe:
/// applied request ids are remembered, reads have no effect).
const RESUBMIT_AFTER: Duration = Duration::from_millis(1000);

/// Where a core reads the time: the system clock in production, a
/// simulated one (with offset and drift) in tests.
pub trait TimeSource: Send + Sync {
    /// Monotonic time.
    fn now(&self) -> Instant;
    /// Wall-clock milliseconds since the Unix epoch (only to start a new
    /// cluster's time near the calendar).
    fn wall_clock_ms(&self) -> u64;
}

/// The system's clocks.
pub struct SystemTime;

impl TimeSource for SystemTime {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall_clock_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as u64)
            .unwrap_or(1)
    }
}

/// Serves a read-only command from `store`'s applied state, at the cluster
/// time of the last applied entry; with the index that state is at.
pub(crate) fn read_applied<S: NodeStore>(
    store: &S,
    engine: &Engine,
    argv: &[Bytes],
) -> Result<(Reply, u64), StoreError> {
    store.read_view(|state, applied| {
        let ct = Engine::cluster_time(state)?;
        Ok((engine.read(state, applied.index, ct, argv)?, applied.index))
    })
}

/// The reply of a conditional write that would change nothing at `store`'s
/// applied state (see `lockstep_engine::noop_reply`), with that state's
/// index; None if it would act.
pub(crate) fn probe_noop<S: NodeStore>(
    store: &S,
    argv: &[Bytes],
) -> Result<Option<(Reply, u64)>, StoreError> {
    store.read_view(|state, applied| {
        let ct = Engine::cluster_time(state)?;
        Ok(lockstep_engine::noop_reply(state, applied.index, ct, argv)?
            .map(|reply| (reply, applied.index)))
    })
}

/// One applied log entry, as the simulation's invariants see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedRecord {
    pub index: u64,
    pub term: u64,
    /// A hash of the entry's bytes.
    pub digest: u64,
    /// The entry's cluster time (command and expiry entries).
    pub cluster_time: Option<u64>,
}

fn digest_of(data: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the same bytes give the same digest in every run.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut hasher);
    hasher.finish()
}

/// Where a core's encoded peer frames go. `send` returns false if the
/// frame was dropped (raft retries).
pub trait PeerSender: Send {
    fn send(&self, to: u64, frame: Bytes) -> bool;
    /// Fetches the payload of snapshot ticket `id` from peer `from` into
    /// the file `into`; `done` gets its length or why it failed. False if
    /// this sender cannot (then the ticket is dropped).
    fn fetch_snapshot(
        &self,
        _from: u64,
        _id: u64,
        _into: std::path::PathBuf,
        _done: crate::transport::FetchDone,
    ) -> bool {
        false
    }
    /// The members' peer addresses changed (this node's own included).
    fn set_peers(&self, _peers: &std::collections::BTreeMap<u64, String>) {}
}

/// raft-rs takes its storage by value; this shares ours with the apply loop.
struct SharedStorage<S> {
    store: Arc<S>,
    /// Snapshots for followers are streamed from a view held off the raft
    /// thread (when set); else built in line with their payload.
    snapshots: Option<Arc<SnapshotServer>>,
}

impl<S: NodeStore> Storage for SharedStorage<S> {
    fn initial_state(&self) -> raft::Result<raft::RaftState> {
        self.store.initial_state()
    }
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: raft::GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.store.entries(low, high, max_size, context)
    }
    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.store.term(idx)
    }
    fn first_index(&self) -> raft::Result<u64> {
        self.store.first_index()
    }
    fn last_index(&self) -> raft::Result<u64> {
        self.store.last_index()
    }
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<raft::eraftpb::Snapshot> {
        match &self.snapshots {
            Some(server) => {
                // A snapshot older than the log's start leaves a gap the
                // follower cannot cross: it must reach the compacted point.
                let compacted = self.store.first_index()?.saturating_sub(1);
                server.snapshot(&self.store, request_index, compacted)
            }
            None => self.store.snapshot(request_index, to),
        }
    }
}

/// Entries applied but not yet written: their combined state changes and
/// the replies waiting for that write.
struct AppliedRun<'a> {
    base: &'a dyn StateRead,
    overlay: Overlay<'a>,
    last: Option<Applied>,
    effects: Vec<Effects>,
}

/// What one applied entry does beyond the keyspace, released after the
/// run's write: events for local subscribers and the reply to our client.
struct Effects {
    /// The entry's log index.
    index: u64,
    events: Vec<AppliedEvent>,
    /// Replies this entry gives to our parked requests, by sequence.
    deferred: Vec<(u64, Reply)>,
    /// (sequence, reply, whether the reply is the local delivery count).
    reply: Option<(u64, Reply, bool)>,
}

/// Delivers an applied entry's event (with the entry's index) to this
/// node's subscribers; returns how many received it.
pub type EventSink = Arc<dyn Fn(u64, &AppliedEvent) -> usize + Send + Sync>;

impl<'a> AppliedRun<'a> {
    fn new(base: &'a dyn StateRead) -> Self {
        AppliedRun {
            base,
            overlay: Overlay::caching(base),
            last: None,
            effects: Vec::new(),
        }
    }
}

impl<S: NodeStore> Core<S> {
    /// Opens a node's core on `store`, bootstrapping an empty store with
    /// the configured voters.
    pub fn open(
        config: NodeConfig,
        store: Arc<S>,
        outbound: Box<dyn PeerSender>,
        time: Arc<dyn TimeSource>,
        sink: EventSink,
        log: &Logger,
    ) -> Result<Core<S>, NodeError> {
        let log = log.new(o!("component" => "raft"));
        let bootstrapping =
            !config.join && store.conf_state().voters.is_empty() && store.last_index()? == 0;
        if bootstrapping {
            let conf_state = ConfState {
                voters: config.peers.keys().copied().collect(),
                ..Default::default()
            };
            store.set_conf_state(&conf_state)?;
            info!(log, "bootstrapped new cluster"; "voters" => ?conf_state.voters);
        }
        let applied = store.applied();
        // Applied entries were committed; a crash between applying and
        // recording the commit index must not make the log look uncommitted.
        if store.hard_state().commit < applied.index {
            store.set_commit(applied.index)?;
        }
        let boot_epoch = store.next_boot_epoch()?;

        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: applied.index,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            ..Default::default()
        };
        raft_config.validate()?;
        let snapshots = config
            .background_snapshots
            .then(|| Arc::new(SnapshotServer::default()));
        let storage = SharedStorage {
            store: store.clone(),
            snapshots: snapshots.clone(),
        };
        let raw = RawNode::new(&raft_config, storage, &log)?;

        let status = Arc::new(RwLock::new(NodeStatus {
            id: config.id,
            ..NodeStatus::default()
        }));
        // The engine's deadline set is rebuilt from the keyspace (one scan
        // of the value records at start).
        let engine = store.read_view(|state, _| Engine::open(state))?;
        let time_now = time.now();
        let cluster_time = store.read_view(|state, _| Engine::cluster_time(state))?;
        let mut core = Core {
            raw,
            store,
            engine,
            outbound,
            time,
            election_rng: None,
            election_drawn_for: (0, StateRole::Follower),
            applied_records: None,
            pending: Pending::default(),
            status,
            next_seq: boot_epoch << 32,
            next_read_ctx: boot_epoch << 32,
            clock: None,
            known_leader: (0, 0),
            last_stamp_at: time_now,
            expiry_in_flight: None,
            applied_ct: cluster_time,
            sink,
            delivered: Arc::new(Delivered::new(0)),
            members: Members::default(),
            status_members: Arc::new(Members::default()),
            removed: false,
            cluster_id: Arc::default(),
            removed_flag: Arc::default(),
            last_heard: HashMap::new(),
            pending_change: None,
            pending_transfer: None,
            snapshots,
            events: None,
            snapshot_fetch: None,
            metrics: RaftMetrics::default(),
            config,
            log,
        };
        core.load_members(bootstrapping)?;
        core.delivered.set(core.store.applied().index);
        core.publish_status();
        Ok(core)
    }

    /// The index through which applied entries' events have been handed
    /// to the sink (it trails the applied state by the time the sink
    /// takes).
    pub(crate) fn delivered_cell(&self) -> Arc<Delivered> {
        self.delivered.clone()
    }

    pub(crate) fn removed_cell(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.removed_flag.clone()
    }

    /// What this core counts and times.
    pub fn metrics(&self) -> &RaftMetrics {
        &self.metrics
    }

    /// Counts into `metrics` (shared with the transport) from now on.
    pub(crate) fn use_metrics(&mut self, metrics: RaftMetrics) {
        self.metrics = metrics;
    }

    pub(crate) fn status_cell(&self) -> Arc<RwLock<NodeStatus>> {
        self.status.clone()
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.config.request_timeout
    }

    pub(crate) fn config_max_frame(&self) -> usize {
        self.config.max_peer_frame_bytes
    }

    pub fn log(&self) -> &Logger {
        &self.log
    }

    pub fn id(&self) -> u64 {
        self.config.id
    }
}

/// One node's replication core without threads, sockets or clocks of its
/// own: events, ticks and Ready rounds are driven from outside (by the
/// raft thread in production, by the simulation in tests), time comes from
/// a [`TimeSource`] and peer frames leave through a [`PeerSender`].
pub struct Core<S: NodeStore> {
    raw: RawNode<SharedStorage<S>>,
    store: Arc<S>,
    engine: Engine,
    outbound: Box<dyn PeerSender>,
    time: Arc<dyn TimeSource>,
    /// When set, election timeouts come from this generator instead of
    /// raft-rs's thread-local one (deterministic simulation).
    election_rng: Option<StdRng>,
    /// (term, role) when the election timeout was last drawn.
    election_drawn_for: (u64, StateRole),
    /// What was applied, kept only when asked (simulation invariants).
    applied_records: Option<Vec<AppliedRecord>>,
    pending: Pending,
    status: Arc<RwLock<NodeStatus>>,
    next_seq: u64,
    next_read_ctx: u64,
    clock: Option<LeaderClock>,
    /// (leader id, term) as last seen, to notice leadership changes.
    known_leader: (u64, u64),
    last_stamp_at: Instant,
    /// Index of the leader's expiry entry not yet applied.
    expiry_in_flight: Option<(u64, Instant)>,
    applied_ct: u64,
    sink: EventSink,
    /// Events handed to the sink through this index (see `delivered_cell`).
    delivered: Arc<Delivered>,
    /// Every member's addresses (the record in the keyspace family).
    members: Members,
    /// The same, shared with the status.
    status_members: Arc<Members>,
    /// This node was removed from the cluster.
    removed: bool,
    /// The cluster's identity (the `\xffcluster` record).
    cluster_id: Arc<String>,
    /// The same, for the client side.
    removed_flag: Arc<std::sync::atomic::AtomicBool>,
    /// When each peer's last raft message arrived.
    last_heard: HashMap<u64, Instant>,
    pending_change: Option<membership::PendingChange>,
    pending_transfer: Option<membership::PendingTransfer>,
    /// Streams this node's snapshots to followers (a real node).
    snapshots: Option<Arc<SnapshotServer>>,
    /// This core's own inbox, for work finished elsewhere (a fetched
    /// snapshot).
    events: Option<crossbeam_channel::Sender<Event>>,
    /// A snapshot payload being fetched or just staged.
    snapshot_fetch: Option<staging::Fetch>,
    metrics: RaftMetrics,
    config: NodeConfig,
    log: Logger,
}

impl<S: NodeStore> Core<S> {
    /// Proposes `argv`; the receiver gets its reply once it applied here.
    pub fn propose(&mut self, argv: &[Bytes]) -> oneshot::Receiver<Result<Answered, ProposeError>> {
        let (reply, answer) = oneshot::channel();
        self.handle(Event::Propose {
            body: Bytes::from(encode_command(argv)),
            reply,
            extra_wait: Duration::ZERO,
        });
        answer
    }

    /// A ReadIndex barrier: the receiver gets Ok once a read of this
    /// node's state is linearizable.
    pub fn read_barrier(&mut self) -> oneshot::Receiver<Result<(), ProposeError>> {
        let (reply, answer) = oneshot::channel();
        self.handle(Event::Read { reply });
        answer
    }

    /// The reply of conditional write `argv` if it would change nothing at
    /// this node's applied state (linearizable after a barrier); None if
    /// it would act or cannot be read.
    pub fn noop_local(&self, argv: &[Bytes]) -> Option<Reply> {
        probe_noop(&*self.store, argv)
            .ok()
            .flatten()
            .map(|(reply, _)| reply)
    }

    /// Reads this node's applied state (linearizable after a barrier).
    pub fn read_local(&self, argv: &[Bytes]) -> Result<Reply, StoreError> {
        read_applied(&*self.store, &self.engine, argv).map(|(reply, _)| reply)
    }

    /// Hands over a frame a peer sent; undecodable frames are dropped.
    pub fn deliver(&mut self, frame: Bytes) {
        match PeerFrame::decode(frame) {
            Ok(frame) => {
                self.handle(Event::Peer(frame));
            }
            Err(err) => warn!(self.log, "dropped an undecodable peer frame"; "error" => %err),
        }
    }

    /// This node's status as of the last round.
    pub fn status(&self) -> NodeStatus {
        self.status.read().expect("status lock").clone()
    }

    /// As leader, proposes a membership change. raft-rs takes one change
    /// at a time: while one is pending, the next is dropped. Returns
    /// whether the change was appended to the leader's log.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> bool {
        self.raw.raft.state == StateRole::Leader
            && self.raw.propose_conf_change(Vec::new(), change).is_ok()
    }

    /// Keeps a record of every entry applied from now on.
    pub fn record_applied(&mut self) {
        self.applied_records.get_or_insert_with(Vec::new);
    }

    /// The entries applied since the last call (with `record_applied`).
    pub fn take_applied(&mut self) -> Vec<AppliedRecord> {
        self.applied_records
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Election timeouts from `rng` from now on (deterministic runs).
    pub fn use_election_rng(&mut self, rng: StdRng) {
        self.election_rng = Some(rng);
        self.election_drawn_for = (u64::MAX, StateRole::Follower);
        self.draw_election_timeout();
    }

    /// raft-rs draws a new election timeout whenever the term or role
    /// changes; with our own generator, draw it again at those moments.
    fn draw_election_timeout(&mut self) {
        let Some(rng) = self.election_rng.as_mut() else {
            return;
        };
        let now = (self.raw.raft.term, self.raw.raft.state);
        if now != self.election_drawn_for {
            self.election_drawn_for = now;
            // raft-rs's own range when min and max are left unset.
            let low = self.config.election_ticks;
            let high = 2 * self.config.election_ticks;
            self.raw
                .raft
                .set_randomized_election_timeout(rng.gen_range(low..high));
        }
    }

    /// Fails every waiting request: the node is stopping.
    pub fn shutdown(&mut self) {
        info!(self.log, "raft thread stopping");
        self.pending.fail_all(ProposeError::Stopped);
    }

    /// Handles one event; false means stop.
    pub(crate) fn handle(&mut self, event: Event) -> bool {
        match event {
            Event::Propose {
                body,
                reply,
                extra_wait,
            } => {
                if self.pending.len() >= self.config.max_pending_requests {
                    self.metrics
                        .proposals_failed
                        .with_label_values(&["busy"])
                        .inc();
                    let _ = reply.send(Err(ProposeError::Busy));
                    return true;
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                self.pending.proposals.insert(
                    seq,
                    PendingProposal {
                        body,
                        reply,
                        deadline: self.time.now() + self.config.request_timeout + extra_wait,
                        submission: None,
                    },
                );
                self.submit(seq);
            }
            Event::Read { reply } => {
                if self.pending.len() >= self.config.max_pending_requests {
                    let _ = reply.send(Err(ProposeError::Busy));
                    return true;
                }
                self.pending.unissued_reads.push(PendingRead {
                    reply,
                    deadline: self.time.now() + self.config.request_timeout,
                });
            }
            Event::Peer(PeerFrame::Raft(message)) => {
                if !self.accepts_from(message.from) {
                    return true;
                }
                self.last_heard.insert(message.from, self.time.now());
                let Some(message) = self.snapshot_payload_here(message) else {
                    return true;
                };
                if let Err(err) = self.raw.step(*message) {
                    warn!(self.log, "raft rejected message"; "error" => %err);
                }
            }
            Event::Peer(PeerFrame::Forward {
                origin,
                seq,
                settled_below,
                body,
            }) => {
                // Only a leader orders proposals; a stale forward is dropped
                // and its origin sends it again to the new leader. A
                // forward from a node that is not a member is never taken.
                if self.raw.raft.state == StateRole::Leader && self.accepts_from(origin) {
                    self.propose_stamped(RequestId { origin, seq }, settled_below, &body);
                }
            }
            Event::Membership { change, reply } => self.handle_membership(change, reply),
            Event::Transfer { to, reply } => self.handle_transfer(to, reply),
            Event::SnapshotStaged { message, outcome } => self.snapshot_staged(*message, outcome),
            Event::Stop => return false,
        }
        true
    }

    /// Hands an own proposal to the leader (itself or a forward).
    fn submit(&mut self, seq: u64) {
        let leader = self.raw.raft.leader_id;
        let term = self.raw.raft.term;
        let Some(body) = self.pending.proposals.get(&seq).map(|p| p.body.clone()) else {
            return;
        };
        let request = RequestId {
            origin: self.config.id,
            seq,
        };
        let settled_below = self.pending.settled_below(self.next_seq);
        let submitted = if self.raw.raft.state == StateRole::Leader {
            self.propose_stamped(request, settled_below, &body)
        } else if leader != 0 {
            self.outbound.send(
                leader,
                PeerFrame::Forward {
                    origin: request.origin,
                    seq,
                    settled_below,
                    body,
                }
                .encode(),
            )
        } else {
            false
        };
        if submitted {
            if let Some(proposal) = self.pending.proposals.get_mut(&seq) {
                proposal.submission = Some(Submission {
                    leader,
                    term,
                    at: self.time.now(),
                });
            }
        }
    }

    /// As leader: stamps cluster time and appends a command entry.
    fn propose_stamped(&mut self, request: RequestId, settled_below: u64, body: &[u8]) -> bool {
        let Some(clock) = self.clock.as_mut() else {
            return false;
        };
        let now = self.time.now();
        let mut data = encode_header(true, request, settled_below, clock.stamp(now));
        data.extend_from_slice(body);
        match self.raw.propose(Vec::new(), data) {
            Ok(()) => {
                self.last_stamp_at = now;
                true
            }
            Err(_) => false,
        }
    }

    /// One raft tick, plus what is due at ticks: expiring and resubmitting
    /// requests, and the leader's expiry and clock entries.
    pub fn tick(&mut self) -> Result<(), NodeError> {
        self.raw.tick();
        self.draw_election_timeout();
        let now = self.time.now();
        self.on_tick(now)
    }

    fn on_tick(&mut self, now: Instant) -> Result<(), NodeError> {
        let leader_known = self.raw.raft.leader_id != 0;
        let (unknown, no_leader) = self.pending.expire(now, leader_known);
        if unknown > 0 {
            self.metrics
                .proposals_failed
                .with_label_values(&["timeout"])
                .inc_by(unknown);
        }
        if no_leader > 0 {
            self.metrics
                .proposals_failed
                .with_label_values(&["no_leader"])
                .inc_by(no_leader);
        }
        let stale: Vec<u64> = self
            .pending
            .proposals
            .iter()
            .filter(|(_, p)| p.submission.is_none_or(|s| now - s.at >= RESUBMIT_AFTER))
            .map(|(&seq, _)| seq)
            .collect();
        for seq in stale {
            self.submit(seq);
        }
        let stale_reads: Vec<u64> = self
            .pending
            .read_batches
            .iter()
            .filter(|(_, (issued, _))| now - *issued >= RESUBMIT_AFTER)
            .map(|(&ctx, _)| ctx)
            .collect();
        for ctx in stale_reads {
            if let Some((_, reads)) = self.pending.read_batches.remove(&ctx) {
                self.pending.unissued_reads.extend(reads);
            }
        }
        self.leader_duties(now)?;
        self.settle_membership_waits(now);
        Ok(())
    }

    /// Keeps cluster time moving while anything has a deadline, and ends
    /// what is due through the log with sweep entries (followers never
    /// expire on their own). The earliest deadline is in the engine's
    /// memory: the check costs nothing that grows with history.
    fn leader_duties(&mut self, now: Instant) -> Result<(), StoreError> {
        if self.raw.raft.state != StateRole::Leader || !self.raw.raft.commit_to_current_term() {
            return Ok(());
        }
        let applied = self.store.applied().index;
        if let Some((index, since)) = self.expiry_in_flight {
            if applied < index && now - since < RESUBMIT_AFTER {
                return Ok(());
            }
            self.expiry_in_flight = None;
        }
        let Some(clock) = self.clock.as_mut() else {
            return Ok(());
        };
        let ct = clock.stamp(now);
        let Some(next_deadline) = self.engine.next_deadline() else {
            return Ok(());
        };
        let due = next_deadline <= ct;
        let clock_due = now - self.last_stamp_at >= self.config.clock_interval;
        if !due && !clock_due {
            return Ok(());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = LogEntry {
            request: RequestId { origin: 0, seq },
            settled_below: 0,
            ct,
            payload: Payload::Sweep,
        };
        if self.raw.propose(Vec::new(), entry.encode()).is_ok() {
            self.metrics.expiry_entries.inc();
            self.last_stamp_at = now;
            self.expiry_in_flight = Some((self.raw.raft.raft_log.last_index(), now));
        }
        Ok(())
    }

    /// One Ready round. The order of steps is raft-rs's contract and is
    /// critical for safety; do not reorder:
    /// 1. send messages (a leader may send before persisting),
    /// 2. install a snapshot, 3. persist entries and hard state (synced),
    /// 4. send persisted messages, 5. advance, 6. apply the committed
    ///    entries of both the Ready and the light ready.
    pub fn round(&mut self) -> Result<(), NodeError> {
        self.draw_election_timeout();
        self.issue_reads();
        if self.raw.has_ready() {
            let mut ready = self.raw.ready();
            if !ready.messages().is_empty() {
                let messages = ready.take_messages();
                self.send_messages(messages);
            }
            if !ready.snapshot().is_empty() {
                let snapshot = ready.snapshot().clone();
                self.store.install_snapshot(&snapshot)?;
                self.applied_ct = self
                    .store
                    .read_view(|state, _| Engine::cluster_time(state))?;
                self.engine = self.store.read_view(|state, _| Engine::open(state))?;
                self.reload_members()?;
                self.metrics.snapshots_received.inc();
                (self.sink)(snapshot.get_metadata().index, &AppliedEvent::Replaced);
                self.delivered.set(self.store.applied().index);
                info!(self.log, "installed snapshot"; "index" => snapshot.get_metadata().index);
            }
            for read_state in ready.take_read_states() {
                let Some(ctx) = read_ctx(self.config.id, &read_state.request_ctx) else {
                    continue;
                };
                if let Some((_, reads)) = self.pending.read_batches.remove(&ctx) {
                    self.pending
                        .confirmed_reads
                        .extend(reads.into_iter().map(|read| (read_state.index, read)));
                }
            }
            // Committed entries in a Ready are already persisted; applying
            // them after this round's append lets one write cover both sets.
            let mut committed = ready.take_committed_entries();
            let hard_state = ready.hs().cloned();
            let persisted = ready.entries().len();
            let write_started = Instant::now();
            self.store.append(ready.entries(), hard_state.as_ref())?;
            if persisted > 0 {
                self.metrics
                    .fsync_seconds
                    .observe(write_started.elapsed().as_secs_f64());
                self.metrics.ready_entries.observe(persisted as f64);
            }
            if !ready.persisted_messages().is_empty() {
                let messages = ready.take_persisted_messages();
                self.send_messages(messages);
            }
            let mut light = self.raw.advance(ready);
            if let Some(commit) = light.commit_index() {
                self.store.set_commit(commit)?;
            }
            let messages = light.take_messages();
            self.send_messages(messages);
            committed.extend(light.take_committed_entries());
            if !committed.is_empty() {
                let apply_started = Instant::now();
                self.apply_entries(committed)?;
                self.metrics
                    .apply_seconds
                    .observe(apply_started.elapsed().as_secs_f64());
            }
            self.raw.advance_apply();
            self.maybe_compact()?;
            // A backlog of due deadlines is swept entry after entry, not
            // one entry per tick.
            let applied = self.store.applied().index;
            if self
                .expiry_in_flight
                .is_some_and(|(index, _)| applied >= index)
            {
                self.leader_duties(self.time.now())?;
            }
        }
        self.staged_snapshot_settled();
        self.pending.release_reads(self.store.applied().index);
        self.notice_leadership()?;
        self.settle_membership_waits(self.time.now());
        self.publish_status();
        Ok(())
    }

    fn issue_reads(&mut self) {
        if self.pending.unissued_reads.is_empty() || self.raw.raft.leader_id == 0 {
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let reads = std::mem::take(&mut self.pending.unissued_reads);
        self.pending
            .read_batches
            .insert(ctx, (self.time.now(), reads));
        let mut request = self.config.id.to_be_bytes().to_vec();
        request.extend_from_slice(&ctx.to_be_bytes());
        self.raw.read_index(request);
        self.metrics.read_index_requests.inc();
    }

    fn send_messages(&mut self, messages: Vec<Message>) {
        for message in messages {
            let to = message.to;
            let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
            let delivered = self
                .outbound
                .send(to, PeerFrame::Raft(Box::new(message)).encode());
            if is_snapshot {
                if delivered {
                    self.metrics.snapshots_sent.inc();
                }
                let status = if delivered {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, status);
            }
            if !delivered {
                self.raw.report_unreachable(to);
            }
        }
    }

    /// Applies committed entries. The state changes of a run of entries go
    /// to the store as one write (with the last entry's position), and the
    /// replies are released only after it, so a client never sees a reply
    /// its next read could miss.
    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
        let store = self.store.clone();
        let mut run = AppliedRun::new(&*store);
        for entry in entries {
            let position = Applied {
                index: entry.index,
                term: entry.term,
            };
            if position.index <= store.applied().index {
                continue;
            }
            let mut record = self.applied_records.as_ref().map(|_| AppliedRecord {
                index: entry.index,
                term: entry.term,
                digest: digest_of(&entry.data),
                cluster_time: None,
            });
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    let outcome = self.engine.apply(&run.overlay, entry.index, &entry.data)?;
                    run.overlay.extend(outcome.batch);
                    run.last = Some(position);
                    self.applied_ct = outcome.ct;
                    if let Some(record) = record.as_mut() {
                        record.cluster_time = Some(outcome.ct);
                    }
                    let reply = match (outcome.request, outcome.reply) {
                        (Some(request), Some(reply)) if request.origin == self.config.id => {
                            Some((request.seq, reply, outcome.reply_counts_deliveries))
                        }
                        _ => None,
                    };
                    if outcome.parked {
                        if let Some(request) = outcome.request {
                            self.park(request);
                        }
                    }
                    let deferred: Vec<(u64, Reply)> = outcome
                        .deferred
                        .into_iter()
                        .filter(|(request, _)| request.origin == self.config.id)
                        .map(|(request, reply)| (request.seq, reply))
                        .collect();
                    if reply.is_some() || !outcome.events.is_empty() || !deferred.is_empty() {
                        run.effects.push(Effects {
                            index: entry.index,
                            events: outcome.events,
                            deferred,
                            reply,
                        });
                    }
                }
                EntryType::EntryConfChange => {
                    self.finish_run(&mut run)?;
                    let change = ConfChange::parse_from_bytes(&entry.data)
                        .map_err(|err| NodeError::Raft(raft::Error::CodecError(err)))?;
                    self.apply_conf_change(&change, position)?;
                }
                EntryType::EntryConfChangeV2 => {
                    self.finish_run(&mut run)?;
                    let change = ConfChangeV2::parse_from_bytes(&entry.data)
                        .map_err(|err| NodeError::Raft(raft::Error::CodecError(err)))?;
                    self.apply_conf_change(&change, position)?;
                }
            }
            if let (Some(records), Some(record)) = (self.applied_records.as_mut(), record) {
                records.push(record);
            }
        }
        self.finish_run(&mut run)
    }

    /// Our request applied and now waits for a later entry's reply: it must
    /// not be sent again.
    fn park(&mut self, request: RequestId) {
        if request.origin == self.config.id {
            self.pending.park(request.seq);
        }
    }

    /// Writes a run's state changes and answers its proposals.
    fn finish_run(&mut self, run: &mut AppliedRun<'_>) -> Result<(), NodeError> {
        let Some(position) = run.last.take() else {
            return Ok(());
        };
        let overlay = std::mem::replace(&mut run.overlay, Overlay::caching(run.base));
        self.store.apply(&overlay.into_batch(), position)?;
        for effects in run.effects.drain(..) {
            let delivered: usize = effects
                .events
                .iter()
                .map(|event| (self.sink)(effects.index, event))
                .sum();
            if let Some((seq, reply, counts_deliveries)) = effects.reply {
                let reply = if counts_deliveries {
                    Reply::Integer(delivered as i64)
                } else {
                    reply
                };
                if let Some(proposal) = self.pending.take(seq) {
                    let index = effects.index;
                    let _ = proposal.reply.send(Ok(Answered { reply, index }));
                    self.metrics.proposals_committed.inc();
                }
            }
            for (seq, reply) in effects.deferred {
                if let Some(proposal) = self.pending.take(seq) {
                    let index = effects.index;
                    let _ = proposal.reply.send(Ok(Answered { reply, index }));
                    self.metrics.proposals_committed.inc();
                }
            }
        }
        self.delivered.set(position.index);
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<(), StoreError> {
        let applied = self.store.applied().index;
        let first = self
            .store
            .first_index()
            .map_err(|err| StoreError::Invalid(err.to_string()))?;
        if applied + 1 >= first + self.config.snapshot_threshold {
            self.store.compact(applied)?;
            info!(self.log, "compacted log"; "through" => applied);
        }
        Ok(())
    }

    fn notice_leadership(&mut self) -> Result<(), NodeError> {
        let current = (self.raw.raft.leader_id, self.raw.raft.term);
        let is_leader = self.raw.raft.state == StateRole::Leader;
        if is_leader && self.clock.is_none() {
            let mut base = self.last_entry_ct()?;
            if base == 0 {
                // A new cluster starts its clock at wall-clock time, so that
                // absolute deadlines (EXAT, PXAT) mean what clients expect.
                base = self.time.wall_clock_ms().max(1);
            }
            self.clock = Some(LeaderClock::start(base, self.time.now()));
            info!(self.log, "became leader"; "term" => current.1, "cluster_time_ms" => base);
        } else if !is_leader && self.clock.is_some() {
            self.clock = None;
            self.expiry_in_flight = None;
            info!(self.log, "lost leadership"; "term" => current.1, "leader" => current.0);
        }
        if current != self.known_leader {
            self.known_leader = current;
            if current.0 != 0 {
                self.metrics.leader_changes.inc();
                info!(self.log, "leader known"; "leader" => current.0, "term" => current.1);
                let seqs: Vec<u64> = self.pending.proposals.keys().copied().collect();
                for seq in seqs {
                    self.submit(seq);
                }
            }
        }
        Ok(())
    }

    /// Cluster time of the newest entry in the log that carries one, or of
    /// the applied state if none does.
    fn last_entry_ct(&self) -> Result<u64, NodeError> {
        let first = self.store.first_index()?;
        let mut index = self.store.last_index()?;
        while index >= first {
            let entries = self.store.entries(
                index,
                index + 1,
                None,
                raft::GetEntriesContext::empty(false),
            )?;
            if let Some(entry) = entries.first() {
                if entry.get_entry_type() == EntryType::EntryNormal {
                    if let Ok(decoded) = LogEntry::decode(&entry.data) {
                        return Ok(decoded.ct.max(self.applied_ct));
                    }
                }
            }
            index -= 1;
        }
        Ok(self.applied_ct)
    }

    fn publish_status(&self) {
        let raft = &self.raw.raft;
        let role = match raft.state {
            StateRole::Leader => Role::Leader,
            StateRole::Candidate => Role::Candidate,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Follower => Role::Follower,
        };
        let progress = if role == Role::Leader {
            raft.prs()
                .iter()
                .map(|(&id, progress)| PeerProgress {
                    id,
                    matched: progress.matched,
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut conf = self.store.conf_state();
        conf.voters.sort_unstable();
        conf.learners.sort_unstable();
        let now = self.time.now();
        let status = NodeStatus {
            id: self.config.id,
            role,
            term: raft.term,
            leader_id: raft.leader_id,
            commit_index: raft.raft_log.committed,
            applied_index: self.store.applied().index,
            first_index: self.store.first_index().unwrap_or(0),
            last_index: raft.raft_log.last_index(),
            cluster_time_ms: self.applied_ct,
            voters: conf.voters,
            learners: conf.learners,
            members: self.status_members.clone(),
            removed: self.removed,
            cluster_id: self.cluster_id.clone(),
            last_heard: self
                .last_heard
                .iter()
                .map(|(&id, &at)| (id, now.saturating_duration_since(at)))
                .collect(),
            progress,
            parked_requests: self.pending.parked.len(),
            pending_requests: self.pending.len(),
            deadlines: self.engine.deadlines().len(),
            leases: self.engine.deadlines().leases(),
            locks: self.engine.deadlines().locks(),
        };
        *self.status.write().expect("status lock") = status;
    }
}

/// The batch number of a ReadIndex request this node issued: its context
/// is (node id, batch), so that no two nodes' requests are ever the same.
/// The leader keeps one pending request per context and drops a second
/// with the same bytes, which left that read unanswered until it was
/// resubmitted a second later.
fn read_ctx(node: u64, request_ctx: &[u8]) -> Option<u64> {
    let (id, batch) = request_ctx.split_at_checked(8)?;
    (u64::from_be_bytes(id.try_into().ok()?) == node)
        .then(|| batch.try_into().ok().map(u64::from_be_bytes))
        .flatten()
}

/// The index through which applied entries' events have been handed to
/// the sink: read without a lock, and awaited by connections that must
/// write those events before a reply computed at a later index.
pub struct Delivered {
    index: AtomicU64,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Delivered {
    fn new(index: u64) -> Delivered {
        Delivered {
            index: AtomicU64::new(index),
            changed: tokio::sync::watch::Sender::new(index),
        }
    }

    pub fn get(&self) -> u64 {
        self.index.load(Ordering::Acquire)
    }

    pub(crate) fn set(&self, index: u64) {
        self.index.store(index, Ordering::Release);
        // Always through the channel (cheap without receivers): skipping it
        // when none is subscribed could miss one subscribing right now.
        self.changed.send_replace(index);
    }

    /// Waits until `index` has been delivered, at most `bound`; whether it
    /// was.
    pub async fn wait(&self, index: u64, bound: std::time::Duration) -> bool {
        if self.get() >= index {
            return true;
        }
        let mut changed = self.changed.subscribe();
        // Set after subscribing, so a change between the two is seen.
        if self.get() >= index {
            return true;
        }
        let reached = tokio::time::timeout(bound, changed.wait_for(|_| self.get() >= index)).await;
        matches!(reached, Ok(Ok(_)))
    }
}
