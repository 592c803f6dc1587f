//! Sessions, elections, the registry and barriers on a real 3-node
//! cluster, through real clients: the `redis` crate, and redis-py clients
//! run as their own processes (`python/coordination_client.py`) so a test
//! can kill one the way a crashed worker dies.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use integration_tests::{retry, Cluster};
use redis::Value;

fn client_script() -> std::path::PathBuf {
    integration_tests::manifest_dir().join("python/coordination_client.py")
}

/// A redis-py client process; killed (-9) when dropped.
struct PyClient {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl PyClient {
    fn start(args: &[&str]) -> Result<PyClient> {
        let mut child = Command::new("python3")
            .arg(client_script())
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the redis-py client")?;
        let stdout: ChildStdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(PyClient { child, lines })
    }

    /// The next line starting with `prefix`, split into words.
    fn expect(&self, prefix: &str, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| anyhow!("no '{prefix}' line within {timeout:?}"))?;
            if line.starts_with(prefix) {
                return Ok(line.split_whitespace().map(str::to_string).collect());
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyClient {
    fn drop(&mut self) {
        self.kill();
    }
}

fn exists(con: &mut redis::Connection, key: &str) -> Result<bool> {
    let n: i64 = redis::cmd("EXISTS").arg(key).query(con)?;
    Ok(n == 1)
}

fn field<'a>(map: &'a Value, name: &str) -> Option<&'a Value> {
    let Value::Array(items) = map else {
        return None;
    };
    items
        .chunks(2)
        .find(|pair| matches!(&pair[0], Value::BulkString(k) if k == name.as_bytes()))
        .map(|pair| &pair[1])
}

fn as_int(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn as_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::BulkString(data) => Some(String::from_utf8_lossy(data).into_owned()),
        _ => None,
    }
}

#[test]
fn a_bound_session_keeps_ephemeral_keys_until_its_client_dies() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let other = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != follower)
        .unwrap();
    let port = cluster.node(follower).client_addr.port().to_string();
    let ttl_ms = 2_000;
    let mut worker = PyClient::start(&["ephemeral", &port, "eph", &ttl_ms.to_string()])?;
    worker.expect("lease", Duration::from_secs(10))?;
    let mut observer = cluster.client(other)?;
    // Kept alive while the client lives: well past its TTL.
    thread::sleep(Duration::from_millis(2 * ttl_ms));
    ensure!(
        exists(&mut observer, "eph")?,
        "the key went while its session lived"
    );
    // Kept across a leader change too: renewals resume with the new leader.
    cluster.kill(leader);
    cluster.wait_for_leader(Duration::from_secs(15))?;
    thread::sleep(Duration::from_millis(ttl_ms + 500));
    ensure!(
        exists(&mut observer, "eph")?,
        "the key went across a failover"
    );
    // The client process dies: one TTL later the key is gone.
    worker.kill();
    let killed = Instant::now();
    retry(Duration::from_millis(ttl_ms + 3_000), || {
        ensure!(!exists(&mut observer, "eph")?, "still there");
        Ok(())
    })?;
    let gone_after = killed.elapsed();
    eprintln!("ephemeral key gone {gone_after:?} after its client died");
    ensure!(
        gone_after >= Duration::from_millis(ttl_ms / 3),
        "gone before the lease could have run out: {gone_after:?}"
    );
    Ok(())
}

#[test]
fn a_failover_neither_resets_nor_shortens_a_lease() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let mut con = cluster.client(follower)?;
    let ttl_ms: i64 = 4_000;
    let granted_at = Instant::now();
    let id: i64 = redis::cmd("LEASE.GRANT").arg(ttl_ms).query(&mut con)?;
    let ttl_of = |con: &mut redis::Connection| -> Result<i64> {
        let info: Value = redis::cmd("LEASE.TTL").arg(id).query(con)?;
        as_int(field(&info, "ttl")).ok_or_else(|| anyhow!("no ttl in {info:?}"))
    };
    thread::sleep(Duration::from_millis(1_500));
    let before = ttl_of(&mut con)?;
    cluster.kill(leader);
    cluster.wait_for_leader(Duration::from_secs(15))?;
    let after = retry(Duration::from_secs(10), || ttl_of(&mut con))?;
    let elapsed = granted_at.elapsed().as_millis() as i64;
    eprintln!("lease: {before} ms left before the failover, {after} ms after ({elapsed} ms since the grant)");
    ensure!(
        after <= before,
        "the failover gave the lease time back: {before} -> {after}"
    );
    // Cluster time stood still while there was no leader: the lease can
    // only have been lengthened by that, never shortened.
    ensure!(
        after + elapsed >= ttl_ms - 50,
        "the lease lost time: {after} + {elapsed}"
    );
    // And it does run out, on cluster time.
    retry(Duration::from_millis(ttl_ms as u64 + 5_000), || {
        let ttl: Value = redis::cmd("LEASE.TTL").arg(id).query(&mut con)?;
        ensure!(ttl == Value::Nil, "still alive");
        Ok(())
    })?;
    ensure!(
        granted_at.elapsed() >= Duration::from_millis(ttl_ms as u64),
        "expired early"
    );
    Ok(())
}

