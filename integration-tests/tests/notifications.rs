//! Keyspace notifications, client-side caching and the change feed on a
//! three-node cluster: events emitted at apply reach subscribers on every
//! node exactly once and in log order; a tracking client on one node is
//! invalidated by writes through another; a feed reader that loses its
//! node resumes on another from its last index and misses nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use integration_tests::resp::{RawClient, Resp};
use integration_tests::Cluster;

const MARKER: &str = "notifications-marker";

fn text(resp: &Resp) -> String {
    match resp {
        Resp::Bulk(data) => String::from_utf8_lossy(data).into_owned(),
        Resp::Status(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A subscriber to every keyevent channel and to the marker channel.
fn subscriber(addr: SocketAddr, pattern: &str) -> Result<RawClient> {
    let mut client = RawClient::connect(addr)?;
    client.call(&["PSUBSCRIBE", pattern])?;
    client.call(&["SUBSCRIBE", MARKER])?;
    Ok(client)
}

/// `event key` messages up to the marker.
fn until_marker(client: &mut RawClient) -> Result<Vec<String>> {
    let mut events = Vec::new();
    loop {
        let Resp::Array(items) = client.read()? else {
            bail!("not a message");
        };
        if text(&items[0]) == "message" {
            return Ok(events);
        }
        let channel = text(&items[2]);
        let event = channel.rsplit(':').next().unwrap_or_default().to_string();
        events.push(format!("{event} {}", text(&items[3])));
    }
}

#[test]
fn keyspace_events_reach_every_node_once_in_log_order() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let addrs = cluster.client_addrs();
    // Spring Data Redis's start-up sequence, on a follower.
    let mut setup = RawClient::connect(addrs[1])?;
    assert_eq!(
        setup.call(&["CONFIG", "GET", "notify-keyspace-events"])?,
        Resp::Array(vec![
            Resp::Bulk(b"notify-keyspace-events".to_vec()),
            Resp::Bulk(Vec::new())
        ])
    );
    assert_eq!(
        setup.call(&["CONFIG", "SET", "notify-keyspace-events", "EA"])?,
        Resp::Status("OK".into())
    );
    let mut subscribers: Vec<RawClient> = addrs
        .iter()
        .map(|addr| subscriber(*addr, "__keyevent@*"))
        .collect::<Result<_>>()?;
    // Writers on every node at once.
    let writers: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(n, addr)| {
            let addr = *addr;
            std::thread::spawn(move || -> Result<()> {
                let mut client = RawClient::connect(addr)?;
                for i in 0..150 {
                    client.call(&["SET", &format!("w{n}:{i}"), "v"])?;
                    client.call(&["INCR", &format!("w{n}:counter")])?;
                }
                Ok(())
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread")?;
    }
    RawClient::connect(addrs[0])?.call(&["PUBLISH", MARKER, "end"])?;
    let seen: Vec<Vec<String>> = subscribers
        .iter_mut()
        .map(until_marker)
        .collect::<Result<_>>()?;
    assert_eq!(seen[0].len(), 3 * 300, "every event once on node 1");
    assert_eq!(seen[0], seen[1], "nodes 1 and 2 saw the same sequence");
    assert_eq!(seen[0], seen[2], "nodes 1 and 3 saw the same sequence");
    // Each writer's events in its own order.
    for n in 0..3 {
        let own: Vec<&String> = seen[0]
            .iter()
            .filter(|e| e.contains(&format!("w{n}:")))
            .collect();
        let expected: Vec<String> = (0..150)
            .flat_map(|i| [format!("set w{n}:{i}"), format!("incrby w{n}:counter")])
            .collect();
        assert_eq!(own.len(), expected.len());
        assert!(
            own.iter().zip(&expected).all(|(a, b)| *a == b),
            "writer {n}"
        );
    }
    Ok(())
}

#[test]
fn expired_keys_are_announced_once_on_every_node() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let addrs = cluster.client_addrs();
    let mut client = RawClient::connect(addrs[2])?;
    client.call(&["CONFIG", "SET", "notify-keyspace-events", "Ex"])?;
    let mut subscribers: Vec<RawClient> = addrs
        .iter()
        .map(|addr| subscriber(*addr, "__keyevent@0__:expired"))
        .collect::<Result<_>>()?;
    for n in 0..5 {
        client.call(&["SET", &format!("short{n}"), "v", "PX", "150"])?;
    }
    client.call(&["SET", "long", "v", "PX", "600000"])?;
    std::thread::sleep(Duration::from_millis(1_000));
    client.call(&["PUBLISH", MARKER, "end"])?;
    for subscriber in &mut subscribers {
        let mut seen = until_marker(subscriber)?;
        seen.sort();
        let expected: Vec<String> = (0..5).map(|n| format!("expired short{n}")).collect();
        assert_eq!(seen, expected);
    }
    Ok(())
}

#[test]
fn a_tracking_client_on_a_follower_is_invalidated_by_writes_on_other_nodes() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let other = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != follower)
        .unwrap();
    let addrs: HashMap<u64, SocketAddr> = cluster
        .ids()
        .into_iter()
        .zip(cluster.client_addrs())
        .collect();
    let script = integration_tests::manifest_dir().join("python/client_cache.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(addrs[&follower].port().to_string())
        .arg(addrs[&other].port().to_string())
        .output()?;
    if !output.status.success() {
        bail!(
            "redis-py client cache: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(String::from_utf8_lossy(&output.stdout).contains("client cache ok"));

    // RESP2: invalidations redirected to a subscribed connection, BCAST by
    // prefix.
    let mut target = RawClient::connect(addrs[&follower])?;
    let Resp::Integer(target_id) = target.call(&["CLIENT", "ID"])? else {
        bail!("CLIENT ID")
    };
    target.call(&["SUBSCRIBE", "__redis__:invalidate"])?;
    target.call(&["SUBSCRIBE", MARKER])?;
    let mut tracker = RawClient::connect(addrs[&follower])?;
    let id = target_id.to_string();
    for (args, error) in [
        (
            vec!["CLIENT", "TRACKING", "ON", "PREFIX", "app:"],
            "ERR PREFIX option requires BCAST",
        ),
        (
            vec!["CLIENT", "TRACKING", "ON", "BCAST", "OPTIN"],
            "ERR OPTIN and OPTOUT are not compatible with BCAST",
        ),
        (
            vec!["CLIENT", "TRACKING", "ON", "REDIRECT", "999999"],
            "ERR The client ID you want redirect to does not exist",
        ),
        (
            vec!["CLIENT", "CACHING", "YES"],
            "ERR CLIENT CACHING can be called only",
        ),
    ] {
        match tracker.call(&args)? {
            Resp::Error(text) if text.starts_with(error) => {}
            other => bail!("{args:?}: {other}"),
        }
    }
    assert_eq!(tracker.call(&["CLIENT", "GETREDIR"])?, Resp::Integer(-1));
    tracker.call(&[
        "CLIENT", "TRACKING", "ON", "REDIRECT", &id, "BCAST", "PREFIX", "app:",
    ])?;
    assert_eq!(
        tracker.call(&["CLIENT", "GETREDIR"])?,
        Resp::Integer(target_id)
    );
    let mut writer = RawClient::connect(addrs[&other])?;
    writer.call(&["SET", "other:x", "1"])?;
    writer.call(&["SET", "app:x", "1"])?;
    writer.call(&["PUBLISH", MARKER, "end"])?;
    let mut invalidated = Vec::new();
    loop {
        let Resp::Array(items) = target.read()? else {
            bail!("not a message")
        };
        if text(&items[1]) == MARKER {
            break;
        }
        assert_eq!(text(&items[1]), "__redis__:invalidate");
        invalidated.push(items[2].clone());
    }
    assert_eq!(
        invalidated,
        vec![Resp::Array(vec![Resp::Bulk(b"app:x".to_vec())])],
        "only the tracked prefix"
    );
    Ok(())
}

/// `(next, [(index, key)])` of a CHANGES.READ reply (RESP2: flat pairs).
fn page(reply: &Resp) -> Result<(u64, Vec<(u64, String)>)> {
    let Resp::Array(fields) = reply else {
        bail!("CHANGES.READ: {reply}")
    };
    let field = |items: &[Resp], name: &str| -> Option<Resp> {
        items
            .chunks(2)
            .find(|pair| text(&pair[0]) == name)
            .map(|pair| pair[1].clone())
    };
    let Some(Resp::Integer(next)) = field(fields, "next") else {
        bail!("no next in {reply}")
    };
    let Some(Resp::Array(changes)) = field(fields, "changes") else {
        bail!("no changes in {reply}")
    };
    let mut out = Vec::new();
    for change in changes {
        let Resp::Array(items) = change else {
            bail!("change {change}")
        };
        let Some(Resp::Integer(index)) = field(&items, "index") else {
            bail!("index")
        };
        out.push((index as u64, text(&field(&items, "key").unwrap())));
    }
    Ok((next as u64, out))
}

#[test]
fn a_feed_reader_resumes_on_another_node_after_a_kill_and_misses_nothing() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let ids = cluster.ids();
    let addrs: HashMap<u64, SocketAddr> = ids.iter().copied().zip(cluster.client_addrs()).collect();
    let watched = ids.iter().copied().find(|id| *id != leader).unwrap();
    let spare = ids
        .iter()
        .copied()
        .find(|id| *id != leader && *id != watched)
        .unwrap();
    let mut writer = RawClient::connect(addrs[&leader])?;
    for i in 0..200 {
        writer.call(&["SET", &format!("feed:{i}"), "v"])?;
        writer.call(&["SET", &format!("noise:{i}"), "v"])?;
    }
    let mut reader = RawClient::connect(addrs[&watched])?;
    let mut seen = Vec::new();
    let mut from = 0;
    for _ in 0..2 {
        let (next, changes) = page(&reader.call(&[
            "CHANGES.READ",
            "feed:",
            "FROM",
            &from.to_string(),
            "COUNT",
            "50",
        ])?)?;
        seen.extend(changes);
        from = next;
    }
    cluster.kill(watched);
    // More writes while the reader moves.
    for i in 200..300 {
        writer.call(&["SET", &format!("feed:{i}"), "v"])?;
    }
    let mut reader = RawClient::connect(addrs[&spare])?;
    loop {
        let (next, changes) = page(&reader.call(&[
            "CHANGES.READ",
            "feed:",
            "FROM",
            &from.to_string(),
            "COUNT",
            "50",
        ])?)?;
        let done = changes.is_empty();
        seen.extend(changes);
        from = next;
        if done {
            break;
        }
    }
    let keys: Vec<String> = seen.iter().map(|(_, key)| key.clone()).collect();
    let expected: Vec<String> = (0..300).map(|i| format!("feed:{i}")).collect();
    assert_eq!(
        keys, expected,
        "every change once, in order, across the move"
    );
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "indices increase");
    // A blocking read returns as soon as a matching change is applied.
    let blocked = std::thread::spawn({
        let addr = addrs[&spare];
        let from = from.to_string();
        move || -> Result<Resp> {
            RawClient::connect(addr)?.call(&[
                "CHANGES.READ",
                "feed:",
                "FROM",
                &from,
                "BLOCK",
                "10000",
            ])
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    writer.call(&["SET", "noise:late", "v"])?;
    writer.call(&["SET", "feed:late", "v"])?;
    let (_, late) = page(&blocked.join().expect("blocked reader")?)?;
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].1, "feed:late");
    Ok(())
}

#[test]
fn a_feed_subscription_catches_up_then_follows_live_changes() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let ids = cluster.ids();
    let addrs: HashMap<u64, SocketAddr> = ids.iter().copied().zip(cluster.client_addrs()).collect();
    let follower = ids.iter().copied().find(|id| *id != leader).unwrap();
    let mut writer = RawClient::connect(addrs[&leader])?;
    for i in 0..1500 {
        writer.call(&["SET", &format!("sub:{i}"), "v"])?;
    }
    let mut subscriber = RawClient::connect(addrs[&follower])?;
    let Resp::Array(confirm) = subscriber.call(&["CHANGES.SUBSCRIBE", "sub:", "FROM", "0"])? else {
        bail!("CHANGES.SUBSCRIBE")
    };
    assert_eq!(text(&confirm[0]), "changes-subscribe");
    let live = std::thread::spawn(move || -> Result<()> {
        for i in 1500..1600 {
            writer.call(&["SET", &format!("sub:{i}"), "v"])?;
            writer.call(&["SET", &format!("other:{i}"), "v"])?;
        }
        Ok(())
    });
    let mut last_index = 0;
    for i in 0..1600 {
        let Resp::Array(push) = subscriber.read()? else {
            bail!("not a push")
        };
        assert_eq!(text(&push[0]), "changes");
        let Resp::Array(change) = &push[2] else {
            bail!("change {}", push[2])
        };
        let field = |name: &str| {
            change
                .chunks(2)
                .find(|pair| text(&pair[0]) == name)
                .map(|pair| pair[1].clone())
        };
        assert_eq!(text(&field("key").unwrap()), format!("sub:{i}"));
        let Some(Resp::Integer(index)) = field("index") else {
            bail!("index")
        };
        assert!(index > last_index, "in log order");
        last_index = index;
    }
    live.join().expect("writer")?;
    // Below the floor: refused, naming it.
    let mut client = RawClient::connect(addrs[&follower])?;
    client.call(&["CONFIG", "SET", "changes-max-kept", "100"])?;
    client.call(&["SET", "sub:trim", "v"])?;
    match client.call(&["CHANGES.SUBSCRIBE", "sub:", "FROM", "1"])? {
        Resp::Error(text) if text.starts_with("COMPACTED") => {}
        other => bail!("expected COMPACTED, got {other}"),
    }
    Ok(())
}

#[test]
fn the_feed_reads_as_a_stream_with_redis_py() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let addrs: HashMap<u64, SocketAddr> = cluster
        .ids()
        .into_iter()
        .zip(cluster.client_addrs())
        .collect();
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let script = integration_tests::manifest_dir().join("python/feed_stream.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(addrs[&follower].port().to_string())
        .arg(addrs[&leader].port().to_string())
        .output()?;
    if !output.status.success() {
        bail!(
            "feed as a stream: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(String::from_utf8_lossy(&output.stdout).contains("feed stream ok"));
    Ok(())
}
