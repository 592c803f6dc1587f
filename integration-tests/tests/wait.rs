//! WAIT and WAITAOF answer from raft state.

use std::time::{Duration, Instant};

use anyhow::Result;
use integration_tests::Cluster;
use redis::Commands;

fn wait(con: &mut redis::Connection, replicas: i64, timeout_ms: i64) -> redis::RedisResult<i64> {
    redis::cmd("WAIT").arg(replicas).arg(timeout_ms).query(con)
}

#[test]
fn wait_counts_nodes_that_stored_the_write() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let mut con = cluster.client(leader)?;

    // Redisson's probes.
    let _ = wait(&mut con, 0, 0)?;
    let aof: Vec<i64> = redis::cmd("WAITAOF").arg(0).arg(0).arg(0).query(&mut con)?;
    assert_eq!(aof[0], 1, "writes are fsynced locally");

    let _: () = con.set("k", "v")?;
    assert_eq!(
        wait(&mut con, 2, 2000)?,
        2,
        "both followers matched the write"
    );
    let aof: Vec<i64> = redis::cmd("WAITAOF")
        .arg(1)
        .arg(2)
        .arg(2000)
        .query(&mut con)?;
    assert_eq!(aof, vec![1, 2]);

    // A follower knows only what the commit proves: a majority has it.
    let mut on_follower = cluster.client(followers[0])?;
    let _: () = on_follower.set("k2", "v")?;
    assert_eq!(wait(&mut on_follower, 1, 1000)?, 1);

    // With a follower down, WAIT times out with the truthful count.
    cluster.kill(followers[1]);
    let _: () = con.set("k3", "v")?;
    let started = Instant::now();
    assert_eq!(wait(&mut con, 2, 300)?, 1);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let err = wait(&mut con, 1, -1).unwrap_err();
    assert!(err.to_string().contains("timeout is negative"), "{err}");
    let err = redis::cmd("WAIT")
        .arg("x")
        .arg(0)
        .query::<i64>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");
    Ok(())
}
