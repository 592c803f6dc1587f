//! zkCli.sh, ZooKeeper's own shell (Debian's `zookeeper` package), runs
//! one scripted session (`zkcli/session.txt`: every create flag, get -s,
//! set -v, stat, ls -R, watches of every kind, getEphemerals, whoami,
//! addauth, ACLs, sync, deleteall, system nodes) against a real ZooKeeper
//! 3.8 started here and against a follower of a lockstep cluster; the
//! outputs must be the same but for zxids, times and session ids.

use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use integration_tests::{Cluster, ZooKeeperServer, ZKCLI};

/// zkCli.sh's output for the script, against `server`.
fn run_script(server: &str) -> Result<String> {
    let script = integration_tests::manifest_dir().join("zkcli/session.txt");
    // The shell prints results on stdout and errors on stderr, each
    // flushed per line: one pipe for both keeps their order.
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("exec timeout 120 {ZKCLI} -server {server} 2>&1"))
        .stdin(std::fs::File::open(&script).context("the zkCli script")?)
        .stdout(Stdio::piped())
        .output()
        .context("running zkCli.sh (scripts/setup.sh installs Debian's zookeeper)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "zkCli.sh against {server} exited with {}: {text}",
        output.status
    );
    Ok(text)
}

/// The lines that must match, and the watch events in the order they
/// came. Events are printed by the client's event thread and results by
/// its main thread, so where an event's block lands among the results is
/// up to the client's scheduling: the events are compared as their own
/// sequence (that a notification reaches the client before the reply
/// computed after the change is checked frame by frame in
/// `zookeeper.rs`). zxids, times and session ids differ by nature.
fn normalize(output: &str) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut events = Vec::new();
    for line in output.lines() {
        if line.starts_with("SLF4J:") || line.starts_with("Connecting to ") {
            continue;
        }
        if line == "WATCHER::" || line.is_empty() {
            continue;
        }
        if line.starts_with("WatchedEvent ") {
            events.push(line.to_string());
            continue;
        }
        let line = match line.split_once(" = ") {
            Some((name, _)) if name.ends_with("Zxid") || name.ends_with("time") => {
                format!("{name} = *")
            }
            Some(("ephemeralOwner", value)) if value != "0x0" => {
                "ephemeralOwner = <session>".into()
            }
            _ => line.to_string(),
        };
        lines.push(line);
    }
    (lines, events)
}

fn first_difference(want: &[String], got: &[String]) -> String {
    let at = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let from = at.saturating_sub(3);
    format!(
        "first difference at line {at}\nZooKeeper:\n  {}\nlockstep:\n  {}",
        want[from..(at + 4).min(want.len())].join("\n  "),
        got[from..(at + 4).min(got.len())].join("\n  ")
    )
}

#[test]
fn a_zkcli_session_prints_what_it_prints_against_zookeeper() -> Result<()> {
    let reference = ZooKeeperServer::start()?;
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.leader().context("a leader")?;
    let follower = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .context("a follower")?;
    let want = run_script(&reference.addr.to_string())?;
    let got = run_script(&cluster.node(follower).zk_addr.to_string())?;
    let (want_lines, want_events) = normalize(&want);
    let (got_lines, got_events) = normalize(&got);
    // The script ran to the end on the reference (its last command lists
    // the root after removing what the session made).
    ensure!(
        want_lines.len() > 120 && want_lines.last().map(String::as_str) == Some("[cli, zookeeper]"),
        "the reference session did not run through ({} lines, last {:?}):\n{want}",
        want_lines.len(),
        want_lines.last()
    );
    ensure!(
        want_lines == got_lines,
        "zkCli.sh output differs: {}\n\nfull lockstep output:\n{got}",
        first_difference(&want_lines, &got_lines)
    );
    ensure!(
        want_events == got_events,
        "watch events differ:\nZooKeeper: {want_events:#?}\nlockstep: {got_events:#?}"
    );
    Ok(())
}

/// zkCli's `config` reads /zookeeper/config: the members in ZooKeeper's
/// dynamic-config format, with each member's ZooKeeper address.
#[test]
fn zookeeper_config_lists_the_members() -> Result<()> {
    let cluster = Cluster::start(3)?;
    let output = Command::new("timeout")
        .args(["60", ZKCLI, "-server", &cluster.node(1).zk_addr.to_string()])
        .args(["config"])
        .output()
        .context("running zkCli.sh")?;
    let text = String::from_utf8_lossy(&output.stdout);
    for id in cluster.ids() {
        let node = cluster.node(id);
        let line = format!(
            "server.{id}={}:{}:{}:participant;{}",
            node.peer_addr.ip(),
            node.peer_addr.port(),
            node.peer_addr.port(),
            node.zk_addr
        );
        ensure!(text.contains(&line), "no '{line}' in:\n{text}");
    }
    ensure!(text.contains("version=0"), "no version in:\n{text}");
    Ok(())
}
