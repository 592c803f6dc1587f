//! `lockstep backup` of a running cluster and `lockstep restore` into new
//! clusters, on real processes: a backup taken during writes holds every
//! write acknowledged before it and none sent after it; a quiet backup
//! restored into a new three-node cluster has the source's DEBUG DIGEST;
//! TTLs and locks go on; damaged files are refused and write nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use integration_tests::{connect_with_timeout, retry, Cluster};

fn digest(cluster: &Cluster, id: u64) -> Result<String> {
    let mut con = cluster.client(id)?;
    Ok(redis::cmd("DEBUG").arg("DIGEST").query(&mut con)?)
}

fn info_number(cluster: &Cluster, id: u64, field: &str) -> u64 {
    cluster
        .info_field(id, field)
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_backup_during_writes_restores_into_a_new_cluster() -> Result<()> {
    let source = Cluster::start(3)?;
    let mut con = source.client(1)?;
    redis::cmd("SET")
        .arg("ttl-key")
        .arg("v")
        .arg("PX")
        .arg(120_000)
        .query::<()>(&mut con)?;
    let token: i64 = redis::cmd("LOCK.ACQUIRE")
        .arg("job")
        .arg("worker-1")
        .arg(120_000)
        .query(&mut con)?;
    assert!(token > 0);

    // Writes keep going on every node while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let sent_after = Arc::new(AtomicU64::new(u64::MAX));
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let addrs = source.client_addrs();
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut cons: Vec<_> = addrs
                .iter()
                .map(|addr| connect_with_timeout(*addr, Duration::from_secs(10)).unwrap())
                .collect();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let con = &mut cons[n as usize % 3];
                if redis::cmd("SET")
                    .arg(format!("w:{n}"))
                    .arg(n)
                    .query::<()>(con)
                    .is_ok()
                {
                    acked.lock().unwrap().push(n);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    let acked_before = acked.lock().unwrap().clone();
    let file = source.dir().join("during.backup");
    let from = source.node(2).client_addr.to_string();
    let (ok, out, err) =
        source.tool(&["backup", "--from", &from, "--out", file.to_str().unwrap()])?;
    assert!(ok, "backup failed: {err}");
    assert!(out.contains("backup of index"), "{out}");
    // Writes acknowledged from here on were sent after the backup.
    sent_after.store(
        acked.lock().unwrap().last().copied().unwrap_or(0) + 1,
        Ordering::Relaxed,
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let acked_after: Vec<u64> = acked
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|&n| n > sent_after.load(Ordering::Relaxed))
        .collect();
    assert!(acked_before.len() > 20 && !acked_after.is_empty());

    let restored = Cluster::start_from_backup(3, &file)?;
    for id in 1..=3 {
        let mut con = restored.client(id)?;
        let mut pipe = redis::pipe();
        for n in &acked_before {
            pipe.cmd("GET").arg(format!("w:{n}"));
        }
        let values: Vec<Option<u64>> =
            retry(Duration::from_secs(10), || Ok(pipe.query(&mut con)?))?;
        for (n, value) in acked_before.iter().zip(values) {
            assert_eq!(
                value,
                Some(*n),
                "node {id}: w:{n} acknowledged before the backup"
            );
        }
        for n in &acked_after {
            let value: Option<u64> = redis::cmd("GET").arg(format!("w:{n}")).query(&mut con)?;
            assert_eq!(value, None, "w:{n} was sent after the backup");
        }
        // TTLs and locks go on from the backup's cluster time.
        let ttl: i64 = redis::cmd("PTTL").arg("ttl-key").query(&mut con)?;
        assert!(ttl > 0 && ttl <= 120_000, "{ttl}");
        let holder: redis::Value = redis::cmd("LOCK.INFO").arg("job").query(&mut con)?;
        assert!(format!("{holder:?}").contains("worker-1"), "{holder:?}");
    }
    // A new cluster: its own members and identity, and it takes writes.
    let mut con = restored.client(2)?;
    let members: redis::Value = redis::cmd("CLUSTER.MEMBERS").query(&mut con)?;
    let listed = format!("{members:?}");
    for id in 1..=3 {
        assert!(
            listed.contains(&restored.node(id).peer_addr.to_string()),
            "{listed}"
        );
        assert!(
            !listed.contains(&source.node(id).peer_addr.to_string()),
            "{listed}"
        );
    }
    assert_ne!(
        source.info_field(1, "raft_cluster_id"),
        restored.info_field(1, "raft_cluster_id")
    );
    // Its nodes' request ids start above the old cluster's: none of these
    // is taken for a request the old cluster applied.
    for id in 1..=3 {
        let mut con = restored.client(id)?;
        for n in 0..50 {
            redis::cmd("SET")
                .arg(format!("new:{id}:{n}"))
                .arg(n)
                .query::<()>(&mut con)?;
        }
    }
    for id in 1..=3 {
        for n in 0..50 {
            let value: Option<u64> = redis::cmd("GET")
                .arg(format!("new:{id}:{n}"))
                .query(&mut con)?;
            assert_eq!(
                value,
                Some(n),
                "a write through node {id} after the restore"
            );
        }
    }
    Ok(())
}

#[test]
fn a_quiet_backup_restores_with_the_sources_digest() -> Result<()> {
    let mut source = Cluster::start(3)?;
    // 4,000 pipelined writes run one after another (a commit each): the
    // server reads the pipeline only as fast as the disk syncs, longer
    // than the harness's usual 5 s write timeout on a slow disk.
    let mut con = integration_tests::connect_with_timeout(
        source.node(1).client_addr,
        Duration::from_secs(60),
    )?;
    let started = std::time::Instant::now();
    let mut pipe = redis::pipe();
    for n in 0..2_000u64 {
        pipe.cmd("SET").arg(format!("k:{n}")).arg(n).ignore();
        pipe.cmd("HSET")
            .arg(format!("h:{}", n % 50))
            .arg(n)
            .arg(n)
            .ignore();
    }
    pipe.query::<()>(&mut con)?;
    eprintln!("4,000 pipelined writes took {:?}", started.elapsed());
    redis::cmd("ZNODE.CREATE")
        .arg("/app")
        .arg("cfg")
        .query::<String>(&mut con)?;
    let leader = source.wait_for_leader(Duration::from_secs(10))?;
    let index = info_number(&source, leader, "raft_applied_index");
    for id in 1..=3 {
        source.wait_applied(id, index, Duration::from_secs(10))?;
    }
    let expected = digest(&source, 1)?;
    let file = source.dir().join("quiet.backup");
    let from = source.node(3).client_addr.to_string();
    let (ok, _, err) =
        source.tool(&["backup", "--from", &from, "--out", file.to_str().unwrap()])?;
    assert!(ok, "{err}");
    let restored = Cluster::start_from_backup(3, &file)?;
    for id in 1..=3 {
        let got = retry(Duration::from_secs(10), || {
            let got = digest(&restored, id)?;
            if got != expected {
                bail!("node {id}: digest {got}, source {expected}");
            }
            Ok(got)
        })?;
        assert_eq!(got, expected);
    }
    let mut con = restored.client(3)?;
    let node: redis::Value = redis::cmd("ZNODE.GET").arg("/app").query(&mut con)?;
    assert!(format!("{node:?}").contains("\"cfg\""), "{node:?}");
    Ok(())
}

#[test]
fn damaged_backups_are_refused_and_write_nothing() -> Result<()> {
    let source = Cluster::start(1)?;
    let mut con = source.client(1)?;
    for n in 0..100 {
        redis::cmd("SET")
            .arg(format!("k{n}"))
            .arg(n)
            .query::<()>(&mut con)?;
    }
    let good = source.dir().join("good.backup");
    let (ok, _, err) = source.tool(&[
        "backup",
        "--from",
        &source.node(1).client_addr.to_string(),
        "--out",
        good.to_str().unwrap(),
    ])?;
    assert!(ok, "{err}");
    let bytes = std::fs::read(&good)?;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("flipped", {
            let mut bad = bytes.clone();
            let at = bad.len() - 40;
            bad[at] ^= 1;
            bad
        }),
        ("garbage", b"this is not a backup at all".to_vec()),
        ("empty", Vec::new()),
    ];
    for (name, content) in cases {
        let file = source.dir().join(format!("{name}.backup"));
        std::fs::write(&file, &content)?;
        let dir = source.dir().join(format!("restore-{name}"));
        let (ok, _, err) = source.tool(&[
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
            "--id",
            "1",
            "--peers",
            "1=127.0.0.1:1",
        ])?;
        assert!(!ok, "{name}: restore succeeded");
        assert!(err.contains("nothing was written"), "{name}: {err}");
        assert!(!dir.exists(), "{name}: restore created {}", dir.display());
    }
    // A good file into a data dir that holds a node is refused too.
    let (ok, _, err) = source.tool(&[
        "restore",
        good.to_str().unwrap(),
        "--data-dir",
        source.node(1).data_dir.join("data").to_str().unwrap(),
        "--id",
        "1",
        "--peers",
        "1=127.0.0.1:1",
    ])?;
    assert!(!ok && err.contains("already holds"), "{err}");
    let (ok, _, err) = source.tool(&["backup", "--from", "127.0.0.1:1", "--out", "/tmp/x"])?;
    assert!(!ok && err.contains("127.0.0.1:1"), "{err}");
    Ok(())
}
