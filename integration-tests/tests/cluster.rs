//! End-to-end: real lockstep processes, real sockets, the `redis` client.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::Result;
use integration_tests::{retry, Cluster};
use redis::{Commands, RedisResult};

fn set(con: &mut redis::Connection, key: &str, value: &str) -> RedisResult<()> {
    redis::cmd("SET").arg(key).arg(value).query(con)
}

#[test]
fn write_on_a_follower_is_read_on_another_node() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let mut writer = cluster.client(followers[0])?;
    set(&mut writer, "greeting", "hello")?;
    // Linearizable read on the other follower: no waiting needed.
    let mut reader = cluster.client(followers[1])?;
    let value: Option<String> = reader.get("greeting")?;
    assert_eq!(value.as_deref(), Some("hello"));
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut reader)?;
    assert_eq!(role[0], redis::Value::BulkString(b"slave".to_vec()));
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut cluster.client(leader)?)?;
    assert_eq!(role[0], redis::Value::BulkString(b"master".to_vec()));
    Ok(())
}

#[test]
fn leader_kill_elects_a_new_leader_and_keeps_acknowledged_writes() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let old_leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let survivor = (1..=3).find(|&id| id != old_leader).unwrap();
    let mut con = cluster.client(old_leader)?;
    for i in 0..50 {
        set(&mut con, &format!("k{i}"), &format!("v{i}"))?;
    }
    cluster.kill(old_leader);
    let killed_at = Instant::now();
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    assert_ne!(new_leader, old_leader);
    eprintln!("new leader after {:?}", killed_at.elapsed());
    let mut con = cluster.client(survivor)?;
    for i in 0..50 {
        let value: Option<String> =
            retry(Duration::from_secs(10), || Ok(con.get(format!("k{i}"))?))?;
        assert_eq!(value, Some(format!("v{i}")), "acknowledged write k{i} lost");
    }
    retry(Duration::from_secs(10), || {
        Ok(set(&mut con, "after", "failover")?)
    })?;
    // The killed node comes back and catches up.
    cluster.spawn(old_leader)?;
    let mut con = cluster.client(old_leader)?;
    let value: Option<String> = retry(Duration::from_secs(10), || Ok(con.get("after")?))?;
    assert_eq!(value.as_deref(), Some("failover"));
    Ok(())
}

#[test]
fn restarting_all_nodes_keeps_all_data() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let mut con = cluster.client(1)?;
    for i in 0..20 {
        set(&mut con, &format!("durable{i}"), "yes")?;
    }
    let _: () = redis::cmd("SET")
        .arg("ttl")
        .arg("x")
        .arg("EX")
        .arg(3600)
        .query(&mut con)?;
    // Two clean stops and one kill -9: acknowledged data survives both.
    cluster.stop(1)?;
    cluster.stop(2)?;
    cluster.kill(3);
    for id in 1..=3 {
        cluster.spawn(id)?;
    }
    cluster.wait_for_leader(Duration::from_secs(15))?;
    for id in 1..=3 {
        let mut con = cluster.client(id)?;
        for i in 0..20 {
            let value: Option<String> = retry(Duration::from_secs(10), || {
                Ok(con.get(format!("durable{i}"))?)
            })?;
            assert_eq!(value.as_deref(), Some("yes"), "node {id} lost durable{i}");
        }
        let ttl: i64 = con.ttl("ttl")?;
        assert!((3000..=3600).contains(&ttl), "ttl {ttl}");
    }
    Ok(())
}

