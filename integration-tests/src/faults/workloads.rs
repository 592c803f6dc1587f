//! What clients do while the nemesis works, and what they record.
//!
//! - register: GET / SET / SET IFEQ / SET NX / DELIFEQ on a few keys; the
//!   keys change every few seconds so each key's history stays small
//!   enough to check exhaustively.
//! - lock: SET NX PX + FENCE in one MULTI, a write to a fenced resource,
//!   then the Lua compare-and-delete release, as lock libraries do.
//! - queue: RPUSH and LPOP of unique items on one list.
//! - election: grant a lease, campaign, and while leading renew the lease,
//!   write with the token (ELECT.PROCLAIM, which only the current leader
//!   may do) and now and then resign. A leader acts only until the send
//!   time of its last acknowledged renewal plus the lease TTL: after that
//!   the cluster may already have made another leader.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockstep_check::fencing::Grant;
use lockstep_check::leadership::{FencedWrite, Leadership};
use lockstep_check::queue::QueueHistory;
use lockstep_check::register::{Command, Reply};
use lockstep_check::Operation;
use rand::Rng;

use super::client::{Clock, Failure};
use super::Client;

pub type RegisterOp = Operation<Command, Reply>;

/// The compare-and-delete release every Lua-based lock client sends.
pub const RELEASE_SCRIPT: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// The election every election client campaigns in.
pub const ELECTION: &str = "faults:election";
/// The candidates' lease TTL: shorter than a pause, so a paused leader's
/// node or a partition ends leaderships by expiry.
pub const ELECTION_LEASE_TTL_MS: u64 = 2000;
/// How long one campaign waits before the candidate renews and retries.
const CAMPAIGN_WAIT_MS: u64 = 700;

/// The lock's TTL: shorter than a pause, so pauses test expiry too.
pub const LOCK_TTL_MS: u64 = 1500;

const REGISTER_KEYS: u64 = 4;
const REGISTER_KEY_PERIOD: Duration = Duration::from_secs(2);
const LOCK_KEY_PERIOD: Duration = Duration::from_secs(5);

/// Everything the clients saw.
#[derive(Default)]
pub struct Histories {
    /// (key, operation) for register keys and lock keys alike.
    pub registers: Vec<(String, RegisterOp)>,
    /// Successful lock grants with their fencing tokens, by lock key.
    pub grants: Vec<(String, Grant)>,
    pub queue: QueueHistory,
    pub unknown_pops: usize,
    pub fenced: FencedResource,
    /// Leaderships as their clients lived them, and their campaigns as
    /// grants (for the token checks).
    pub leaderships: Vec<Leadership>,
    pub campaigns: Vec<Grant>,
    /// ELECT.PROCLAIM writes with a leadership's token: accepted ones, and
    /// how many were refused (the token no longer led).
    pub proclaims: Vec<FencedWrite>,
    pub proclaims_refused: u64,
    /// ZooKeeper-protocol recipes: each hold of a lock or election parent
    /// as its client lived it, and every sequential name created.
    pub zk_holds: Vec<(String, super::zk_workloads::Hold)>,
    pub zk_sequential: Vec<(String, i64)>,
    pub zk_ephemerals: Vec<super::zk_workloads::Ephemeral>,
    /// Operations by outcome: ok, failed before sending or refused with
    /// -CLUSTERDOWN (no effect), unknown.
    pub ok: u64,
    pub not_sent: u64,
    pub unknown: u64,
}

/// A resource that accepts a write only with a token at least as large as
/// every token it accepted before: what fencing protects.
#[derive(Default, Clone)]
pub struct FencedResource {
    pub highest: u64,
    pub accepted: Vec<u64>,
    pub rejected: u64,
}

impl FencedResource {
    fn write(&mut self, token: u64) {
        if token >= self.highest {
            self.highest = token;
            self.accepted.push(token);
        } else {
            self.rejected += 1;
        }
    }
}

/// State shared by every worker of a run.
pub struct Shared {
    pub clock: Clock,
    pub stop: AtomicBool,
    pub next_value: AtomicU64,
    pub release_sha: String,
    /// Negative control: acquire without NX (every "acquire" succeeds).
    pub locks_without_nx: bool,
    /// Negative control: leaders stall past their lease and act on.
    pub leaders_ignore_leases: bool,
    /// Negative control: ZooKeeper lock takers do not wait their turn.
    pub zk_locks_skip_queue: bool,
    pub histories: Mutex<Histories>,
}

