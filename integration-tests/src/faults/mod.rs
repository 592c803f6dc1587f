//! Real processes under faults: a cluster behind peer-link proxies, clients
//! running the register, lock and queue workloads, a nemesis, and then the
//! verdicts: linearizability per key, fencing tokens, queue deliveries and
//! replica convergence.

mod client;
pub mod nemesis;
mod watchdog;
pub mod workloads;
pub mod zk_workloads;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lockstep_check::fencing::{check_tokens, Grant};
use lockstep_check::leadership::{check_fenced_writes, check_overlaps};
use lockstep_check::queue::check_queue;
use lockstep_check::register::Register;
use lockstep_check::{linearizable_per_key, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use client::{Client, Clock};
pub use nemesis::{Nemesis, NemesisLog, Schedule};
use watchdog::{diagnose, NodeProbe, Watchdog};
use workloads::{Histories, Shared};

/// Search steps the checker may spend on one key.
const CHECK_STEPS_PER_KEY: u64 = 20_000_000;

/// How far two leaderships may overlap in real time. A client acts as
/// leader only until the send time of its last acknowledged renewal plus
/// the TTL; the entry that makes the next leader is stamped at least a TTL
/// of cluster time later, and cluster time runs no faster than the
/// leader's monotonic clock. What remains is cluster time's rounding to
/// milliseconds, once per raft leader change (and, across machines, their
/// clock-rate difference).
pub const LEADERSHIP_OVERLAP_BOUND: Duration = Duration::from_millis(5);

/// How long a run may take beyond its workload time: starting, healing,
/// converging and judging together take well under a minute.
const RUN_OVERHEAD_LIMIT: Duration = Duration::from_secs(180);

#[derive(Clone, Debug)]
pub struct Scenario {
    pub nodes: usize,
    pub nemesis: Nemesis,
    pub duration: Duration,
    pub seed: u64,
    pub register_clients: usize,
    pub lock_clients: usize,
    pub queue_producers: usize,
    pub queue_consumers: usize,
    pub election_clients: usize,
    /// Change-feed watchers following the register keys.
    pub feed_watchers: usize,
    /// ZooKeeper-protocol clients (see `zk_workloads`): registers, lock
    /// takers, election candidates.
    pub zk_register_clients: usize,
    pub zk_lock_clients: usize,
    pub zk_election_clients: usize,
    /// Clients whose sessions die with an ephemeral node each.
    pub zk_ephemeral_clients: usize,
    /// Negative control: ZooKeeper lock takers hold as soon as their node
    /// exists, without waiting for the lower ones.
    pub zk_locks_skip_queue: bool,
    /// Extra `lockstep` flags (the negative controls use this).
    pub node_args: Vec<String>,
    /// Run `lockstep-unsafe` (the negative controls' switches).
    pub unsafe_binary: bool,
    /// Negative control: lock clients "acquire" with SET PX, no NX.
    pub locks_without_nx: bool,
    /// Negative control: leaders stall past their lease now and then and
    /// go on acting as leader afterwards, as if nothing happened.
    pub leaders_ignore_leases: bool,
}

impl Scenario {
    pub fn new(nemesis: Nemesis, duration: Duration, seed: u64) -> Scenario {
        Scenario {
            nodes: 3,
            nemesis,
            duration,
            seed,
            register_clients: 4,
            lock_clients: 4,
            queue_producers: 2,
            queue_consumers: 2,
            election_clients: 3,
            feed_watchers: 2,
            zk_register_clients: 2,
            zk_lock_clients: 3,
            zk_election_clients: 2,
            zk_ephemeral_clients: 1,
            zk_locks_skip_queue: false,
            node_args: Vec::new(),
            unsafe_binary: false,
            locks_without_nx: false,
            leaders_ignore_leases: false,
        }
    }
}

/// What a run found. `passed` is the verdict; the rest explains it.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: String,
    pub operations: (u64, u64, u64),
    pub register_keys: usize,
    pub linearizability: Verdict,
    pub grants: usize,
    pub token_violations: usize,
    pub fenced_rejected: u64,
    pub stale_accepted: usize,
    pub queue_lost: usize,
    pub queue_duplicated: usize,
    pub queue_unexpected: usize,
    pub unknown_pops: usize,
    pub leaderships: usize,
    /// Leaderships that overlapped in real time by more than
    /// [`LEADERSHIP_OVERLAP_BOUND`], election tokens reused or not
    /// increasing, token writes accepted after a newer leader began.
    pub leadership_overlaps: usize,
    pub election_token_violations: usize,
    pub stale_proclaims_accepted: usize,
    pub proclaims: (usize, u64),
    /// Changes the watchers received in all, and their differences from
    /// the feed read back on the healed cluster (missing, extra or out of
    /// order; pages that repeated a change).
    pub feed_changes: usize,
    pub feed_mismatches: Vec<String>,
    /// ZooKeeper recipes: holds, holds that overlapped by more than the
    /// session timeout, and sequential names created twice.
    pub zk_holds: usize,
    /// Operations of the znode registers (checked with the others).
    pub zk_register_ops: usize,
    pub zk_hold_overlaps: usize,
    pub zk_duplicate_names: usize,
    /// Dead sessions' ephemerals followed, those read past
    /// `zk_workloads::ephemeral_bound()` after their creation, those never
    /// seen gone, and the longest creation-to-gone (cluster time, ms).
    pub zk_ephemerals: usize,
    pub zk_ephemerals_late: usize,
    pub zk_ephemerals_unresolved: usize,
    pub zk_ephemeral_longest_ms: i64,
    pub converged: Result<String, String>,
    pub nemesis: NemesisLog,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.linearizability.is_linearizable()
            && self.token_violations == 0
            && self.stale_accepted == 0
            && self.queue_duplicated == 0
            && self.queue_unexpected == 0
            // A pop with an unknown outcome may have taken an item away.
            && self.queue_lost <= self.unknown_pops
            && self.leadership_overlaps == 0
            && self.election_token_violations == 0
            && self.stale_proclaims_accepted == 0
            && self.feed_mismatches.is_empty()
            && self.zk_hold_overlaps == 0
            && self.zk_duplicate_names == 0
            && self.zk_ephemerals_late == 0
            && self.zk_ephemerals_unresolved == 0
            && self.converged.is_ok()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ok, not_sent, unknown) = self.operations;
        writeln!(f, "scenario: {}", self.scenario)?;
        writeln!(
            f,
            "operations: {ok} ok, {unknown} unknown outcome, {not_sent} not sent"
        )?;
        writeln!(
            f,
            "linearizability ({} keys): {:?}",
            self.register_keys, self.linearizability
        )?;
        writeln!(
            f,
            "lock grants: {}, token violations: {}, stale writes fenced off: {}, stale writes accepted: {}",
            self.grants, self.token_violations, self.fenced_rejected, self.stale_accepted
        )?;
        writeln!(
            f,
            "queue: lost {} (unknown pops {}), duplicated {}, unexpected {}",
            self.queue_lost, self.unknown_pops, self.queue_duplicated, self.queue_unexpected
        )?;
        writeln!(
            f,
            "election: {} leaderships, overlaps {}, token violations {}, token writes accepted {} / refused {}, stale accepted {}",
            self.leaderships,
            self.leadership_overlaps,
            self.election_token_violations,
            self.proclaims.0,
            self.proclaims.1,
            self.stale_proclaims_accepted
        )?;
        writeln!(
            f,
            "change feed: {} changes received by the watchers, mismatches {:?}",
            self.feed_changes, self.feed_mismatches
        )?;
        writeln!(
            f,
            "zookeeper: {} znode register operations; recipes: {} holds, overlapping {}, duplicate sequential names {}",
            self.zk_register_ops, self.zk_holds, self.zk_hold_overlaps, self.zk_duplicate_names
        )?;
        writeln!(
            f,
            "zookeeper ephemerals of dead sessions: {}, read too late {}, never seen gone {}, longest creation to gone {} ms (bound {} ms)",
            self.zk_ephemerals,
            self.zk_ephemerals_late,
            self.zk_ephemerals_unresolved,
            self.zk_ephemeral_longest_ms,
            zk_workloads::ephemeral_bound().as_millis()
        )?;
        writeln!(f, "replicas: {:?}", self.converged)?;
        writeln!(
            f,
            "nemesis: {} faults, {:.1}s under fault, elections {}, recoveries {}",
            self.nemesis.faults.len(),
            self.nemesis.fault_time.as_secs_f64(),
            summary(&self.nemesis.elections),
            summary(&self.nemesis.recoveries),
        )?;
        writeln!(f, "faults: {}", self.nemesis.faults.join(", "))?;
        write!(
            f,
            "verdict: {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// The median of some durations (the upper one of an even count).
pub fn median(durations: &[Duration]) -> Option<Duration> {
    let mut sorted = durations.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied()
}

/// "median m, max x" of some durations, in ms.
pub fn summary(durations: &[Duration]) -> String {
    match (median(durations), durations.iter().max()) {
        (Some(median), Some(max)) => format!(
            "median {}ms max {}ms (n={})",
            median.as_millis(),
            max.as_millis(),
            durations.len()
        ),
        _ => "none".into(),
    }
}

pub fn run(scenario: &Scenario) -> Result<Report> {
    let mut args: Vec<&str> = vec!["--request-timeout-ms", "2000"];
    args.extend(scenario.node_args.iter().map(String::as_str));
    let binary = if scenario.unsafe_binary {
        crate::lockstep_unsafe_binary()
    } else {
        crate::lockstep_binary()
    };
    // Declared before the cluster, so it also watches the teardown.
    let watchdog = Watchdog::start(scenario.duration + RUN_OVERHEAD_LIMIT);
    let mut cluster = crate::Cluster::start_proxied(scenario.nodes, &args, binary)?;
    let probes: Vec<NodeProbe> = cluster
        .nodes
        .iter()
        .map(|node| NodeProbe {
            id: node.id,
            client_addr: node.client_addr,
            log: node.log_path(),
        })
        .collect();
    watchdog.watch_nodes(probes.clone());
    let leader = cluster.wait_for_leader(Duration::from_secs(20))?;
    let release_sha: String = {
        let mut connection = cluster.client(leader)?;
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(workloads::RELEASE_SCRIPT)
            .query(&mut connection)?
    };
    let shared = Arc::new(Shared {
        clock: Clock::start(),
        stop: AtomicBool::new(false),
        next_value: AtomicU64::new(1),
        release_sha,
        locks_without_nx: scenario.locks_without_nx,
        leaders_ignore_leases: scenario.leaders_ignore_leases,
        zk_locks_skip_queue: scenario.zk_locks_skip_queue,
        histories: Mutex::new(Histories::default()),
    });
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let addrs = cluster.client_addrs();
    let mut workers = Vec::new();
    let mut next_client = 0u64;
    let mut client = |rng: &mut StdRng| {
        next_client += 1;
        Client::new(
            next_client,
            addrs.clone(),
            Duration::from_secs(4),
            StdRng::seed_from_u64(rng.gen()),
        )
    };
    for _ in 0..scenario.register_clients {
        let (shared, client) = (shared.clone(), client(&mut rng));
        workers.push(std::thread::spawn(move || {
            workloads::register_worker(shared, client)
        }));
    }
    for _ in 0..scenario.lock_clients {
        let (shared, client) = (shared.clone(), client(&mut rng));
        workers.push(std::thread::spawn(move || {
            workloads::lock_worker(shared, client)
        }));
    }
    for producer in std::iter::repeat_n(true, scenario.queue_producers)
        .chain(std::iter::repeat_n(false, scenario.queue_consumers))
    {
        let (shared, client) = (shared.clone(), client(&mut rng));
        workers.push(std::thread::spawn(move || {
            workloads::queue_worker(shared, client, producer)
        }));
    }
    for _ in 0..scenario.election_clients {
        let (shared, client) = (shared.clone(), client(&mut rng));
        workers.push(std::thread::spawn(move || {
            workloads::election_worker(shared, client)
        }));
    }
    let zk_hosts: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| node.zk_addr.to_string())
        .collect();
    let zk_hosts = zk_hosts.join(",");
    let zk_roles = std::iter::repeat_n(zk_workloads::Role::Register, scenario.zk_register_clients)
        .chain(std::iter::repeat_n(
            zk_workloads::Role::Lock,
            scenario.zk_lock_clients,
        ))
        .chain(std::iter::repeat_n(
            zk_workloads::Role::Election,
            scenario.zk_election_clients,
        ))
        .chain(std::iter::repeat_n(
            zk_workloads::Role::Ephemerals,
            scenario.zk_ephemeral_clients,
        ));
    // Their own ids, apart from the RESP clients'.
    for (n, role) in zk_roles.enumerate() {
        let (shared, id, hosts) = (shared.clone(), 1_000 + n as u64, zk_hosts.clone());
        let rng = StdRng::seed_from_u64(rng.gen());
        workers.push(std::thread::spawn(move || {
            zk_workloads::worker(shared, id, hosts, role, rng)
        }));
    }
    let mut feed_watchers = Vec::new();
    for _ in 0..scenario.feed_watchers {
        let (shared, client) = (shared.clone(), client(&mut rng));
        feed_watchers.push(std::thread::spawn(move || {
            workloads::feed_worker(shared, client)
        }));
    }
    let until = Instant::now() + scenario.duration;
    watchdog.phase("running the workload and the nemesis");
    let nemesis_log = nemesis::run(
        &mut cluster,
        scenario.nemesis,
        until,
        &mut rng,
        &Schedule::default(),
    );
    shared.stop.store(true, Ordering::SeqCst);
    watchdog.phase("waiting for the workload clients to stop");
    for worker in workers {
        let _ = worker.join();
    }
    let watches: Vec<workloads::FeedWatch> = feed_watchers
        .into_iter()
        .filter_map(|watcher| watcher.join().ok())
        .collect();
    let nemesis_log = nemesis_log?;
    watchdog.phase("waiting for the healed cluster to serve");
    // Every node must be up and serving before the final reads.
    if nemesis::time_to_write(&cluster, Duration::from_secs(30)).is_none() {
        bail!(
            "the cluster did not serve writes after healing\n{}",
            diagnose(&probes)
        );
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(20))?;
    watchdog.phase("reading the queue");
    let remaining = workloads::drain_queue(&mut cluster.client(leader)?)?;
    watchdog.phase("waiting for the replicas to converge");
    let converged = converge(&mut cluster, Duration::from_secs(30), &probes);
    watchdog.phase("reading the change feed back");
    let feed_mismatches = check_feed(&mut cluster, leader, &watches)?;
    let feed_changes = watches.iter().map(|w| w.seen.len()).sum();
    let mut histories = std::mem::take(&mut *shared.histories.lock().expect("histories"));
    histories.queue.delivered.extend(remaining);
    watchdog.phase("judging the histories");
    let mut report = judge(scenario, histories, nemesis_log, converged);
    report.feed_changes = feed_changes;
    report.feed_mismatches = feed_mismatches;
    watchdog.phase("stopping the cluster");
    Ok(report)
}