/// The transitions an observer saw: (index, leader value or nobody).
type Transitions = Vec<(i64, Option<String>)>;

/// The first `count` transitions of `election`, seen from node `id`.
fn observe(
    cluster: &Cluster,
    id: u64,
    election: &str,
    count: usize,
) -> Result<thread::JoinHandle<Result<Transitions>>> {
    let mut con = cluster.client(id)?;
    con.set_read_timeout(Some(Duration::from_secs(60)))?;
    let election = election.to_string();
    Ok(thread::spawn(move || {
        let mut seen = Vec::new();
        let mut after = 0i64;
        while seen.len() < count {
            let next: Value = redis::cmd("ELECT.OBSERVE")
                .arg(&election)
                .arg("AFTER")
                .arg(after)
                .arg("WAIT")
                .arg(45_000)
                .query(&mut con)?;
            if next == Value::Nil {
                bail!("no transition within the wait after {after}: saw {seen:?}");
            }
            after = as_int(field(&next, "index")).ok_or_else(|| anyhow!("{next:?}"))?;
            seen.push((after, as_text(field(&next, "leader"))));
        }
        Ok(seen)
    }))
}

#[test]
fn candidates_on_three_nodes_lead_one_at_a_time_in_fifo_order() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let ttl = "1500";
    // Observers on every node, each to see: c1, c2, c3 leading in turn.
    let observers: Vec<_> = (1..=3)
        .map(|id| observe(&cluster, id, "job", 3))
        .collect::<Result<_>>()?;
    let mut candidates = Vec::new();
    for (n, node) in [(1i64, 2u64), (2, 3), (3, 1)] {
        let port = cluster.node(node).client_addr.port().to_string();
        let candidate = PyClient::start(&["candidate", &port, "job", &format!("c{n}"), ttl])?;
        candidate.expect("campaigning", Duration::from_secs(10))?;
        // Leading or queued before the next one campaigns: FIFO is then
        // certain.
        let mut con = cluster.client(1)?;
        retry(Duration::from_secs(10), || {
            let leader: Value = redis::cmd("ELECT.LEADER").arg("job").query(&mut con)?;
            let queued = as_int(field(&leader, "candidates"));
            ensure!(queued == Some(n - 1), "{leader:?}");
            Ok(())
        })?;
        candidates.push(candidate);
    }
    let first = candidates[0].expect("leader", Duration::from_secs(10))?;
    let mut tokens = vec![first[1].parse::<i64>()?];
    // Kill each leader's process: its lease runs out, the next one leads.
    for n in 0..2 {
        let killed = Instant::now();
        candidates[n].kill();
        let next = candidates[n + 1].expect("leader", Duration::from_secs(15))?;
        eprintln!(
            "c{} led {:?} after c{} was killed",
            n + 2,
            killed.elapsed(),
            n + 1
        );
        tokens.push(next[1].parse()?);
    }
    ensure!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens not increasing: {tokens:?}"
    );
    for observer in observers {
        let seen = observer
            .join()
            .map_err(|_| anyhow!("observer panicked"))??;
        let leaders: Vec<Option<String>> = seen.iter().map(|(_, l)| l.clone()).collect();
        // Between two leaders there may be a "no leader" transition only if
        // the queue was empty; here it never is.
        ensure!(
            leaders == vec![Some("c1".into()), Some("c2".into()), Some("c3".into())],
            "an observer saw {seen:?}"
        );
        let indexes: Vec<i64> = seen.iter().map(|(i, _)| *i).collect();
        ensure!(
            indexes == tokens,
            "transitions at {indexes:?}, tokens {tokens:?}"
        );
    }
    Ok(())
}