impl Shared {
    pub(super) fn note_hold(&self, parent: &str, hold: super::zk_workloads::Hold) {
        self.histories
            .lock()
            .expect("histories")
            .zk_holds
            .push((parent.to_string(), hold));
    }

    pub(super) fn note_ephemeral(&self, fate: super::zk_workloads::Ephemeral) {
        self.histories
            .lock()
            .expect("histories")
            .zk_ephemerals
            .push(fate);
    }

    pub(super) fn note_sequential(&self, path: String, sequence: i64) {
        self.histories
            .lock()
            .expect("histories")
            .zk_sequential
            .push((path, sequence));
    }

    pub(super) fn value(&self) -> u64 {
        self.next_value.fetch_add(1, Ordering::SeqCst)
    }

    pub(super) fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }

    pub(super) fn tally<T>(&self, result: &Result<T, Failure>) {
        let mut histories = self.histories.lock().expect("histories");
        match result {
            Ok(_) => histories.ok += 1,
            Err(Failure::NotSent | Failure::Refused) => histories.not_sent += 1,
            Err(Failure::Unknown(_)) => histories.unknown += 1,
        }
    }

    pub(super) fn record(&self, key: String, op: RegisterOp) {
        self.histories
            .lock()
            .expect("histories")
            .registers
            .push((key, op));
    }
}

fn finish(
    shared: &Shared,
    client: &Client,
    key: String,
    call: u64,
    command: Command,
    result: Result<Reply, Failure>,
) {
    shared.tally(&result);
    let op = match result {
        Ok(reply) => Operation::returned(client.id, call, shared.clock.now(), command, reply),
        Err(Failure::NotSent | Failure::Refused) => return,
        Err(Failure::Unknown(_)) => Operation::unknown(client.id, call, command),
    };
    shared.record(key, op);
}

fn parse_value(text: Option<String>) -> Option<u64> {
    // Keys only ever hold numbers this workload wrote.
    text.map(|text| text.parse().unwrap_or(u64::MAX))
}

pub fn register_worker(shared: Arc<Shared>, mut client: Client) {
    let mut last_seen: Option<u64> = None;
    while shared.running() {
        let generation = shared.clock.elapsed().as_nanos() / REGISTER_KEY_PERIOD.as_nanos();
        let key = format!(
            "reg:{generation}:{}",
            client.rng.gen_range(0..REGISTER_KEYS)
        );
        let value = shared.value();
        let expected = last_seen.unwrap_or(value.saturating_sub(1));
        let roll = client.rng.gen_range(0..100);
        let call = shared.clock.now();
        let (command, result) = match roll {
            0..=39 => {
                let result = client
                    .query(|c| redis::cmd("GET").arg(&key).query::<Option<String>>(c))
                    .map(parse_value);
                if let Ok(Some(seen)) = result {
                    last_seen = Some(seen);
                }
                let result = result.map(Reply::Value);
                // A read with no reply tells nothing: leave it out.
                if result.is_err() {
                    shared.tally(&result);
                    continue;
                }
                (Command::Read, result)
            }
            40..=64 => {
                // Some writes expire, so reads also meet expiry.
                let ttl_ms = client
                    .rng
                    .gen_bool(0.2)
                    .then(|| client.rng.gen_range(200..2000));
                let result = client
                    .query(|c| {
                        let mut set = redis::cmd("SET");
                        set.arg(&key).arg(value);
                        if let Some(ttl) = ttl_ms {
                            set.arg("PX").arg(ttl);
                        }
                        set.query::<String>(c)
                    })
                    .map(|_| Reply::Done(true));
                (Command::Write { value, ttl_ms }, result)
            }
            65..=79 => (
                Command::CompareAndSet { expected, value },
                client
                    .query(|c| {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(value)
                            .arg("IFEQ")
                            .arg(expected)
                            .query::<Option<String>>(c)
                    })
                    .map(|ok| Reply::Done(ok.is_some())),
            ),
            80..=89 => (
                Command::SetIfAbsent {
                    value,
                    ttl_ms: None,
                },
                client
                    .query(|c| {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(value)
                            .arg("NX")
                            .query::<Option<String>>(c)
                    })
                    .map(|ok| Reply::Done(ok.is_some())),
            ),
            _ => (
                Command::CompareAndDelete { expected },
                client
                    .query(|c| {
                        redis::cmd("DELIFEQ")
                            .arg(&key)
                            .arg(expected)
                            .query::<i64>(c)
                    })
                    .map(|deleted| Reply::Done(deleted == 1)),
            ),
        };
        finish(&shared, &client, key, call, command, result);
    }
}

