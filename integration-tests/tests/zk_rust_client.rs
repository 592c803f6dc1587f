//! The Rust `zookeeper-client` crate (unmodified) against a three-node
//! cluster's ZooKeeper ports, for the protocol's promises as a client
//! library relies on them: a watch event arrives before the reply that
//! reflects its change, reads through one node see writes acknowledged
//! through another, multi reports per operation, a session that moves
//! after its node is killed gets its watches back (setWatches), and an
//! expired session is refused with SessionExpired.
//!
//! (zookeeper-client 0.11.2 sends only the one-shot watches again after a
//! reconnect, never the persistent ones: its batching keeps the highest
//! list index at 0, so it picks setWatches, not setWatches2. Persistent
//! watches across a reconnect are covered by the Java client in
//! `curator.rs`, whose CuratorCache uses one, and by raw frames in
//! `zookeeper.rs`.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures::FutureExt;
use integration_tests::Cluster;
use zk::{Acls, AddWatchMode, CreateMode, EventType, MultiWriteError, MultiWriteResult};
use zookeeper_client as zk;

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

async fn connect(hosts: &str, timeout: Duration) -> Result<zk::Client> {
    zk::Client::connector()
        .with_session_timeout(timeout)
        .connect(hosts)
        .await
        .with_context(|| format!("connecting to {hosts}"))
}

/// The node whose ZooKeeper port holds `session` (its `cons` lists it);
/// a killed node's port refuses and is passed over.
fn node_of(cluster: &Cluster, session: i64) -> Result<u64> {
    for id in cluster.ids() {
        let Ok(mut stream) = TcpStream::connect(cluster.node(id).zk_addr) else {
            continue;
        };
        stream.write_all(b"cons")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        if text.contains(&format!("sid={session:#x},")) {
            return Ok(id);
        }
    }
    bail!("no node serves session {session:#x}")
}

/// Retries an operation across a lost connection (the client reconnects
/// by itself; a request in flight then fails with ConnectionLoss).
async fn retried<T, F: std::future::Future<Output = Result<T, zk::Error>>>(
    mut op: impl FnMut() -> F,
) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(zk::Error::ConnectionLoss) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

async fn event_within(watcher: &mut zk::PersistentWatcher) -> Result<(EventType, String)> {
    let event = tokio::time::timeout(Duration::from_secs(20), watcher.changed())
        .await
        .context("no event within 20 s")?;
    Ok((event.event_type, event.path))
}