#[test]
fn an_instance_turns_critical_then_leaves_and_watchers_see_both() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let mut registrar = cluster.client(1)?;
    let _: i64 = redis::cmd("SVC.REGISTER")
        .arg(&[
            "web",
            "a",
            "10.0.0.1:80",
            "TTL",
            "800",
            "DEREGISTER",
            "1500",
        ])
        .query(&mut registrar)?;
    let _: i64 = redis::cmd("SVC.REGISTER")
        .arg(&["web", "b", "10.0.0.2:80", "TTL", "60000", "TAGS", "blue"])
        .query(&mut registrar)?;
    // A watcher on another node follows the service's changes.
    let mut watcher = cluster.client(3)?;
    watcher.set_read_timeout(Some(Duration::from_secs(30)))?;
    let initial: Value = redis::cmd("SVC.DISCOVER").arg("web").query(&mut watcher)?;
    let mut index = as_int(field(&initial, "index")).unwrap();
    let mut states = Vec::new();
    while states.len() < 2 {
        let next: Value = redis::cmd("SVC.DISCOVER")
            .arg(&["web", "AFTER", &index.to_string(), "WAIT", "10000"])
            .query(&mut watcher)?;
        ensure!(next != Value::Nil, "no change within the wait");
        index = as_int(field(&next, "index")).unwrap();
        let Some(Value::Array(instances)) = field(&next, "instances") else {
            bail!("{next:?}")
        };
        let a = instances
            .iter()
            .find(|i| as_text(field(i, "instance")).as_deref() == Some("a"))
            .map(|i| as_text(field(i, "status")).unwrap());
        states.push(a);
    }
    ensure!(
        states == vec![Some("critical".to_string()), None],
        "the watcher saw a as {states:?}"
    );
    // Picks on every node return the healthy instance only.
    for id in 1..=3 {
        let mut con = cluster.client(id)?;
        for strategy in ["round-robin", "random", "least-loaded", "weighted"] {
            let picked: Value = redis::cmd("SVC.PICK")
                .arg(&["web", "STRATEGY", strategy])
                .query(&mut con)?;
            ensure!(
                as_text(field(&picked, "instance")).as_deref() == Some("b"),
                "{strategy}"
            );
        }
    }
    Ok(())
}

#[test]
fn participants_on_different_nodes_enter_and_leave_a_double_barrier_together() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for n in 1..=3u64 {
        let mut con = cluster.client(n)?;
        con.set_read_timeout(Some(Duration::from_secs(30)))?;
        let tx = tx.clone();
        threads.push(thread::spawn(move || -> Result<()> {
            thread::sleep(Duration::from_millis(300 * n));
            let entered: i64 = redis::cmd("BARRIER.ENTER")
                .arg(&["run", &format!("p{n}"), "3", "WAIT", "20000"])
                .query(&mut con)?;
            tx.send(("entered", n, entered, Instant::now())).unwrap();
            thread::sleep(Duration::from_millis(200 * n));
            let left: i64 = redis::cmd("BARRIER.LEAVE")
                .arg(&["run", &format!("p{n}"), "WAIT", "20000"])
                .query(&mut con)?;
            tx.send(("left", n, left, Instant::now())).unwrap();
            Ok(())
        }));
    }
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow!("participant panicked"))??;
    }
    drop(tx);
    let events: Vec<_> = rx.iter().collect();
    for phase in ["entered", "left"] {
        let times: Vec<Instant> = events
            .iter()
            .filter(|e| e.0 == phase)
            .map(|e| e.3)
            .collect();
        ensure!(times.len() == 3, "{phase}: {events:?}");
        let spread = *times.iter().max().unwrap() - *times.iter().min().unwrap();
        // The last arrival answers all three in one entry.
        ensure!(
            spread < Duration::from_millis(250),
            "{phase} spread over {spread:?}"
        );
    }
    ensure!(events.iter().filter(|e| e.0 == "entered").all(|e| e.2 == 3));
    let mut con = cluster.client(2)?;
    ensure!(!exists(&mut con, "run")?, "the barrier did not reset");
    // A single barrier: waiters on other nodes go on when it comes down.
    let _: i64 = redis::cmd("BARRIER.SET").arg("gate").query(&mut con)?;
    let mut waiter = cluster.client(3)?;
    waiter.set_read_timeout(Some(Duration::from_secs(30)))?;
    let waiting = thread::spawn(move || -> Result<(i64, Instant)> {
        let passed: i64 = redis::cmd("BARRIER.WAIT").arg("gate").query(&mut waiter)?;
        Ok((passed, Instant::now()))
    });
    thread::sleep(Duration::from_millis(500));
    let removed_at = Instant::now();
    let _: i64 = redis::cmd("BARRIER.REMOVE").arg("gate").query(&mut con)?;
    let (passed, at) = waiting.join().map_err(|_| anyhow!("waiter panicked"))??;
    ensure!(
        passed == 1 && at >= removed_at,
        "the waiter passed before the removal"
    );
    Ok(())
}

