//! End-to-end native locks: FIFO hand-over across nodes with no polling,
//! wait timeouts, and tokens that keep increasing across a failover.

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;
use integration_tests::{retry, Cluster};

fn acquire(
    con: &mut redis::Connection,
    name: &str,
    owner: &str,
    ttl: u64,
    wait: u64,
) -> redis::RedisResult<Option<i64>> {
    redis::cmd("LOCK.ACQUIRE")
        .arg(name)
        .arg(owner)
        .arg(ttl)
        .arg("WAIT")
        .arg(wait)
        .query(con)
}

#[test]
fn waiters_on_different_nodes_are_granted_in_fifo_order() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let mut holder = cluster.client(1)?;
    let first: i64 = redis::cmd("LOCK.ACQUIRE")
        .arg("job")
        .arg("holder")
        .arg(30_000)
        .query(&mut holder)?;

    let (granted_tx, granted_rx) = mpsc::channel();
    let mut waiters = Vec::new();
    for (i, node) in [2u64, 3, 1].into_iter().enumerate() {
        let mut con = cluster.client(node)?;
        let tx = granted_tx.clone();
        waiters.push(thread::spawn(move || {
            let owner = format!("w{i}");
            let token = acquire(&mut con, "job", &owner, 30_000, 20_000).unwrap();
            tx.send((owner.clone(), token)).unwrap();
            // Hold briefly, then hand over.
            thread::sleep(Duration::from_millis(50));
            let released: i64 = redis::cmd("LOCK.RELEASE")
                .arg("job")
                .arg(&owner)
                .query(&mut con)
                .unwrap();
            assert_eq!(released, 1);
        }));
        // Make the queue order certain: each waiter is queued before the next.
        retry(Duration::from_secs(5), || {
            let info: HashMap<String, redis::Value> =
                redis::cmd("LOCK.INFO").arg("job").query(&mut holder)?;
            let queued = info.get("waiters").cloned();
            anyhow::ensure!(
                queued == Some(redis::Value::Int(i as i64 + 1)),
                "waiters not queued yet: {queued:?}"
            );
            Ok(())
        })?;
    }
    let released: i64 = redis::cmd("LOCK.RELEASE")
        .arg("job")
        .arg("holder")
        .query(&mut holder)?;
    assert_eq!(released, 1);
    let mut order = Vec::new();
    let mut last = first;
    for _ in 0..3 {
        let (owner, token) = granted_rx.recv_timeout(Duration::from_secs(10))?;
        let token = token.expect("granted, not timed out");
        assert!(
            token > last,
            "tokens strictly increase: {token} after {last}"
        );
        last = token;
        order.push(owner);
    }
    assert_eq!(order, vec!["w0", "w1", "w2"], "FIFO hand-over");
    for waiter in waiters {
        waiter.join().unwrap();
    }

    // A wait that runs out answers nil after about its WAIT.
    let _: i64 = redis::cmd("LOCK.ACQUIRE")
        .arg("busy")
        .arg("a")
        .arg(30_000)
        .query(&mut holder)?;
    let mut other = cluster.client(2)?;
    let started = Instant::now();
    assert_eq!(acquire(&mut other, "busy", "b", 1000, 300)?, None);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    Ok(())
}

#[test]
fn a_native_lock_survives_leader_death_and_tokens_keep_increasing() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let survivor = (1..=3).find(|&id| id != leader).unwrap();
    let mut con = cluster.client(leader)?;
    let taken_at = Instant::now();
    let token: i64 = redis::cmd("LOCK.ACQUIRE")
        .arg("l")
        .arg("a")
        .arg(4000)
        .query(&mut con)?;
    cluster.kill(leader);
    let mut con = cluster.client(survivor)?;
    let token_b: i64 = retry(Duration::from_secs(15), || {
        let granted: Option<i64> = redis::cmd("LOCK.TRY")
            .arg("l")
            .arg("b")
            .arg(4000)
            .query(&mut con)?;
        match granted {
            Some(token) => Ok(token),
            None => anyhow::bail!("still held"),
        }
    })?;
    assert!(
        taken_at.elapsed() >= Duration::from_millis(4000),
        "granted before the TTL ran out"
    );
    assert!(token_b > token, "{token_b} > {token}");
    let fence: i64 = redis::cmd("FENCE").arg("l").query(&mut con)?;
    assert_eq!(fence, token_b);
    Ok(())
}

#[test]
fn a_waiter_that_disconnects_leaves_the_queue() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let mut holder = cluster.client(1)?;
    let _: i64 = redis::cmd("LOCK.ACQUIRE")
        .arg("res")
        .arg("holder")
        .arg(30_000)
        .query(&mut holder)?;
    {
        let mut raw = std::net::TcpStream::connect(cluster.node(2).client_addr)?;
        std::io::Write::write_all(&mut raw, b"LOCK.ACQUIRE res gone 30000 WAIT 60000\r\n")?;
        retry(Duration::from_secs(5), || {
            let info: HashMap<String, redis::Value> =
                redis::cmd("LOCK.INFO").arg("res").query(&mut holder)?;
            anyhow::ensure!(info.get("waiters") == Some(&redis::Value::Int(1)));
            Ok(())
        })?;
    }
    // The socket is closed: the waiter leaves the queue.
    retry(Duration::from_secs(5), || {
        let info: HashMap<String, redis::Value> =
            redis::cmd("LOCK.INFO").arg("res").query(&mut holder)?;
        anyhow::ensure!(
            info.get("waiters") == Some(&redis::Value::Int(0)),
            "{info:?}"
        );
        Ok(())
    })?;
    let _: i64 = redis::cmd("LOCK.RELEASE")
        .arg("res")
        .arg("holder")
        .query(&mut holder)?;
    let next: Option<i64> = redis::cmd("LOCK.TRY")
        .arg("res")
        .arg("next")
        .arg(1000)
        .query(&mut holder)?;
    assert!(
        next.is_some(),
        "the departed waiter was not granted the lock"
    );
    Ok(())
}