#[test]
fn the_rust_client_gets_zookeepers_order_multi_and_sessions() -> Result<()> {
    let mut cluster = Cluster::start_with(3, &["--zk-4lw-whitelist", "*"])?;
    let addr = |id: u64| cluster.node(id).zk_addr.to_string();
    let all: Vec<String> = cluster.ids().into_iter().map(addr).collect();
    let all = all.join(",");
    let (one, two) = (addr(1), addr(2));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // Events before replies, and linearizable reads across nodes: each
        // round, node 2 changes /r; node 1's next read must see the change
        // and, since the watch event came before that reply, the watcher
        // has fired by the time the read returns.
        let reader = connect(&one, Duration::from_secs(10)).await?;
        let writer = connect(&two, Duration::from_secs(10)).await?;
        reader.create("/r", b"start", &persistent()).await?;
        for round in 0..30 {
            let (_, before, watcher) = reader.get_and_watch_data("/r").await?;
            let value = format!("v{round}");
            let written = writer.set_data("/r", value.as_bytes(), None).await?;
            ensure!(written.version == before.version + 1, "round {round}: version");
            let (data, stat) = reader.get_data("/r").await?;
            ensure!(
                data == value.as_bytes() && stat.mzxid == written.mzxid,
                "round {round}: node 1 read {:?} after node 2 acknowledged {value}",
                String::from_utf8_lossy(&data)
            );
            let event = watcher
                .changed()
                .now_or_never()
                .with_context(|| format!("round {round}: the reply came before the event"))?;
            ensure!(event.event_type == EventType::NodeDataChanged && event.path == "/r");
        }

        // multi: per-operation results, and all or nothing.
        let mut multi = reader.new_multi_writer();
        multi.add_create("/m", b"x", &persistent())?;
        multi.add_set_data("/m", b"y", Some(0))?;
        multi.add_check_version("/m", 1)?;
        multi.add_delete("/m", Some(1))?;
        let results = multi.commit().await?;
        ensure!(results.len() == 4, "{results:?}");
        ensure!(
            matches!(&results[0], MultiWriteResult::Create { path, .. } if path == "/m"),
            "{results:?}"
        );
        ensure!(
            matches!(&results[1], MultiWriteResult::SetData { stat } if stat.version == 1),
            "{results:?}"
        );
        ensure!(matches!(results[2], MultiWriteResult::Check));
        ensure!(matches!(results[3], MultiWriteResult::Delete));
        let mut failing = writer.new_multi_writer();
        failing.add_create("/m2", b"x", &persistent())?;
        failing.add_check_version("/nothing", -1)?;
        failing.add_create("/m3", b"x", &persistent())?;
        match failing.commit().await {
            Err(MultiWriteError::OperationFailed {
                index: 1,
                source: zk::Error::NoNode,
            }) => {}
            other => bail!("a multi failing at its second operation: {other:?}"),
        }
        ensure!(reader.check_stat("/m2").await?.is_none(), "a failed multi wrote");
        let mut reads = reader.new_multi_reader();
        reads.add_get_data("/r")?;
        reads.add_get_children("/zookeeper")?;
        let results = reads.commit().await?;
        ensure!(
            matches!(&results[0], zk::MultiReadResult::Data { data, .. } if data == b"v29"),
            "{results:?}"
        );
        ensure!(
            matches!(&results[1], zk::MultiReadResult::Children { children } if children == &["config", "quota"]),
            "{results:?}"
        );
        ensure!(reader.count_descendants_number("/zookeeper").await? == 2);

        // A session whose node is killed moves and gets its watches back.
        let mover = connect(&all, Duration::from_secs(10)).await?;
        let changer = connect(&all, Duration::from_secs(10)).await?;
        retried(|| changer.create("/p", b"", &persistent())).await?;
        let (_, _, data_watch) = mover.get_and_watch_data("/p").await?;
        let (_, child_watch) = mover.list_and_watch_children("/p").await?;
        let mut state = mover.state_watcher();
        let victim = node_of(&cluster, mover.session_id().0)?;
        cluster.kill(victim);
        // Changed while the client may be between nodes: the one-shot
        // watch fires either way (at once on setWatches if it missed it).
        retried(|| changer.set_data("/p", b"moved", None)).await?;
        let event = tokio::time::timeout(Duration::from_secs(20), data_watch.changed())
            .await
            .context("the data watch did not survive the move")?;
        ensure!(event.event_type == EventType::NodeDataChanged, "{event:?}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while mover.state() != zk::SessionState::SyncConnected {
            ensure!(Instant::now() < deadline, "the client did not reconnect");
            let _ = tokio::time::timeout(Duration::from_millis(200), state.changed()).await;
        }
        let moved_to = node_of(&cluster, mover.session_id().0)?;
        ensure!(moved_to != victim);
        retried(|| changer.create("/p/after", b"", &persistent())).await?;
        let event = tokio::time::timeout(Duration::from_secs(20), child_watch.changed())
            .await
            .context("the child watch did not survive the move")?;
        ensure!(
            event.event_type == EventType::NodeChildrenChanged && event.path == "/p",
            "{event:?}"
        );
        // A persistent watch set on the new node works there.
        let mut tree = mover.watch("/p", AddWatchMode::PersistentRecursive).await?;
        retried(|| changer.set_data("/p/after", b"x", None)).await?;
        let mut seen = Vec::new();
        while !seen.contains(&(EventType::NodeDataChanged, "/p/after".to_string())) {
            seen.push(event_within(&mut tree).await.with_context(|| format!("after {seen:?}"))?);
        }
        drop(tree);

        // An ephemeral lives while its session does, on any node; an
        // expired session is refused.
        let live = cluster.ids().into_iter().filter(|id| *id != victim);
        let live: Vec<String> = live.map(|id| cluster.node(id).zk_addr.to_string()).collect();
        let short = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(4))
            .with_detached()
            .connect(&live[0])
            .await?;
        let session = short.session().clone();
        let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
        short.create("/e", b"", &ephemeral).await?;
        drop(short);
        let resumed = zk::Client::connector()
            .with_session(session.clone())
            .with_detached()
            .connect(&live[1])
            .await
            .context("resuming within the timeout")?;
        ensure!(resumed.session_id() == session.id());
        let stat = resumed.check_stat("/e").await?.context("the ephemeral")?;
        ensure!(stat.ephemeral_owner == session.id().0);
        drop(resumed);
        let deadline = Instant::now() + Duration::from_secs(15);
        while retried(|| changer.check_stat("/e")).await?.is_some() {
            ensure!(Instant::now() < deadline, "the ephemeral outlived its session");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match zk::Client::connector()
            .with_session(session)
            .connect(&live[0])
            .await
        {
            Err(zk::Error::SessionExpired) => {}
            Err(other) => bail!("an expired session got {other:?}"),
            Ok(_) => bail!("an expired session was resumed"),
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

/// A membership change is a data change of /zookeeper/config (Curator's
/// ensemble tracker follows the members this way): its watchers fire on
/// every node, and the data then names the new member.
#[test]
fn a_membership_change_fires_the_watches_on_zookeeper_config() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(20))?;
    let follower = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .context("a follower")?;
    let addr = cluster.node(follower).zk_addr.to_string();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = connect(&addr, Duration::from_secs(10)).await?;
        let (before, _, watcher) = client.get_and_watch_data("/zookeeper/config").await?;
        let before = String::from_utf8(before)?;
        ensure!(!before.contains("server.9="), "{before}");
        let mut persistent = client
            .watch("/zookeeper/config", AddWatchMode::Persistent)
            .await?;
        let mut redis = cluster.client(leader)?;
        redis::cmd("CLUSTER.ADD")
            .arg(9)
            .arg("127.0.0.1:1")
            .query::<()>(&mut redis)?;
        let event = tokio::time::timeout(Duration::from_secs(20), watcher.changed())
            .await
            .context("no event after CLUSTER.ADD")?;
        ensure!(
            event.event_type == EventType::NodeDataChanged && event.path == "/zookeeper/config",
            "{event:?}"
        );
        ensure!(
            event_within(&mut persistent).await?
                == (EventType::NodeDataChanged, "/zookeeper/config".into())
        );
        let (after, _) = client.get_data("/zookeeper/config").await?;
        let after = String::from_utf8(after)?;
        ensure!(after.contains("server.9=127.0.0.1:1:1:observer"), "{after}");
        redis::cmd("CLUSTER.REMOVE")
            .arg(9)
            .query::<()>(&mut redis)?;
        ensure!(
            event_within(&mut persistent).await?
                == (EventType::NodeDataChanged, "/zookeeper/config".into())
        );
        let (last, _) = client.get_data("/zookeeper/config").await?;
        ensure!(!String::from_utf8(last)?.contains("server.9="));
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}
