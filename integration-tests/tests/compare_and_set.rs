//! End-to-end native compare-and-set, across nodes, with the `redis` crate.

use std::time::Duration;

use anyhow::Result;
use integration_tests::Cluster;
use redis::Commands;

#[test]
fn lock_lifecycle_with_native_compare_and_set() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let mut one = cluster.client(1)?;
    let mut two = cluster.client(2)?;
    let mut three = cluster.client(3)?;

    let taken: Option<String> = redis::cmd("SET")
        .arg("lock:x")
        .arg("tok-a")
        .arg("NX")
        .arg("PX")
        .arg(2000)
        .query(&mut one)?;
    assert_eq!(taken.as_deref(), Some("OK"));
    // Extend only with the right token, from another node.
    let extended: i64 = redis::cmd("PEXPIREIFEQ")
        .arg("lock:x")
        .arg("tok-b")
        .arg(60_000)
        .query(&mut two)?;
    assert_eq!(extended, 0);
    let extended: i64 = redis::cmd("PEXPIREIFEQ")
        .arg("lock:x")
        .arg("tok-a")
        .arg(60_000)
        .query(&mut two)?;
    assert_eq!(extended, 1);
    let ttl: i64 = three.pttl("lock:x")?;
    assert!(ttl > 2000, "extension visible on a third node: {ttl}");
    // Hand over with SET IFEQ, check the digest, release with DELIFEQ.
    let handed: Option<String> = redis::cmd("SET")
        .arg("lock:x")
        .arg("tok-b")
        .arg("IFEQ")
        .arg("tok-a")
        .query(&mut three)?;
    assert_eq!(handed.as_deref(), Some("OK"));
    let digest: String = redis::cmd("DIGEST").arg("lock:x").query(&mut one)?;
    assert_eq!(digest.len(), 16);
    let stale: i64 = redis::cmd("DELEX")
        .arg("lock:x")
        .arg("IFDNE")
        .arg(&digest)
        .query(&mut one)?;
    assert_eq!(stale, 0);
    let not_mine: i64 = redis::cmd("DELIFEQ")
        .arg("lock:x")
        .arg("tok-a")
        .query(&mut one)?;
    assert_eq!(not_mine, 0);
    let released: i64 = redis::cmd("DELIFEQ")
        .arg("lock:x")
        .arg("tok-b")
        .query(&mut two)?;
    assert_eq!(released, 1);
    let gone: Option<String> = three.get("lock:x")?;
    assert_eq!(gone, None);
    let syntax: redis::RedisResult<()> = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("NX")
        .arg("IFEQ")
        .arg("x")
        .query(&mut one);
    assert!(syntax.unwrap_err().to_string().contains("syntax error"));
    Ok(())
}

/// The commit index node `id` reports.
fn commit_index(cluster: &Cluster, id: u64) -> u64 {
    cluster
        .info_field(id, "raft_commit_index")
        .unwrap()
        .parse()
        .unwrap()
}

/// A conditional write that would change nothing (a held lock's `SET NX`,
/// a mismatched `IFEQ` or `DELIFEQ`) is answered from a linearizable read:
/// no log entry, and never from a stale state.
#[test]
fn a_conditional_write_that_changes_nothing_takes_no_entry_and_is_never_stale() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let mut writer = cluster.client(leader)?;
    let mut spinner = cluster.client(follower)?;
    let set_nx = |con: &mut redis::Connection, key: &str, value: &str| {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .query::<Option<String>>(con)
    };
    assert_eq!(set_nx(&mut writer, "lock", "held")?.as_deref(), Some("OK"));
    // The follower has applied it once a read there sees it.
    let seen: Option<String> = spinner.get("lock")?;
    assert_eq!(seen.as_deref(), Some("held"));
    let commit = |cluster: &Cluster| commit_index(cluster, leader);
    let before = commit(&cluster);
    for _ in 0..50 {
        assert_eq!(set_nx(&mut spinner, "lock", "mine")?, None);
        let setnx: i64 = redis::cmd("SETNX")
            .arg("lock")
            .arg("mine")
            .query(&mut spinner)?;
        assert_eq!(setnx, 0);
        let swapped: Option<String> = redis::cmd("SET")
            .arg("lock")
            .arg("mine")
            .arg("IFEQ")
            .arg("other")
            .query(&mut spinner)?;
        assert_eq!(swapped, None);
        let deleted: i64 = redis::cmd("DELIFEQ")
            .arg("lock")
            .arg("other")
            .query(&mut spinner)?;
        assert_eq!(deleted, 0);
        let old: Option<String> = redis::cmd("SET")
            .arg("lock")
            .arg("mine")
            .arg("NX")
            .arg("GET")
            .query(&mut spinner)?;
        assert_eq!(old.as_deref(), Some("held"));
    }
    assert_eq!(commit(&cluster), before, "answered without entries");
    let kept: Option<String> = writer.get("lock")?;
    assert_eq!(kept.as_deref(), Some("held"));

    // A delete on the leader is seen by the next SET NX on the follower at
    // once, though the follower's own state may not have it yet: the
    // answer comes after a read barrier, or from the log.
    for round in 0..100 {
        let key = format!("spin{round}");
        assert_eq!(set_nx(&mut writer, &key, "a")?.as_deref(), Some("OK"));
        let _: Option<String> = spinner.get(&key)?;
        let _: i64 = writer.del(&key)?;
        assert_eq!(
            set_nx(&mut spinner, &key, "b")?.as_deref(),
            Some("OK"),
            "round {round}: a SET NX after the delete completed found the key"
        );
    }
    Ok(())
}

/// Many clients racing `SET NX` on one free key at one node (the moment a
/// contended lock is released): one wins, and the others do not each take
/// an entry; they wait for the attempt in flight and are answered by a read.
#[test]
fn racing_set_nx_on_one_node_takes_one_entry() -> Result<()> {
    const RACERS: usize = 32;
    const ROUNDS: usize = 5;
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let commit = |cluster: &Cluster| commit_index(cluster, leader);
    let mut connections = (0..RACERS)
        .map(|_| cluster.client(follower))
        .collect::<Result<Vec<_>>>()?;
    let before = commit(&cluster);
    for round in 0..ROUNDS {
        let key = format!("race{round}");
        let start = std::sync::Arc::new(std::sync::Barrier::new(RACERS));
        let winners: usize = std::thread::scope(|scope| {
            let racers: Vec<_> = connections
                .iter_mut()
                .enumerate()
                .map(|(n, con)| {
                    let (start, key) = (start.clone(), key.clone());
                    scope.spawn(move || {
                        start.wait();
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(n)
                            .arg("NX")
                            .query::<Option<String>>(con)
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|racer| racer.join().expect("racer thread").expect("SET NX"))
                .filter(|reply| reply.is_some())
                .count()
        });
        assert_eq!(winners, 1, "round {round}: exactly one SET NX wins");
    }
    let entries = commit(&cluster) - before;
    assert!(
        entries <= 2 * ROUNDS as u64,
        "{entries} entries for {ROUNDS} rounds of {RACERS} racing SET NX (one each wanted)"
    );
    Ok(())
}
