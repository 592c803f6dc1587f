//! End-to-end scripting: the release-script pattern every lock client uses,
//! the replicated script cache, runaway scripts, and redis-py's `Lock`.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use integration_tests::{retry, Cluster};
use redis::Commands;

const RELEASE: &str = r#"
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
else
    return 0
end"#;

#[test]
fn evalsha_release_works_on_every_node_and_after_failover() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let script = redis::Script::new(RELEASE);

    // Script::invoke sends EVALSHA and falls back to EVAL on NOSCRIPT.
    let mut con = cluster.client(follower)?;
    let _: () = redis::cmd("SET")
        .arg("lock:a")
        .arg("me")
        .arg("NX")
        .arg("PX")
        .arg(30_000)
        .query(&mut con)?;
    let released: i64 = script.key("lock:a").arg("someone-else").invoke(&mut con)?;
    assert_eq!(released, 0);
    let released: i64 = script.key("lock:a").arg("me").invoke(&mut con)?;
    assert_eq!(released, 1);

    // The cache is replicated: a plain EVALSHA works on every node.
    for id in 1..=3 {
        let mut con = cluster.client(id)?;
        let exists: Vec<i64> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(script.get_hash())
            .query(&mut con)?;
        assert_eq!(exists, vec![1], "node {id}");
    }
    cluster.kill(leader);
    let survivor = (1..=3).find(|&id| id != leader).unwrap();
    let mut con = cluster.client(survivor)?;
    let released: i64 = retry(Duration::from_secs(10), || {
        Ok(redis::cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(1)
            .arg("lock:missing")
            .arg("me")
            .query(&mut con)?)
    })?;
    assert_eq!(released, 0);
    let missing: redis::RedisResult<i64> = redis::cmd("EVALSHA")
        .arg("0000000000000000000000000000000000000000")
        .arg(0)
        .query(&mut con);
    let err = missing.unwrap_err();
    assert_eq!(err.code(), Some("NOSCRIPT"));
    assert_eq!(err.detail(), Some("No matching script. Please use EVAL."));
    Ok(())
}

#[test]
fn a_runaway_script_fails_alike_everywhere_and_the_cluster_keeps_serving() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let mut con = cluster.client(1)?;
    let looping: redis::RedisResult<()> = redis::cmd("EVAL")
        .arg("redis.call('set', 'half-done', '1') while true do end")
        .arg(0)
        .query(&mut con);
    let err = looping.unwrap_err();
    assert!(
        err.to_string().contains("instruction limit"),
        "unexpected error: {err}"
    );
    let _: () = con.set("after", "ok")?;
    for id in 1..=3 {
        let mut con = cluster.client(id)?;
        let (half, after): (Option<String>, Option<String>) = redis::pipe()
            .get("half-done")
            .get("after")
            .query(&mut con)?;
        assert_eq!(half, None, "node {id} kept a write of the aborted script");
        assert_eq!(after.as_deref(), Some("ok"), "node {id}");
    }
    let applied: Vec<u64> = (1..=3)
        .map(|id| {
            cluster
                .info_field(id, "raft_applied_index")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    ensure!(applied.iter().all(|&index| index > 0), "{applied:?}");
    Ok(())
}

#[test]
fn redis_py_lock_works_unmodified() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let ports: Vec<String> = (1..=3)
        .map(|id| cluster.node(id).client_addr.port().to_string())
        .collect();
    let script = integration_tests::manifest_dir().join("python/redis_py_lock.py");
    let output = Command::new("python3").arg(script).args(&ports).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    ensure!(output.status.success(), "redis-py lock checks failed");
    ensure!(stdout.contains("all redis-py lock checks passed"));
    Ok(())
}
