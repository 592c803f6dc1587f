//! The znode namespace on a three-node cluster through followers: watches
//! set on one node fire for changes made through another, before any
//! later reply on the watcher's connection; sequential names stay unique
//! across a leader kill; an ephemeral node goes with its connection's
//! lease; multi is all or nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use integration_tests::resp::{RawClient, Resp};
use integration_tests::Cluster;

fn text(resp: &Resp) -> String {
    match resp {
        Resp::Bulk(data) => String::from_utf8_lossy(data).into_owned(),
        Resp::Status(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `(event, path)` if `resp` is a watch event push.
fn watch_event(resp: &Resp) -> Option<(String, String)> {
    match resp {
        Resp::Array(items) if items.len() == 4 && text(&items[0]) == "znode" => {
            Some((text(&items[1]), text(&items[2])))
        }
        _ => None,
    }
}

fn addresses(cluster: &Cluster) -> HashMap<u64, SocketAddr> {
    cluster
        .ids()
        .into_iter()
        .zip(cluster.client_addrs())
        .collect()
}

#[test]
fn watches_fire_across_nodes_before_any_later_reply() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let addrs = addresses(&cluster);
    let others: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let mut writer = RawClient::connect(addrs[&others[0]])?;
    let mut watcher = RawClient::connect(addrs[&others[1]])?;
    assert_eq!(
        writer.call(&["ZNODE.CREATE", "/cfg", "v1"])?,
        Resp::Bulk(b"/cfg".to_vec())
    );
    let Resp::Array(got) = watcher.call(&["ZNODE.GET", "/cfg", "WATCH"])? else {
        bail!("ZNODE.GET")
    };
    assert_eq!(text(&got[1]), "v1");
    writer.call(&["ZNODE.SET", "/cfg", "v2"])?;
    // The write is acknowledged: the watcher's next reply comes after the
    // event.
    let first = watcher.call(&["ZNODE.GET", "/cfg"])?;
    assert_eq!(
        watch_event(&first),
        Some(("NodeDataChanged".into(), "/cfg".into())),
        "the event comes before the reply: {first}"
    );
    let Resp::Array(reply) = watcher.read()? else {
        bail!("the reply")
    };
    assert_eq!(text(&reply[1]), "v2");
    // One-shot: a second change sends nothing.
    writer.call(&["ZNODE.SET", "/cfg", "v3"])?;
    let next = watcher.call(&["ZNODE.EXISTS", "/cfg"])?;
    assert!(watch_event(&next).is_none(), "fired twice: {next}");
    // A child watch and an exists watch on a missing node.
    watcher.call(&["ZNODE.CHILDREN", "/cfg", "WATCH"])?;
    assert_eq!(
        watcher.call(&["ZNODE.EXISTS", "/later", "WATCH"])?,
        Resp::NullBulk
    );
    writer.call(&["ZNODE.CREATE", "/cfg/a", "x"])?;
    writer.call(&["ZNODE.CREATE", "/later", "x"])?;
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(watch_event(&watcher.read()?).expect("an event"));
    }
    assert_eq!(
        seen,
        vec![
            ("NodeChildrenChanged".to_string(), "/cfg".to_string()),
            ("NodeCreated".to_string(), "/later".to_string())
        ]
    );
    // A persistent recursive watch stays, and never says children changed.
    assert_eq!(
        watcher.call(&["ZNODE.WATCH", "/cfg", "RECURSIVE"])?,
        Resp::Status("OK".into())
    );
    writer.call(&["ZNODE.SET", "/cfg/a", "y"])?;
    writer.call(&["ZNODE.CREATE", "/cfg/a/b", "z"])?;
    writer.call(&["ZNODE.DELETE", "/cfg/a/b"])?;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(watch_event(&watcher.read()?).expect("an event"));
    }
    assert_eq!(
        seen,
        vec![
            ("NodeDataChanged".to_string(), "/cfg/a".to_string()),
            ("NodeCreated".to_string(), "/cfg/a/b".to_string()),
            ("NodeDeleted".to_string(), "/cfg/a/b".to_string())
        ]
    );
    assert_eq!(
        watcher.call(&["ZNODE.UNWATCH", "/cfg", "RECURSIVE"])?,
        Resp::Integer(1)
    );
    Ok(())
}

