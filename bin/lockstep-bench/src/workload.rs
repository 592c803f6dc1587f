//! The workloads: what one closed-loop client does, over and over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use redis::aio::MultiplexedConnection;
use redis::{Script, Value};

/// The compare-and-delete release every Lua-based lock client sends.
const RELEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
/// Errors kept word for word per pass.
const KEPT_ERRORS: usize = 5;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// SET of a new key each time.
    Put,
    /// GET of an existing key (loaded first).
    Get,
    /// SET name token NX PX ttl, then the EVALSHA compare-and-delete
    /// release, on a new name each cycle (uncontended).
    LockCycle,
    /// Every client on one name: SET NX PX, sleep --retry-ms after a
    /// failed attempt, release with EVALSHA once held.
    SpinLock,
    /// Every client on one name: LOCK.ACQUIRE ... WAIT (queued, granted
    /// in order), then LOCK.RELEASE.
    NativeLock,
    /// Every client campaigns in one election with its own lease; the
    /// leader resigns at once. One operation is one leadership; the wait
    /// is the hand-over: from the resignation's send to the next leader's
    /// campaign returning.
    Handover,
    /// SVC.HEARTBEAT of a random instance among --keys registered ones.
    Heartbeat,
    /// Each client keeps --leases-per-client leases alive with one
    /// LEASE.KEEPALIVE of all of them every --interval-ms.
    Keepalive,
    /// Client 0 leads an election and changes its value every
    /// --interval-ms (ELECT.PROCLAIM); every other client follows with
    /// ELECT.OBSERVE AFTER. The wait is the observe latency: from the
    /// writer's node answering the change to an observer on another node
    /// answering.
    Observe,
    /// ZNODE.CREATE of a new node under the client's own parent.
    ZnodeCreate,
    /// ZNODE.GET of an existing node (--keys loaded first).
    ZnodeGet,
    /// ZNODE.SET of an existing node (any version).
    ZnodeSet,
    /// ZNODE.CHILDREN of a node with 10 children.
    ZnodeChildren,
    /// ZooKeeper protocol (the endpoints are ZooKeeper ports): getData of
    /// an existing node (--keys loaded first).
    ZkGet,
    /// ZooKeeper protocol: setData of an existing node (any version).
    ZkSet,
    /// ZooKeeper protocol: a persistent sequential create under one
    /// parent shared by every client.
    ZkCreate,
    /// ZooKeeper protocol: kazoo's and Curator's lock recipe, uncontended
    /// (each client its own lock): create an ephemeral sequential child,
    /// list the children, find it lowest, delete it.
    ZkLock,
    /// Not a closed loop: --subscribers follow keyspace events of their
    /// own keys while --clients write (see `events`).
    Fanout,
    /// Not a closed loop: a watcher --behind changes behind reads the
    /// feed until caught up (see `events`).
    Catchup,
}

impl Workload {
    /// Spoken over ZooKeeper's protocol, not RESP.
    pub fn is_zookeeper(self) -> bool {
        matches!(
            self,
            Workload::ZkGet | Workload::ZkSet | Workload::ZkCreate | Workload::ZkLock
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::LockCycle => "lock-cycle",
            Workload::SpinLock => "spin-lock",
            Workload::NativeLock => "native-lock",
            Workload::Handover => "handover",
            Workload::Heartbeat => "heartbeat",
            Workload::Keepalive => "keepalive",
            Workload::Observe => "observe",
            Workload::ZnodeCreate => "znode-create",
            Workload::ZnodeGet => "znode-get",
            Workload::ZnodeSet => "znode-set",
            Workload::ZnodeChildren => "znode-children",
            Workload::ZkGet => "zk-get",
            Workload::ZkSet => "zk-set",
            Workload::ZkCreate => "zk-create",
            Workload::ZkLock => "zk-lock",
            Workload::Fanout => "fanout",
            Workload::Catchup => "catchup",
        }
    }
}

/// What the clients of one pass share.
pub struct Shared {
    pub workload: Workload,
    pub run: u64,
    pub pass: usize,
    /// Operations count only while this is set (after the warm-up).
    pub measuring: AtomicBool,
    pub stop: AtomicBool,
    /// Lock workloads: set by the client that holds the lock, cleared
    /// before it releases; finding it set after acquiring is a violation.
    holder: AtomicBool,
    pub violations: AtomicU64,
    /// Handover: when the last leader sent its resignation.
    resigned_at: Mutex<Option<Instant>>,
    /// Observe: each value the writer set, and when its reply came.
    proclaimed: Mutex<HashMap<u64, Instant>>,
}