#[test]
fn a_lock_survives_the_leaders_death_and_is_never_granted_early() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let mut con = cluster.client(leader)?;
    let ttl_ms = 4000;
    // Taken before the request: the lock's TTL cannot have started earlier.
    let granted_at = Instant::now();
    let acquired: Option<String> = redis::cmd("SET")
        .arg("lock:job")
        .arg("owner-1")
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms)
        .query(&mut con)?;
    assert_eq!(acquired.as_deref(), Some("OK"));
    let token: i64 = redis::cmd("FENCE").arg("lock:job").query(&mut con)?;
    cluster.kill(leader);
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    // Contenders on every surviving node try until they get it.
    let mut contenders: Vec<_> = others
        .iter()
        .map(|&id| cluster.client(id))
        .collect::<Result<_>>()?;
    let (winner_at, winner_token) = loop {
        let mut won = None;
        for con in &mut contenders {
            let reply: RedisResult<Option<String>> = redis::cmd("SET")
                .arg("lock:job")
                .arg("owner-2")
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query(con);
            if let Ok(Some(_)) = reply {
                let token: i64 = redis::cmd("FENCE").arg("lock:job").query(con)?;
                won = Some((Instant::now(), token));
                break;
            }
        }
        if let Some(won) = won {
            break won;
        }
        assert!(
            granted_at.elapsed() < Duration::from_secs(30),
            "lock never released"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let held = winner_at.duration_since(granted_at);
    assert!(
        held >= Duration::from_millis(ttl_ms),
        "lock granted again after {held:?}, before its {ttl_ms} ms TTL"
    );
    assert!(
        winner_token > token,
        "fencing token {winner_token} <= {token}"
    );
    Ok(())
}

#[test]
fn a_follower_that_missed_compacted_entries_catches_up_by_snapshot() -> Result<()> {
    let mut cluster = Cluster::start_with(3, &["--snapshot-threshold", "20"])?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let lagger = (1..=3).find(|&id| id != leader).unwrap();
    cluster.kill(lagger);
    let mut con = cluster.client(leader)?;
    for i in 0..200 {
        set(&mut con, &format!("snap{i}"), &i.to_string())?;
    }
    // One pair larger than a stream frame (1 MiB).
    let big = "b".repeat(3 << 20);
    set(&mut con, "snapbig", &big)?;
    for i in 200..220 {
        set(&mut con, &format!("snap{i}"), &i.to_string())?;
    }
    let first: u64 = cluster
        .info_field(leader, "raft_first_index")
        .unwrap()
        .parse()?;
    assert!(first > 100, "log not compacted (first index {first})");
    let target: u64 = cluster
        .info_field(leader, "raft_applied_index")
        .unwrap()
        .parse()?;
    cluster.spawn(lagger)?;
    cluster.wait_applied(lagger, target, Duration::from_secs(20))?;
    // The log is written by a thread of its own: the line may follow the
    // applied index by a moment.
    let logged = retry(Duration::from_secs(5), || {
        if cluster.log_of(lagger).contains("installed snapshot") {
            Ok(())
        } else {
            anyhow::bail!("not logged yet")
        }
    });
    assert!(logged.is_ok(), "caught up without a snapshot");
    let log = cluster.log_of(lagger);
    assert!(
        log.contains("snapshot staged"),
        "the payload was not streamed into the staging file"
    );
    let mut con = cluster.client(lagger)?;
    for i in [0, 99, 199, 219] {
        let value: Option<String> = con.get(format!("snap{i}"))?;
        assert_eq!(value, Some(i.to_string()));
    }
    let value: Option<String> = con.get("snapbig")?;
    assert!(value == Some(big), "the large value came through whole");
    Ok(())
}

#[test]
fn without_quorum_commands_fail_with_clusterdown_not_silence() -> Result<()> {
    let mut cluster = Cluster::start_with(3, &["--request-timeout-ms", "1500"])?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    cluster.kill(others[0]);
    cluster.kill(others[1]);
    let mut con = cluster.client(leader)?;
    // Once the lone node has stepped down, a write is refused as not executed.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let started = Instant::now();
        let reply: RedisResult<()> = set(&mut con, "k", "v");
        let err = reply.expect_err("a write without quorum cannot succeed");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited too long"
        );
        let code = err.code().unwrap_or_default().to_string();
        assert!(
            code == "CLUSTERDOWN" || code == "TRYAGAIN",
            "unexpected error {err}"
        );
        if code == "CLUSTERDOWN" {
            break;
        }
        assert!(Instant::now() < deadline, "never reported CLUSTERDOWN");
    }
    let read: RedisResult<Option<String>> = con.get("k");
    assert!(read.is_err(), "no linearizable read without quorum");
    Ok(())
}

