//! Apache Curator 5.4 (Debian's `libcurator-*-java`), unmodified, from a
//! Java program compiled here (`curator/CuratorScenarios.java`):
//! InterProcessMutex, InterProcessSemaphoreV2, LeaderLatch, LeaderSelector,
//! DistributedDoubleBarrier, SharedCount, CuratorCache and PersistentNode
//! against a three-node cluster, then again while and after the raft
//! leader is killed, with a latch leader, a cache, an ephemeral node and
//! mutex traffic living across the kill.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use integration_tests::Cluster;

const CURATOR_JAR: &str = "/usr/share/java/curator-recipes.jar";

#[test]
fn curator_recipes_work_across_a_leader_kill() -> Result<()> {
    let classes = tempfile::tempdir()?;
    let source = integration_tests::manifest_dir().join("curator/CuratorScenarios.java");
    // The jar's manifest brings curator-framework, curator-client,
    // ZooKeeper's client and guava.
    let javac = Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .args(["-cp", CURATOR_JAR])
        .arg(&source)
        .output()
        .context("running javac (scripts/setup.sh installs a JDK and Curator)")?;
    ensure!(
        javac.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.leader().context("a leader")?;
    let connect: Vec<String> = cluster
        .ids()
        .into_iter()
        .map(|id| cluster.node(id).zk_addr.to_string())
        .collect();
    let mut java = Command::new("java")
        .arg("-cp")
        .arg(format!("{}:{CURATOR_JAR}", classes.path().display()))
        .arg("CuratorScenarios")
        .arg(connect.join(","))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting java")?;
    let stdout = java.stdout.take().context("stdout")?;
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen = Vec::new();
    let mut killed = false;
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                if line == "KILL" {
                    cluster.kill(leader);
                    killed = true;
                    let stdin = java.stdin.as_mut().context("stdin")?;
                    writeln!(stdin, "killed")?;
                    stdin.flush()?;
                }
                let done = line == "curator ok";
                seen.push(line);
                if done {
                    break Ok(());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err("exited"),
            Err(mpsc::RecvTimeoutError::Timeout) => break Err("timed out"),
        }
    };
    if outcome.is_err() {
        let _ = java.kill();
    }
    let status = java.wait()?;
    let mut stderr = String::new();
    if let Some(mut err) = java.stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut stderr);
    }
    let stderr: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("SLF4J:"))
        .collect();
    if let Err(why) = outcome {
        bail!(
            "the Curator program {why} ({status}) after:\n{}\nstderr:\n{}",
            seen.join("\n"),
            stderr.join("\n")
        );
    }
    println!("{}", seen.join("\n"));
    ensure!(killed, "the program never asked for the kill");
    ensure!(status.success(), "java exited with {status}");
    for recipe in [
        "mutex",
        "semaphore",
        "latch",
        "selector",
        "barrier",
        "count",
        "cache",
        "persistent node",
    ] {
        for round in ["before", "after"] {
            ensure!(
                seen.iter()
                    .any(|l| l.starts_with(&format!("{round} {recipe}"))),
                "no '{round} {recipe}' in:\n{}",
                seen.join("\n")
            );
        }
    }
    Ok(())
}