fn judge(
    scenario: &Scenario,
    histories: Histories,
    nemesis: NemesisLog,
    converged: Result<String, String>,
) -> Report {
    let keys = workloads::keys(&histories);
    let mut parts: std::collections::BTreeMap<String, Vec<workloads::RegisterOp>> =
        Default::default();
    for (key, op) in &histories.registers {
        parts.entry(key.clone()).or_default().push(op.clone());
    }
    let linearizability = linearizable_per_key(&Register::default(), parts, CHECK_STEPS_PER_KEY);
    let mut token_violations = 0;
    let mut lock_names: Vec<&String> = histories.grants.iter().map(|(key, _)| key).collect();
    lock_names.sort();
    lock_names.dedup();
    for name in lock_names {
        let grants: Vec<Grant> = histories
            .grants
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, grant)| grant.clone())
            .collect();
        token_violations += check_tokens(&grants).len();
    }
    // Tokens are log indexes, so they grow across lock names too: the
    // resource may see every lock's grants in one sequence.
    let stale_accepted = histories
        .fenced
        .accepted
        .windows(2)
        .filter(|pair| pair[1] < pair[0])
        .count();
    let queue = check_queue(&histories.queue);
    let overlaps = check_overlaps(
        &histories.leaderships,
        LEADERSHIP_OVERLAP_BOUND.as_nanos() as u64,
    );
    let stale_proclaims = check_fenced_writes(&histories.leaderships, &histories.proclaims);
    let zk_hold_overlaps = zk_workloads::LOCK_PARENTS
        .iter()
        .map(|parent| {
            let holds: Vec<&zk_workloads::Hold> = histories
                .zk_holds
                .iter()
                .filter(|(p, _)| p == parent)
                .map(|(_, hold)| hold)
                .collect();
            let found = zk_workloads::overlaps(&holds);
            for (earlier, later) in found.iter().take(5) {
                eprintln!("zookeeper recipe overlap ({parent}): {earlier:?} and {later:?}");
            }
            found.len()
        })
        .sum();
    let mut names: Vec<&(String, i64)> = histories.zk_sequential.iter().collect();
    names.sort();
    let zk_duplicate_names = names.windows(2).filter(|w| w[0] == w[1]).count()
        // A parent's sequence numbers are never handed out twice either.
        + {
            let mut numbers: Vec<(String, i64)> = histories
                .zk_sequential
                .iter()
                .map(|(path, n)| (path.rsplit_once('/').map(|(p, _)| p.to_string()).unwrap_or_default(), *n))
                .collect();
            numbers.sort();
            numbers.windows(2).filter(|w| w[0] == w[1]).count()
        };
    let (late, unresolved) =
        zk_workloads::late_ephemerals(&histories.zk_ephemerals, zk_workloads::ephemeral_bound());
    for fate in late.iter().chain(&unresolved).take(5) {
        eprintln!("zookeeper ephemeral of a dead session: {fate:?}");
    }
    let zk_ephemerals_late = late.len();
    let zk_ephemerals_unresolved = unresolved.len();
    let zk_ephemeral_longest_ms = histories
        .zk_ephemerals
        .iter()
        .filter_map(|f| f.seen_gone.map(|gone| gone - f.created))
        .max()
        .unwrap_or(0);
    for violation in overlaps.iter().chain(&stale_proclaims).take(5) {
        eprintln!("election violation: {violation:?}");
    }
    Report {
        scenario: format!(
            "{} nodes, nemesis {}, {}s, seed {}",
            scenario.nodes,
            scenario.nemesis,
            scenario.duration.as_secs(),
            scenario.seed
        ),
        operations: (histories.ok, histories.not_sent, histories.unknown),
        register_keys: keys.len(),
        linearizability,
        grants: histories.grants.len(),
        token_violations,
        fenced_rejected: histories.fenced.rejected,
        stale_accepted,
        queue_lost: queue.lost.len(),
        queue_duplicated: queue.duplicated.len(),
        queue_unexpected: queue.unexpected.len(),
        unknown_pops: histories.unknown_pops,
        leaderships: histories.leaderships.len(),
        leadership_overlaps: overlaps.len(),
        election_token_violations: check_tokens(&histories.campaigns).len(),
        stale_proclaims_accepted: stale_proclaims.len(),
        proclaims: (histories.proclaims.len(), histories.proclaims_refused),
        feed_changes: 0,
        feed_mismatches: Vec::new(),
        zk_holds: histories.zk_holds.len(),
        zk_register_ops: histories
            .registers
            .iter()
            .filter(|(key, _)| key.starts_with("zk:"))
            .count(),
        zk_hold_overlaps,
        zk_duplicate_names,
        zk_ephemerals: histories.zk_ephemerals.len(),
        zk_ephemerals_late,
        zk_ephemerals_unresolved,
        zk_ephemeral_longest_ms,
        converged,
        nemesis,
    }
}

