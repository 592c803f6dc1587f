//! Faults injected into a running cluster, one at a time, each followed by
//! a heal and a measurement of how long the cluster took to serve again.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::Cluster;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nemesis {
    /// Nothing: the baseline.
    None,
    /// kill -9 a node (the leader more often than not), restart it later.
    Kill,
    /// SIGSTOP a node for longer than an election and a lock TTL.
    Pause,
    /// kill -9 every node at once, then restart them all.
    KillAll,
    /// Cut peer links: isolate the leader, isolate a random node, cut only
    /// the leader's outgoing traffic (one way), or (5 nodes) put the leader
    /// and one follower in a minority.
    Partition,
    /// Change the membership under load: add a node and promote it,
    /// remove it again (the leader when it leads), and once replace a
    /// founding node (remove it, delete its data, add a new one).
    Membership,
}

impl fmt::Display for Nemesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Nemesis::None => "none",
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::KillAll => "kill-all",
            Nemesis::Partition => "partition",
            Nemesis::Membership => "membership",
        })
    }
}

impl FromStr for Nemesis {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> Result<Nemesis> {
        Ok(match text {
            "none" => Nemesis::None,
            "kill" => Nemesis::Kill,
            "pause" => Nemesis::Pause,
            "kill-all" => Nemesis::KillAll,
            "partition" => Nemesis::Partition,
            "membership" => Nemesis::Membership,
            other => bail!(
                "unknown nemesis {other:?} (kill, kill-all, pause, partition, membership, none)"
            ),
        })
    }
}

/// What the nemesis did and how the cluster recovered.
#[derive(Default, Debug, Clone)]
pub struct NemesisLog {
    pub faults: Vec<String>,
    /// Time from killing or pausing a leader to another leader.
    pub elections: Vec<Duration>,
    /// Time from a heal to the first acknowledged write.
    pub recoveries: Vec<Duration>,
    /// Time under fault in all.
    pub fault_time: Duration,
}

pub struct Schedule {
    pub quiet: std::ops::Range<u64>,
    pub hold: std::ops::Range<u64>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            quiet: 1500..3000,
            hold: 3000..4500,
        }
    }
}

/// Runs `nemesis` against `cluster` until `until`, then heals everything.
pub fn run(
    cluster: &mut Cluster,
    nemesis: Nemesis,
    until: Instant,
    rng: &mut StdRng,
    schedule: &Schedule,
) -> Result<NemesisLog> {
    let mut log = NemesisLog::default();
    let mut round = 0usize;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(rng.gen_range(schedule.quiet.clone())));
        if nemesis == Nemesis::None || Instant::now() >= until {
            continue;
        }
        let leader = cluster.leader();
        let ids = cluster.ids();
        let victim = match leader {
            Some(leader) if rng.gen_bool(0.6) => leader,
            _ => *ids.choose(rng).expect("nodes"),
        };
        let hold = Duration::from_millis(rng.gen_range(schedule.hold.clone()));
        let started = Instant::now();
        let victim_led = leader == Some(victim);
        match nemesis {
            Nemesis::Kill => {
                log.faults.push(format!("kill {victim}{}", led(victim_led)));
                cluster.kill(victim);
                if victim_led {
                    if let Some(elected) = time_to_leader(cluster, victim, hold) {
                        log.elections.push(elected);
                    }
                }
                sleep_until(started + hold);
                cluster.spawn(victim)?;
            }
            Nemesis::Pause => {
                log.faults
                    .push(format!("pause {victim}{}", led(victim_led)));
                cluster.pause(victim);
                if victim_led {
                    if let Some(elected) = time_to_leader(cluster, victim, hold) {
                        log.elections.push(elected);
                    }
                }
                sleep_until(started + hold);
                cluster.resume(victim);
            }
            Nemesis::KillAll => {
                log.faults.push("kill all".into());
                for id in &ids {
                    cluster.kill(*id);
                }
                std::thread::sleep(Duration::from_millis(500));
                for id in &ids {
                    cluster.spawn(*id)?;
                }
            }
            Nemesis::Partition => {
                let modes = if ids.len() >= 5 { 4 } else { 3 };
                match (round % modes, leader) {
                    (0, Some(leader)) => {
                        log.faults.push(format!("isolate leader {leader}"));
                        cluster.isolate(leader);
                    }
                    (3, Some(leader)) => {
                        // The leader and one follower against the rest.
                        let partner = **ids
                            .iter()
                            .filter(|id| **id != leader)
                            .collect::<Vec<_>>()
                            .choose(rng)
                            .expect("followers");
                        log.faults
                            .push(format!("split {{{leader}, {partner}}} from the others"));
                        for a in &ids {
                            for b in &ids {
                                let minority = |id: &u64| *id == leader || *id == partner;
                                if minority(a) != minority(b) {
                                    cluster.cut(*a, *b);
                                }
                            }
                        }
                    }
                    (2, Some(leader)) => {
                        log.faults.push(format!("cut {leader} -> others (one way)"));
                        for id in &ids {
                            if *id != leader {
                                cluster.cut(leader, *id);
                            }
                        }
                    }
                    _ => {
                        log.faults
                            .push(format!("isolate {victim}{}", led(victim_led)));
                        cluster.isolate(victim);
                    }
                }
                sleep_until(started + hold);
                cluster.heal();
            }
            Nemesis::Membership => {
                let step = membership_step(cluster, round, rng)?;
                log.faults.push(step);
            }
            Nemesis::None => unreachable!("skipped above"),
        }
        log.fault_time += started.elapsed();
        if let Some(recovered) = time_to_write(cluster, Duration::from_secs(30)) {
            log.recoveries.push(recovered);
        }
        round += 1;
    }
    cluster.heal();
    Ok(log)
}

