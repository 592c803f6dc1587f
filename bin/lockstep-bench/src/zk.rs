//! The ZooKeeper-protocol workloads, through the `zookeeper-client` crate:
//! the same closed loop as the RESP ones (one request in flight per
//! client, its own session each), against lockstep's ZooKeeper ports or a
//! real ZooKeeper ensemble.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use zk::{Acls, CreateMode};
use zookeeper_client as zk;

use crate::workload::{ClientReport, Config, Shared, Workload};

/// Where the nodes of zk-get and zk-set live, the parent of zk-create's
/// sequential nodes, and the parent of zk-lock's locks.
const ROOT: &str = "/bench-zk";

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

pub async fn connect(endpoint: &str) -> Result<zk::Client> {
    tokio::time::timeout(
        Duration::from_secs(10),
        zk::Client::connector()
            .with_session_timeout(Duration::from_secs(20))
            .connect(endpoint),
    )
    .await
    .map_err(|_| anyhow!("connecting to {endpoint} timed out"))?
    .with_context(|| format!("connecting to {endpoint}"))
}

/// Creates `path` unless it exists.
async fn ensure_node(client: &zk::Client, path: &str, data: &[u8]) -> Result<()> {
    match client.create(path, data, &persistent()).await {
        Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
        Err(err) => Err(err).with_context(|| format!("creating {path}")),
    }
}

/// The nodes every ZooKeeper workload needs: zk-get's and zk-set's
/// `keys` nodes (100 creates in flight at a time), zk-create's parent.
pub async fn prepare(endpoint: &str, keys: u64, value_size: usize) -> Result<()> {
    let client = connect(endpoint).await?;
    ensure_node(&client, ROOT, b"").await?;
    ensure_node(&client, &format!("{ROOT}/seq"), b"").await?;
    ensure_node(&client, &format!("{ROOT}/locks"), b"").await?;
    let value = vec![b'x'; value_size];
    for chunk in (0..keys).collect::<Vec<_>>().chunks(100) {
        let creates = chunk.iter().map(|key| {
            let path = format!("{ROOT}/n{key}");
            let client = &client;
            let value = &value;
            async move {
                match client.create(&path, value, &persistent()).await {
                    Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
                    Err(err) => Err(anyhow!("creating {path}: {err}")),
                }
            }
        });
        for result in futures::future::join_all(creates).await {
            result?;
        }
    }
    Ok(())
}

/// One client's loop until the pass stops.
pub async fn client_loop(client: zk::Client, config: Config, shared: Arc<Shared>) -> ClientReport {
    let mut report = ClientReport::new(shared.workload);
    let payload = vec![b'y'; config.value_size];
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (config.client as u64 + 1);
    let lock_dir = format!(
        "{ROOT}/locks/r{}-p{}-c{}",
        shared.run, shared.pass, config.client
    );
    if shared.workload == Workload::ZkLock {
        if let Err(err) = ensure_node(&client, &lock_dir, b"").await {
            report.error(format!("{err:#}"));
            return report;
        }
    }
    let lock_prefix = format!("{lock_dir}/{:016x}-lock-", state);
    let ephemeral = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    let sequential = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
    let seq_prefix = format!("{ROOT}/seq/n-");
    while !shared.stop.load(Ordering::Relaxed) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let key = state % config.keys.max(1);
        let started = Instant::now();
        let measured = shared.measuring.load(Ordering::Relaxed);
        let outcome = tokio::time::timeout(config.timeout, async {
            match shared.workload {
                Workload::ZkGet => {
                    client.get_data(&format!("{ROOT}/n{key}")).await?;
                }
                Workload::ZkSet => {
                    client
                        .set_data(&format!("{ROOT}/n{key}"), &payload, None)
                        .await?;
                }
                Workload::ZkCreate => {
                    client.create(&seq_prefix, &payload, &sequential).await?;
                }
                Workload::ZkLock => {
                    let (_, sequence) = client.create(&lock_prefix, b"", &ephemeral).await?;
                    let mine = format!("{}", sequence);
                    let children = client.list_children(&lock_dir).await?;
                    let lowest = children
                        .iter()
                        .filter_map(|c| c.rsplit_once("-lock-").map(|(_, n)| n.to_string()))
                        .min();
                    if lowest.as_deref() != Some(mine.as_str()) {
                        bail!("an uncontended lock was not the lowest: {children:?}");
                    }
                    client.delete(&format!("{lock_prefix}{mine}"), None).await?;
                }
                other => bail!("{} is not a ZooKeeper workload", other.name()),
            }
            Ok(())
        })
        .await;
        let outcome: Result<()> = match outcome {
            Ok(result) => result,
            Err(_) => Err(anyhow!("request timed out")),
        };
        let elapsed = started.elapsed();
        if !measured || !shared.measuring.load(Ordering::Relaxed) {
            continue;
        }
        match outcome {
            Ok(()) => {
                report.ops += 1;
                let _ = report.latency.record((elapsed.as_micros() as u64).max(1));
            }
            Err(err) => report.error(format!("{err:#}")),
        }
    }
    report
}
