//! End-to-end blocking pops: waiters on any node, woken in FIFO order by a
//! push on another node; timeouts; a waiter that leaves takes nothing.

use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;
use integration_tests::{retry, Cluster};
use redis::Commands;

#[test]
fn blocked_clients_on_other_nodes_are_woken_in_fifo_order() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let (tx, rx) = mpsc::channel();
    let mut waiters = Vec::new();
    for (name, node) in [("first", 2u64), ("second", 3)] {
        let mut con = cluster.client(node)?;
        let tx = tx.clone();
        waiters.push(thread::spawn(move || {
            let popped: Option<(String, String)> = con.blpop("jobs", 20.0).unwrap();
            tx.send((name, popped)).unwrap();
        }));
        // This waiter is queued (its node counts it blocked) before the
        // next one asks: the queue order is certain, however loaded the
        // machine is.
        retry(Duration::from_secs(10), || {
            let blocked = cluster.info_field(node, "blocked_clients");
            anyhow::ensure!(
                blocked.as_deref() == Some("1"),
                "not queued yet: {blocked:?}"
            );
            Ok(())
        })?;
    }
    let mut pusher = cluster.client(1)?;
    let _: () = pusher.rpush("jobs", &["j1", "j2"])?;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(rx.recv_timeout(Duration::from_secs(10))?);
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("first", Some(("jobs".to_string(), "j1".to_string()))),
            ("second", Some(("jobs".to_string(), "j2".to_string()))),
        ]
    );
    for waiter in waiters {
        waiter.join().unwrap();
    }
    let left: i64 = pusher.llen("jobs")?;
    assert_eq!(left, 0);

    // A timeout answers nil after about that long.
    let started = Instant::now();
    let none: Option<(String, String)> = pusher.blpop("empty", 0.3)?;
    assert_eq!(none, None);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(10),
        "{waited:?}"
    );

    // A client that leaves while blocked takes nothing from a later push.
    {
        let mut raw = std::net::TcpStream::connect(cluster.node(3).client_addr)?;
        raw.write_all(b"BLPOP signal 0\r\n")?;
        retry(Duration::from_secs(10), || {
            let blocked = cluster.info_field(3, "blocked_clients");
            anyhow::ensure!(
                blocked.as_deref() == Some("1"),
                "not queued yet: {blocked:?}"
            );
            Ok(())
        })?;
    }
    // Its node cancels the wait through the log when it sees it leave.
    retry(Duration::from_secs(10), || {
        let blocked = cluster.info_field(3, "blocked_clients");
        anyhow::ensure!(
            blocked.as_deref() == Some("0"),
            "still blocked: {blocked:?}"
        );
        Ok(())
    })?;
    let _: () = pusher.lpush("signal", "1")?;
    retry(Duration::from_secs(5), || {
        let len: i64 = pusher.llen("signal")?;
        anyhow::ensure!(len == 1, "the departed waiter took the item");
        Ok(())
    })?;
    Ok(())
}
