//! End-to-end MULTI/EXEC/WATCH across nodes with the `redis` crate.

use std::time::Duration;

use anyhow::Result;
use integration_tests::Cluster;
use redis::Commands;

#[test]
fn multi_exec_and_watch_across_nodes() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let mut one = cluster.client(1)?;
    let mut two = cluster.client(2)?;

    // An atomic pipeline is MULTI ... EXEC: one entry, replies as one array.
    let (set, incr, got): (String, i64, String) = redis::pipe()
        .atomic()
        .set("counter", 41)
        .incr("counter", 1)
        .get("counter")
        .query(&mut one)?;
    assert_eq!((set.as_str(), incr, got.as_str()), ("OK", 42, "42"));

    // WATCH on node 1, a write on node 2, EXEC on node 1: aborted (nil).
    let _: () = redis::cmd("WATCH").arg("counter").query(&mut one)?;
    let _: () = two.set("counter", 100)?;
    let _: () = redis::cmd("MULTI").query(&mut one)?;
    let queued: String = redis::cmd("INCR").arg("counter").query(&mut one)?;
    assert_eq!(queued, "QUEUED");
    let aborted: redis::Value = redis::cmd("EXEC").query(&mut one)?;
    assert_eq!(aborted, redis::Value::Nil);
    let now: i64 = two.get("counter")?;
    assert_eq!(now, 100);

    // The redis crate's optimistic transaction helper retries until it wins.
    let doubled: (i64,) = redis::transaction(&mut one, &["counter"], |con, pipe| {
        let current: i64 = con.get("counter")?;
        pipe.set("counter", current * 2)
            .ignore()
            .get("counter")
            .query(con)
    })?;
    assert_eq!(doubled.0, 200);

    // Errors shaped like Redis's.
    let err = redis::cmd("EXEC").query::<()>(&mut one).unwrap_err();
    assert!(err.to_string().contains("EXEC without MULTI"), "{err}");
    let _: () = redis::cmd("MULTI").query(&mut one)?;
    let nested = redis::cmd("MULTI").query::<()>(&mut one).unwrap_err();
    assert!(nested.to_string().contains("can not be nested"), "{nested}");
    let bad = redis::cmd("GET").query::<()>(&mut one).unwrap_err();
    assert!(
        bad.to_string().contains("wrong number of arguments"),
        "{bad}"
    );
    let _: String = redis::cmd("SET").arg("never").arg("1").query(&mut one)?;
    let abort = redis::cmd("EXEC").query::<()>(&mut one).unwrap_err();
    assert_eq!(abort.code(), Some("EXECABORT"));
    let never: Option<String> = two.get("never")?;
    assert_eq!(never, None);
    let _: () = redis::cmd("MULTI").query(&mut one)?;
    let _: String = redis::cmd("SET").arg("never").arg("1").query(&mut one)?;
    let _: () = redis::cmd("DISCARD").query(&mut one)?;
    let never: Option<String> = two.get("never")?;
    assert_eq!(never, None);
    Ok(())
}
