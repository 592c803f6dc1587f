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
