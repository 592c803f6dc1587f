//! A harness that runs real `lockstep` processes on loopback for end-to-end
//! tests: start a cluster, kill -9 / stop / pause / restart nodes, cut peer
//! links through proxies, find the leader, and talk to nodes with the
//! `redis` client library. `faults` runs workloads under nemeses and judges
//! the histories.

pub mod faults;
pub mod pki;
pub mod proxy;
pub mod resp;

use std::collections::BTreeMap;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// The `lockstep` binary built next to this test executable.
pub fn lockstep_binary() -> PathBuf {
    if let Ok(path) = std::env::var("LOCKSTEP_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // Tests live in target/<profile>/deps, binaries in target/<profile>.
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("lockstep"))
        .find(|candidate| candidate.is_file())
        .expect("the lockstep binary next to this executable (cargo build -p lockstep)")
}

/// `lockstep-unsafe`: the server with the negative-control switches, built
/// by `cargo build -p lockstep --features unsafe-test-switches`.
pub fn lockstep_unsafe_binary() -> PathBuf {
    lockstep_binary().with_file_name("lockstep-unsafe")
}

/// A loopback port that is free now (checked by binding it).
///
/// Ports come from below the kernel's ephemeral range: a port picked from
/// that range (as `bind(0)` does) can be taken, before the node binds it,
/// as the local port of any outgoing connection on the machine (the
/// nodes' own peer links included), and the node then fails to start.
/// Below the range only an explicit bind takes a port; picks go round
/// from a per-process offset so parallel tests do not pick alike.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    let (low, high) = (10_000u32, ephemeral_low.max(12_000));
    let span = high - low;
    let offset = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (offset + step) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {low} and {high}")
}

pub struct NodeProcess {
    pub id: u64,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    /// The operations HTTP listener (/metrics, /livez, /readyz, /health).
    pub metrics_addr: SocketAddr,
    /// The ZooKeeper-protocol listener.
    pub zk_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// A node added to a running cluster starts with `--join` through
    /// this member's client address (instead of `--peers`).
    pub join: Option<SocketAddr>,
    child: Option<Child>,
}

impl NodeProcess {
    /// Where the node's log (its stderr) goes, across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("node.log")
    }
}

pub struct Cluster {
    pub nodes: Vec<NodeProcess>,
    /// Proxies for peer traffic by (dialling node, dialled node), when the
    /// cluster was started with them.
    links: BTreeMap<(u64, u64), proxy::Link>,
    binary: PathBuf,
    extra_args: Vec<String>,
    /// The default user's password, once a test sets one.
    pub password: Option<String>,
    /// Nodes removed from the membership (no longer listed by `ids`).
    pub removed: std::collections::BTreeSet<u64>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(size: usize) -> Result<Cluster> {
        Self::start_with(size, &[])
    }

    pub fn start_with(size: usize, extra_args: &[&str]) -> Result<Cluster> {
        Self::start_inner(size, extra_args, false, lockstep_binary())
    }

    /// A cluster of `binary` processes whose peer traffic goes through a
    /// proxy per direction, so links can be cut.
    pub fn start_proxied(size: usize, extra_args: &[&str], binary: PathBuf) -> Result<Cluster> {
        Self::start_inner(size, extra_args, true, binary)
    }

    /// A new cluster of `size` nodes whose data dirs `lockstep restore`
    /// prepared from `backup`.
    pub fn start_from_backup(size: usize, backup: &std::path::Path) -> Result<Cluster> {
        Self::start_prepared(size, &[], false, lockstep_binary(), Some(backup))
    }

    fn start_inner(
        size: usize,
        extra_args: &[&str],
        proxied: bool,
        binary: PathBuf,
    ) -> Result<Cluster> {
        Self::start_prepared(size, extra_args, proxied, binary, None)
    }

