//! A fault run that stops making progress must fail, not hang the suite.
//! Past its time limit the watchdog names the phase the run was in, shows
//! each node's last log lines and, for a node that no longer answers PING,
//! its threads' states and stacks; then it kills the nodes and exits the
//! test process.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the watchdog needs to know of one node: no handle to the cluster,
/// which the run keeps using.
#[derive(Clone)]
pub struct NodeProbe {
    pub id: u64,
    pub client_addr: SocketAddr,
    pub log: PathBuf,
}

pub struct Watchdog {
    phase: Arc<Mutex<&'static str>>,
    nodes: Arc<Mutex<Vec<NodeProbe>>>,
    done: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Watches from now until dropped, so a run that holds it across its
    /// cluster's teardown is watched there too.
    pub fn start(limit: Duration) -> Watchdog {
        let phase = Arc::new(Mutex::new("starting the cluster"));
        let nodes = Arc::new(Mutex::new(Vec::new()));
        let (done, finished) = mpsc::channel::<()>();
        let (watched_phase, watched_nodes) = (phase.clone(), nodes.clone());
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(limit) {
                let phase = *lock(&watched_phase);
                let nodes = lock(&watched_nodes).clone();
                give_up(limit, phase, &nodes);
            }
        });
        Watchdog {
            phase,
            nodes,
            done: Some(done),
            thread: Some(thread),
        }
    }

    pub fn phase(&self, phase: &'static str) {
        *lock(&self.phase) = phase;
    }

    pub fn watch_nodes(&self, nodes: Vec<NodeProbe>) {
        *lock(&self.nodes) = nodes;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watchdog must report even if a thread panicked holding a lock.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Written straight to the process's stderr: the test harness captures
/// `eprintln!` and would show nothing of a process that exits.
fn give_up(limit: Duration, phase: &str, nodes: &[NodeProbe]) {
    let report = format!(
        "\nfault run still {phase} after {limit:?}: giving up\n{}",
        diagnose(nodes)
    );
    let _ = std::io::stderr().write_all(report.as_bytes());
    kill_children();
    std::process::exit(101);
}

/// What each node is doing: whether it answers PING, its last warnings and
/// errors, its last log lines and, if it does not answer, its threads'
/// states and stacks.
pub fn diagnose(nodes: &[NodeProbe]) -> String {
    let mut report = String::new();
    for node in nodes {
        let answers = crate::connect_with_timeout(node.client_addr, Duration::from_secs(2))
            .and_then(|mut connection| Ok(redis::cmd("PING").query::<String>(&mut connection)?))
            .is_ok();
        report.push_str(&format!(
            "node {} ({}): {}\n",
            node.id,
            node.client_addr,
            if answers {
                "answers PING"
            } else {
                "does not answer PING"
            }
        ));
        let log = std::fs::read_to_string(&node.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let troubled: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|line| {
                line.contains("CRIT") || line.contains("ERRO") || line.contains("panicked")
            })
            .collect();
        let shown = troubled[troubled.len().saturating_sub(5)..]
            .iter()
            .chain(["..."].iter())
            .chain(&lines[lines.len().saturating_sub(8)..]);
        for line in shown {
            let line: String = line.chars().take(240).collect();
            report.push_str(&format!("  {line}\n"));
        }
        if !answers {
            if let Some(pid) = pid_listening_on(node) {
                report.push_str(&thread_states(pid));
                report.push_str(&thread_stacks(pid));
            }
        }
    }
    report
}

/// This process's child processes (the nodes) by pid.
fn children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // "pid (comm) state ppid ...": comm may hold spaces.
                    let after = stat.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1).map(|ppid| ppid == me)
                })
                .unwrap_or(false)
        })
        .collect()
}

fn pid_listening_on(node: &NodeProbe) -> Option<i32> {
    let wanted = format!("--listen\0{}\0", node.client_addr);
    children().into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(&wanted))
            .unwrap_or(false)
    })
}

/// Each thread's name, scheduler state (D: waiting on the disk) and the
/// kernel function it sleeps in.
fn thread_states(pid: i32) -> String {
    let mut out = String::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let stat = read("stat");
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        out.push_str(&format!(
            "  thread {} state {state} in {}\n",
            read("comm"),
            read("wchan")
        ));
    }
    out
}

/// gdb's view of every thread, given at most 30 s: attaching to a process
/// stuck in the kernel may itself hang.
fn thread_stacks(pid: i32) -> String {
    let spawned = Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt 30",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let gdb = match spawned {
        Ok(gdb) => gdb,
        Err(err) => return format!("  (no stacks: gdb: {err})\n"),
    };
    let gdb_pid = gdb.id() as i32;
    let (sender, stacks) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(gdb.wait_with_output());
    });
    match stacks.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(output)) => String::from_utf8_lossy(&output.stdout).into_owned(),
        Ok(Err(err)) => format!("  (no stacks: gdb: {err})\n"),
        Err(_) => {
            unsafe {
                libc::kill(gdb_pid, libc::SIGKILL);
            }
            "  (no stacks: gdb did not finish in 30 s)\n".to_string()
        }
    }
}

fn kill_children() {
    for pid in children() {
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}
