//! The simulated cluster and its main loop.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lockstep_check::fencing::check_tokens;
use lockstep_check::queue::check_queue;
use lockstep_check::register::Register;
use lockstep_check::{linearizable_per_key, Verdict};
use lockstep_engine::Reply;
use lockstep_raft::{Core, NodeConfig, ProposeError};
use lockstep_store::MemStore;
use raft::eraftpb::{ConfChange, ConfChangeType};
use raft::Storage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;

use crate::clients::{next_request, Histories, Request};
use crate::invariants::{log_matching, Invariants};
use crate::network::{Network, NetworkFaults, NodeSender, Outbox};
use crate::time::{NodeTime, VirtualClock};

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    /// Virtual time with clients and faults, in ms (then a quiet tail).
    pub duration_ms: u64,
    pub clients: usize,
    pub network: NetworkFaults,
    /// Crashes (losing unsynced writes) and partitions.
    pub nemesis: bool,
    /// Clock drift bound, parts per million either way.
    pub max_drift_ppm: i64,
    /// Entries between log compactions (small, to exercise snapshots).
    pub snapshot_threshold: u64,
    /// Negative control: clients read local state without ReadIndex.
    pub unsafe_local_reads: bool,
    /// Negative control: a crash loses synced writes too (no fsync).
    pub unsafe_crash_loses_everything: bool,
}

impl SimConfig {
    /// A network whose loss and delay the seed picks too: from a LAN with
    /// 1% loss to a slow link losing 15% of frames.
    pub fn varied(seed: u64, nodes: usize) -> SimConfig {
        let mut config = SimConfig::new(seed, nodes);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x006e_6574_776f_726b);
        config.network.drop = [0.01, 0.05, 0.15][rng.gen_range(0..3)];
        config.network.duplicate = [0.0, 0.02, 0.1][rng.gen_range(0..3)];
        config.network.max_delay_ms = [10, 30, 150, 400][rng.gen_range(0..4)];
        config
    }

    /// The default network: 2% loss, 2% duplicates, 1-30 ms delays.
    pub fn new(seed: u64, nodes: usize) -> SimConfig {
        SimConfig {
            seed,
            nodes,
            duration_ms: 60_000,
            clients: 5,
            network: NetworkFaults {
                drop: 0.02,
                duplicate: 0.02,
                min_delay_ms: 1,
                max_delay_ms: 30,
            },
            nemesis: true,
            max_drift_ppm: 200,
            snapshot_threshold: 300,
            unsafe_local_reads: false,
            unsafe_crash_loses_everything: false,
        }
    }
}

/// What a run did; `violation` is None when every check passed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub violation: Option<String>,
    /// A digest of everything that happened: equal for equal seeds.
    pub trace: u64,
    pub steps: u64,
    pub invariant_checks: u64,
    pub completed: u64,
    pub unknown: u64,
    pub crashes: u64,
    pub partitions: u64,
    /// Membership changes: removals proposed and re-additions completed.
    pub membership_changes: u64,
    /// Removals of the node that was leading at the time.
    pub leader_removals: u64,
    /// Looks at a lease that had ended, with the keys written under it.
    pub ended_lease_keys_checked: u64,
    /// Changes compared between nodes, and those a watcher moving between
    /// nodes received.
    pub feed_changes_checked: u64,
    pub feed_watcher_changes: u64,
    /// The longest a read called after the first 3 s and answered waited,
    /// virtual ms.
    pub slowest_read_ms: u64,
    /// Conditional writes answered from a read as changing nothing.
    pub noop_answers: u64,
    pub frames_sent: u64,
    pub frames_dropped: u64,
    pub highest_index: u64,
}

struct Node {
    id: u64,
    store: Arc<MemStore>,
    core: Option<Core<MemStore>>,
    outbox: Outbox,
    time: Arc<NodeTime>,
    /// Virtual ms of the next raft tick, by this node's clock.
    next_tick_ms: u64,
    /// Virtual ms at which a crashed node comes back.
    restart_at: Option<u64>,
}

enum Waiting {
    Reply(oneshot::Receiver<Result<lockstep_raft::Answered, ProposeError>>),
    Barrier(oneshot::Receiver<Result<(), ProposeError>>),
    /// A conditional write the node's own state says changes nothing: a
    /// read barrier, then answered from the state if it still changes
    /// nothing, else proposed (as the server does).
    Noop(oneshot::Receiver<Result<(), ProposeError>>),
}

struct Client {
    id: u64,
    rng: StdRng,
    idle_until_ms: u64,
    in_flight: Option<InFlight>,
    last_seen: Option<u64>,
    /// A native lock (name, owner) this client was granted and has not
    /// released.
    holds: Option<(String, u64)>,
    /// The lease this client keeps alive (it drops it now and then and
    /// lets it expire).
    lease: Option<u64>,
}