    fn start_prepared(
        size: usize,
        extra_args: &[&str],
        proxied: bool,
        binary: PathBuf,
        backup: Option<&std::path::Path>,
    ) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let nodes: Vec<NodeProcess> = (1..=size as u64)
            .map(|id| NodeProcess {
                id,
                client_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                peer_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                metrics_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                zk_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                data_dir: dir.path().join(format!("node{id}")),
                join: None,
                child: None,
            })
            .collect();
        let mut links = BTreeMap::new();
        if proxied {
            for from in &nodes {
                for to in &nodes {
                    if from.id != to.id {
                        links.insert((from.id, to.id), proxy::Link::start(to.peer_addr)?);
                    }
                }
            }
        }
        let mut cluster = Cluster {
            nodes,
            links,
            binary,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            password: None,
            removed: Default::default(),
            _dir: dir,
        };
        if let Some(backup) = backup {
            let peers = cluster.list(|node| node.peer_addr);
            let clients = cluster.list(|node| node.client_addr);
            for node in &cluster.nodes {
                let output = Command::new(&cluster.binary)
                    .arg("restore")
                    .arg(backup)
                    .arg("--data-dir")
                    .arg(node.data_dir.join("data"))
                    .arg("--id")
                    .arg(node.id.to_string())
                    .arg("--peers")
                    .arg(&peers)
                    .arg("--client-addrs")
                    .arg(&clients)
                    .output()?;
                if !output.status.success() {
                    bail!(
                        "lockstep restore for node {}: {}",
                        node.id,
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
            }
        }
        for id in 1..=size as u64 {
            cluster.spawn(id)?;
        }
        cluster.wait_for_leader(Duration::from_secs(20))?;
        Ok(cluster)
    }

    fn list(&self, pick: impl Fn(&NodeProcess) -> SocketAddr) -> String {
        self.nodes
            .iter()
            .map(|node| format!("{}={}", node.id, pick(node)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node_mut(&mut self, id: u64) -> &mut NodeProcess {
        &mut self.nodes[id as usize - 1]
    }

    pub fn node(&self, id: u64) -> &NodeProcess {
        &self.nodes[id as usize - 1]
    }

    pub fn spawn(&mut self, id: u64) -> Result<()> {
        let peers = self
            .nodes
            .iter()
            .map(|node| {
                let addr = match self.links.get(&(id, node.id)) {
                    Some(link) => link.listen,
                    None => node.peer_addr,
                };
                format!("{}={addr}", node.id)
            })
            .collect::<Vec<_>>()
            .join(",");
        let clients = self.list(|node| node.client_addr);
        let zk_addrs = self.list(|node| node.zk_addr);
        let extra = self.extra_args.clone();
        let binary = self.binary.clone();
        let node = self.node_mut(id);
        let membership: Vec<String> = match node.join {
            Some(contact) => vec!["--join".into(), contact.to_string()],
            None => vec!["--peers".into(), peers, "--client-addrs".into(), clients],
        };
        std::fs::create_dir_all(&node.data_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log_path())?;
        let child = Command::new(&binary)
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(node.client_addr.to_string())
            .arg("--peer-listen")
            .arg(node.peer_addr.to_string())
            .args(&membership)
            .arg("--metrics-listen")
            .arg(node.metrics_addr.to_string())
            .arg("--zk-listen")
            .arg(node.zk_addr.to_string())
            .arg("--zk-addrs")
            .arg(zk_addrs)
            .arg("--data-dir")
            .arg(node.data_dir.join("data"))
            .args(&extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        node.child = Some(child);
        wait_for_port(node.client_addr, Duration::from_secs(20))
    }

    /// Starts a new node (the next id) that joins the running cluster
    /// through node `via` (`--join`, empty data dir); returns its id. It
    /// is a learner until promoted.
    pub fn add_node(&mut self, via: u64) -> Result<u64> {
        let id = self.nodes.len() as u64 + 1;
        let dir = self.nodes[0]
            .data_dir
            .parent()
            .expect("node dirs live in the cluster dir")
            .join(format!("node{id}"));
        let contact = self.node(via).client_addr;
        self.nodes.push(NodeProcess {
            id,
            client_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            peer_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            zk_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir: dir,
            join: Some(contact),
            child: None,
        });
        self.spawn(id)?;
        Ok(id)
    }

    /// Deletes a stopped node's data (its log stays).
    pub fn wipe(&mut self, id: u64) -> Result<()> {
        let data = self.node(id).data_dir.join("data");
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        Ok(())
    }

    /// kill -9: no clean shutdown, unsynced state lost.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.node_mut(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self, id: u64) -> Result<()> {
        if let Some(mut child) = self.node_mut(id).child.take() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = child.try_wait()? {
                    if !status.success() {
                        bail!("node {id} exited with {status} after SIGTERM");
                    }
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    bail!("node {id} did not stop within 10s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// SIGSTOP: the process freezes with its sockets open.
    pub fn pause(&mut self, id: u64) {
        self.signal(id, libc::SIGSTOP);
    }

    /// SIGCONT after `pause`.
    pub fn resume(&mut self, id: u64) {
        self.signal(id, libc::SIGCONT);
    }

    fn signal(&mut self, id: u64, signal: i32) {
        if let Some(child) = self.node_mut(id).child.as_ref() {
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// Cuts peer traffic from `from` to `to` (one way).
    pub fn cut(&self, from: u64, to: u64) {
        if let Some(link) = self.links.get(&(from, to)) {
            link.cut();
        }
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&self, id: u64) {
        for (&(from, to), link) in &self.links {
            if from == id || to == id {
                link.cut();
            }
        }
    }

    /// Mends every cut link.
    pub fn heal(&self) {
        for link in self.links.values() {
            link.mend();
        }
    }

    /// The members: every node started, less the removed.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|node| node.id)
            .filter(|id| !self.removed.contains(id))
            .collect()
    }

    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .filter(|node| !self.removed.contains(&node.id))
            .map(|node| node.client_addr)
            .collect()
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        match self.node_mut(id).child.as_mut() {
            Some(child) => child.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    pub fn client(&self, id: u64) -> Result<redis::Connection> {
        let mut con = connect(self.node(id).client_addr)?;
        self.authenticate(&mut con)?;
        Ok(con)
    }

    fn authenticate(&self, con: &mut redis::Connection) -> Result<()> {
        if let Some(password) = &self.password {
            redis::cmd("AUTH").arg(password).query::<()>(con)?;
        }
        Ok(())
    }

    pub fn info_field(&self, id: u64, field: &str) -> Option<String> {
        // Short timeouts: the node may be paused or cut off.
        let mut con =
            connect_with_timeout(self.node(id).client_addr, Duration::from_secs(2)).ok()?;
        self.authenticate(&mut con).ok()?;
        let info: String = redis::cmd("INFO").arg("everything").query(&mut con).ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .map(|value| value.trim().to_string())
    }

    /// The id of a node that reports itself leader, among running nodes.
    pub fn leader(&mut self) -> Option<u64> {
        let ids = self.ids();
        let running: Vec<u64> = ids.into_iter().filter(|&id| self.is_running(id)).collect();
        running
            .into_iter()
            .find(|&id| self.info_field(id, "raft_role").as_deref() == Some("leader"))
    }

    pub fn wait_for_leader(&mut self, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(id) = self.leader() {
                return Ok(id);
            }
            if Instant::now() > deadline {
                bail!("no leader within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until node `id` has applied at least `index`.
    pub fn wait_applied(&self, id: u64, index: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let applied: u64 = self
                .info_field(id, "raft_applied_index")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if applied >= index {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("node {id} applied {applied} < {index} after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs the lockstep binary with `args` (a tool, not a node):
    /// (success, stdout, stderr).
    pub fn tool(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let output = Command::new(&self.binary).args(args).output()?;
        Ok((
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }

    /// The directory the cluster's node dirs live in.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn log_of(&self, id: u64) -> String {
        std::fs::read_to_string(self.node(id).log_path()).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGCONT);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

pub fn connect(addr: SocketAddr) -> Result<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let con = client.get_connection_with_timeout(Duration::from_secs(5))?;
    con.set_read_timeout(Some(Duration::from_secs(15)))?;
    con.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(con)
}

/// A connection whose connect, reads and writes each give up after `timeout`.
pub fn connect_with_timeout(addr: SocketAddr, timeout: Duration) -> Result<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let con = client.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    Ok(con)
}

pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(anyhow!(
        "{addr} not accepting connections after {timeout:?}"
    ))
}

/// Retries `op` until it succeeds or `timeout` passes (for the moments
/// around a failover, when a command may get -CLUSTERDOWN or -TRYAGAIN).
pub fn retry<T>(timeout: Duration, mut op: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match op() {
            Ok(value) => return Ok(value),
            Err(err) if Instant::now() > deadline => return Err(err),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A real `redis-server` (the reference of the differential tests), on a
/// free loopback port, without persistence; killed when dropped.
pub struct RedisServer {
    pub addr: SocketAddr,
    _process: Reference,
}

/// A reference server's process and its directory: killed and removed
/// when dropped.
struct Reference {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Reference {
    /// Starts `command` (output discarded) and waits until it listens on
    /// `port`; `what` names it in errors. Killed if it never does.
    fn serve(
        command: &mut Command,
        dir: tempfile::TempDir,
        port: u16,
        ready_within: Duration,
        what: &str,
    ) -> Result<(SocketAddr, Reference)> {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let process = Reference { child, _dir: dir };
        wait_for_port(addr, ready_within)?;
        Ok((addr, process))
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    pub fn start() -> Result<RedisServer> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path());
        let (addr, process) = Reference::serve(
            &mut command,
            dir,
            port,
            Duration::from_secs(10),
            "redis-server (scripts/setup.sh installs it)",
        )?;
        Ok(RedisServer {
            addr,
            _process: process,
        })
    }
}

/// Where Debian's `zookeeper` package puts the server and its client.
pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
pub const ZKCLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";

/// A real ZooKeeper server (Debian's `zookeeper` package, standalone, the
/// reference of the ZooKeeper front end's differential tests) on a free
/// loopback port, with TTL and container nodes enabled; killed when
/// dropped.
pub struct ZooKeeperServer {
    pub addr: SocketAddr,
    _process: Reference,
}

impl ZooKeeperServer {
    pub fn start() -> Result<ZooKeeperServer> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let config = dir.path().join("zoo.cfg");
        std::fs::create_dir_all(dir.path().join("data"))?;
        std::fs::write(
            &config,
            format!(
                "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=*\n",
                dir.path().join("data").display()
            ),
        )?;
        let mut command = Command::new("java");
        command
            .arg("-Dzookeeper.extendedTypesEnabled=true")
            .arg(format!("-Dzookeeper.log.dir={}", dir.path().display()))
            .args(["-cp", ZOOKEEPER_JAR])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&config);
        let (addr, process) = Reference::serve(
            &mut command,
            dir,
            port,
            Duration::from_secs(60),
            "ZooKeeper (scripts/setup.sh --tests installs Debian's zookeeper)",
        )?;
        Ok(ZooKeeperServer {
            addr,
            _process: process,
        })
    }
}

/// A command's error as `CODE detail` (the code as the server sent it),
/// or `no error: <reply>`.
pub fn error_of(con: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    match cmd.query::<redis::Value>(con) {
        Ok(value) => format!("no error: {value:?}"),
        Err(err) => format!(
            "{} {}",
            err.code().unwrap_or("?"),
            err.detail().unwrap_or_default()
        ),
    }
}

/// One HTTP/1.1 GET with `Connection: close`: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status: u16 = response
        .split(' ')
        .nth(1)
        .context("no status line")?
        .parse()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// This crate's directory (its scripts and the repository's files), as
/// cargo gives it when the test runs: right even when one target directory
/// serves several checkouts and the binary was built in another.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())
        .into()
}
