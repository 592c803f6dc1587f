//! What this node's front end counts: commands by name with latency
//! histograms, errors by prefix, connections; the readings of the node's
//! status taken when scraped; the slow log; the MONITOR connections. The
//! replication core's own metrics join them in one registry.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lockstep_raft::{NodeHandle, RaftMetrics, Role};
use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::pubsub::{Mailbox, Push};

/// Commands answered by the front end itself (the engine's are in its
/// command table): the only names besides those that label a metric.
const SERVER_COMMANDS: &[&str] = &[
    "quit",
    "ping",
    "echo",
    "select",
    "hello",
    "auth",
    "client",
    "command",
    "info",
    "role",
    "time",
    "readonly",
    "readwrite",
    "config",
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
    "pubsub",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "wait",
    "waitaof",
    "xread",
    "lease.bind",
    "lease.unbind",
    "znode.watch",
    "znode.unwatch",
    "changes.subscribe",
    "changes.unsubscribe",
    "cluster",
    "cluster.members",
    "cluster.add",
    "cluster.promote",
    "cluster.remove",
    "cluster.transfer",
    "cluster.backup",
    "slowlog",
    "latency",
    "monitor",
];

/// The name a command is counted under: its own if lockstep knows it,
/// else `unknown` (a client cannot grow the label set).
pub fn command_label(name: &str) -> &'static str {
    if let Some(spec) = lockstep_engine::lookup(name.as_bytes()) {
        return spec.name;
    }
    SERVER_COMMANDS
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("unknown")
}

/// Distinct error prefixes counted at most; later new ones count as
/// `OTHER` (a script can reply any error text).
const MAX_ERROR_PREFIXES: usize = 64;

/// `lockstep_conditional_writes_total` by outcome.
pub struct ConditionalWrites {
    /// Answered by a linearizable read, without an entry.
    pub read: IntCounter,
    /// Waited for another `SET NX` on its key in flight from this node.
    pub waited: IntCounter,
    /// Written to the log.
    pub logged: IntCounter,
}

/// The front end's metrics and the registry every metric of the node is
/// in.
pub struct ServerMetrics {
    pub registry: Registry,
    commands: IntCounterVec,
    command_failures: IntCounterVec,
    command_seconds: HistogramVec,
    errors: IntCounterVec,
    error_prefixes: Mutex<Vec<String>>,
    /// Whether an error was counted as OTHER.
    other_errors: std::sync::atomic::AtomicBool,
    pub connections_total: IntCounter,
    pub connections_rejected: IntCounter,
    /// Conditional writes that may change nothing (SET NX, DELIFEQ, ...),
    /// by what became of them; resolved once, they are counted per write.
    pub conditional_writes: ConditionalWrites,
    gauges: IntGaugeVec,
    role: IntGaugeVec,
    store_bytes: IntGaugeVec,
}

