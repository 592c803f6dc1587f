//! The workloads: what one closed-loop client does, over and over.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
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
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::LockCycle => "lock-cycle",
            Workload::SpinLock => "spin-lock",
            Workload::NativeLock => "native-lock",
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
    /// Lock workloads: microseconds from the first attempt to holding.
    pub wait: Option<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

impl ClientReport {
    fn new(workload: Workload) -> Self {
        ClientReport {
            ops: 0,
            errors: 0,
            first_errors: Vec::new(),
            latency: histogram(),
            wait: matches!(workload, Workload::SpinLock | Workload::NativeLock).then(histogram),
        }
    }

    fn error(&mut self, error: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_errors.len() < KEPT_ERRORS {
            self.first_errors.push(error.to_string());
        }
    }

    pub fn merge(reports: Vec<ClientReport>) -> ClientReport {
        let mut reports = reports.into_iter();
        let mut total = reports.next().expect("one client at least");
        for report in reports {
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
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let started = Instant::now();
        let measured = shared.measuring.load(Ordering::Relaxed);
        let outcome = tokio::time::timeout(config.timeout, async {
            match shared.workload {
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
                    let granted: Option<String> = redis::cmd("SET")
                        .arg(&name)
                        .arg(&token)
                        .arg("NX")
                        .arg("PX")
                        .arg(config.ttl_ms)
                        .query_async(&mut con)
                        .await?;
                    if granted.is_none() {
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
                        let granted: Option<String> = redis::cmd("SET")
                            .arg(&name)
                            .arg(&token)
                            .arg("NX")
                            .arg("PX")
                            .arg(config.ttl_ms)
                            .query_async(&mut con)
                            .await?;
                        if granted.is_some() {
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
        if !measured || !shared.measuring.load(Ordering::Relaxed) {
            continue;
        }
        match outcome {
            Ok(waited) => {
                report.ops += 1;
                let _ = report
                    .latency
                    .record((started.elapsed().as_micros() as u64).max(1));
                if let (Some(wait), Some(waited)) = (report.wait.as_mut(), waited) {
                    let _ = wait.record((waited.as_micros() as u64).max(1));
                }
            }
            Err(err) => report.error(format!("{err:#}")),
        }
    }
    report
}
