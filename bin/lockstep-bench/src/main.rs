//! lockstep-bench: a closed-loop load generator for lockstep (and, for
//! comparison, Redis). Clients are spread over the endpoints, one request
//! in flight each; a pass warms up, then measures for a fixed time and
//! reports operations per second, latency percentiles, errors, a mutual
//! exclusion check for the lock workloads, and the servers' CPU time per
//! operation read from /proc. After a pass it can measure the servers'
//! CPU while idle, which is how growing background work shows.
//!
//! What it must not do: judge correctness beyond the client-side exclusion
//! check (the fault tests and the checker do that).

mod cpu;
mod events;
mod workload;
mod zk;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;

use cpu::Process;
use workload::{ClientReport, Shared, Workload};

/// A closed-loop load generator for lockstep and Redis.
#[derive(Parser, Debug, Clone)]
#[command(name = "lockstep-bench", version)]
struct Args {
    /// Servers to connect to, host:port, comma-separated; clients are
    /// spread over them in turn.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Concurrent clients, each with its own connection and one request
    /// in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, value_enum, default_value_t = Workload::Put)]
    workload: Workload,
    /// Measured seconds per pass.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Unmeasured seconds before each pass's measurement.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Passes of the same workload, one after another.
    #[arg(long, default_value_t = 1)]
    passes: usize,
    /// After each pass: wait this long, then measure idle CPU...
    #[arg(long, default_value_t = 5.0)]
    idle_delay: f64,
    /// ...for this long (0: no idle measurement).
    #[arg(long, default_value_t = 0.0)]
    idle_seconds: f64,
    /// Server processes whose CPU time to report, as name=pid or pid,
    /// comma-separated.
    #[arg(long, value_delimiter = ',')]
    pids: Vec<String>,
    /// Distinct keys the get workload reads (loaded first).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Value size in bytes for put and get.
    #[arg(long, default_value_t = 16)]
    value_size: usize,
    /// Lock TTL in ms.
    #[arg(long, default_value_t = 30_000)]
    ttl_ms: u64,
    /// Spin lock: sleep between failed attempts, in ms.
    #[arg(long, default_value_t = 1)]
    retry_ms: u64,
    /// Native lock: how long LOCK.ACQUIRE may wait, in ms.
    #[arg(long, default_value_t = 30_000)]
    wait_ms: u64,
    /// Keepalive: leases each client keeps alive.
    #[arg(long, default_value_t = 100)]
    leases_per_client: usize,
    /// Keepalive: ms between one client's renewals; observe: between the
    /// writer's changes.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Per-request timeout in ms (a request over it counts as an error).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Fan-out: subscribers, spread over the endpoints.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Catch-up: how many changes the watcher is behind.
    #[arg(long, default_value_t = 100_000)]
    behind: u64,
    /// Catch-up: changes per CHANGES.READ page.
    #[arg(long, default_value_t = 10_000)]
    page: u64,
    /// A name for this run in the output.
    #[arg(long, default_value = "")]
    label: String,
    /// Write the passes as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Serialize, Debug)]
struct Latency {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

#[derive(Serialize, Debug)]
struct ProcessCpu {
    name: String,
    pid: u32,
    /// CPU time per operation during the measured window, microseconds.
    us_per_op: f64,
    /// Share of one core during the measured window.
    busy_core_share: f64,
    /// Share of one core during the idle window after the pass.
    idle_core_share: Option<f64>,
}

#[derive(Serialize, Debug)]
struct Pass {
    label: String,
    workload: String,
    clients: usize,
    pass: usize,
    ops: u64,
    ops_per_sec: f64,
    latency: Latency,
    /// Lock workloads: time from a client's first attempt to holding the
    /// lock.
    wait: Option<Latency>,
    errors: u64,
    first_errors: Vec<String>,
    /// Lock workloads: times a client held a lock another client held.
    exclusion_violations: u64,
    /// All listed processes together, microseconds per operation.
    server_us_per_op: Option<f64>,
    /// Log entries committed per second during the measured window (from
    /// the first endpoint's INFO raft).
    entries_per_sec: Option<f64>,
    processes: Vec<ProcessCpu>,
}

fn latency(histogram: &hdrhistogram::Histogram<u64>) -> Latency {
    let ms = |us: u64| us as f64 / 1000.0;
    Latency {
        p50_ms: ms(histogram.value_at_quantile(0.50)),
        p90_ms: ms(histogram.value_at_quantile(0.90)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        p999_ms: ms(histogram.value_at_quantile(0.999)),
        max_ms: ms(histogram.max()),
    }
}

fn print_pass(pass: &Pass) {
    let l = &pass.latency;
    let mut line = format!(
        "{label}{workload} c={clients} pass {n}: {ops:.0} ops/s  p50 {p50:.2} p90 {p90:.2} p99 {p99:.2} p999 {p999:.2} max {max:.1} ms  errors {errors}",
        label = if pass.label.is_empty() { String::new() } else { format!("{} ", pass.label) },
        workload = pass.workload,
        clients = pass.clients,
        n = pass.pass,
        ops = pass.ops_per_sec,
        p50 = l.p50_ms,
        p90 = l.p90_ms,
        p99 = l.p99_ms,
        p999 = l.p999_ms,
        max = l.max_ms,
        errors = pass.errors,
    );
    if let Some(wait) = &pass.wait {
        line += &format!(
            "  wait p50 {:.1} p99 {:.1} max {:.1} ms",
            wait.p50_ms, wait.p99_ms, wait.max_ms
        );
    }
    if matches!(
        pass.workload.as_str(),
        "lock-cycle" | "spin-lock" | "native-lock" | "handover"
    ) {
        line += &format!("  exclusion violations {}", pass.exclusion_violations);
    }
    if let Some(cpu) = pass.server_us_per_op {
        line += &format!("  server cpu {cpu:.0} us/op");
    }
    if let Some(entries) = pass.entries_per_sec {
        line += &format!("  entries {entries:.1}/s");
    }
    println!("{line}");
    let busy: Vec<String> = pass
        .processes
        .iter()
        .map(|p| format!("{} {:.1}%", p.name, p.busy_core_share * 100.0))
        .collect();
    if !busy.is_empty() {
        println!("  cpu during pass {}: {}", pass.pass, busy.join(", "));
    }
    let idle: Vec<String> = pass
        .processes
        .iter()
        .filter_map(|p| {
            p.idle_core_share
                .map(|share| format!("{} {:.1}%", p.name, share * 100.0))
        })
        .collect();
    if !idle.is_empty() {
        println!("  idle cpu after pass {}: {}", pass.pass, idle.join(", "));
    }
    for error in &pass.first_errors {
        println!("  error: {error}");
    }
}

/// One client's connection: RESP, or a ZooKeeper session.
enum Connection {
    Redis(redis::aio::MultiplexedConnection),
    ZooKeeper(zookeeper_client::Client),
}

async fn run_pass(
    args: &Args,
    pass_number: usize,
    processes: &[Process],
    run_id: u64,
) -> Result<Pass> {
    let shared = Arc::new(Shared::new(args.workload, run_id, pass_number));
    let mut tasks = Vec::with_capacity(args.clients);
    let mut clients = Vec::with_capacity(args.clients);
    for client in 0..args.clients {
        let endpoint = args.endpoints[client % args.endpoints.len()].clone();
        let connection = if args.workload.is_zookeeper() {
            Connection::ZooKeeper(zk::connect(&endpoint).await?)
        } else {
            Connection::Redis(workload::connect(&endpoint).await?)
        };
        let config = workload::Config {
            client,
            endpoint: client % args.endpoints.len(),
            leases_per_client: args.leases_per_client,
            interval: Duration::from_millis(args.interval_ms),
            keys: args.keys,
            value_size: args.value_size,
            ttl_ms: args.ttl_ms,
            retry: Duration::from_millis(args.retry_ms),
            wait_ms: args.wait_ms,
            timeout: Duration::from_millis(args.timeout_ms),
        };
        clients.push((connection, config));
    }
    // Every client connected before any starts, so none begins late.
    for (connection, config) in clients {
        tasks.push(match connection {
            Connection::Redis(con) => {
                tokio::spawn(workload::client_loop(con, config, shared.clone()))
            }
            Connection::ZooKeeper(client) => {
                tokio::spawn(zk::client_loop(client, config, shared.clone()))
            }
        });
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    // A ZooKeeper port answers no INFO.
    let resp = !args.workload.is_zookeeper();
    let index_before = if resp {
        commit_index(&args.endpoints[0]).await
    } else {
        None
    };
    let before: Vec<u64> = processes.iter().map(Process::ticks).collect();
    let started = Instant::now();
    shared.measuring.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    shared.measuring.store(false, Ordering::SeqCst);
    let elapsed = started.elapsed().as_secs_f64();
    let after: Vec<u64> = processes.iter().map(Process::ticks).collect();
    let index_after = if resp {
        commit_index(&args.endpoints[0]).await
    } else {
        None
    };
    shared.stop.store(true, Ordering::SeqCst);
    let mut reports = Vec::with_capacity(tasks.len());
    for task in tasks {
        reports.push(task.await.context("a client task failed")?);
    }
    let merged = ClientReport::merge(reports, &shared);
    let ops = merged.ops;
    let mut process_cpu: Vec<ProcessCpu> = processes
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(process, (b, a))| ProcessCpu {
            name: process.name.clone(),
            pid: process.pid,
            us_per_op: cpu::ticks_to_us(a - b) / ops.max(1) as f64,
            busy_core_share: cpu::ticks_to_us(a - b) / 1e6 / elapsed,
            idle_core_share: None,
        })
        .collect();
    if args.idle_seconds > 0.0 && !processes.is_empty() {
        tokio::time::sleep(Duration::from_secs_f64(args.idle_delay)).await;
        let before: Vec<u64> = processes.iter().map(Process::ticks).collect();
        let window = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(args.idle_seconds)).await;
        let seconds = window.elapsed().as_secs_f64();
        for ((cpu, process), b) in process_cpu.iter_mut().zip(processes).zip(before) {
            let used = cpu::ticks_to_us(process.ticks() - b) / 1e6;
            cpu.idle_core_share = Some(used / seconds);
        }
    }
    Ok(Pass {
        label: args.label.clone(),
        workload: args.workload.name().to_string(),
        clients: args.clients,
        pass: pass_number,
        ops,
        ops_per_sec: ops as f64 / elapsed,
        latency: latency(&merged.latency),
        wait: merged.wait.as_ref().map(latency),
        errors: merged.errors,
        first_errors: merged.first_errors,
        exclusion_violations: shared.violations.load(Ordering::SeqCst),
        server_us_per_op: (!processes.is_empty())
            .then(|| process_cpu.iter().map(|p| p.us_per_op).sum()),
        entries_per_sec: index_before
            .zip(index_after)
            .map(|(b, a)| a.saturating_sub(b) as f64 / elapsed),
        processes: process_cpu,
    })
}

/// A lockstep node's commit index (None for a server without INFO raft).
async fn commit_index(endpoint: &str) -> Option<u64> {
    let mut con = workload::connect(endpoint).await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("raft")
        .query_async(&mut con)
        .await
        .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("raft_commit_index:"))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.clients == 0 || args.endpoints.is_empty() {
        bail!("need at least one client and one endpoint");
    }
    let processes = args
        .pids
        .iter()
        .map(|spec| Process::parse(spec))
        .collect::<Result<Vec<_>>>()?;
    if args.workload == Workload::Get {
        workload::load_keys(&args.endpoints[0], args.keys, args.value_size).await?;
    }
    if args.workload.is_zookeeper() {
        zk::prepare(&args.endpoints[0], args.keys, args.value_size).await?;
    }
    if args.workload == Workload::Heartbeat {
        workload::register_instances(&args.endpoints[0], args.keys).await?;
    }
    if matches!(
        args.workload,
        Workload::ZnodeGet | Workload::ZnodeSet | Workload::ZnodeChildren
    ) {
        workload::load_znodes(&args.endpoints[0], args.keys, args.value_size).await?;
    }
    if args.workload == Workload::Fanout {
        for pass in 1..=args.passes {
            let report = events::fanout(
                &args.endpoints,
                args.subscribers,
                args.clients,
                args.seconds,
            )
            .await?;
            let l = latency(&report.latency);
            println!(
                "{} fanout pass {pass}: {} subscribers, {} writers: {:.0} writes/s, {:.0} events delivered/s; ack -> delivery on another node p50 {:.2} ms p99 {:.2} ms p999 {:.2} ms max {:.2} ms; {} events arrived before their write's ack",
                args.label,
                report.subscribers,
                report.writers,
                report.writes as f64 / report.seconds,
                report.delivered as f64 / report.seconds,
                l.p50_ms,
                l.p99_ms,
                l.p999_ms,
                l.max_ms,
                report.before_ack
            );
        }
        return Ok(());
    }
    if args.workload == Workload::Catchup {
        for pass in 1..=args.passes {
            let report = events::catchup(&args.endpoints, args.behind, args.page).await?;
            println!(
                "{} catchup pass {pass}: {} of {} changes in {} pages in {:.3} s: {:.0} changes/s",
                args.label,
                report.read,
                report.behind,
                report.pages,
                report.seconds,
                report.read as f64 / report.seconds
            );
        }
        return Ok(());
    }
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut passes = Vec::with_capacity(args.passes);
    for pass in 1..=args.passes {
        let result = run_pass(&args, pass, &processes, run_id).await?;
        print_pass(&result);
        passes.push(result);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&passes)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