/// Each watcher's changes against the feed read back from the healed
/// cluster over the same stretch: the same changes, in the same order,
/// none twice.
fn check_feed(
    cluster: &mut crate::Cluster,
    leader: u64,
    watches: &[workloads::FeedWatch],
) -> Result<Vec<String>> {
    let mut connection = cluster.client(leader)?;
    let mut mismatches = Vec::new();
    for (n, watch) in watches.iter().enumerate() {
        let mut expected = Vec::new();
        let mut from = 0;
        while from < watch.next {
            let reply: redis::Value = redis::cmd("CHANGES.READ")
                .arg(workloads::FEED_PREFIX)
                .arg("FROM")
                .arg(from)
                .arg("COUNT")
                .arg(5_000)
                .query(&mut connection)?;
            let Some((next, changes)) = workloads::feed_page(&reply) else {
                bail!("CHANGES.READ answered {reply:?}");
            };
            expected.extend(changes.into_iter().filter(|c| c.0 < watch.next));
            if next <= from {
                break;
            }
            from = next;
        }
        if watch.repeated > 0 {
            mismatches.push(format!(
                "watcher {n}: {} pages repeated a change",
                watch.repeated
            ));
        }
        if expected != watch.seen {
            let at = expected
                .iter()
                .zip(&watch.seen)
                .position(|(a, b)| a != b)
                .unwrap_or(expected.len().min(watch.seen.len()));
            mismatches.push(format!(
                "watcher {n}: {} changes received, {} in the feed before {}; first difference at {at}: {:?} vs {:?}",
                watch.seen.len(),
                expected.len(),
                watch.next,
                watch.seen.get(at),
                expected.get(at)
            ));
        }
    }
    Ok(mismatches)
}

