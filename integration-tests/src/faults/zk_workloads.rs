//! ZooKeeper-protocol clients under the same nemesis (the `zookeeper-client`
//! crate, unmodified, each with its own session over every node's ZooKeeper
//! port), and what they record:
//!
//! - register: getData / setData / create of a few znodes whose paths
//!   change every few seconds, checked for linearizability with the RESP
//!   registers (a read of a missing node reads nothing; a write is a
//!   setData, or the create of a node that did not exist yet).
//! - lock and election: kazoo's and Curator's recipe (an ephemeral
//!   sequential child; the lowest one holds; the others wait for their
//!   predecessor to go). A holder holds only while its session stays
//!   connected. Two holds that both ended with their client deleting its
//!   node must not overlap at all: the next holder learns of the delete
//!   only after it. A hold that ended because its connection was lost, or
//!   whose node was gone when it came to delete it (the session expired
//!   unbeknown to the client, which may even have started holding on a
//!   read answered late), may overlap another by at most the session
//!   timeout (the bound ZooKeeper's recipes give: a holder cut off learns
//!   of it within two thirds of the timeout, the session expires after
//!   the whole). Every sequential name must be unique.
//! - ephemerals: a session creates an ephemeral node and dies at once (no
//!   closeSession, as a killed process), and another session watches the
//!   node go. Measured in cluster time (a node's ctime and mtime: it
//!   stands still while there is no leader, so an election costs
//!   nothing), the node may still be read at most [`ephemeral_bound`]
//!   after its creation: the session timeout, plus the longest fault (a
//!   renewal the dead session's node had under way may commit once that
//!   node is resumed), plus a second for the sweep to commit.

use std::sync::Arc;
use std::time::Duration;

use lockstep_check::register::{Command, Reply};
use lockstep_check::Operation;
use rand::rngs::StdRng;
use rand::Rng;
use zk::{Acls, CreateMode, EventType};
use zookeeper_client as zk;

use super::workloads::Shared;

/// The session timeout of every ZooKeeper-protocol client: the bound on
/// how long a cut-off holder may believe it still holds.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(4);
const REGISTER_NODES: u64 = 3;
const REGISTER_PERIOD: Duration = Duration::from_secs(2);
/// The lock and election parents.
pub const LOCK: &str = "/faults-zk-lock";
pub const ELECTION: &str = "/faults-zk-election";
pub const LOCK_PARENTS: [&str; 2] = [LOCK, ELECTION];

/// The parent of the ephemeral nodes of dead sessions.
pub const EPHEMERALS: &str = "/faults-zk-ephemerals";

/// How long after its creation, in cluster time, a dead session's
/// ephemeral may still be read.
pub fn ephemeral_bound() -> Duration {
    SESSION_TIMEOUT
        + Duration::from_millis(super::nemesis::Schedule::default().hold.end)
        + Duration::from_secs(1)
}

/// What became of a dead session's ephemeral node, in cluster time (ms).
#[derive(Clone, Debug)]
pub struct Ephemeral {
    pub path: String,
    pub created: i64,
    /// The latest time it was read and still there.
    pub seen_present: Option<i64>,
    /// The first time it was read gone.
    pub seen_gone: Option<i64>,
}

/// The ephemerals read more than `bound` after their creation, and those
/// never seen gone.
pub fn late_ephemerals(fates: &[Ephemeral], bound: Duration) -> (Vec<&Ephemeral>, Vec<&Ephemeral>) {
    let bound = bound.as_millis() as i64;
    let late = fates
        .iter()
        .filter(|f| f.seen_present.is_some_and(|at| at - f.created > bound))
        .collect();
    let unresolved = fates.iter().filter(|f| f.seen_gone.is_none()).collect();
    (late, unresolved)
}

/// One hold of a lock or a leadership, as its client lived it.
#[derive(Clone, Debug)]
pub struct Hold {
    pub client: u64,
    pub sequence: i64,
    pub start: u64,
    pub end: u64,
    /// It ended because the session's connection was lost, or its node
    /// was gone before the client deleted it.
    pub lost: bool,
    /// The session, and the parent's pzxid and cversion in the read that
    /// found the node lowest (what a report of an overlap needs).
    pub session: i64,
    pub created_zxid: i64,
    pub decided_at: (i64, i32),
}