pub fn lock_worker(shared: Arc<Shared>, mut client: Client) {
    while shared.running() {
        let generation = shared.clock.elapsed().as_nanos() / LOCK_KEY_PERIOD.as_nanos();
        let key = format!("lock:{generation}");
        let value = shared.value();
        let command = Command::SetIfAbsent {
            value,
            ttl_ms: Some(LOCK_TTL_MS),
        };
        let call = shared.clock.now();
        let acquired = client.query(|c| {
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("SET").arg(&key).arg(value);
            if !shared.locks_without_nx {
                pipe.arg("NX");
            }
            pipe.arg("PX")
                .arg(LOCK_TTL_MS)
                .cmd("FENCE")
                .arg(&key)
                .query::<(Option<String>, Option<u64>)>(c)
        });
        let ret = shared.clock.now();
        let granted = match &acquired {
            Ok((Some(_), Some(token))) => {
                let mut histories = shared.histories.lock().expect("histories");
                histories.grants.push((
                    key.clone(),
                    Grant {
                        client: client.id,
                        call,
                        ret,
                        token: *token,
                    },
                ));
                histories.fenced.write(*token);
                true
            }
            _ => false,
        };
        let unknown = matches!(acquired, Err(Failure::Unknown(_)));
        finish(
            &shared,
            &client,
            key.clone(),
            call,
            command,
            acquired.map(|(ok, _)| Reply::Done(ok.is_some())),
        );
        if !granted && !unknown {
            client.pause(10..60);
            continue;
        }
        if granted {
            client.pause(0..50);
        }
        // Release, also after an unknown acquire: it may have succeeded.
        let call = shared.clock.now();
        let sha = shared.release_sha.clone();
        let released = client
            .query(|c| {
                redis::cmd("EVALSHA")
                    .arg(&sha)
                    .arg(1)
                    .arg(&key)
                    .arg(value)
                    .query::<i64>(c)
            })
            .map(|deleted| Reply::Done(deleted == 1));
        finish(
            &shared,
            &client,
            key,
            call,
            Command::CompareAndDelete { expected: value },
            released,
        );
    }
}

pub fn queue_worker(shared: Arc<Shared>, mut client: Client, producer: bool) {
    while shared.running() {
        if producer {
            let item = shared.value();
            let pushed =
                client.query(|c| redis::cmd("RPUSH").arg("queue").arg(item).query::<i64>(c));
            shared.tally(&pushed);
            let mut histories = shared.histories.lock().expect("histories");
            match pushed {
                Ok(_) => {
                    histories.queue.acknowledged.insert(item);
                }
                Err(Failure::Unknown(_)) => {
                    histories.queue.unknown.insert(item);
                }
                Err(Failure::NotSent | Failure::Refused) => {}
            }
            drop(histories);
            client.pause(0..5);
        } else {
            let popped =
                client.query(|c| redis::cmd("LPOP").arg("queue").query::<Option<String>>(c));
            shared.tally(&popped);
            let mut histories = shared.histories.lock().expect("histories");
            match popped {
                Ok(Some(item)) => histories
                    .queue
                    .delivered
                    .push(item.parse().unwrap_or(u64::MAX)),
                Ok(None) => {}
                Err(Failure::Unknown(_)) => histories.unknown_pops += 1,
                Err(Failure::NotSent | Failure::Refused) => {}
            }
            drop(histories);
            client.pause(0..5);
        }
    }
}