impl Shared {
    pub fn new(workload: Workload, run: u64, pass: usize) -> Self {
        Shared {
            workload,
            run,
            pass,
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            holder: AtomicBool::new(false),
            violations: AtomicU64::new(0),
            resigned_at: Mutex::new(None),
            proclaimed: Mutex::new(HashMap::new()),
        }
    }

    fn enter(&self) {
        if self.holder.swap(true, Ordering::SeqCst) {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn leave(&self) {
        self.holder.store(false, Ordering::SeqCst);
    }
}

pub struct Config {
    pub client: usize,
    /// Which endpoint this client talks to.
    pub endpoint: usize,
    pub leases_per_client: usize,
    pub interval: Duration,
    pub keys: u64,
    pub value_size: usize,
    pub ttl_ms: u64,
    pub retry: Duration,
    pub wait_ms: u64,
    pub timeout: Duration,
}

pub struct ClientReport {
    pub ops: u64,
    pub errors: u64,
    pub first_errors: Vec<String>,
    /// Microseconds per operation.
    pub latency: Histogram<u64>,
    /// Lock workloads: microseconds from the first attempt to holding;
    /// handover and observe: see [`Workload`].
    pub wait: Option<Histogram<u64>>,
    /// Observe: (value, when an observer on another node saw it).
    observed: Vec<(u64, Instant)>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

impl ClientReport {
    pub(crate) fn new(workload: Workload) -> Self {
        ClientReport {
            ops: 0,
            errors: 0,
            first_errors: Vec::new(),
            latency: histogram(),
            wait: matches!(
                workload,
                Workload::SpinLock | Workload::NativeLock | Workload::Handover | Workload::Observe
            )
            .then(histogram),
            observed: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, error: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_errors.len() < KEPT_ERRORS {
            self.first_errors.push(error.to_string());
        }
    }

    /// All clients' reports in one; `shared` joins what observers saw with
    /// when the writer's change was answered.
    pub fn merge(reports: Vec<ClientReport>, shared: &Shared) -> ClientReport {
        let mut reports = reports.into_iter();
        let mut total = reports.next().expect("one client at least");
        let proclaimed = shared.proclaimed.lock().expect("proclaimed");
        let observe = |observed: &[(u64, Instant)], wait: &mut Option<Histogram<u64>>| {
            if let Some(wait) = wait.as_mut() {
                for (value, seen) in observed {
                    if let Some(answered) = proclaimed.get(value) {
                        let us = seen.saturating_duration_since(*answered).as_micros() as u64;
                        let _ = wait.record(us.max(1));
                    }
                }
            }
        };
        let first = std::mem::take(&mut total.observed);
        observe(&first, &mut total.wait);
        for report in reports {
            observe(&report.observed, &mut total.wait);
            total.ops += report.ops;
            total.errors += report.errors;
            for error in report.first_errors {
                if total.first_errors.len() < KEPT_ERRORS {
                    total.first_errors.push(error);
                }
            }
            total.latency.add(&report.latency).expect("same bounds");
            if let (Some(total), Some(wait)) = (total.wait.as_mut(), report.wait.as_ref()) {
                total.add(wait).expect("same bounds");
            }
        }
        total
    }
}

pub async fn connect(endpoint: &str) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{endpoint}/"))
        .with_context(|| format!("bad endpoint {endpoint}"))?;
    tokio::time::timeout(
        Duration::from_secs(10),
        client.get_multiplexed_tokio_connection(),
    )
    .await
    .map_err(|_| anyhow!("connecting to {endpoint} timed out"))?
    .with_context(|| format!("connecting to {endpoint}"))
}

fn value(size: usize) -> Vec<u8> {
    vec![b'x'; size]
}

/// Writes the keys the get workload reads.
pub async fn load_keys(endpoint: &str, keys: u64, value_size: usize) -> Result<()> {
    let mut con = connect(endpoint).await?;
    let value = value(value_size);
    for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("SET")
                .arg(format!("key:{key}"))
                .arg(&value)
                .ignore();
        }
        pipe.query_async::<()>(&mut con).await?;
    }
    Ok(())
}

/// The parent of the nodes znode-get and znode-set use, and the node
/// znode-children lists.
pub const ZNODES: &str = "/bench-nodes";
pub const ZNODE_DIR: &str = "/bench-dir";

/// Creates the nodes the znode read and set workloads use (existing ones
/// are kept).
pub async fn load_znodes(endpoint: &str, keys: u64, value_size: usize) -> Result<()> {
    let mut con = connect(endpoint).await?;
    let value = value(value_size);
    let mut pipe = redis::pipe();
    for path in [ZNODES, ZNODE_DIR] {
        pipe.cmd("ZNODE.CREATE").arg(path).arg("").ignore();
    }
    for child in 0..10 {
        pipe.cmd("ZNODE.CREATE")
            .arg(format!("{ZNODE_DIR}/c{child}"))
            .arg(&value)
            .ignore();
    }
    pipe.query_async::<Value>(&mut con).await.ok();
    for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("ZNODE.CREATE")
                .arg(format!("{ZNODES}/k{key}"))
                .arg(&value)
                .ignore();
        }
        // A node left from an earlier run answers ZNODEEXISTS: fine.
        let _ = pipe.query_async::<Value>(&mut con).await;
    }
    Ok(())
}

