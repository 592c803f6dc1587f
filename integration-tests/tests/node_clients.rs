//! Node.js lock libraries, unmodified, against a follower of a 3-node
//! cluster: redis-semaphore's Mutex, Semaphore, MultiSemaphore and Redlock
//! variants over ioredis (`node/redis_semaphore.js`; scripts/setup.sh
//! installs the pinned packages).

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use integration_tests::Cluster;

#[test]
fn redis_semaphore_classes_work_through_a_follower() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let port = cluster.node(follower).client_addr.port().to_string();
    let script = integration_tests::manifest_dir().join("node/redis_semaphore.js");
    let output = Command::new("node").arg(script).arg(&port).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    ensure!(output.status.success(), "redis-semaphore checks failed");
    ensure!(stdout.contains("all redis-semaphore checks passed"));
    Ok(())
}