struct InFlight {
    request: Request,
    node: u64,
    call_ns: u64,
    deadline_ms: u64,
    waiting: Waiting,
}

/// How long a client waits for a reply before calling it unknown.
const CLIENT_TIMEOUT_MS: u64 = 8_000;
/// Virtual time after the workload for the cluster to settle.
const SETTLE_MS: u64 = 15_000;

struct World {
    config: SimConfig,
    clock: VirtualClock,
    rng: StdRng,
    nodes: Vec<Node>,
    network: Network,
    clients: Vec<Client>,
    histories: Histories,
    invariants: Invariants,
    trace: std::collections::hash_map::DefaultHasher,
    next_value: u64,
    crashes: u64,
    partitions: u64,
    steps: u64,
    next_fault_ms: u64,
    heal_at_ms: Option<u64>,
    /// A node taken out of the voters, and when to add it back.
    removed: Option<(u64, u64)>,
    membership_changes: u64,
    leader_removals: u64,
    coordination: Coordination,
    feed: Feed,
    slowest_read_ns: u64,
    noop_answers: u64,
}

/// What the change-feed checks remember between looks.
#[derive(Default)]
struct Feed {
    /// The changes at each index (`key event` each), as the first node to
    /// show that index had them.
    history: BTreeMap<u64, Vec<String>>,
    /// Where each node's next look starts.
    cursors: BTreeMap<u64, u64>,
    /// A watcher that reads each page from the next running node in turn.
    watcher_next: u64,
    watcher_seen: BTreeMap<u64, Vec<String>>,
    watcher_turn: usize,
    /// Below this, every index in `history` was checked against what the
    /// watcher saw.
    verified: u64,
    checked: u64,
}

impl Feed {
    /// Records what `node` showed at each index, or checks it against
    /// what an earlier look saw there.
    fn agree(&mut self, node: u64, groups: &BTreeMap<u64, Vec<String>>) -> Result<(), String> {
        for (index, changes) in groups {
            match self.history.get(index) {
                Some(seen) if seen != changes => {
                    return Err(format!(
                    "node {node} has changes {changes:?} at index {index}, another node {seen:?}"
                ))
                }
                Some(_) => {}
                None => {
                    if *index < self.verified && !self.watcher_seen.contains_key(index) {
                        return Err(format!(
                            "the watcher, past {index}, missed {changes:?} there"
                        ));
                    }
                    self.history.insert(*index, changes.clone());
                }
            }
        }
        Ok(())
    }
}

/// `(next, [(index, "key event")])` of a CHANGES.READ answer.
fn feed_page(reply: &Reply) -> Result<(u64, Vec<(u64, String)>), String> {
    let Reply::Map(fields) = reply else {
        return Err(format!("CHANGES.READ answered {reply:?}"));
    };
    let get = |fields: &[(Reply, Reply)], name: &str| {
        fields
            .iter()
            .find(|(k, _)| matches!(k, Reply::Bulk(k) if k.as_ref() == name.as_bytes()))
            .map(|(_, v)| v.clone())
    };
    let Some(Reply::Integer(next)) = get(fields, "next") else {
        return Err(format!("no next in {reply:?}"));
    };
    let Some(Reply::Array(changes)) = get(fields, "changes") else {
        return Err(format!("no changes in {reply:?}"));
    };
    let mut out = Vec::new();
    for change in changes {
        let Reply::Map(items) = &change else {
            return Err(format!("change {change:?}"));
        };
        let text = |name: &str| match get(items, name) {
            Some(Reply::Bulk(data)) => String::from_utf8_lossy(&data).into_owned(),
            other => format!("{other:?}"),
        };
        let Some(Reply::Integer(index)) = get(items, "index") else {
            return Err(format!("change without index {change:?}"));
        };
        out.push((index as u64, format!("{} {}", text("key"), text("event"))));
    }
    Ok((next as u64, out))
}

fn group(changes: Vec<(u64, String)>) -> BTreeMap<u64, Vec<String>> {
    let mut groups: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (index, change) in changes {
        groups.entry(index).or_default().push(change);
    }
    groups
}

/// What the coordination checks remember between looks.
#[derive(Default)]
struct Coordination {
    /// Recent leases and the keys written under them.
    leases: BTreeMap<u64, Vec<String>>,
    /// (node, lease) -> the latest deadline the node showed for it.
    deadlines: BTreeMap<(u64, u64), u64>,
    /// applied index -> the election's leader token there (0: nobody), as
    /// the first node to report that index showed it.
    leader_at: BTreeMap<u64, u64>,
    /// node -> (applied index, token) at its last look, this life.
    last_token: BTreeMap<u64, (u64, u64)>,
    checks: u64,
    ended_lease_keys_checked: u64,
}

/// Leases the checks follow at once (the most recent ones).
const TRACKED_LEASES: usize = 24;