/// The registry the heartbeat workload renews.
pub const SERVICE: &str = "bench:svc";

/// Registers the instances the heartbeat workload renews.
pub async fn register_instances(endpoint: &str, instances: u64) -> Result<()> {
    let mut con = connect(endpoint).await?;
    for chunk in (0..instances).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for instance in chunk {
            pipe.cmd("SVC.REGISTER")
                .arg(SERVICE)
                .arg(format!("i{instance}"))
                .arg(format!("10.0.{}.{}:8080", instance / 250, instance % 250))
                .arg("TTL")
                .arg(60_000)
                .ignore();
        }
        pipe.query_async::<()>(&mut con).await?;
    }
    Ok(())
}

/// Grants `count` leases of `ttl_ms`, pipelined.
async fn grant_leases(
    con: &mut MultiplexedConnection,
    count: usize,
    ttl_ms: u64,
) -> Result<Vec<u64>> {
    let mut pipe = redis::pipe();
    for _ in 0..count {
        pipe.cmd("LEASE.GRANT").arg(ttl_ms);
    }
    Ok(pipe.query_async(con).await?)
}

/// `SET name token NX PX ttl`: whether it was granted.
async fn set_nx_px(
    con: &mut MultiplexedConnection,
    name: &str,
    token: &str,
    ttl_ms: u64,
) -> Result<bool> {
    let granted: Option<String> = redis::cmd("SET")
        .arg(name)
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms)
        .query_async(con)
        .await?;
    Ok(granted.is_some())
}

/// ELECT.CAMPAIGN with a wait: the token, or None if the wait ran out.
async fn campaign(
    con: &mut MultiplexedConnection,
    election: &str,
    value: usize,
    lease: Option<u64>,
    wait_ms: u64,
) -> Result<Option<u64>> {
    Ok(redis::cmd("ELECT.CAMPAIGN")
        .arg(election)
        .arg(value)
        .arg(lease)
        .arg("WAIT")
        .arg(wait_ms)
        .query_async(con)
        .await?)
}

/// The `leader` value of an ELECT.OBSERVE reply, and its index.
fn observed(reply: &Value) -> Option<(u64, Option<u64>)> {
    // A map in RESP3, a flat array of pairs in RESP2.
    let fields: Vec<(&Value, &Value)> = match reply {
        Value::Map(fields) => fields.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(items) => items
            .chunks_exact(2)
            .map(|pair| (&pair[0], &pair[1]))
            .collect(),
        _ => return None,
    };
    let mut index = None;
    let mut leader = None;
    for (k, v) in fields {
        let Value::BulkString(k) = k else { continue };
        match (k.as_slice(), v) {
            (b"index", Value::Int(i)) => index = Some(*i as u64),
            (b"leader", Value::BulkString(value)) => {
                leader = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok())
            }
            _ => {}
        }
    }
    Some((index?, leader))
}