#[test]
fn a_limit_set_on_one_node_bounds_commands_on_every_node() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let mut first = cluster.client(1)?;
    let mut third = cluster.client(3)?;
    let ok: String = redis::cmd("CONFIG")
        .arg(&["SET", "svc-max-instances", "2"])
        .query(&mut first)?;
    ensure!(ok == "OK");
    // A write acknowledged on node 1 is seen by the linearizable read on 3.
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "svc-max-*"])
        .query(&mut third)?;
    ensure!(
        got.chunks(2)
            .any(|pair| pair == ["svc-max-instances".to_string(), "2".to_string()]),
        "{got:?}"
    );
    for instance in ["a", "b"] {
        let _: i64 = redis::cmd("SVC.REGISTER")
            .arg(&["web", instance, "10.0.0.1:80"])
            .query(&mut third)?;
    }
    let refused = redis::cmd("SVC.REGISTER")
        .arg(&["web", "c", "10.0.0.3:80"])
        .query::<i64>(&mut cluster.client(2)?)
        .expect_err("a third instance is over the limit");
    ensure!(
        refused
            .to_string()
            .contains("service already has 2 instances"),
        "{refused}"
    );
    // Settings of the node itself stay fixed; unknown names are errors.
    for (args, expected) in [
        (vec!["SET", "appendonly", "no"], "is fixed"),
        (vec!["SET", "maxmemory", "1"], "Unknown option"),
        (
            vec!["SET", "svc-max-instances", "-1"],
            "must be between 1 and",
        ),
    ] {
        let err = redis::cmd("CONFIG")
            .arg(&args)
            .query::<String>(&mut first)
            .expect_err("refused");
        ensure!(err.to_string().contains(expected), "{args:?}: {err}");
    }
    Ok(())
}

#[test]
fn a_waiting_candidate_whose_connection_closes_leaves_the_queue() -> Result<()> {
    use std::io::Write;
    let mut cluster = Cluster::start(3)?;
    cluster.wait_for_leader(Duration::from_secs(10))?;
    let mut con = cluster.client(1)?;
    let leading: i64 = redis::cmd("LEASE.GRANT").arg(60_000).query(&mut con)?;
    let waiting: i64 = redis::cmd("LEASE.GRANT").arg(60_000).query(&mut con)?;
    let token: i64 = redis::cmd("ELECT.CAMPAIGN")
        .arg(&["jobs", "first"])
        .arg(leading)
        .query(&mut con)?;
    // A second candidate on node 2 waits (no WAIT: for ever), on a raw
    // socket this test can close under it.
    let addr = cluster.client_addrs()[1];
    let mut socket = std::net::TcpStream::connect(addr)?;
    socket.write_all(
        &redis::cmd("ELECT.CAMPAIGN")
            .arg(&["jobs", "second"])
            .arg(waiting)
            .get_packed_command(),
    )?;
    let candidates = |con: &mut redis::Connection| -> Result<i64> {
        let leader: Value = redis::cmd("ELECT.LEADER").arg("jobs").query(con)?;
        as_int(field(&leader, "candidates")).ok_or_else(|| anyhow!("no candidates in {leader:?}"))
    };
    retry(Duration::from_secs(10), || {
        let n = candidates(&mut con)?;
        ensure!(n == 1, "{n} candidates wait");
        Ok(())
    })?;
    drop(socket);
    retry(Duration::from_secs(10), || {
        let n = candidates(&mut con)?;
        ensure!(n == 0, "{n} candidates still wait after the client left");
        Ok(())
    })?;
    // So the resignation leaves nobody leading, rather than the departed
    // candidate.
    let _: i64 = redis::cmd("ELECT.RESIGN")
        .arg("jobs")
        .arg(token)
        .query(&mut con)?;
    let leader: Value = redis::cmd("ELECT.LEADER").arg("jobs").query(&mut con)?;
    ensure!(leader == Value::Nil, "{leader:?}");
    Ok(())
}
