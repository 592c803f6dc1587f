//! Real processes under faults, judged by the checker: each nemesis must
//! leave 0 linearizability violations, 0 token violations, no lost or
//! duplicated queue items, no ZooKeeper recipe holds overlapping beyond
//! the session timeout and converged replicas; each negative control
//! must be caught. `LOCKSTEP_FAULT_SECONDS` sets the workload time per run
//! (`scripts/soak.sh` runs the long version).

use std::time::Duration;

use anyhow::{ensure, Result};
use integration_tests::faults::{self, Nemesis, Report, Scenario};

fn seconds() -> u64 {
    std::env::var("LOCKSTEP_FAULT_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(40)
}

fn seed(salt: u64) -> u64 {
    std::env::var("LOCKSTEP_FAULT_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_secs())
                .unwrap_or(0)
        })
        .wrapping_add(salt)
}

fn run(scenario: Scenario) -> Result<Report> {
    let report = faults::run(&scenario)?;
    eprintln!("{report}");
    Ok(report)
}

fn survives(nemesis: Nemesis, salt: u64) -> Result<()> {
    let report = run(Scenario::new(
        nemesis,
        Duration::from_secs(seconds()),
        seed(salt),
    ))?;
    ensure!(report.passed(), "{report}");
    ensure!(
        nemesis == Nemesis::None || !report.nemesis.faults.is_empty(),
        "the nemesis never struck"
    );
    ensure!(report.leaderships > 0, "nobody was ever elected");
    ensure!(
        report.zk_holds > 0 && report.zk_register_ops > 0 && report.zk_ephemerals > 0,
        "the ZooKeeper clients did nothing"
    );
    Ok(())
}

#[test]
fn kill_and_restart() -> Result<()> {
    survives(Nemesis::Kill, 1)
}

#[test]
fn membership_changes_under_load() -> Result<()> {
    survives(Nemesis::Membership, 5)
}

#[test]
fn kill_every_node_at_once() -> Result<()> {
    survives(Nemesis::KillAll, 2)
}

#[test]
fn pause_longer_than_elections_and_lock_ttls() -> Result<()> {
    survives(Nemesis::Pause, 3)
}

#[test]
fn partitions_including_one_way() -> Result<()> {
    survives(Nemesis::Partition, 4)
}

/// Negative controls: each breaks one guarantee on purpose; the verdict
/// must see it, or the harness proves nothing.
fn short(nemesis: Nemesis, salt: u64) -> Scenario {
    Scenario::new(nemesis, Duration::from_secs(seconds().min(25)), seed(salt))
}

#[test]
fn negative_control_writes_without_a_log_are_lost_when_all_nodes_die() -> Result<()> {
    let mut scenario = short(Nemesis::KillAll, 5);
    scenario.unsafe_binary = true;
    scenario.node_args = vec!["--unsafe-volatile-storage".into()];
    let report = run(scenario)?;
    // A lost write shows as a stale read, a lock granted twice (its first
    // grant forgotten) or a queue item gone.
    ensure!(
        !report.linearizability.is_linearizable()
            || report.token_violations > 0
            || report.queue_lost > report.unknown_pops,
        "volatile storage lost nothing the checker could see:\n{report}"
    );
    Ok(())
}

#[test]
fn negative_control_reads_without_read_index_are_stale() -> Result<()> {
    let mut scenario = short(Nemesis::Partition, 6);
    scenario.unsafe_binary = true;
    scenario.node_args = vec!["--unsafe-local-reads".into()];
    let report = run(scenario)?;
    ensure!(
        !report.linearizability.is_linearizable(),
        "local reads looked linearizable:\n{report}"
    );
    Ok(())
}

#[test]
fn negative_control_zookeeper_locks_that_skip_the_queue_overlap() -> Result<()> {
    let mut scenario = short(Nemesis::None, 9);
    scenario.duration = Duration::from_secs(10);
    scenario.zk_locks_skip_queue = true;
    let report = run(scenario)?;
    ensure!(
        report.zk_hold_overlaps > 0,
        "ZooKeeper locks taken without waiting for the predecessor looked exclusive:\n{report}"
    );
    Ok(())
}

#[test]
fn negative_control_locks_without_nx_are_granted_twice() -> Result<()> {
    let mut scenario = short(Nemesis::None, 7);
    scenario.locks_without_nx = true;
    let report = run(scenario)?;
    ensure!(
        !report.linearizability.is_linearizable(),
        "locks without NX looked exclusive:\n{report}"
    );
    Ok(())
}

#[test]
fn negative_control_leaders_acting_past_their_lease_overlap() -> Result<()> {
    let mut scenario = short(Nemesis::None, 8);
    scenario.duration = Duration::from_secs(seconds().min(15));
    scenario.leaders_ignore_leases = true;
    let report = run(scenario)?;
    ensure!(
        report.leadership_overlaps > 0,
        "leaders that stalled past their lease and acted on never overlapped:\n{report}"
    );
    // The service itself still refuses the stalled leaders' token writes.
    ensure!(
        report.stale_proclaims_accepted == 0 && report.proclaims.1 > 0,
        "{report}"
    );
    Ok(())
}