fn node_config(config: &SimConfig, id: u64) -> NodeConfig {
    NodeConfig {
        id,
        peers: (1..=config.nodes as u64)
            .map(|peer| (peer, std::net::SocketAddr::from(([127, 0, 0, 1], 1))))
            .collect(),
        snapshot_threshold: config.snapshot_threshold,
        request_timeout: Duration::from_secs(5),
        ..NodeConfig::default()
    }
}

impl World {
    fn new(config: SimConfig) -> World {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let clock = VirtualClock::new();
        let mut nodes = Vec::new();
        for id in 1..=config.nodes as u64 {
            let time = Arc::new(NodeTime {
                clock: clock.clone(),
                drift_ppm: rng.gen_range(-config.max_drift_ppm..=config.max_drift_ppm),
                offset_ms: rng.gen_range(-5_000..=5_000),
            });
            nodes.push(Node {
                id,
                store: Arc::new(MemStore::in_memory()),
                core: None,
                outbox: Outbox::default(),
                time,
                next_tick_ms: rng.gen_range(0..50),
                restart_at: None,
            });
        }
        let clients = (1..=config.clients as u64)
            .map(|id| Client {
                id,
                rng: StdRng::seed_from_u64(rng.gen()),
                idle_until_ms: 1_000,
                in_flight: None,
                last_seen: None,
                holds: None,
                lease: None,
            })
            .collect();
        let network = Network::new(config.network.clone());
        let mut world = World {
            config,
            clock,
            rng,
            nodes,
            network,
            clients,
            histories: Histories::default(),
            invariants: Invariants::default(),
            trace: std::collections::hash_map::DefaultHasher::new(),
            next_value: 0,
            crashes: 0,
            partitions: 0,
            steps: 0,
            next_fault_ms: 3_000,
            heal_at_ms: None,
            removed: None,
            membership_changes: 0,
            leader_removals: 0,
            slowest_read_ns: 0,
            noop_answers: 0,
            coordination: Coordination::default(),
            feed: Feed::default(),
        };
        for at in 0..world.nodes.len() {
            world.start_node(at);
        }
        world
    }

    fn start_node(&mut self, at: usize) {
        let config = node_config(&self.config, self.nodes[at].id);
        let node = &mut self.nodes[at];
        let mut core = Core::open(
            config,
            node.store.clone(),
            Box::new(NodeSender::new(node.outbox.clone())),
            node.time.clone(),
            Arc::new(|_: u64, _: &lockstep_engine::Event| 0usize),
            &slog::Logger::root(slog::Discard, slog::o!()),
        )
        .expect("a memory store opens");
        core.record_applied();
        core.use_election_rng(StdRng::seed_from_u64(self.rng.gen()));
        node.core = Some(core);
        node.restart_at = None;
    }

    /// kill -9 with power loss: unsynced writes are gone.
    fn crash_node(&mut self, at: usize, restart_at: u64) {
        let node = &mut self.nodes[at];
        node.core = None;
        node.outbox.take();
        let survivor = if self.config.unsafe_crash_loses_everything {
            lockstep_store::MemBackend::default()
        } else {
            node.store.backend().crash()
        };
        node.store = Arc::new(MemStore::with_backend(survivor).expect("the durable state reopens"));
        node.restart_at = Some(restart_at);
        self.invariants.restarted(node.id);
        let id = node.id;
        self.coordination.last_token.remove(&id);
        self.coordination.deadlines.retain(|(n, _), _| *n != id);
        self.crashes += 1;
    }

    fn note(&mut self, event: impl Hash) {
        self.clock.now_ms().hash(&mut self.trace);
        event.hash(&mut self.trace);
    }

    fn step(&mut self) -> Result<(), String> {
        self.steps += 1;
        self.clock.advance_ms(1);
        let now = self.clock.now_ms();
        if now < self.config.duration_ms && self.config.nemesis {
            self.nemesis(now);
        }
        for at in 0..self.nodes.len() {
            if self.nodes[at].restart_at.is_some_and(|when| now >= when) {
                self.start_node(at);
                let id = self.nodes[at].id;
                self.note(("restart", id));
            }
        }
        for (from, to, frame) in self.network.due(now) {
            self.note(("deliver", from, to, &frame[..]));
            if let Some(core) = self.nodes[to as usize - 1].core.as_mut() {
                core.deliver(frame);
            }
        }
        if now < self.config.duration_ms {
            self.clients_act(now);
        }
        self.clients_poll(now);
        for at in 0..self.nodes.len() {
            self.node_turn(at, now)?;
        }
        Ok(())
    }