/// Waits until every node has applied the same index and reports the same
/// state digest there; returns the digest.
fn converge(
    cluster: &mut crate::Cluster,
    within: Duration,
    probes: &[NodeProbe],
) -> Result<String, String> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < within {
        match digests(cluster) {
            Ok(Ok(digest)) => return Ok(digest),
            Ok(Err(moving)) => last = moving,
            Err(err) => last = err.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "replicas did not converge within {within:?}: {last}\n{}",
        diagnose(probes)
    ))
}

/// Ok(digest) if all nodes agree at one applied index; Err(why not yet)
/// if they are still moving; an error if they disagree at the same index
/// or a node does not answer.
fn digests(cluster: &mut crate::Cluster) -> Result<Result<String, String>> {
    let mut seen: Option<(u64, String)> = None;
    let mut applied_indexes = Vec::new();
    for id in cluster.ids() {
        let applied = |cluster: &crate::Cluster| -> Option<u64> {
            cluster
                .info_field(id, "raft_applied_index")
                .and_then(|value| value.parse().ok())
        };
        let before = applied(cluster);
        let mut connection =
            crate::connect_with_timeout(cluster.node(id).client_addr, Duration::from_secs(2))
                .with_context(|| format!("connecting to node {id}"))?;
        let digest: String = redis::cmd("DEBUG")
            .arg("DIGEST")
            .query(&mut connection)
            .with_context(|| format!("DEBUG DIGEST on node {id}"))?;
        let after = applied(cluster);
        let (Some(before), Some(after)) = (before, after) else {
            return Ok(Err(format!("node {id} did not report its applied index")));
        };
        if before != after {
            return Ok(Err(format!(
                "node {id} applied {before} -> {after} while hashing"
            )));
        }
        applied_indexes.push(format!("node {id} at {after}"));
        match &seen {
            None => seen = Some((after, digest)),
            Some((index, _)) if *index != after => {
                return Ok(Err(format!("applied: {}", applied_indexes.join(", "))));
            }
            Some((index, expected)) if *expected != digest => {
                bail!("node {id} digest {digest} differs from {expected} at applied index {index}")
            }
            Some(_) => {}
        }
    }
    Ok(seen
        .map(|(index, digest)| format!("{digest} at applied index {index}"))
        .ok_or_else(|| "no nodes".to_string()))
}
