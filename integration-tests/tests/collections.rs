//! End-to-end hashes, lists, sets and sorted sets across nodes.

use std::time::Duration;

use anyhow::Result;
use integration_tests::Cluster;
use redis::Commands;

#[test]
fn collections_written_on_one_node_read_on_another() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let mut one = cluster.client(1)?;
    let mut three = cluster.client(3)?;

    let _: () = one.hset_multiple("owner", &[("node", "a"), ("count", "1")])?;
    let count: i64 = one.hincr("owner", "count", 2)?;
    assert_eq!(count, 3);
    let all: std::collections::HashMap<String, String> = three.hgetall("owner")?;
    assert_eq!(all.get("node").map(String::as_str), Some("a"));
    assert_eq!(all.get("count").map(String::as_str), Some("3"));

    let _: () = one.rpush("queue", &["j1", "j2", "j3"])?;
    let first: Option<String> = three.lpop("queue", None)?;
    assert_eq!(first.as_deref(), Some("j1"));
    let rest: Vec<String> = one.lrange("queue", 0, -1)?;
    assert_eq!(rest, vec!["j2", "j3"]);

    let _: () = one.sadd("members", &["n1", "n2"])?;
    let is_member: bool = three.sismember("members", "n2")?;
    assert!(is_member);

    let _: () = one.zadd_multiple("waiters", &[(2.0, "b"), (1.0, "a"), (3.0, "c")])?;
    let order: Vec<String> = three.zrange("waiters", 0, -1)?;
    assert_eq!(order, vec!["a", "b", "c"]);
    let score: Option<f64> = three.zscore("waiters", "c")?;
    assert_eq!(score, Some(3.0));

    let wrong: redis::RedisResult<Option<String>> = three.get("waiters");
    assert_eq!(wrong.unwrap_err().code(), Some("WRONGTYPE"));
    let kind: String = redis::cmd("TYPE").arg("waiters").query(&mut three)?;
    assert_eq!(kind, "zset");
    Ok(())
}