pub fn election_worker(shared: Arc<Shared>, mut client: Client) {
    let ttl_ns = ELECTION_LEASE_TTL_MS * 1_000_000;
    while shared.running() {
        let call = shared.clock.now();
        let granted = client.query(|c| {
            redis::cmd("LEASE.GRANT")
                .arg(ELECTION_LEASE_TTL_MS)
                .query::<u64>(c)
        });
        shared.tally(&granted);
        let Ok(lease) = granted else {
            client.pause(10..60);
            continue;
        };
        let mut valid_until = call + ttl_ns;
        while shared.running() {
            let call = shared.clock.now();
            let id = client.id;
            let campaign = client.query(|c| {
                redis::cmd("ELECT.CAMPAIGN")
                    .arg(ELECTION)
                    .arg(id)
                    .arg(lease)
                    .arg("WAIT")
                    .arg(CAMPAIGN_WAIT_MS)
                    .query::<Option<u64>>(c)
            });
            let ret = shared.clock.now();
            shared.tally(&campaign);
            match campaign {
                Ok(Some(token)) => {
                    shared
                        .histories
                        .lock()
                        .expect("histories")
                        .campaigns
                        .push(Grant {
                            client: client.id,
                            call,
                            ret,
                            token,
                        });
                    lead(&shared, &mut client, lease, token, ret, valid_until);
                    break;
                }
                // Not leader within the wait (the candidacy left the
                // queue): renew and campaign again.
                Ok(None) => match renew(&shared, &mut client, lease) {
                    Some(at) => valid_until = at + ttl_ns,
                    None => break,
                },
                // Perhaps a candidate, perhaps even leader, unknown: this
                // lease is given up, and whatever it holds ends with it.
                Err(_) => break,
            }
            if shared.clock.now() >= valid_until {
                break;
            }
        }
    }
}

/// One leadership, from `start` until its client must stop acting.
fn lead(
    shared: &Shared,
    client: &mut Client,
    lease: u64,
    token: u64,
    start: u64,
    mut valid_until: u64,
) {
    let ttl_ns = ELECTION_LEASE_TTL_MS * 1_000_000;
    let end = loop {
        let now = shared.clock.now();
        if !shared.running() {
            break valid_until.min(now);
        }
        if shared.leaders_ignore_leases {
            // A stall longer than the lease (a GC pause, a swapped-out
            // process), after which this leader acts on regardless.
            if client.rng.gen_range(0..4) == 0 {
                std::thread::sleep(Duration::from_millis(ELECTION_LEASE_TTL_MS + 1000));
            }
            valid_until = u64::MAX;
        } else if now >= valid_until {
            break valid_until.min(now);
        }
        if proclaim(shared, client, token) == Some(false) {
            // Deposed: it learned so by now.
            break valid_until.min(shared.clock.now());
        }
        client.pause(20..150);
        if client.rng.gen_range(0..12) == 0 {
            // Stops acting as leader when it sends the resignation.
            let call = shared.clock.now();
            let resigned = client.query(|c| {
                redis::cmd("ELECT.RESIGN")
                    .arg(ELECTION)
                    .arg(token)
                    .query::<i64>(c)
            });
            shared.tally(&resigned);
            break valid_until.min(call);
        }
        match renew(shared, client, lease) {
            Some(at) => valid_until = valid_until.max(at + ttl_ns),
            None if shared.clock.now() < valid_until => {
                // The lease is gone (or unknown): stop now.
                break valid_until.min(shared.clock.now());
            }
            None => {}
        }
    };
    shared
        .histories
        .lock()
        .expect("histories")
        .leaderships
        .push(Leadership {
            client: client.id,
            token,
            start,
            end,
        });
    // A late write with the old token, as from a leader that stalled past
    // its lease: the service must refuse it once another leader began.
    proclaim(shared, client, token);
}

/// ELECT.PROCLAIM with `token`, recorded as an accepted or refused write.
/// True if accepted; None if the outcome is unknown.
fn proclaim(shared: &Shared, client: &mut Client, token: u64) -> Option<bool> {
    let call = shared.clock.now();
    let value = shared.value();
    let proclaimed = client.query(|c| {
        redis::cmd("ELECT.PROCLAIM")
            .arg(ELECTION)
            .arg(token)
            .arg(value)
            .query::<i64>(c)
    });
    let ret = shared.clock.now();
    shared.tally(&proclaimed);
    let accepted = proclaimed.ok()? == 1;
    let mut histories = shared.histories.lock().expect("histories");
    if accepted {
        histories.proclaims.push(FencedWrite {
            client: client.id,
            token,
            call,
            ret,
        });
        histories.fenced.write(token);
    } else {
        histories.proclaims_refused += 1;
    }
    Some(accepted)
}

