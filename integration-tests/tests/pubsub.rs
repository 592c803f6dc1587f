//! Pub/sub across nodes: a message published on one node reaches
//! subscribers on every node once, also when published from a script.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Result;
use integration_tests::Cluster;

#[test]
fn messages_reach_subscribers_on_every_node_once() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;

    let mut on_two = cluster.client(2)?;
    let mut on_three = cluster.client(3)?;
    let mut channel_sub = on_three.as_pubsub();
    channel_sub.set_read_timeout(Some(Duration::from_secs(5)))?;
    channel_sub.subscribe("lock:released")?;
    let mut pattern_sub = on_two.as_pubsub();
    pattern_sub.set_read_timeout(Some(Duration::from_secs(5)))?;
    pattern_sub.psubscribe("lock:*")?;

    let mut publisher = cluster.client(1)?;
    let numsub: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("lock:released")
        .query(&mut cluster.client(3)?)?;
    assert_eq!(numsub[1], redis::Value::Int(1));

    let receivers: i64 = redis::cmd("PUBLISH")
        .arg("lock:released")
        .arg("first")
        .query(&mut publisher)?;
    assert_eq!(
        receivers, 0,
        "node 1 itself has no subscribers (counts are per node)"
    );
    // From inside a script, as Redisson's unlock does.
    let _: Option<i64> = redis::cmd("EVAL")
        .arg("redis.call('publish', KEYS[1], ARGV[1]) return nil")
        .arg(1)
        .arg("lock:released")
        .arg("second")
        .query(&mut publisher)?;

    for expected in ["first", "second"] {
        let message = channel_sub.get_message()?;
        assert_eq!(message.get_channel_name(), "lock:released");
        assert_eq!(message.get_payload::<String>()?, expected);
        let message = pattern_sub.get_message()?;
        assert_eq!(message.get_pattern::<String>()?, "lock:*");
        assert_eq!(message.get_payload::<String>()?, expected);
    }
    // Exactly once: nothing more arrives.
    channel_sub.set_read_timeout(Some(Duration::from_millis(300)))?;
    assert!(
        channel_sub.get_message().is_err(),
        "a message arrived twice"
    );

    // Subscribed RESP2 connections accept only subscription commands.
    let mut raw = TcpStream::connect(cluster.node(3).client_addr)?;
    raw.set_read_timeout(Some(Duration::from_secs(5)))?;
    raw.write_all(b"SUBSCRIBE x\r\nGET k\r\nPING\r\n")?;
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !seen.contains("pong") {
        let n = raw.read(&mut buf)?;
        assert!(n > 0, "connection closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        seen.starts_with("*3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n"),
        "{seen}"
    );
    assert!(seen.contains("-ERR Can't execute 'get'"), "{seen}");
    Ok(())
}

#[test]
fn resp3_subscribers_get_push_frames() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let mut raw = TcpStream::connect(cluster.node(2).client_addr)?;
    raw.set_read_timeout(Some(Duration::from_secs(5)))?;
    raw.write_all(b"HELLO 3\r\nSUBSCRIBE news\r\n")?;
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n") {
        let n = raw.read(&mut buf)?;
        assert!(n > 0, "connection closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg("news")
        .arg("hi")
        .query(&mut cluster.client(2)?)?;
    assert_eq!(receivers, 1);
    seen.clear();
    while !seen.contains(">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n") {
        let n = raw.read(&mut buf)?;
        assert!(n > 0, "connection closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // RESP3 connections may run other commands while subscribed.
    raw.write_all(b"GET nothing\r\n")?;
    seen.clear();
    while !seen.contains("_\r\n") {
        let n = raw.read(&mut buf)?;
        assert!(n > 0, "connection closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    Ok(())
}