    fn node_turn(&mut self, at: usize, now: u64) -> Result<(), String> {
        let node = &mut self.nodes[at];
        let id = node.id;
        let Some(core) = node.core.as_mut() else {
            return Ok(());
        };
        // Ticks follow the node's own (drifting) clock.
        let local_ms = now as i64 + now as i64 * node.time.drift_ppm / 1_000_000;
        if local_ms >= node.next_tick_ms as i64 {
            node.next_tick_ms = local_ms as u64 + 50;
            core.tick()
                .map_err(|err| format!("node {id} tick failed: {err}"))?;
        }
        core.round()
            .map_err(|err| format!("node {id} round failed: {err}"))?;
        let status = core.status();
        let applied = core.take_applied();
        let sent = node.outbox.take();
        self.invariants.role(id, status.role, status.term)?;
        self.invariants
            .progress(id, status.applied_index, status.cluster_time_ms)?;
        self.invariants.applied(id, applied)?;
        for (to, frame) in sent {
            self.network.send(&mut self.rng, now, id, to, frame);
        }
        Ok(())
    }

    /// The leader's view of the voters, if there is a running leader.
    fn leader_voters(&self) -> Option<(usize, Vec<u64>)> {
        self.nodes.iter().enumerate().find_map(|(at, node)| {
            let status = node.core.as_ref()?.status();
            (status.role == lockstep_raft::Role::Leader).then_some((at, status.voters))
        })
    }

    /// Proposes a membership change through the leader; true once the
    /// leader's configuration shows it.
    fn change_membership(&mut self, node: u64, add: bool) -> bool {
        let Some((leader_at, voters)) = self.leader_voters() else {
            return false;
        };
        if voters.contains(&node) == add {
            return true;
        }
        let mut change = ConfChange::default();
        change.set_change_type(if add {
            ConfChangeType::AddNode
        } else {
            ConfChangeType::RemoveNode
        });
        change.node_id = node;
        let core = self.nodes[leader_at].core.as_mut().expect("leader runs");
        if core.propose_conf_change(change) {
            self.note(("membership", node, add));
        }
        false
    }

    fn membership(&mut self, now: u64) {
        if let Some((node, add_at)) = self.removed {
            // Keep asking until the leader's configuration has it back.
            if now >= add_at && self.change_membership(node, true) {
                self.removed = None;
                self.membership_changes += 1;
            }
        }
    }

    fn nemesis(&mut self, now: u64) {
        self.membership(now);
        if let Some(heal_at) = self.heal_at_ms {
            if now >= heal_at {
                self.network.heal();
                self.heal_at_ms = None;
                self.note("heal");
            }
        }
        if now < self.next_fault_ms {
            return;
        }
        self.next_fault_ms = now + self.rng.gen_range(1_000..5_000);
        let count = self.nodes.len() as u64;
        let victim = self.rng.gen_range(1..=count);
        let leader = self
            .nodes
            .iter()
            .filter_map(|node| node.core.as_ref())
            .map(|core| core.status())
            .find(|status| status.role == lockstep_raft::Role::Leader)
            .map(|status| status.id);
        match self.rng.gen_range(0..6) {
            0 | 1 => {
                let down = self.nodes.iter().filter(|node| node.core.is_none()).count();
                // Keep a majority able to come back soon; crashes beyond it
                // are fine for safety but starve the workload.
                if down < (self.nodes.len() - 1) / 2 {
                    let target = if self.rng.gen_bool(0.5) {
                        leader.unwrap_or(victim)
                    } else {
                        victim
                    };
                    let restart = now + self.rng.gen_range(300..3_000);
                    self.crash_node(target as usize - 1, restart);
                    self.note(("crash", target));
                }
            }
            2 if !self.network.is_cut() => {
                let isolated = leader.unwrap_or(victim);
                for other in 1..=count {
                    if other != isolated {
                        self.network.cut(isolated, other);
                        self.network.cut(other, isolated);
                    }
                }
                self.partition_for(now, ("isolate", isolated));
            }
            3 if !self.network.is_cut() => {
                // One way: the leader (or a node) cannot send to the others.
                let from = leader.unwrap_or(victim);
                for other in 1..=count {
                    if other != from {
                        self.network.cut(from, other);
                    }
                }
                self.partition_for(now, ("one-way", from));
            }
            5 if self.removed.is_none() => {
                // Take a voter (the leader itself half the time) out of the
                // voters, and back in later.
                if let Some((leader_at, voters)) = self.leader_voters() {
                    let leader = self.nodes[leader_at].id;
                    let candidates: Vec<u64> = if self.rng.gen_bool(0.5) {
                        vec![leader]
                    } else {
                        voters.iter().copied().filter(|id| *id != leader).collect()
                    };
                    if voters.len() >= 3 && !candidates.is_empty() {
                        let node = candidates[self.rng.gen_range(0..candidates.len())];
                        self.change_membership(node, false);
                        self.removed = Some((node, now + self.rng.gen_range(2_000..6_000)));
                        self.membership_changes += 1;
                        self.leader_removals += (node == leader) as u64;
                    }
                }
            }
            4 if !self.network.is_cut() && count >= 5 => {
                // Majority and minority.
                let minority = [victim, victim % count + 1];
                for a in 1..=count {
                    for b in 1..=count {
                        if minority.contains(&a) != minority.contains(&b) {
                            self.network.cut(a, b);
                        }
                    }
                }
                self.partition_for(now, ("split", victim));
            }
            _ => {}
        }
    }