impl ServerMetrics {
    pub fn new(raft: &RaftMetrics) -> Arc<ServerMetrics> {
        let registry = Registry::new();
        let commands = IntCounterVec::new(
            Opts::new(
                "lockstep_commands_total",
                "Commands this node ran, by name.",
            ),
            &["command"],
        )
        .expect("valid metric");
        let command_failures = IntCounterVec::new(
            Opts::new(
                "lockstep_command_failures_total",
                "Commands answered with an error, by name.",
            ),
            &["command"],
        )
        .expect("valid metric");
        let command_seconds = HistogramVec::new(
            HistogramOpts::new(
                "lockstep_command_duration_seconds",
                "Time from a command's arrival to its reply, by name.",
            )
            .buckets(exponential_buckets(25e-6, 2.0, 18).expect("buckets")),
            &["command"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "lockstep_errors_total",
                "Error replies by prefix (ERR, WRONGTYPE, TRYAGAIN, ...).",
            ),
            &["prefix"],
        )
        .expect("valid metric");
        let connections_total = IntCounter::new(
            "lockstep_client_connections_total",
            "Client connections accepted.",
        )
        .expect("valid metric");
        let connections_rejected = IntCounter::new(
            "lockstep_client_connections_rejected_total",
            "Client connections refused (too many, protected mode).",
        )
        .expect("valid metric");
        let conditional_writes = IntCounterVec::new(
            Opts::new(
                "lockstep_conditional_writes_total",
                "Conditional writes that may change nothing: answered by a read, \
                 waited for another attempt on their key, or written to the log.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let gauges = IntGaugeVec::new(
            Opts::new(
                "lockstep_node",
                "Readings of this node's state, by name (see the README's metrics table).",
            ),
            &["reading"],
        )
        .expect("valid metric");
        let role = IntGaugeVec::new(
            Opts::new("lockstep_raft_role", "1 for this node's raft role."),
            &["role"],
        )
        .expect("valid metric");
        let store_bytes = IntGaugeVec::new(
            Opts::new(
                "lockstep_store_bytes",
                "RocksDB sizes by column family and property.",
            ),
            &["family", "property"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(commands.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(command_failures.clone()),
            Box::new(command_seconds.clone()),
            Box::new(errors.clone()),
            Box::new(connections_total.clone()),
            Box::new(connections_rejected.clone()),
            Box::new(conditional_writes.clone()),
            Box::new(gauges.clone()),
            Box::new(role.clone()),
            Box::new(store_bytes.clone()),
        ] {
            registry.register(metric).expect("metric registered once");
        }
        raft.register(&registry)
            .expect("raft metrics registered once");
        // The common prefix shows (at 0) before the first error.
        errors.with_label_values(&["ERR"]);
        Arc::new(ServerMetrics {
            registry,
            commands,
            command_failures,
            command_seconds,
            errors,
            error_prefixes: Mutex::new(Vec::new()),
            other_errors: Default::default(),
            connections_total,
            connections_rejected,
            conditional_writes: ConditionalWrites {
                read: conditional_writes.with_label_values(&["read"]),
                waited: conditional_writes.with_label_values(&["waited"]),
                logged: conditional_writes.with_label_values(&["logged"]),
            },
            gauges,
            role,
            store_bytes,
        })
    }

    /// Counts one command and its reply.
    pub fn observe(&self, label: &str, elapsed: Duration, error: Option<&str>) {
        self.commands.with_label_values(&[label]).inc();
        self.command_seconds
            .with_label_values(&[label])
            .observe(elapsed.as_secs_f64());
        if let Some(message) = error {
            self.command_failures.with_label_values(&[label]).inc();
            let prefix = self.error_prefix(message);
            if prefix == "OTHER" {
                self.other_errors.store(true, Ordering::Relaxed);
            }
            self.errors.with_label_values(&[&prefix]).inc();
        }
    }

    fn error_prefix(&self, message: &str) -> String {
        let word = message.split(' ').next().unwrap_or("");
        let valid = !word.is_empty()
            && word.len() <= 32
            && word
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return "OTHER".into();
        }
        let mut known = self.error_prefixes.lock().expect("error prefixes");
        if known.iter().any(|seen| seen == word) {
            return word.to_string();
        }
        if known.len() < MAX_ERROR_PREFIXES {
            known.push(word.to_string());
            return word.to_string();
        }
        "OTHER".into()
    }

    /// Per command: (name, calls, total microseconds, failed calls), for
    /// INFO commandstats.
    pub fn command_stats(&self) -> Vec<(String, u64, u64, u64)> {
        let mut out = Vec::new();
        for family in self.registry.gather() {
            if family.get_name() != "lockstep_command_duration_seconds" {
                continue;
            }
            for metric in family.get_metric() {
                let Some(label) = metric.get_label().first() else {
                    continue;
                };
                let histogram = metric.get_histogram();
                let name = label.get_value().to_string();
                let failed = self.command_failures.with_label_values(&[&name]).get();
                out.push((
                    name,
                    histogram.get_sample_count(),
                    (histogram.get_sample_sum() * 1e6) as u64,
                    failed,
                ));
            }
        }
        out.sort();
        out
    }

    /// Error replies by prefix, for INFO errorstats.
    pub fn error_stats(&self) -> Vec<(String, u64)> {
        let known = self.error_prefixes.lock().expect("error prefixes").clone();
        let other = self
            .other_errors
            .load(Ordering::Relaxed)
            .then(|| "OTHER".to_string());
        let mut out: Vec<(String, u64)> = known
            .into_iter()
            .chain(other)
            .map(|prefix| {
                let count = self.errors.with_label_values(&[&prefix]).get();
                (prefix, count)
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        out.sort();
        out
    }

    /// Takes the readings of the node's state and renders every metric in
    /// Prometheus's text format.
    pub fn render(&self, readings: &Readings) -> String {
        for (name, value) in &readings.values {
            self.gauges.with_label_values(&[name]).set(*value);
        }
        for role in ["leader", "follower", "candidate", "learner"] {
            self.role
                .with_label_values(&[role])
                .set(i64::from(role == readings.role));
        }
        for (family, property, value) in &readings.store {
            self.store_bytes
                .with_label_values(&[family, property])
                .set(*value as i64);
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics");
        String::from_utf8(out).expect("text format is UTF-8")
    }
}

/// What a scrape reads from the node.
pub struct Readings {
    pub role: &'static str,
    pub values: Vec<(&'static str, i64)>,
    pub store: Vec<(String, String, u64)>,
}

impl Readings {
    pub fn of(node: &NodeHandle, connected: usize, store: Vec<(String, String, u64)>) -> Readings {
        let status = node.status();
        let role = match status.role {
            Role::Leader => "leader",
            Role::Candidate | Role::PreCandidate => "candidate",
            Role::Follower if status.learners.contains(&status.id) => "learner",
            Role::Follower => "follower",
        };
        let values = vec![
            ("term", status.term as i64),
            ("leader_id", status.leader_id as i64),
            ("has_leader", i64::from(status.leader_id != 0)),
            ("commit_index", status.commit_index as i64),
            ("applied_index", status.applied_index as i64),
            ("first_index", status.first_index as i64),
            ("last_index", status.last_index as i64),
            ("cluster_time_ms", status.cluster_time_ms as i64),
            ("voters", status.voters.len() as i64),
            ("learners", status.learners.len() as i64),
            ("removed", i64::from(status.removed)),
            ("pending_requests", status.pending_requests as i64),
            ("parked_waiters", status.parked_requests as i64),
            ("expiry_deadlines", status.deadlines as i64),
            ("leases", status.leases as i64),
            ("locks", status.locks as i64),
            ("client_connections", connected as i64),
        ];
        Readings {
            role,
            values,
            store,
        }
    }
}

/// Samples of one latency event a node keeps (Redis keeps 160).
const LATENCY_SAMPLES: usize = 160;

/// Redis's latency monitor: for each event (`command`: a command that is
/// not a blocking wait), the latest spikes at or above the threshold, one
/// sample per second (the largest), and the all-time maximum.
#[derive(Default)]
pub struct LatencyMonitor {
    /// Record spikes of at least this many milliseconds (0: off, as Redis).
    pub threshold_ms: AtomicU64,
    events: Mutex<BTreeMap<&'static str, LatencySeries>>,
}

#[derive(Clone, Default)]
pub struct LatencySeries {
    /// (unix seconds, milliseconds), oldest first.
    pub samples: VecDeque<(u64, u64)>,
    pub max_ms: u64,
}

impl LatencyMonitor {
    pub fn record(&self, event: &'static str, elapsed: Duration) {
        let threshold = self.threshold_ms.load(Ordering::Relaxed);
        let ms = elapsed.as_millis() as u64;
        if threshold == 0 || ms < threshold {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut events = self.events.lock().expect("latency events");
        let series = events.entry(event).or_default();
        series.max_ms = series.max_ms.max(ms);
        match series.samples.back_mut() {
            Some((at, worst)) if *at == now => *worst = (*worst).max(ms),
            _ => {
                series.samples.push_back((now, ms));
                if series.samples.len() > LATENCY_SAMPLES {
                    series.samples.pop_front();
                }
            }
        }
    }

    /// Every event with samples, by name.
    pub fn events(&self) -> Vec<(&'static str, LatencySeries)> {
        let events = self.events.lock().expect("latency events");
        events
            .iter()
            .map(|(name, series)| (*name, series.clone()))
            .collect()
    }

    pub fn history(&self, event: &str) -> Vec<(u64, u64)> {
        let events = self.events.lock().expect("latency events");
        events
            .get(event)
            .map(|series| series.samples.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Forgets the named events (all if none): how many had samples.
    pub fn reset(&self, names: &[String]) -> usize {
        let mut events = self.events.lock().expect("latency events");
        if names.is_empty() {
            let count = events.len();
            events.clear();
            return count;
        }
        names
            .iter()
            .filter(|name| events.remove(name.as_str()).is_some())
            .count()
    }
}

/// Redis's slow log: the slowest recent commands on this node.
pub struct SlowLog {
    /// Log commands slower than this many microseconds (negative: off).
    pub slower_than_us: AtomicI64,
    pub max_len: AtomicUsize,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<SlowEntry>>,
}

#[derive(Clone)]
pub struct SlowEntry {
    pub id: u64,
    pub at_unix_secs: u64,
    pub micros: u64,
    pub argv: Vec<Bytes>,
    pub client: String,
    pub name: String,
}

/// Arguments and bytes per argument a slow log entry keeps, as Redis.
const SLOWLOG_MAX_ARGS: usize = 32;
const SLOWLOG_MAX_ARG_BYTES: usize = 128;

impl Default for SlowLog {
    fn default() -> Self {
        SlowLog {
            slower_than_us: AtomicI64::new(10_000),
            max_len: AtomicUsize::new(128),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
        }
    }
}

impl SlowLog {
    /// Whether a command that took `elapsed` is logged.
    pub fn wants(&self, elapsed: Duration) -> bool {
        let threshold = self.slower_than_us.load(Ordering::Relaxed);
        threshold >= 0 && elapsed.as_micros() as i64 >= threshold
    }

    pub fn record(&self, argv: &[Bytes], elapsed: Duration, client: String, name: String) {
        let mut kept: Vec<Bytes> = argv
            .iter()
            .take(if argv.len() > SLOWLOG_MAX_ARGS {
                SLOWLOG_MAX_ARGS - 1
            } else {
                SLOWLOG_MAX_ARGS
            })
            .map(|arg| {
                if arg.len() > SLOWLOG_MAX_ARG_BYTES {
                    let mut cut = arg[..SLOWLOG_MAX_ARG_BYTES].to_vec();
                    cut.extend_from_slice(
                        format!("... ({} more bytes)", arg.len() - SLOWLOG_MAX_ARG_BYTES)
                            .as_bytes(),
                    );
                    Bytes::from(cut)
                } else {
                    arg.clone()
                }
            })
            .collect();
        if argv.len() > SLOWLOG_MAX_ARGS {
            kept.push(Bytes::from(format!(
                "... ({} more arguments)",
                argv.len() - SLOWLOG_MAX_ARGS + 1
            )));
        }
        let entry = SlowEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            at_unix_secs: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            micros: elapsed.as_micros() as u64,
            argv: kept,
            client,
            name,
        };
        let max = self.max_len.load(Ordering::Relaxed);
        let mut entries = self.entries.lock().expect("slow log");
        entries.push_front(entry);
        entries.truncate(max);
    }

    /// The newest `count` entries (all if None).
    pub fn newest(&self, count: Option<usize>) -> Vec<SlowEntry> {
        let entries = self.entries.lock().expect("slow log");
        entries
            .iter()
            .take(count.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("slow log").len()
    }

    pub fn reset(&self) {
        self.entries.lock().expect("slow log").clear();
    }

    /// Applies a new maximum length at once.
    pub fn set_max_len(&self, max: usize) {
        self.max_len.store(max, Ordering::Relaxed);
        self.entries.lock().expect("slow log").truncate(max);
    }
}

/// Connections that ran MONITOR: every command this node receives is
/// posted to them, formatted as Redis does.
#[derive(Default)]
pub struct Monitors {
    count: AtomicUsize,
    mailboxes: Mutex<Vec<(u64, Mailbox)>>,
}

impl Monitors {
    pub fn add(&self, id: u64, mailbox: Mailbox) {
        let mut mailboxes = self.mailboxes.lock().expect("monitors");
        if !mailboxes.iter().any(|(known, _)| *known == id) {
            mailboxes.push((id, mailbox));
            self.count.store(mailboxes.len(), Ordering::Release);
        }
    }

    pub fn remove(&self, id: u64) {
        let mut mailboxes = self.mailboxes.lock().expect("monitors");
        mailboxes.retain(|(known, _)| *known != id);
        self.count.store(mailboxes.len(), Ordering::Release);
    }

    /// Whether anyone monitors (checked before formatting anything).
    pub fn active(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// Posts `argv` as sent by `client` (not to the sender itself).
    pub fn post(&self, from: u64, client: &str, argv: &[Bytes]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = format!("{}.{:06} [0 {client}]", now.as_secs(), now.subsec_micros());
        for arg in argv {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        let mailboxes = self.mailboxes.lock().expect("monitors");
        for (id, mailbox) in mailboxes.iter() {
            if *id != from {
                mailbox.post(Push::new(0, lockstep_engine::Reply::Status(line.clone())));
            }
        }
    }
}

/// An argument as Redis's MONITOR prints it: in double quotes, with
/// escapes for quotes, backslashes and unprintable bytes.
fn quote(arg: &[u8]) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for &byte in arg {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(command_label("set"), "set");
        assert_eq!(command_label("cluster.members"), "cluster.members");
        assert_eq!(command_label("no-such-command-at-all"), "unknown");
        let metrics = ServerMetrics::new(&RaftMetrics::default());
        for n in 0..200 {
            metrics.observe("set", Duration::from_micros(5), Some(&format!("E{n} x")));
        }
        metrics.observe("set", Duration::from_micros(5), Some("lower case error"));
        let stats = metrics.error_stats();
        assert_eq!(stats.len(), MAX_ERROR_PREFIXES + 1, "{stats:?}");
        let other = stats.iter().find(|(p, _)| p == "OTHER").unwrap().1;
        assert_eq!(other, 200 - MAX_ERROR_PREFIXES as u64 + 1);
    }

    #[test]
    fn slow_log_keeps_the_newest_and_cuts_long_commands() {
        let log = SlowLog::default();
        log.set_max_len(2);
        let long: Vec<Bytes> = (0..40)
            .map(|n| Bytes::from(vec![b'a' + (n % 26) as u8; 200]))
            .collect();
        for _ in 0..3 {
            log.record(&long, Duration::from_millis(20), "c".into(), String::new());
        }
        let entries = log.newest(None);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].id, 2);
        assert_eq!(entries[0].argv.len(), 32);
        assert!(entries[0].argv[31].starts_with(b"... (9 more arguments)"));
        assert!(entries[0].argv[0].ends_with(b"... (72 more bytes)"));
        assert!(log.wants(Duration::from_millis(10)));
        assert!(!log.wants(Duration::from_millis(9)));
    }

    #[test]
    fn monitor_lines_quote_as_redis() {
        assert_eq!(quote(b"set"), "\"set\"");
        assert_eq!(quote(b"a\"b\\\n\x01"), "\"a\\\"b\\\\\\n\\x01\"");
    }
}