#[test]
fn bad_input_gets_errors_and_never_hurts_the_node() -> Result<()> {
    let mut cluster = Cluster::start_with(1, &["--max-bulk-bytes", "1048576"])?;
    let addr = cluster.node(1).client_addr;
    let exchange = |payload: &[u8]| -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(payload).unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    assert!(
        exchange(b"*1\r\n$999999999\r\n").starts_with("-ERR Protocol error: invalid bulk length")
    );
    assert!(exchange(b"*99999999\r\n").starts_with("-ERR Protocol error: invalid multibulk length"));
    assert!(exchange(b"*1\r\n:12\r\n").starts_with("-ERR Protocol error"));
    assert!(
        exchange(b"SET a \"unbalanced\r\n").starts_with("-ERR Protocol error: unbalanced quotes")
    );
    // Inline commands work, as with telnet.
    let inline = exchange(b"PING\r\nSET inline \"x y\"\r\nGET inline\r\nQUIT\r\n");
    assert_eq!(inline, "+PONG\r\n+OK\r\n$3\r\nx y\r\n+OK\r\n");

    let mut con = cluster.client(1)?;
    let cases: &[(&[&str], &str)] = &[
        (&["GET"], "wrong number of arguments for 'get' command"),
        (
            &["SET", "k", "v", "EX", "soon"],
            "value is not an integer or out of range",
        ),
        (
            &["SET", "k", "v", "PX", "-1"],
            "invalid expire time in 'set' command",
        ),
        (
            &["EXPIRE", "k", "99999999999999999999"],
            "value is not an integer or out of range",
        ),
        (&["NOSUCH", "x"], "unknown command 'NOSUCH'"),
    ];
    for (args, expected) in cases {
        let err = redis::cmd(args[0])
            .arg(&args[1..])
            .query::<redis::Value>(&mut con)
            .expect_err("must fail");
        assert!(err.to_string().contains(expected), "{args:?}: {err}");
    }
    // A huge pipeline of commands is answered in order.
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("INCR").arg("counter").ignore();
        if i % 500 == 0 {
            pipe.cmd("PING").ignore();
        }
    }
    pipe.cmd("GET").arg("counter");
    let (count,): (i64,) = pipe.query(&mut con)?;
    assert_eq!(count, 2000);
    assert!(cluster.is_running(1), "the node survived");
    Ok(())
}

#[test]
fn resp3_hello_and_client_probes_work() -> Result<()> {
    let cluster = Cluster::start(1)?;
    let mut con = cluster.client(1)?;
    let hello: redis::Value = redis::cmd("HELLO").arg(3).query(&mut con)?;
    assert!(matches!(hello, redis::Value::Map(_)), "{hello:?}");
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("tester")
        .query(&mut con)?;
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut con)?;
    assert_eq!(name, "tester");
    let _: () = redis::cmd("CLIENT")
        .arg("SETINFO")
        .arg("LIB-NAME")
        .arg("redis-rs")
        .query(&mut con)?;
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con)?;
    assert!(
        list.contains("name=tester") && list.contains("lib-name=redis-rs"),
        "{list}"
    );
    let info: String = redis::cmd("INFO").query(&mut con)?;
    for field in [
        "raft_role:leader",
        "raft_term:",
        "raft_commit_index:",
        "raft_nodes:1",
        "aof_enabled:1",
    ] {
        assert!(info.contains(field), "INFO lacks {field}");
    }
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut con)?;
    assert!(count > 30);
    let _: () = redis::cmd("SELECT").arg(0).query(&mut con)?;
    let err = redis::cmd("SELECT")
        .arg(1)
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("DB index is out of range"));
    Ok(())
}

#[test]
fn sigterm_shuts_a_node_down_cleanly() -> Result<()> {
    let mut cluster = Cluster::start(1)?;
    set(&mut cluster.client(1)?, "k", "v")?;
    cluster.stop(1)?;
    cluster.spawn(1)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let value: Option<String> = cluster.client(1)?.get("k")?;
    assert_eq!(value.as_deref(), Some("v"));
    Ok(())
}