/// Pairs of holds that overlap more than they may: any overlap of two
/// holds that both ended with their own delete, more than the session
/// timeout where either was lost. A lost hold may be the later one: a
/// client whose read (linearizable, but answered late, after a partition
/// healed) showed its node lowest may start holding after its session
/// expired and the node went; it learns of the loss within the timeout.
pub fn overlaps<'a>(holds: &[&'a Hold]) -> Vec<(&'a Hold, &'a Hold)> {
    let bound = SESSION_TIMEOUT.as_nanos() as u64;
    let mut by_start = holds.to_vec();
    by_start.sort_by_key(|h| (h.start, h.sequence));
    let mut found = Vec::new();
    for (i, earlier) in by_start.iter().enumerate() {
        for later in &by_start[i + 1..] {
            if later.start >= earlier.end {
                continue;
            }
            let by = earlier.end.min(later.end) - later.start;
            if !(earlier.lost || later.lost) || by > bound {
                found.push((*earlier, *later));
            }
        }
    }
    found
}

/// What a ZooKeeper-protocol client does.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    Register,
    /// Holds for a short while, releases, takes again.
    Lock,
    /// Leads for longer terms, as an elected leader does.
    Election,
    /// Sessions that die with an ephemeral node, and a watcher of its end.
    Ephemerals,
}

/// Outcomes of one request.
enum Outcome<T> {
    Done(T),
    /// Certainly without effect (refused, or never sent).
    NoEffect,
    /// May have taken effect.
    Unknown,
}

fn outcome<T>(result: Result<T, zk::Error>, refused: &[zk::Error]) -> Outcome<T> {
    match result {
        Ok(value) => Outcome::Done(value),
        Err(err) if refused.contains(&err) => Outcome::NoEffect,
        Err(zk::Error::ClientClosed | zk::Error::SessionExpired) => Outcome::NoEffect,
        Err(_) => Outcome::Unknown,
    }
}

async fn connect(hosts: &str) -> Option<zk::Client> {
    connect_with(zk::Client::connector(), hosts).await
}

async fn connect_with(connector: zk::Connector, hosts: &str) -> Option<zk::Client> {
    let connecting = connector
        .with_session_timeout(SESSION_TIMEOUT)
        .with_connection_timeout(Duration::from_secs(2))
        .connect(hosts);
    tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .ok()?
        .ok()
}

/// Runs one ZooKeeper-protocol client until the run stops.
pub fn worker(shared: Arc<Shared>, id: u64, hosts: String, role: Role, rng: StdRng) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let mut rng = rng;
        if let Role::Ephemerals = role {
            return ephemerals(&shared, id, &hosts).await;
        }
        while shared.running() {
            let Some(client) = connect(&hosts).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            match role {
                Role::Register => register(&shared, id, &client, &mut rng).await,
                Role::Lock => recipe(&shared, id, &client, LOCK, (20, 150), &mut rng).await,
                Role::Election => {
                    recipe(&shared, id, &client, ELECTION, (300, 1200), &mut rng).await
                }
                Role::Ephemerals => unreachable!("handled above"),
            }
            // The session ends with the client (its ephemerals go now, or
            // at expiry if no node can be reached).
            drop(client);
        }
    });
}

async fn ensure_parent(client: &zk::Client, path: &str) -> bool {
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    matches!(
        client.create(path, b"", &persistent).await,
        Ok(_) | Err(zk::Error::NodeExists)
    )
}

