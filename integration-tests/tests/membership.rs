//! Membership changes and leader transfer on real processes: growing a
//! cluster to five nodes and back under writes, removing the leader,
//! replacing a node whose data was lost, moving leadership under load, and
//! every refusal.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use integration_tests::{connect, connect_with_timeout, error_of, free_port, retry, Cluster};
use redis::Value;

/// One member as CLUSTER.MEMBERS lists it.
#[derive(Debug, Clone)]
struct Member {
    id: u64,
    role: String,
    leader: bool,
    client: String,
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

fn members(con: &mut redis::Connection) -> Result<Vec<Member>> {
    let Value::Array(entries) = redis::cmd("CLUSTER.MEMBERS").query::<Value>(con)? else {
        bail!("CLUSTER.MEMBERS is not an array");
    };
    let mut out = Vec::new();
    for entry in entries {
        let Value::Array(flat) = entry else {
            bail!("a member is not a flat array in RESP2");
        };
        let fields: BTreeMap<String, String> = flat
            .chunks(2)
            .map(|pair| (text(&pair[0]), text(&pair[1])))
            .collect();
        out.push(Member {
            id: fields["id"].parse()?,
            role: fields["role"].clone(),
            leader: fields["leader"] == "1",
            client: fields["client"].clone(),
        });
    }
    Ok(out)
}

fn voters(con: &mut redis::Connection) -> Result<Vec<u64>> {
    Ok(members(con)?
        .into_iter()
        .filter(|member| member.role == "voter")
        .map(|member| member.id)
        .collect())
}

/// Runs a membership command on whichever node leads now.
fn on_leader(cluster: &mut Cluster, args: &[&str]) -> Result<String> {
    let leader = cluster.wait_for_leader(Duration::from_secs(20))?;
    let mut con = cluster.client(leader)?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    Ok(cmd.query::<String>(&mut con)?)
}

/// Promotes `id` once it has caught up (the leader refuses before).
fn promote(cluster: &mut Cluster, id: u64) -> Result<()> {
    let id = id.to_string();
    retry(Duration::from_secs(40), || {
        on_leader(cluster, &["CLUSTER.PROMOTE", &id]).map(|_| ())
    })
}

/// A writer of unique keys over the given nodes, remembering every
/// acknowledged write; errors (elections, a removed node) are retried on
/// the next node with the next key.
struct Writer {
    stop: Arc<AtomicBool>,
    targets: Arc<Mutex<Vec<std::net::SocketAddr>>>,
    thread: Option<std::thread::JoinHandle<(Vec<u64>, Vec<String>)>>,
}

impl Writer {
    fn start(cluster: &Cluster) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(cluster.client_addrs()));
        let (flag, list) = (stop.clone(), targets.clone());
        let thread = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut errors = Vec::new();
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let addrs = list.lock().unwrap().clone();
                let addr = addrs[n as usize % addrs.len()];
                n += 1;
                let result =
                    connect_with_timeout(addr, Duration::from_secs(8)).and_then(|mut con| {
                        Ok(redis::cmd("SET")
                            .arg(format!("w:{n}"))
                            .arg(n)
                            .query::<String>(&mut con)?)
                    });
                match result {
                    Ok(_) => acked.push(n),
                    Err(err) => {
                        errors.push(format!("{err:#}"));
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            (acked, errors)
        });
        Writer {
            stop,
            targets,
            thread: Some(thread),
        }
    }

    fn write_to(&self, cluster: &Cluster, ids: &[u64]) {
        *self.targets.lock().unwrap() =
            ids.iter().map(|&id| cluster.node(id).client_addr).collect();
    }

    fn finish(mut self) -> (Vec<u64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Every acknowledged write is on every listed node, and they agree.
fn check_writes(cluster: &mut Cluster, ids: &[u64], acked: &[u64]) -> Result<()> {
    assert!(
        acked.len() > 50,
        "the writer made progress: {} writes",
        acked.len()
    );
    for &id in ids {
        let mut con = cluster.client(id)?;
        let mut pipe = redis::pipe();
        for n in acked {
            pipe.cmd("GET").arg(format!("w:{n}"));
        }
        let values: Vec<Option<u64>> =
            retry(Duration::from_secs(10), || Ok(pipe.query(&mut con)?))?;
        for (n, value) in acked.iter().zip(values) {
            if value != Some(*n) {
                bail!("node {id}: acknowledged write w:{n} reads {value:?}");
            }
        }
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let index: u64 = cluster
        .info_field(leader, "raft_applied_index")
        .context("applied index")?
        .parse()?;
    let mut digests = Vec::new();
    for &id in ids {
        cluster.wait_applied(id, index, Duration::from_secs(10))?;
        // Nothing writes now: the same index on every node.
        let mut con = cluster.client(id)?;
        let digest: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut con)?;
        digests.push(digest);
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    Ok(())
}

fn term_of(cluster: &Cluster, id: u64) -> u64 {
    cluster
        .info_field(id, "raft_term")
        .and_then(|term| term.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_cluster_grows_to_five_and_back_under_writes_and_loses_nothing() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let writer = Writer::start(&cluster);
    std::thread::sleep(Duration::from_millis(500));

    let four = cluster.add_node(2)?;
    promote(&mut cluster, four)?;
    let five = cluster.add_node(3)?;
    // A learner refuses nothing but serves reads once caught up.
    let mut learner = cluster.client(five)?;
    retry(Duration::from_secs(20), || {
        let size: u64 = redis::cmd("DBSIZE").query(&mut learner)?;
        if size == 0 {
            bail!("no data yet");
        }
        Ok(())
    })?;
    promote(&mut cluster, five)?;
    writer.write_to(&cluster, &[1, 2, 3, 4, 5]);
    for id in 1..=5 {
        let mut con = cluster.client(id)?;
        retry(Duration::from_secs(10), || {
            let voters = voters(&mut con)?;
            if voters != [1, 2, 3, 4, 5] {
                bail!("node {id} lists voters {voters:?}");
            }
            Ok(())
        })?;
    }
    // Every node tells a client where every member is.
    let listed = members(&mut cluster.client(1)?)?;
    assert_eq!(listed.iter().filter(|member| member.leader).count(), 1);
    for member in &listed {
        assert_eq!(
            member.client,
            cluster.node(member.id).client_addr.to_string()
        );
    }
    std::thread::sleep(Duration::from_millis(500));

    // Remove the leader itself, through itself.
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let rest: Vec<u64> = (1..=5).filter(|&id| id != leader).collect();
    writer.write_to(&cluster, &rest);
    on_leader(&mut cluster, &["CLUSTER.REMOVE", &leader.to_string()])?;
    let mut removed = cluster.client(leader)?;
    retry(Duration::from_secs(10), || {
        match redis::cmd("GET")
            .arg("w:1")
            .query::<Option<String>>(&mut removed)
        {
            Err(err) if err.code() == Some("REMOVED") => Ok(()),
            other => bail!("the removed leader still answers: {other:?}"),
        }
    })?;
    // The rest elect a leader; the removed node keeps running and does not
    // disturb them.
    let new_leader = retry(Duration::from_secs(20), || {
        rest.iter()
            .copied()
            .find(|&id| cluster.info_field(id, "raft_role").as_deref() == Some("leader"))
            .context("no leader among the rest")
    })?;
    let term = term_of(&cluster, new_leader);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        term_of(&cluster, new_leader),
        term,
        "a removed node inflated the term"
    );

    // Shrink back to three: remove one more voter (not the leader).
    let gone = *rest.iter().find(|&&id| id != new_leader).unwrap();
    let remaining: Vec<u64> = rest.iter().copied().filter(|&id| id != gone).collect();
    writer.write_to(&cluster, &remaining);
    std::thread::sleep(Duration::from_millis(300));
    retry(Duration::from_secs(20), || {
        on_leader(&mut cluster, &["CLUSTER.REMOVE", &gone.to_string()])
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let (acked, errors) = writer.finish();
    let mut con = cluster.client(remaining[0])?;
    assert_eq!(voters(&mut con)?, remaining);
    for error in &errors {
        assert!(
            [
                "TRYAGAIN",
                "CLUSTERDOWN",
                "REMOVED",
                "refused",
                "timed out",
                "broken pipe",
                "reset"
            ]
            .iter()
            .any(|word| error.contains(word)),
            "unexpected writer error: {error}"
        );
    }
    check_writes(&mut cluster, &remaining, &acked)
}

#[test]
fn a_node_whose_data_was_lost_is_replaced_by_a_new_member() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let mut con = cluster.client(1)?;
    let mut pipe = redis::pipe();
    for n in 1..=500u64 {
        pipe.cmd("SET").arg(format!("w:{n}")).arg(n).ignore();
    }
    pipe.query::<()>(&mut con)?;
    // Large enough that its snapshot travels in several chunks.
    for n in 0..12 {
        redis::cmd("SET")
            .arg(format!("big:{n}"))
            .arg(vec![b'a' + n as u8; 1 << 20])
            .query::<()>(&mut con)?;
    }
    // Node 3's disk dies.
    cluster.kill(3);
    cluster.wipe(3)?;
    retry(Duration::from_secs(20), || {
        on_leader(&mut cluster, &["CLUSTER.REMOVE", "3"])
    })?;
    let four = cluster.add_node(1)?;
    promote(&mut cluster, four)?;
    // A joined node restarts from its own data (no second join).
    cluster.stop(four)?;
    cluster.spawn(four)?;
    let mut con = cluster.client(four)?;
    retry(Duration::from_secs(20), || {
        let value: Option<u64> = redis::cmd("GET").arg("w:500").query(&mut con)?;
        if value != Some(500) {
            bail!("w:500 is {value:?}");
        }
        Ok(())
    })?;
    assert!(!cluster.log_of(four).contains("already a member"));
    // The new member votes: the cluster keeps its quorum without node 1.
    cluster.kill(1);
    let leader = cluster.wait_for_leader(Duration::from_secs(20))?;
    assert!(leader == 2 || leader == four);
    let mut con = cluster.client(four)?;
    retry(Duration::from_secs(20), || {
        Ok(redis::cmd("SET")
            .arg("after")
            .arg("1")
            .query::<String>(&mut con)?)
    })?;
    let acked: Vec<u64> = (1..=500).collect();
    for id in [2, four] {
        let mut con = cluster.client(id)?;
        for n in 0..12u8 {
            let big: Vec<u8> = redis::cmd("GET").arg(format!("big:{n}")).query(&mut con)?;
            assert_eq!(big, vec![b'a' + n; 1 << 20], "node {id} big:{n}");
        }
        for n in &acked {
            let value: Option<u64> = redis::cmd("GET").arg(format!("w:{n}")).query(&mut con)?;
            assert_eq!(value, Some(*n), "node {id} w:{n}");
        }
    }
    Ok(())
}

#[test]
fn leadership_moves_on_request_under_load_without_losing_writes() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let writer = Writer::start(&cluster);
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
        let target = (1..=3).find(|&id| id != leader).unwrap();
        // Asked on a follower that is not the target: it passes it on.
        let asked = (1..=3).find(|&id| id != target).unwrap();
        let started = Instant::now();
        let mut con = cluster.client(asked)?;
        let reply: String = redis::cmd("CLUSTER.TRANSFER").arg(target).query(&mut con)?;
        assert_eq!(reply, "OK");
        assert!(started.elapsed() < Duration::from_secs(3));
        // OK means the target led when it came; its own status may be a
        // round behind on a loaded machine.
        retry(Duration::from_secs(2), || {
            match cluster.info_field(target, "raft_role").as_deref() {
                Some("leader") => Ok(()),
                other => bail!("node {target} is {other:?}"),
            }
        })?;
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut con = cluster.client(1)?;
    let err = redis::cmd("CLUSTER.TRANSFER")
        .arg(9)
        .query::<String>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("no such voter: node 9"), "{err}");
    let (acked, errors) = writer.finish();
    for error in &errors {
        assert!(
            error.contains("TRYAGAIN") || error.contains("CLUSTERDOWN"),
            "a write during a transfer failed otherwise: {error}"
        );
    }
    check_writes(&mut cluster, &[1, 2, 3], &acked)
}

#[test]
fn membership_changes_that_would_break_the_cluster_are_refused() -> Result<()> {
    let single = Cluster::start(1)?;
    let mut con = single.client(1)?;
    let err = error_of(&mut con, &["CLUSTER.REMOVE", "1"]);
    assert!(err.contains("last voter"), "{err}");
    drop(single);

    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let mut con = cluster.client(leader)?;
    let mut at_follower = cluster.client(follower)?;
    let err = error_of(&mut at_follower, &["CLUSTER.ADD", "4", "127.0.0.1:1"]);
    assert!(
        err.contains("NOTLEADER") && err.contains(&cluster.node(leader).client_addr.to_string()),
        "{err}"
    );
    for (args, expected) in [
        (vec!["CLUSTER.ADD", "0", "127.0.0.1:1"], "node id must be"),
        (
            vec!["CLUSTER.ADD", "2", "127.0.0.1:1"],
            "node id 2 is already in use",
        ),
        (
            vec!["CLUSTER.ADD", "4", "no-port"],
            "is not a host:port address",
        ),
        (vec!["CLUSTER.ADD", "4"], "wrong number of arguments"),
        (vec!["CLUSTER.PROMOTE", "7"], "no such learner: node 7"),
        (vec!["CLUSTER.PROMOTE", "2"], "node 2 is already a voter"),
        (vec!["CLUSTER.REMOVE", "7"], "no such node 7"),
        (vec!["CLUSTER.TRANSFER", "x"], "node id must be"),
        (vec!["CLUSTER", "INFO"], "cluster support disabled"),
    ] {
        let err = error_of(&mut con, &args);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let peer = format!("127.0.0.1:{}", cluster.node(2).peer_addr.port());
    let err = error_of(&mut con, &["CLUSTER.ADD", "4", &peer]);
    assert!(err.contains("is already node 2's"), "{err}");

    // A learner nobody runs never catches up: promoting it is refused with
    // its lag; removing it works, and its id is never used again.
    let nowhere = format!("127.0.0.1:{}", free_port());
    assert_eq!(
        error_of(&mut con, &["CLUSTER.ADD", "4", &nowhere]),
        "no error: ok"
    );
    let learners = members(&mut con)?
        .into_iter()
        .filter(|member| member.role == "learner")
        .count();
    assert_eq!(learners, 1);
    let err = error_of(&mut con, &["CLUSTER.PROMOTE", "4"]);
    assert!(
        err.contains("has not caught up") && err.contains("entries behind"),
        "{err}"
    );
    let err = error_of(&mut con, &["CLUSTER.TRANSFER", "4"]);
    assert!(err.contains("is a learner"), "{err}");
    assert_eq!(error_of(&mut con, &["CLUSTER.REMOVE", "4"]), "no error: ok");
    let err = error_of(&mut con, &["CLUSTER.ADD", "4", &nowhere]);
    assert!(err.contains("was removed"), "{err}");

    // With both followers frozen, a change cannot commit: a second one is
    // refused while it is pending, it ends in TRYAGAIN, and once the
    // leader no longer hears a majority, changes are refused up front.
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for &id in &followers {
        cluster.pause(id);
    }
    let addr = cluster.node(leader).client_addr;
    let first = std::thread::spawn(move || {
        let mut con = connect(addr).unwrap();
        error_of(&mut con, &["CLUSTER.ADD", "5", "127.0.0.1:2"])
    });
    std::thread::sleep(Duration::from_millis(200));
    let err = error_of(&mut con, &["CLUSTER.ADD", "6", "127.0.0.1:3"]);
    let first = first.join().unwrap();
    assert!(err.contains("in progress"), "{err} (first: {first})");
    let err = first;
    assert!(err.contains("TRYAGAIN"), "{err}");
    // By now the leader has stepped down (it heard no majority for an
    // election timeout) or still leads without hearing one: either way
    // the change is refused as CLUSTERDOWN.
    let err = error_of(&mut con, &["CLUSTER.ADD", "7", "127.0.0.1:4"]);
    assert!(err.starts_with("CLUSTERDOWN"), "{err}");
    for &id in &followers {
        cluster.resume(id);
    }
    // The cluster recovers and takes changes again.
    retry(Duration::from_secs(30), || {
        on_leader(&mut cluster, &["CLUSTER.ADD", "8", "127.0.0.1:5"])
    })?;
    Ok(())
}