#[test]
fn sequential_names_stay_unique_across_a_leader_kill() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let addrs = addresses(&cluster);
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let mut client = RawClient::connect(addrs[&follower])?;
    client.call(&["ZNODE.CREATE", "/queue", ""])?;
    let mut names = Vec::new();
    for _ in 0..5 {
        names.push(text(&client.call(&[
            "ZNODE.CREATE",
            "/queue/item-",
            "x",
            "SEQUENTIAL",
        ])?));
    }
    cluster.kill(leader);
    let deadline = Instant::now() + Duration::from_secs(20);
    while names.len() < 10 {
        match client.call(&["ZNODE.CREATE", "/queue/item-", "x", "SEQUENTIAL"])? {
            Resp::Bulk(name) => names.push(String::from_utf8_lossy(&name).into_owned()),
            Resp::Error(e) if e.starts_with("CLUSTERDOWN") || e.starts_with("TRYAGAIN") => {
                if Instant::now() > deadline {
                    bail!("no leader after the kill");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            other => bail!("{other}"),
        }
    }
    let Resp::Array(children) = client.call(&["ZNODE.CHILDREN", "/queue"])? else {
        bail!("children")
    };
    let listed: Vec<String> = children
        .iter()
        .map(|c| format!("/queue/{}", text(c)))
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    // A TRYAGAIN create may have applied: every acknowledged name is
    // there, no name twice, suffixes increasing.
    assert_eq!(unique.len(), names.len(), "a suffix was handed out twice");
    assert!(
        names.iter().all(|n| listed.contains(n)),
        "{names:?} vs {listed:?}"
    );
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    Ok(())
}

#[test]
fn an_ephemeral_goes_with_its_connections_lease_and_multi_is_all_or_nothing() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let addrs = addresses(&cluster);
    let others: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let mut observer = RawClient::connect(addrs[&others[1]])?;
    observer.call(&["ZNODE.CREATE", "/workers", ""])?;
    observer.call(&["ZNODE.WATCH", "/workers", "RECURSIVE"])?;
    {
        let mut session = RawClient::connect(addrs[&others[0]])?;
        let Resp::Integer(lease) = session.call(&["LEASE.GRANT", "600"])? else {
            bail!("LEASE.GRANT")
        };
        session.call(&["LEASE.BIND", &lease.to_string()])?;
        let created = session.call(&[
            "ZNODE.CREATE",
            "/workers/w1",
            "me",
            "EPHEMERAL",
            &lease.to_string(),
        ])?;
        assert_eq!(text(&created), "/workers/w1");
        std::thread::sleep(Duration::from_millis(1_500));
        // Kept alive while the connection lives.
        assert!(matches!(
            session.call(&["ZNODE.EXISTS", "/workers/w1"])?,
            Resp::Array(_)
        ));
    }
    assert_eq!(
        watch_event(&observer.read()?),
        Some(("NodeCreated".into(), "/workers/w1".into()))
    );
    let started = Instant::now();
    let gone = watch_event(&observer.read()?);
    assert_eq!(gone, Some(("NodeDeleted".into(), "/workers/w1".into())));
    assert!(started.elapsed() < Duration::from_secs(5));
    // Multi: one failing check undoes everything.
    let mut client = RawClient::connect(addrs[&others[0]])?;
    let Resp::Array(results) = client.call(&[
        "ZNODE.MULTI",
        "CREATE",
        "/workers/a",
        "x",
        "CHECK",
        "/workers",
        "VERSION",
        "9",
    ])?
    else {
        bail!("ZNODE.MULTI")
    };
    assert_eq!(results[0], Resp::Status("OK".into()));
    assert!(matches!(&results[1], Resp::Error(e) if e.starts_with("ZBADVERSION")));
    assert_eq!(
        client.call(&["ZNODE.EXISTS", "/workers/a"])?,
        Resp::NullBulk
    );
    Ok(())
}