/// Renews `lease`: the send time of an acknowledged renewal, None if the
/// lease is gone or the outcome is unknown.
fn renew(shared: &Shared, client: &mut Client, lease: u64) -> Option<u64> {
    let call = shared.clock.now();
    let renewed = client.query(|c| {
        redis::cmd("LEASE.KEEPALIVE")
            .arg(lease)
            .query::<Vec<i64>>(c)
    });
    shared.tally(&renewed);
    match renewed.ok()?.first() {
        Some(ttl) if *ttl > 0 => Some(call),
        _ => None,
    }
}

/// After the run: everything left in the queue, read on a healthy cluster.
pub fn drain_queue(connection: &mut redis::Connection) -> anyhow::Result<Vec<u64>> {
    let items: Vec<String> = redis::cmd("LRANGE")
        .arg("queue")
        .arg(0)
        .arg(-1)
        .query(connection)?;
    Ok(items
        .iter()
        .map(|item| item.parse().unwrap_or(u64::MAX))
        .collect())
}

/// The distinct keys of a register history.
pub fn keys(histories: &Histories) -> BTreeSet<String> {
    histories
        .registers
        .iter()
        .map(|(key, _)| key.clone())
        .collect()
}

/// What one change-feed watcher received: it reads `CHANGES.READ reg:
/// FROM next` page by page from whichever node its client reaches (a new
/// one after every failure), as a client resuming after losing its node.
#[derive(Debug, Clone, Default)]
pub struct FeedWatch {
    /// The index it resumes from next: it has every change before it.
    pub next: u64,
    /// In the order received.
    pub seen: Vec<FeedChange>,
    /// Pages whose first change was not after the last one received.
    pub repeated: usize,
    pub pages: u64,
}

/// One change as a watcher sees it: index, key, event.
pub type FeedChange = (u64, String, String);

/// The prefix the watchers follow: the register workload's keys.
pub const FEED_PREFIX: &str = "reg:";

fn field<'a>(value: &'a redis::Value, name: &str) -> Option<&'a redis::Value> {
    use redis::Value;
    let pairs: Vec<(&Value, &Value)> = match value {
        Value::Map(fields) => fields.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(items) => items
            .chunks_exact(2)
            .map(|pair| (&pair[0], &pair[1]))
            .collect(),
        _ => return None,
    };
    pairs.into_iter().find_map(|(k, v)| match k {
        Value::BulkString(k) if k.as_slice() == name.as_bytes() => Some(v),
        _ => None,
    })
}

fn text(value: Option<&redis::Value>) -> String {
    match value {
        Some(redis::Value::BulkString(data)) => String::from_utf8_lossy(data).into_owned(),
        other => format!("{other:?}"),
    }
}

/// One CHANGES.READ page: `(next, changes)`, or None if the reply is not
/// one.
pub fn feed_page(reply: &redis::Value) -> Option<(u64, Vec<FeedChange>)> {
    let Some(redis::Value::Int(next)) = field(reply, "next") else {
        return None;
    };
    let Some(redis::Value::Array(changes)) = field(reply, "changes") else {
        return None;
    };
    let changes = changes
        .iter()
        .filter_map(|change| match field(change, "index") {
            Some(redis::Value::Int(index)) => Some((
                *index as u64,
                text(field(change, "key")),
                text(field(change, "event")),
            )),
            _ => None,
        })
        .collect();
    Some((*next as u64, changes))
}

pub fn feed_worker(shared: Arc<Shared>, mut client: Client) -> FeedWatch {
    let mut watch = FeedWatch::default();
    while shared.running() {
        let from = watch.next;
        let reply = client.query(|c| {
            redis::cmd("CHANGES.READ")
                .arg(FEED_PREFIX)
                .arg("FROM")
                .arg(from)
                .arg("COUNT")
                .arg(200)
                .query::<redis::Value>(c)
        });
        let Some((next, changes)) = reply.ok().as_ref().and_then(feed_page) else {
            client.pause(20..60);
            continue;
        };
        watch.pages += 1;
        if let (Some(first), Some(last)) = (changes.first(), watch.seen.last()) {
            if first.0 <= last.0 {
                watch.repeated += 1;
            }
        }
        watch.seen.extend(changes);
        watch.next = next.max(from);
        // Now and then the watcher moves to another node on purpose.
        if client.rng.gen_bool(0.1) {
            client.reconnect();
        }
        client.pause(10..50);
    }
    watch
}