/// Runs a CLUSTER.* command on whichever node leads, retrying while
/// leadership moves or a change is still pending.
fn on_leader(cluster: &mut Cluster, args: &[String], within: Duration) -> Result<()> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < within {
        if let Some(leader) = cluster.leader() {
            if let Ok(mut con) = cluster.client(leader) {
                let mut cmd = redis::cmd(&args[0]);
                for arg in &args[1..] {
                    cmd.arg(arg);
                }
                match cmd.query::<String>(&mut con) {
                    Ok(_) => return Ok(()),
                    Err(err) => last = err.to_string(),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{args:?} did not succeed within {within:?}: {last}")
}

/// One membership change; returns what it did.
fn membership_step(cluster: &mut Cluster, round: usize, rng: &mut StdRng) -> Result<String> {
    let founders_removed = cluster.removed.iter().filter(|id| **id <= 3).count();
    let added: Vec<u64> = cluster.ids().into_iter().filter(|id| *id > 3).collect();
    let leader = cluster.leader();
    let remove = |cluster: &mut Cluster, id: u64| -> Result<()> {
        on_leader(
            cluster,
            &["CLUSTER.REMOVE".into(), id.to_string()],
            Duration::from_secs(30),
        )?;
        cluster.removed.insert(id);
        cluster.kill(id);
        Ok(())
    };
    let add = |cluster: &mut Cluster, rng: &mut StdRng| -> Result<u64> {
        let via = *cluster.ids().choose(rng).expect("members");
        let id = cluster.add_node(via)?;
        on_leader(
            cluster,
            &["CLUSTER.PROMOTE".into(), id.to_string()],
            Duration::from_secs(40),
        )?;
        Ok(id)
    };
    Ok(match round % 3 {
        0 => {
            let new = add(cluster, rng)?;
            format!("add {new} and promote it")
        }
        2 if founders_removed == 0 => {
            let founder = (1..=3u64)
                .find(|id| Some(*id) != leader)
                .expect("a founder that does not lead");
            remove(cluster, founder)?;
            cluster.wipe(founder)?;
            let new = add(cluster, rng)?;
            format!("replace {founder} (data deleted) with {new}")
        }
        _ if !added.is_empty() => {
            let gone = added[0];
            // Half the time it leads first, so the leader removes itself.
            let mut leader = leader;
            if rng.gen_bool(0.5) {
                let moved = on_leader(
                    cluster,
                    &["CLUSTER.TRANSFER".into(), gone.to_string()],
                    Duration::from_secs(10),
                );
                if moved.is_ok() {
                    leader = Some(gone);
                }
            }
            remove(cluster, gone)?;
            format!("remove {gone}{}", led(leader == Some(gone)))
        }
        _ => {
            let new = add(cluster, rng)?;
            format!("add {new} and promote it")
        }
    })
}

fn led(was_leader: bool) -> &'static str {
    if was_leader {
        " (leader)"
    } else {
        ""
    }
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

/// How long until a node other than `gone` reports itself leader.
fn time_to_leader(cluster: &mut Cluster, gone: u64, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let others: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != gone).collect();
        for id in others {
            if cluster.info_field(id, "raft_role").as_deref() == Some("leader") {
                return Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// How long until some node acknowledges a write.
pub fn time_to_write(cluster: &Cluster, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut attempt = 0usize;
    while started.elapsed() < within {
        let addrs = cluster.client_addrs();
        let addr = addrs[attempt % addrs.len()];
        attempt += 1;
        if let Ok(mut connection) = crate::connect_with_timeout(addr, Duration::from_secs(1)) {
            let written: redis::RedisResult<String> = redis::cmd("SET")
                .arg("nemesis:probe")
                .arg(attempt)
                .query(&mut connection);
            if written.is_ok() {
                return Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