#[test]
fn acls_are_checked_for_callers_that_name_themselves() -> Result<()> {
    use integration_tests::error_of;
    let cluster = Cluster::start(3)?;
    let mut leader = cluster.client(1)?;
    let mut follower = cluster.client(3)?;
    let alice = "alice:Gl1Dm7Yw8UJx0mL4fXJYIBGVlsM=";
    let created: String = redis::cmd("ZNODE.CREATE")
        .arg("/acl")
        .arg("private")
        .arg("ACL")
        .arg("cdrwa")
        .arg("digest")
        .arg(alice)
        .arg("ACL")
        .arg("r")
        .arg("ip")
        .arg("10.0.0.0/8")
        .query(&mut leader)?;
    assert_eq!(created, "/acl");
    // A caller without AS is trusted (its Redis user's rights apply).
    let got: redis::Value = redis::cmd("ZNODE.GET").arg("/acl").query(&mut follower)?;
    assert!(format!("{got:?}").contains("private"), "{got:?}");
    let err = error_of(
        &mut follower,
        &["ZNODE.GET", "/acl", "AS", "ip", "192.168.1.1"],
    );
    assert!(err.starts_with("ZNOAUTH"), "{err}");
    let got: redis::Value = redis::cmd("ZNODE.GET")
        .arg("/acl")
        .arg("AS")
        .arg("ip")
        .arg("10.1.2.3")
        .query(&mut follower)?;
    assert!(
        format!("{got:?}").contains("private"),
        "the ip range may read"
    );
    let err = error_of(
        &mut follower,
        &["ZNODE.SET", "/acl", "x", "AS", "ip", "10.1.2.3"],
    );
    assert!(
        err.starts_with("ZNOAUTH"),
        "READ does not allow a write: {err}"
    );
    let err = error_of(
        &mut follower,
        &["ZNODE.CREATE", "/acl/c", "", "AS", "ip", "10.1.2.3"],
    );
    assert!(err.starts_with("ZNOAUTH"), "{err}");
    let _: redis::Value = redis::cmd("ZNODE.SET")
        .arg("/acl")
        .arg("v2")
        .arg("AS")
        .arg("digest")
        .arg(alice)
        .query(&mut follower)?;
    // SETACL needs ADMIN and checks the ACL's version.
    let err = error_of(
        &mut follower,
        &[
            "ZNODE.SETACL",
            "/acl",
            "ACL",
            "31",
            "world",
            "anyone",
            "VERSION",
            "4",
        ],
    );
    assert!(err.starts_with("ZBADVERSION"), "{err}");
    let err = error_of(
        &mut follower,
        &["ZNODE.SETACL", "/acl", "ACL", "31", "sasl", "x"],
    );
    assert!(err.starts_with("ZINVALIDACL"), "{err}");
    let _: redis::Value = redis::cmd("ZNODE.SETACL")
        .arg("/acl")
        .arg("ACL")
        .arg("31")
        .arg("world")
        .arg("anyone")
        .arg("VERSION")
        .arg(0)
        .query(&mut follower)?;
    let acl: redis::Value = redis::cmd("ZNODE.GETACL").arg("/acl").query(&mut leader)?;
    let shown = format!("{acl:?}");
    assert!(
        shown.contains("cdrwa") && shown.contains("anyone"),
        "{shown}"
    );
    assert!(shown.contains("aversion"), "{shown}");
    let err = error_of(&mut follower, &["ZNODE.GETACL", "/missing"]);
    assert!(err.starts_with("ZNONODE"), "{err}");
    Ok(())
}