    fn partition_for(&mut self, now: u64, what: (&str, u64)) {
        self.partitions += 1;
        self.heal_at_ms = Some(now + self.rng.gen_range(500..4_000));
        self.note(what);
    }

    fn clients_act(&mut self, now: u64) {
        for at in 0..self.clients.len() {
            let client = &mut self.clients[at];
            if client.in_flight.is_some() || now < client.idle_until_ms {
                continue;
            }
            let request = next_request(
                &mut client.rng,
                now,
                &mut self.next_value,
                client.last_seen,
                client.holds.as_ref(),
                client.lease,
            );
            if let Request::LeaseKey { lease, key } = &request {
                if let Some(keys) = self.coordination.leases.get_mut(lease) {
                    keys.push(key.clone());
                }
            }
            let alive: Vec<usize> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, node)| node.core.is_some())
                .map(|(at, _)| at)
                .collect();
            if alive.is_empty() {
                client.idle_until_ms = now + 100;
                continue;
            }
            let node_at = alive[client.rng.gen_range(0..alive.len())];
            let core = self.nodes[node_at].core.as_mut().expect("alive");
            let waiting = if request.is_read() && self.config.unsafe_local_reads {
                let (answer, waiting) = oneshot::channel();
                let _ = answer.send(Ok(()));
                Waiting::Barrier(waiting)
            } else if request.is_read() {
                Waiting::Barrier(core.read_barrier())
            } else if core.noop_local(&request.argv(client.id)).is_some() {
                if self.config.unsafe_local_reads {
                    let (answer, waiting) = oneshot::channel();
                    let _ = answer.send(Ok(()));
                    Waiting::Noop(waiting)
                } else {
                    Waiting::Noop(core.read_barrier())
                }
            } else {
                Waiting::Reply(core.propose(&request.argv(client.id)))
            };
            client.in_flight = Some(InFlight {
                request,
                node: self.nodes[node_at].id,
                call_ns: self.clock.now_ns(),
                deadline_ms: now + CLIENT_TIMEOUT_MS,
                waiting,
            });
        }
    }

    fn clients_poll(&mut self, now: u64) {
        for at in 0..self.clients.len() {
            let Some(mut flight) = self.clients[at].in_flight.take() else {
                continue;
            };
            let id = self.clients[at].id;
            // Some(Some(reply)): answered; Some(None): unknown; None: wait.
            let answer: Option<Option<Reply>> = match &mut flight.waiting {
                Waiting::Reply(receiver) => match receiver.try_recv() {
                    Ok(Ok(answered)) => Some(Some(answered.reply)),
                    Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => Some(None),
                    Err(oneshot::error::TryRecvError::Empty) => None,
                },
                Waiting::Barrier(receiver) => match receiver.try_recv() {
                    Ok(Ok(())) => {
                        let argv = flight.request.argv(id);
                        let core = self.nodes[flight.node as usize - 1].core.as_ref();
                        Some(core.and_then(|core| core.read_local(&argv).ok()))
                    }
                    Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => Some(None),
                    Err(oneshot::error::TryRecvError::Empty) => None,
                },
                Waiting::Noop(receiver) => match receiver.try_recv() {
                    Ok(Ok(())) => {
                        let argv = flight.request.argv(id);
                        match self.nodes[flight.node as usize - 1].core.as_mut() {
                            None => Some(None),
                            Some(core) => match core.noop_local(&argv) {
                                Some(reply) => {
                                    self.noop_answers += 1;
                                    Some(Some(reply))
                                }
                                None => {
                                    // It would act by now: write it.
                                    flight.waiting = Waiting::Reply(core.propose(&argv));
                                    None
                                }
                            },
                        }
                    }
                    Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => Some(None),
                    Err(oneshot::error::TryRecvError::Empty) => None,
                },
            };
            let answer = match answer {
                None if now >= flight.deadline_ms => Some(None),
                other => other,
            };
            let Some(reply) = answer else {
                self.clients[at].in_flight = Some(flight);
                continue;
            };
            // An engine error is a definite refusal with no effect, but it
            // is not part of the models: count it as unknown.
            let reply = reply.filter(|reply| !reply.is_error());
            let ret_ns = self.clock.now_ns();
            // (After the first election, which reads before it wait out.)
            if reply.is_some() && flight.request.is_read() && flight.call_ns >= 3_000_000_000 {
                self.slowest_read_ns = self.slowest_read_ns.max(ret_ns - flight.call_ns);
            }
            self.note(("reply", id, format!("{reply:?}")));
            let seen =
                self.histories
                    .record(id, &flight.request, flight.call_ns, ret_ns, reply.as_ref());
            let client = &mut self.clients[at];
            if let Some(seen) = seen {
                client.last_seen = Some(seen);
            }
            match (&flight.request, &reply) {
                (Request::LockTry { name, owner }, Some(Reply::Integer(_))) => {
                    client.holds = Some((name.clone(), *owner))
                }
                (Request::LockRelease { .. }, _) => client.holds = None,
                (Request::LeaseGrant, Some(Reply::Integer(id))) => {
                    client.lease = Some(*id as u64);
                    self.coordination.leases.insert(*id as u64, Vec::new());
                    while self.coordination.leases.len() > TRACKED_LEASES {
                        self.coordination.leases.pop_first();
                    }
                }
                // A renewal that finds the lease gone, or (now and then) a
                // client that stops renewing: it lets the lease expire.
                (Request::LeaseKeepalive { .. }, Some(Reply::Array(items)))
                    if items.first() == Some(&Reply::Integer(-2)) =>
                {
                    client.lease = None
                }
                (Request::LeaseKeepalive { .. }, _) if client.rng.gen_range(0..8) == 0 => {
                    client.lease = None
                }
                _ => {}
            }
            client.idle_until_ms = now + client.rng.gen_range(0..20);
        }
    }

    /// At most one holder of each native lock, on every running node.
    fn lock_holders(&mut self) -> Result<(), String> {
        for node in &self.nodes {
            let Some(core) = node.core.as_ref() else {
                continue;
            };
            for name in ["n0", "n1"] {
                let argv = [Bytes::from_static(b"LOCK.INFO"), Bytes::from(name)];
                let info = core.read_local(&argv).map_err(|err| err.to_string())?;
                if let Reply::Map(fields) = info {
                    for (field, value) in fields {
                        if field == Reply::bulk("holders") {
                            if let Reply::Array(holders) = value {
                                if holders.len() > 1 {
                                    return Err(format!(
                                        "node {} shows {} holders of {name}",
                                        node.id,
                                        holders.len()
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The change feed: every node's changes at an index are the ones every
    /// other node has there, and a watcher reading each page from another
    /// node sees every change of the log once, in order, with no gap.
    fn feed(&mut self) -> Result<(), String> {
        let read = |core: &Core<MemStore>, from: u64, count: &str| {
            let argv: Vec<Bytes> = [
                "CHANGES.READ",
                "*",
                "FROM",
                &from.to_string(),
                "COUNT",
                count,
            ]
            .iter()
            .map(|word| Bytes::from(word.to_string()))
            .collect();
            core.read_local(&argv).map_err(|err| err.to_string())
        };
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|at| self.nodes[*at].core.is_some())
            .collect();
        for at in &running {
            let node = &self.nodes[*at];
            let core = node.core.as_ref().expect("running");
            let from = self.feed.cursors.get(&node.id).copied().unwrap_or(0);
            let (next, changes) = feed_page(&read(core, from, "1000")?)?;
            self.feed.checked += changes.len() as u64;
            self.feed.agree(node.id, &group(changes))?;
            self.feed.cursors.insert(node.id, next.max(from));
        }
        if running.is_empty() {
            return Ok(());
        }
        let at = running[self.feed.watcher_turn % running.len()];
        self.feed.watcher_turn += 1;
        let core = self.nodes[at].core.as_ref().expect("running");
        let from = self.feed.watcher_next;
        let (next, changes) = feed_page(&read(core, from, "50")?)?;
        let groups = group(changes);
        if let Some((first, _)) = groups.first_key_value() {
            if *first < from || self.feed.watcher_seen.contains_key(first) {
                return Err(format!(
                    "the watcher saw index {first} again (reading from {from})"
                ));
            }
        }
        let id = self.nodes[at].id;
        self.feed.agree(id, &groups)?;
        self.feed.watcher_seen.extend(groups);
        self.feed.watcher_next = next.max(from);
        // Nothing the log holds below the watcher's position was skipped.
        let (verified, next) = (self.feed.verified, self.feed.watcher_next);
        for (index, changes) in self.feed.history.range(verified..next) {
            if self.feed.watcher_seen.get(index) != Some(changes) {
                return Err(format!(
                    "the watcher, now at {}, missed index {index}: {changes:?}",
                    self.feed.watcher_next
                ));
            }
        }
        self.feed.verified = next;
        Ok(())
    }

    /// Sessions and elections, on every running node: nodes at one applied
    /// index agree on the election's leader; a node's leader token never
    /// goes back; no lease ends before its deadline in cluster time; when a
    /// lease has ended, every key written under it is gone too.
    fn coordination(&mut self) -> Result<(), String> {
        let leader_argv = [
            Bytes::from_static(b"ELECT.LEADER"),
            Bytes::from_static(b"e"),
        ];
        for node in &self.nodes {
            let Some(core) = node.core.as_ref() else {
                continue;
            };
            let status = core.status();
            let (applied, ct) = (status.applied_index, status.cluster_time_ms);
            let read = |argv: &[Bytes]| core.read_local(argv).map_err(|err| err.to_string());
            let token = match read(&leader_argv)? {
                Reply::Map(fields) => fields
                    .iter()
                    .find_map(|(k, v)| match (k, v) {
                        (Reply::Bulk(k), Reply::Integer(t)) if k.as_ref() == b"token" => {
                            Some(*t as u64)
                        }
                        _ => None,
                    })
                    .unwrap_or(0),
                _ => 0,
            };
            self.coordination.checks += 1;
            match self.coordination.leader_at.get(&applied) {
                Some(seen) if *seen != token => {
                    return Err(format!(
                    "at index {applied} node {} shows leader token {token}, another node {seen}",
                    node.id
                ))
                }
                Some(_) => {}
                None => {
                    self.coordination.leader_at.insert(applied, token);
                }
            }
            if let Some(&(was_applied, was_token)) = self.coordination.last_token.get(&node.id) {
                if applied >= was_applied && token != 0 && token < was_token {
                    return Err(format!(
                        "node {} leader token went back {was_token} -> {token}",
                        node.id
                    ));
                }
            }
            if token != 0 {
                self.coordination
                    .last_token
                    .insert(node.id, (applied, token));
            }
            for (lease, keys) in &self.coordination.leases {
                if *lease > applied {
                    continue;
                }
                let argv = [
                    Bytes::from_static(b"LEASE.TTL"),
                    Bytes::from(lease.to_string()),
                ];
                match read(&argv)? {
                    Reply::Map(fields) => {
                        let left = fields.iter().find_map(|(k, v)| match (k, v) {
                            (Reply::Bulk(k), Reply::Integer(t)) if k.as_ref() == b"ttl" => {
                                Some(*t as u64)
                            }
                            _ => None,
                        });
                        if let Some(left) = left {
                            let deadline = ct + left;
                            let seen = self
                                .coordination
                                .deadlines
                                .entry((node.id, *lease))
                                .or_insert(0);
                            *seen = (*seen).max(deadline);
                        }
                    }
                    _ => {
                        if let Some(&deadline) = self.coordination.deadlines.get(&(node.id, *lease))
                        {
                            if ct < deadline {
                                return Err(format!(
                                    "node {} ended lease {lease} at cluster time {ct}, before its deadline {deadline}",
                                    node.id
                                ));
                            }
                        }
                        for key in keys {
                            self.coordination.ended_lease_keys_checked += 1;
                            let argv = [Bytes::from_static(b"EXISTS"), Bytes::from(key.clone())];
                            if read(&argv)? != Reply::Integer(0) {
                                return Err(format!(
                                    "node {} lost lease {lease} but still has its key {key}",
                                    node.id
                                ));
                            }
                        }
                    }
                }
            }
        }
        // Old indexes will not be reported again (nodes only go forward).
        let lowest = self
            .nodes
            .iter()
            .filter_map(|node| node.core.as_ref().map(|core| core.status().applied_index))
            .min()
            .unwrap_or(0);
        self.coordination.leader_at = self
            .coordination
            .leader_at
            .split_off(&lowest.saturating_sub(1_000));
        Ok(())
    }

    fn check_logs(&self) -> Result<(), String> {
        let mut logs = BTreeMap::new();
        for node in &self.nodes {
            let store = &node.store;
            let first = store.first_index().map_err(|err| err.to_string())?;
            let last = store.last_index().map_err(|err| err.to_string())?;
            let mut log = BTreeMap::new();
            if last >= first {
                let entries = store
                    .entries(first, last + 1, None, raft::GetEntriesContext::empty(false))
                    .map_err(|err| err.to_string())?;
                for entry in entries {
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    entry.data.hash(&mut hasher);
                    log.insert(entry.index, (entry.term, hasher.finish()));
                }
            }
            logs.insert(node.id, log);
        }
        log_matching(&logs)
    }

    fn finish(&mut self) -> Result<(), String> {
        // Everyone back, network healed, every node a voter again, and
        // time to settle.
        self.network.heal();
        for at in 0..self.nodes.len() {
            if self.nodes[at].core.is_none() {
                self.start_node(at);
            }
        }
        if let Some((node, _)) = self.removed {
            let mut tries = 0;
            while !self.change_membership(node, true) {
                tries += 1;
                if tries > 60_000 {
                    return Err(format!("node {node} could not be added back"));
                }
                self.step()?;
            }
            self.removed = None;
        }
        let settle_until = self.clock.now_ms() + SETTLE_MS;
        while self.clock.now_ms() < settle_until {
            self.step()?;
        }
        self.check_logs()?;
        // Drain the queue through a linearizable read.
        let remaining = self.read_everywhere(&["LRANGE", "queue", "0", "-1"])?;
        if let Reply::Array(items) = remaining {
            for item in items {
                if let Reply::Bulk(bytes) = item {
                    if let Some(value) = std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|s| s.parse().ok())
                    {
                        self.histories.queue.delivered.push(value);
                    }
                }
            }
        }
        // Replicas converge to one state.
        let digests: Vec<Reply> = self
            .nodes
            .iter()
            .filter_map(|node| node.core.as_ref())
            .map(|core| {
                core.read_local(&[Bytes::from_static(b"DEBUG"), Bytes::from_static(b"DIGEST")])
                    .unwrap_or(Reply::Nil)
            })
            .collect();
        let applied: Vec<u64> = self
            .nodes
            .iter()
            .filter_map(|node| node.core.as_ref())
            .map(|core| core.status().applied_index)
            .collect();
        if applied.windows(2).all(|pair| pair[0] == pair[1])
            && digests.windows(2).any(|pair| pair[0] != pair[1])
        {
            return Err(format!("replicas at one applied index differ: {digests:?}"));
        }
        Ok(())
    }

    /// A linearizable read on the first node that answers within a while.
    fn read_everywhere(&mut self, words: &[&str]) -> Result<Reply, String> {
        let argv: Vec<Bytes> = words
            .iter()
            .map(|word| Bytes::from(word.to_string()))
            .collect();
        for at in 0..self.nodes.len() {
            let Some(core) = self.nodes[at].core.as_mut() else {
                continue;
            };
            let mut barrier = core.read_barrier();
            for _ in 0..5_000 {
                self.step()?;
                match barrier.try_recv() {
                    Ok(Ok(())) => {
                        let core = self.nodes[at].core.as_ref().expect("running");
                        return core.read_local(&argv).map_err(|err| err.to_string());
                    }
                    Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => break,
                    Err(oneshot::error::TryRecvError::Empty) => {}
                }
            }
        }
        Err("no node could serve a linearizable read after the run".into())
    }

    fn judge(&self) -> Result<(), String> {
        let model = Register::default();
        let mut parts: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for (key, op) in &self.histories.registers {
            parts.entry(key.clone()).or_default().push(op.clone());
        }
        match linearizable_per_key(&model, parts, 10_000_000) {
            Verdict::Linearizable => {}
            Verdict::Inconclusive { .. } => {}
            violation => return Err(format!("histories: {violation:?}")),
        }
        let mut names: Vec<&String> = self.histories.grants.iter().map(|(name, _)| name).collect();
        names.sort();
        names.dedup();
        for name in names {
            let grants: Vec<_> = self
                .histories
                .grants
                .iter()
                .filter(|(granted, _)| granted == name)
                .map(|(_, grant)| grant.clone())
                .collect();
            let violations = check_tokens(&grants);
            if !violations.is_empty() {
                return Err(format!("fencing tokens of {name}: {violations:?}"));
            }
        }
        let queue = check_queue(&self.histories.queue);
        if !queue.duplicated.is_empty()
            || !queue.unexpected.is_empty()
            || queue.lost.len() > self.histories.unknown_pops
        {
            return Err(format!(
                "queue: {queue:?} with {} unknown pops",
                self.histories.unknown_pops
            ));
        }
        Ok(())
    }
}

/// Runs one seeded simulation to the end or to its first violation.
pub fn run(config: SimConfig) -> Outcome {
    let mut world = World::new(config.clone());
    // A panic in the core (raft-rs asserts its invariants) is a violation
    // too: report it with the seed instead of unwinding through the test.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut result = Ok(());
        while result.is_ok() && world.clock.now_ms() < config.duration_ms {
            result = world.step();
            if result.is_ok() && world.steps.is_multiple_of(50) {
                result = world
                    .lock_holders()
                    .and_then(|()| world.coordination())
                    .and_then(|()| world.feed());
            }
            if result.is_ok() && world.steps.is_multiple_of(500) {
                result = world.check_logs();
            }
        }
        result
            .and_then(|()| world.finish())
            .and_then(|()| world.judge())
    }))
    .unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
            .unwrap_or_default();
        Err(format!("panic at step {}: {message}", world.steps))
    });
    Outcome {
        seed: config.seed,
        violation: result.err(),
        trace: world.trace.finish(),
        steps: world.steps,
        invariant_checks: world.invariants.checks + world.coordination.checks,
        completed: world.histories.completed,
        unknown: world.histories.unknown,
        crashes: world.crashes,
        partitions: world.partitions,
        membership_changes: world.membership_changes,
        leader_removals: world.leader_removals,
        ended_lease_keys_checked: world.coordination.ended_lease_keys_checked,
        feed_changes_checked: world.feed.checked,
        feed_watcher_changes: world
            .feed
            .watcher_seen
            .values()
            .map(Vec::len)
            .sum::<usize>() as u64,
        slowest_read_ms: world.slowest_read_ns / 1_000_000,
        noop_answers: world.noop_answers,
        frames_sent: world.network.sent,
        frames_dropped: world.network.dropped,
        highest_index: world.invariants.highest_applied(),
    }
}