/// One client's loop until the pass stops.
pub async fn client_loop(
    mut con: MultiplexedConnection,
    config: Config,
    shared: Arc<Shared>,
) -> ClientReport {
    let mut report = ClientReport::new(shared.workload);
    let release = Script::new(RELEASE);
    let payload = value(config.value_size);
    // A per-client xorshift for which key to read.
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (config.client as u64 + 1);
    let mut n: u64 = 0;
    // Handover and observe: this client's lease, and the writer's token.
    let mut lease: Option<u64> = None;
    let mut token: Option<u64> = None;
    let mut leases: Vec<u64> = Vec::new();
    let mut after: u64 = 0;
    let election = format!("bench:elect:{}:{}", shared.run, shared.pass);
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let started = Instant::now();
        let measured = shared.measuring.load(Ordering::Relaxed);
        let outcome = tokio::time::timeout(config.timeout, async {
            match shared.workload {
                Workload::Handover => {
                    if lease.is_none() {
                        lease = Some(grant_leases(&mut con, 1, 600_000).await?[0]);
                    }
                    let won =
                        campaign(&mut con, &election, config.client, lease, config.wait_ms).await?;
                    let Some(token) = won else {
                        return Err(anyhow!("ELECT.CAMPAIGN wait ran out"));
                    };
                    let handover = shared
                        .resigned_at
                        .lock()
                        .expect("resigned_at")
                        .map(|at| at.elapsed());
                    shared.enter();
                    shared.leave();
                    *shared.resigned_at.lock().expect("resigned_at") = Some(Instant::now());
                    let _: i64 = redis::cmd("ELECT.RESIGN")
                        .arg(&election)
                        .arg(token)
                        .query_async(&mut con)
                        .await?;
                    Ok(handover)
                }
                Workload::Heartbeat => {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let _: i64 = redis::cmd("SVC.HEARTBEAT")
                        .arg(SERVICE)
                        .arg(format!("i{}", state % config.keys.max(1)))
                        .arg("LOAD")
                        .arg(n % 100)
                        .query_async(&mut con)
                        .await?;
                    Ok(None)
                }
                Workload::Keepalive => {
                    if leases.is_empty() {
                        leases =
                            grant_leases(&mut con, config.leases_per_client, config.ttl_ms).await?;
                    }
                    let left: Vec<i64> = redis::cmd("LEASE.KEEPALIVE")
                        .arg(&leases)
                        .query_async(&mut con)
                        .await?;
                    if left.iter().any(|ttl| *ttl <= 0) {
                        return Err(anyhow!("a kept-alive lease was gone"));
                    }
                    Ok(None)
                }
                Workload::Observe if config.client == 0 => {
                    if token.is_none() {
                        let id = grant_leases(&mut con, 1, 600_000).await?[0];
                        token = campaign(&mut con, &election, 0, Some(id), config.wait_ms).await?;
                    }
                    let done: i64 = redis::cmd("ELECT.PROCLAIM")
                        .arg(&election)
                        .arg(token)
                        .arg(n)
                        .query_async(&mut con)
                        .await?;
                    if done != 1 {
                        return Err(anyhow!("the writer no longer leads"));
                    }
                    shared
                        .proclaimed
                        .lock()
                        .expect("proclaimed")
                        .insert(n, Instant::now());
                    Ok(None)
                }
                Workload::Observe => {
                    // A watcher starts from the current state, then waits
                    // for what comes after it.
                    let mut observe = redis::cmd("ELECT.OBSERVE");
                    observe.arg(&election);
                    if after > 0 {
                        observe
                            .arg("AFTER")
                            .arg(after)
                            .arg("WAIT")
                            .arg(config.wait_ms);
                    }
                    let first = after == 0;
                    let reply: Value = observe.query_async(&mut con).await?;
                    let seen = Instant::now();
                    if let Some((index, value)) = observed(&reply) {
                        after = index;
                        if first {
                            if index == 0 {
                                // No transition yet: look again shortly.
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            return Ok(None);
                        }
                        if let (Some(value), true) = (value, config.endpoint != 0) {
                            if shared.measuring.load(Ordering::Relaxed) {
                                report.observed.push((value, seen));
                            }
                        }
                    }
                    Ok(None)
                }
                Workload::ZnodeCreate => {
                    let parent = format!("/bench-{}-{}-{}", shared.run, shared.pass, config.client);
                    if n == 1 {
                        let _: Value = redis::cmd("ZNODE.CREATE")
                            .arg(&parent)
                            .arg("")
                            .query_async(&mut con)
                            .await?;
                    }
                    let _: String = redis::cmd("ZNODE.CREATE")
                        .arg(format!("{parent}/n{n}"))
                        .arg(&payload)
                        .query_async(&mut con)
                        .await?;
                    Ok(None)
                }
                Workload::ZnodeGet | Workload::ZnodeSet => {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let path = format!("{ZNODES}/k{}", state % config.keys.max(1));
                    let mut command = if shared.workload == Workload::ZnodeGet {
                        redis::cmd("ZNODE.GET")
                    } else {
                        redis::cmd("ZNODE.SET")
                    };
                    command.arg(path);
                    if shared.workload == Workload::ZnodeSet {
                        command.arg(&payload);
                    }
                    let reply: Value = command.query_async(&mut con).await?;
                    if let Value::ServerError(err) = reply {
                        return Err(anyhow!("{err:?}"));
                    }
                    Ok(None)
                }
                Workload::ZnodeChildren => {
                    let children: Vec<String> = redis::cmd("ZNODE.CHILDREN")
                        .arg(ZNODE_DIR)
                        .query_async(&mut con)
                        .await?;
                    if children.len() != 10 {
                        return Err(anyhow!("{ZNODE_DIR} has {} children", children.len()));
                    }
                    Ok(None)
                }
                Workload::Fanout | Workload::Catchup => Err(anyhow!("not a closed-loop workload")),
                Workload::ZkGet | Workload::ZkSet | Workload::ZkCreate | Workload::ZkLock => {
                    Err(anyhow!("a ZooKeeper workload needs a ZooKeeper session"))
                }
                Workload::Put => {
                    let key = format!("bench:{}:{}:{}:{n}", shared.run, shared.pass, config.client);
                    redis::cmd("SET")
                        .arg(key)
                        .arg(&payload)
                        .query_async::<()>(&mut con)
                        .await?;
                    Ok(None)
                }
                Workload::Get => {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let key = format!("key:{}", state % config.keys.max(1));
                    redis::cmd("GET")
                        .arg(key)
                        .query_async::<Value>(&mut con)
                        .await?;
                    Ok(None)
                }
                Workload::LockCycle => {
                    let name = format!("lock:{}:{}:{}:{n}", shared.run, shared.pass, config.client);
                    let token = format!("{}-{n}", config.client);
                    if !set_nx_px(&mut con, &name, &token, config.ttl_ms).await? {
                        return Err(anyhow!("a new lock name was not granted"));
                    }
                    let released: i64 = release
                        .key(&name)
                        .arg(&token)
                        .invoke_async(&mut con)
                        .await?;
                    if released != 1 {
                        return Err(anyhow!("release found the lock gone"));
                    }
                    Ok(None)
                }
                Workload::SpinLock => {
                    let name = format!("spin:{}:{}", shared.run, shared.pass);
                    let token = format!("{}-{n}", config.client);
                    loop {
                        if set_nx_px(&mut con, &name, &token, config.ttl_ms).await? {
                            break;
                        }
                        if shared.stop.load(Ordering::Relaxed) {
                            return Ok(None);
                        }
                        tokio::time::sleep(config.retry).await;
                    }
                    let waited = started.elapsed();
                    shared.enter();
                    shared.leave();
                    let _: i64 = release
                        .key(&name)
                        .arg(&token)
                        .invoke_async(&mut con)
                        .await?;
                    Ok(Some(waited))
                }
                Workload::NativeLock => {
                    let name = format!("native:{}:{}", shared.run, shared.pass);
                    let owner = format!("{}-{n}", config.client);
                    let token: Option<i64> = redis::cmd("LOCK.ACQUIRE")
                        .arg(&name)
                        .arg(&owner)
                        .arg(config.ttl_ms)
                        .arg("WAIT")
                        .arg(config.wait_ms)
                        .query_async(&mut con)
                        .await?;
                    if token.is_none() {
                        return Err(anyhow!("LOCK.ACQUIRE wait ran out"));
                    }
                    let waited = started.elapsed();
                    shared.enter();
                    shared.leave();
                    let _: i64 = redis::cmd("LOCK.RELEASE")
                        .arg(&name)
                        .arg(&owner)
                        .query_async(&mut con)
                        .await?;
                    Ok(Some(waited))
                }
            }
        })
        .await;
        let outcome: Result<Option<Duration>> = match outcome {
            Ok(result) => result,
            Err(_) => Err(anyhow!("request timed out")),
        };
        let elapsed = started.elapsed();
        if matches!(shared.workload, Workload::Keepalive)
            || (shared.workload == Workload::Observe && config.client == 0)
        {
            tokio::time::sleep_until((started + config.interval).into()).await;
        }
        if !measured || !shared.measuring.load(Ordering::Relaxed) {
            continue;
        }
        match outcome {
            Ok(waited) => {
                report.ops += 1;
                let _ = report.latency.record((elapsed.as_micros() as u64).max(1));
                if let (Some(wait), Some(waited)) = (report.wait.as_mut(), waited) {
                    let _ = wait.record((waited.as_micros() as u64).max(1));
                }
            }
            Err(err) => report.error(format!("{err:#}")),
        }
    }
    report
}