/// Register operations until the session is lost.
async fn register(shared: &Shared, id: u64, client: &zk::Client, rng: &mut StdRng) {
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    if !ensure_parent(client, "/faults-zk-reg").await {
        return;
    }
    while shared.running() {
        let generation = shared.clock.elapsed().as_nanos() / REGISTER_PERIOD.as_nanos();
        let path = format!(
            "/faults-zk-reg/g{generation}-{}",
            rng.gen_range(0..REGISTER_NODES)
        );
        let key = format!("zk:{path}");
        let call = shared.clock.now();
        if rng.gen_bool(0.5) {
            let read = client.get_data(&path).await;
            let reply = match read {
                Ok((data, _)) => Some(String::from_utf8_lossy(&data).parse().unwrap_or(u64::MAX)),
                Err(zk::Error::NoNode) => None,
                Err(err) => {
                    // A read without an answer tells nothing.
                    shared.tally::<()>(&Err(super::client::Failure::NotSent));
                    if matches!(err, zk::Error::ClientClosed | zk::Error::SessionExpired) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            shared.tally::<()>(&Ok(()));
            shared.record(
                key,
                Operation::returned(
                    id,
                    call,
                    shared.clock.now(),
                    Command::Read,
                    Reply::Value(reply),
                ),
            );
            continue;
        }
        let value = shared.value();
        let data = value.to_string();
        let write = Command::Write {
            value,
            ttl_ms: None,
        };
        let set = outcome(
            client.set_data(&path, data.as_bytes(), None).await,
            &[zk::Error::NoNode],
        );
        let result = match set {
            Outcome::Done(_) => Outcome::Done(()),
            Outcome::Unknown => Outcome::Unknown,
            // Not there yet: this write creates it.
            Outcome::NoEffect => {
                match outcome(
                    client.create(&path, data.as_bytes(), &persistent).await,
                    &[zk::Error::NodeExists],
                ) {
                    Outcome::Done(_) => Outcome::Done(()),
                    Outcome::Unknown => Outcome::Unknown,
                    Outcome::NoEffect => Outcome::NoEffect,
                }
            }
        };
        match result {
            Outcome::Done(()) => {
                shared.tally::<()>(&Ok(()));
                shared.record(
                    key,
                    Operation::returned(id, call, shared.clock.now(), write, Reply::Done(true)),
                );
            }
            Outcome::NoEffect => shared.tally::<()>(&Err(super::client::Failure::NotSent)),
            Outcome::Unknown => {
                shared.tally::<()>(&Err(super::client::Failure::Unknown(String::new())));
                shared.record(key, Operation::unknown(id, call, write));
                return;
            }
        }
    }
}

/// The lock recipe until the session is lost: take, hold for a while
/// (milliseconds in `hold`), release, again.
async fn recipe(
    shared: &Shared,
    id: u64,
    client: &zk::Client,
    parent: &str,
    hold: (u64, u64),
    rng: &mut StdRng,
) {
    if !ensure_parent(client, parent).await {
        return;
    }
    let ephemeral = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    let prefix = format!("{parent}/c{id}-");
    let mut state = client.state_watcher();
    while shared.running() {
        let Ok((created, sequence)) = client.create(&prefix, b"", &ephemeral).await else {
            return;
        };
        let mine = format!("c{id}-{sequence}");
        shared.note_sequential(format!("{parent}/{mine}"), sequence.into_i64());
        // Wait until ours is the lowest (the negative control holds at once).
        let mut waiting = !shared.zk_locks_skip_queue;
        let mut decided_at = (0, 0);
        while waiting {
            let Ok((children, parent_stat)) = client.get_children(parent).await else {
                return;
            };
            decided_at = (parent_stat.pzxid, parent_stat.cversion);
            let number = |name: &str| {
                name.rsplit_once('-')
                    .and_then(|(_, n)| n.parse::<i64>().ok())
            };
            let mut ordered: Vec<&String> =
                children.iter().filter(|c| number(c).is_some()).collect();
            ordered.sort_by_key(|c| number(c));
            let Some(at) = ordered.iter().position(|c| **c == mine) else {
                // Ours is gone: the session expired.
                return;
            };
            if at == 0 {
                waiting = false;
                continue;
            }
            let predecessor = format!("{parent}/{}", ordered[at - 1]);
            match client.check_and_watch_stat(&predecessor).await {
                Ok((None, _)) => continue,
                Ok((Some(_), watcher)) => {
                    let waited =
                        tokio::time::timeout(Duration::from_secs(2), watcher.changed()).await;
                    if let Ok(event) = waited {
                        if event.event_type == EventType::Session {
                            return;
                        }
                    }
                    if !shared.running() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        // Held: for `hold`, and only while the session stays connected.
        let start = shared.clock.now();
        let length = Duration::from_millis(rng.gen_range(hold.0..hold.1));
        let lost = tokio::time::timeout(length, async {
            loop {
                if state.changed().await != zk::SessionState::SyncConnected {
                    break;
                }
            }
        })
        .await
        .is_ok();
        let end = shared.clock.now();
        // Only a delete of our node that succeeds proves the hold was ours
        // to its end: the session may have expired meanwhile (its node
        // paused past the timeout while this client, answered again after
        // the pause, never saw the connection drop), and the hold then
        // ended with it, unbeknown to the client.
        let released = !lost
            && client
                .delete(&format!("{parent}/{mine}"), None)
                .await
                .is_ok();
        shared.note_hold(
            parent,
            Hold {
                client: id,
                sequence: sequence.into_i64(),
                start,
                end,
                lost: !released,
                session: client.session_id().0,
                created_zxid: created.czxid,
                decided_at,
            },
        );
        if !released {
            return;
        }
    }
}

/// Dead sessions' ephemerals, one after another: each is created by a
/// detached session that is then dropped (its connection closes, no
/// closeSession), and read from a second session until it is gone. Each
/// read follows that session's write of a clock node, whose mtime says
/// the cluster time the read is at least at. Goes on after the run stops
/// (the cluster is healed then) until the last one is gone, for 30 s.
async fn ephemerals(shared: &Shared, id: u64, hosts: &str) {
    let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    let clock = format!("{EPHEMERALS}/clock-{id}");
    let mut watcher: Option<zk::Client> = None;
    let mut stopped_at: Option<std::time::Instant> = None;
    let mut n = 0u64;
    while shared.running() {
        let Some(victim) = connect_with(zk::Client::connector().with_detached(), hosts).await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if !ensure_parent(&victim, EPHEMERALS).await {
            continue;
        }
        n += 1;
        let path = format!("{EPHEMERALS}/c{id}-{n}");
        // An unknown outcome leaves nothing to follow (the node, if any,
        // goes with the session all the same).
        let Ok((stat, _)) = victim.create(&path, b"", &ephemeral).await else {
            continue;
        };
        drop(victim);
        let mut fate = Ephemeral {
            path,
            created: stat.ctime,
            seen_present: None,
            seen_gone: None,
        };
        while fate.seen_gone.is_none() {
            if !shared.running() {
                let since = *stopped_at.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > Duration::from_secs(30) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            if watcher.is_none() {
                watcher = connect(hosts).await;
            }
            let Some(reader) = &watcher else {
                continue;
            };
            let now = match reader.set_data(&clock, b"", None).await {
                Ok(stat) => stat.mtime,
                Err(zk::Error::NoNode) => {
                    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
                    let _ = reader.create(&clock, b"", &persistent).await;
                    continue;
                }
                Err(zk::Error::ClientClosed | zk::Error::SessionExpired) => {
                    watcher = None;
                    continue;
                }
                Err(_) => continue,
            };
            match reader.check_stat(&fate.path).await {
                Ok(Some(_)) => fate.seen_present = Some(now),
                Ok(None) => fate.seen_gone = Some(now),
                Err(zk::Error::ClientClosed | zk::Error::SessionExpired) => watcher = None,
                Err(_) => {}
            }
        }
        shared.note_ephemeral(fate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fate(created: i64, present: Option<i64>, gone: Option<i64>) -> Ephemeral {
        Ephemeral {
            path: format!("/e{created}"),
            created,
            seen_present: present,
            seen_gone: gone,
        }
    }

    fn hold(client: u64, start_ms: u64, end_ms: u64, lost: bool) -> Hold {
        Hold {
            client,
            sequence: client as i64,
            start: start_ms * 1_000_000,
            end: end_ms * 1_000_000,
            lost,
            session: 0,
            created_zxid: 0,
            decided_at: (0, 0),
        }
    }

    #[test]
    fn overlaps_are_allowed_only_for_lost_holds_and_within_the_timeout() {
        let count = |holds: &[Hold]| overlaps(&holds.iter().collect::<Vec<_>>()).len();
        // Two holds that ended with their own delete: no overlap at all.
        assert_eq!(count(&[hold(1, 0, 100, false), hold(2, 99, 200, false)]), 1);
        assert_eq!(
            count(&[hold(1, 0, 100, false), hold(2, 100, 200, false)]),
            0
        );
        // A lost hold, earlier or later, may overlap by the timeout.
        assert_eq!(count(&[hold(1, 0, 100, true), hold(2, 50, 200, false)]), 0);
        assert_eq!(count(&[hold(1, 0, 100, false), hold(2, 50, 200, true)]), 0);
        let beyond = SESSION_TIMEOUT.as_millis() as u64 + 60;
        assert_eq!(
            count(&[hold(1, 0, beyond, true), hold(2, 50, beyond + 100, false)]),
            1
        );
        // The overlap is what both held: a short later hold inside a long one.
        assert_eq!(
            count(&[hold(1, 0, beyond, true), hold(2, 50, 150, false)]),
            0
        );
    }

    #[test]
    fn ephemerals_read_past_the_bound_or_never_gone_are_reported() {
        let bound = Duration::from_secs(9);
        let fates = [
            fate(1_000, Some(9_000), Some(9_500)),
            fate(1_000, Some(10_000), Some(10_250)),
            fate(1_000, Some(10_001), Some(10_300)),
            fate(2_000, None, Some(2_300)),
            fate(3_000, Some(5_000), None),
        ];
        let (late, unresolved) = late_ephemerals(&fates, bound);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].seen_present, Some(10_001));
        assert_eq!(unresolved.len(), 1);
        assert_eq!(unresolved[0].created, 3_000);
    }
}
