//! Command-line flags and the optional TOML file: the same keys in both,
//! flags winning.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use lockstep_raft::NodeConfig;
use lockstep_server::Limits;
use serde::Deserialize;

/// A consensus-backed coordination service that speaks the Redis protocol.
///
/// With no flags, starts a single-node cluster on 127.0.0.1:6379 with data in
/// ./lockstep-data.
#[derive(Parser, Debug, Default)]
#[command(name = "lockstep", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML file with any of the settings below (flags override it).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// This node's id (1..): must appear in --peers.
    #[arg(long)]
    pub id: Option<u64>,
    /// Address for Redis clients.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address for raft traffic from peers.
    #[arg(long)]
    pub peer_listen: Option<SocketAddr>,
    /// Every voter's raft address, this node included: 1=host:port,2=host:port,...
    #[arg(long)]
    pub peers: Option<String>,
    /// Every node's client address, for ROLE and INFO: 1=host:port,... (optional)
    #[arg(long)]
    pub client_addrs: Option<String>,
    /// Join a running cluster through any member's client address: with an
    /// empty data dir, this node adds itself as a learner (CLUSTER.ADD) and
    /// waits for the leader's snapshot. Replaces --peers.
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Option<String>,
    /// Where the node keeps its data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Also accept TLS clients here (with --tls-cert-file and --tls-key-file).
    #[arg(long, value_name = "HOST:PORT")]
    pub tls_listen: Option<SocketAddr>,
    /// The server certificate chain (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to.
    #[arg(long, value_name = "FILE")]
    pub tls_ca_cert_file: Option<PathBuf>,
    /// yes: clients must present a certificate signed by the CA; optional:
    /// checked if presented; no: not asked for. Default: yes with a CA.
    #[arg(long, value_name = "yes|optional|no")]
    pub tls_auth_clients: Option<String>,
    /// Mutual TLS between peers: this node's certificate (PEM; it must name
    /// the host of this node's peer address).
    #[arg(long, value_name = "FILE")]
    pub peer_tls_cert_file: Option<PathBuf>,
    /// The private key of --peer-tls-cert-file.
    #[arg(long, value_name = "FILE")]
    pub peer_tls_key_file: Option<PathBuf>,
    /// The cluster CA: peers' certificates must chain to it.
    #[arg(long, value_name = "FILE")]
    pub peer_tls_ca_file: Option<PathBuf>,
    /// A file holding the secret every member shares: peers prove they
    /// know it before their raft messages or forwarded commands are taken.
    #[arg(long, value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// The default user's password (until ACL SETUSER default sets one in
    /// the replicated state, which then wins): clients must AUTH.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// yes: while the default user has no password, refuse clients that
    /// are not on the loopback interface. no: accept them.
    #[arg(long, value_name = "yes|no")]
    pub protected_mode: Option<String>,
    /// Serve /metrics, /livez, /readyz and /health over HTTP here (off
    /// unless set).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve ZooKeeper clients (ZooKeeper's wire protocol) here (off
    /// unless set).
    #[arg(long, value_name = "HOST:PORT")]
    pub zk_listen: Option<SocketAddr>,
    /// Also serve ZooKeeper clients over TLS here (ZooKeeper's
    /// secureClientPort), with --tls-cert-file, --tls-key-file and the
    /// client certificate settings of the TLS port; needs --zk-listen.
    #[arg(long, value_name = "HOST:PORT")]
    pub zk_tls_listen: Option<SocketAddr>,
    /// Every node's ZooKeeper client address, for /zookeeper/config:
    /// 1=host:port,... (optional; this node's is --zk-listen).
    #[arg(long, value_name = "ID=HOST:PORT,...")]
    pub zk_addrs: Option<String>,
    /// ZooKeeper's tickTime in ms: session timeouts default to 2 to 20 of
    /// them (default 2000).
    #[arg(long, value_name = "MS")]
    pub zk_tick_ms: Option<u64>,
    /// Shortest ZooKeeper session timeout granted, in ms (default 2 ticks).
    #[arg(long, value_name = "MS")]
    pub zk_min_session_timeout_ms: Option<u64>,
    /// Longest ZooKeeper session timeout granted, in ms (default 20 ticks).
    #[arg(long, value_name = "MS")]
    pub zk_max_session_timeout_ms: Option<u64>,
    /// Largest ZooKeeper request in bytes (jute.maxbuffer, default 1048575).
    #[arg(long, value_name = "BYTES")]
    pub zk_max_request_bytes: Option<usize>,
    /// Four-letter words answered on the ZooKeeper port, comma-separated,
    /// or * for all (default srvr,ruok,isro).
    #[arg(long, value_name = "WORDS")]
    pub zk_4lw_whitelist: Option<String>,
    /// A ZooKeeper client authenticated (digest) as this identity,
    /// user:base64(sha1(user:password)), is subject to no ACL.
    #[arg(long, value_name = "USER:HASH")]
    pub zk_super_digest: Option<String>,
    /// Length of a raft tick in milliseconds.
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Election timeout in ticks (randomized between this and twice this).
    #[arg(long)]
    pub election_ticks: Option<usize>,
    /// Heartbeat interval in ticks.
    #[arg(long)]
    pub heartbeat_ticks: Option<usize>,
    /// Compact the log (and snapshot) after this many applied entries.
    #[arg(long)]
    pub snapshot_threshold: Option<u64>,
    /// How long a command waits for the cluster before -CLUSTERDOWN/-TRYAGAIN, in ms.
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// Largest bulk string a client may send, in bytes.
    #[arg(long)]
    pub max_bulk_bytes: Option<usize>,
    /// Most arguments in one command.
    #[arg(long)]
    pub max_args: Option<usize>,
    /// Most bytes buffered for one client's unparsed input.
    #[arg(long)]
    pub max_query_buffer_bytes: Option<usize>,
    /// Most client connections at once.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Threads serving client and peer sockets (default: one per core).
    #[arg(long, value_name = "N")]
    pub io_threads: Option<usize>,
    /// Log level: critical, error, warning, info, debug, trace.
    #[arg(long)]
    pub log_level: Option<String>,
    #[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
    #[command(flatten)]
    pub switches: crate::switches::TestSwitches,
}

/// Tools beside running a node.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Take a backup of a running cluster (any node, a linearizable point).
    Backup(crate::backup::BackupArgs),
    /// Prepare a new cluster's data dir from a backup.
    Restore(crate::backup::RestoreArgs),
}

/// The TOML file: the same keys as the flags, with underscores.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<u64>,
    listen: Option<SocketAddr>,
    peer_listen: Option<SocketAddr>,
    peers: Option<String>,
    client_addrs: Option<String>,
    join: Option<String>,
    data_dir: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
    requirepass: Option<String>,
    protected_mode: Option<String>,
    cluster_secret_file: Option<PathBuf>,
    tls_listen: Option<SocketAddr>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_ca_cert_file: Option<PathBuf>,
    tls_auth_clients: Option<String>,
    peer_tls_cert_file: Option<PathBuf>,
    peer_tls_key_file: Option<PathBuf>,
    peer_tls_ca_file: Option<PathBuf>,
    zk_listen: Option<SocketAddr>,
    zk_tls_listen: Option<SocketAddr>,
    zk_addrs: Option<String>,
    zk_tick_ms: Option<u64>,
    zk_min_session_timeout_ms: Option<u64>,
    zk_max_session_timeout_ms: Option<u64>,
    zk_max_request_bytes: Option<usize>,
    zk_4lw_whitelist: Option<String>,
    zk_super_digest: Option<String>,
    tick_ms: Option<u64>,
    election_ticks: Option<usize>,
    heartbeat_ticks: Option<usize>,
    snapshot_threshold: Option<u64>,
    request_timeout_ms: Option<u64>,
    max_bulk_bytes: Option<usize>,
    max_args: Option<usize>,
    max_query_buffer_bytes: Option<usize>,
    max_connections: Option<usize>,
    io_threads: Option<usize>,
    log_level: Option<String>,
}

pub struct Settings {
    pub id: u64,
    pub listen: SocketAddr,
    pub peer_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub client_addrs: BTreeMap<u64, SocketAddr>,
    /// A member's client address to join through.
    pub join: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub requirepass: Option<String>,
    pub protected_mode: bool,
    /// The TLS listener and its files.
    pub tls: Option<(SocketAddr, lockstep_server::TlsFiles)>,
    /// The ZooKeeper listener and its settings.
    pub zk: Option<(SocketAddr, lockstep_zk::ZkConfig)>,
    /// The ZooKeeper TLS listener and its files.
    pub zk_tls: Option<(SocketAddr, lockstep_server::TlsFiles)>,
    pub node: NodeConfig,
    pub limits: Limits,
    /// The async runtime's worker threads.
    pub io_threads: usize,
    pub log_level: slog::Level,
    #[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
    pub switches: crate::switches::TestSwitches,
}

pub(crate) fn parse_addr_map(text: &str, what: &str) -> Result<BTreeMap<u64, SocketAddr>> {
    let mut map = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .with_context(|| format!("{what}: '{item}' is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("{what}: bad node id '{id}'"))?;
        if id == 0 {
            bail!("{what}: node ids start at 1");
        }
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .with_context(|| format!("{what}: bad address '{addr}'"))?;
        if map.insert(id, addr).is_some() {
            bail!("{what}: node {id} listed twice");
        }
    }
    Ok(map)
}

/// Most `--io-threads` accepted.
const MAX_IO_THREADS: usize = 1024;

/// One runtime worker per core (at least one), as tokio would choose;
/// why fewer is an option and not the default is measured in
/// docs/architecture.md ("Where a write's time goes").
fn default_io_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Settings {
    pub fn resolve(cli: Cli) -> Result<Settings> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing config {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        macro_rules! pick {
            ($field:ident) => {
                cli.$field.clone().or(file.$field.clone())
            };
        }
        let id = pick!(id).unwrap_or(1);
        if id == 0 {
            bail!("--id: node ids start at 1");
        }
        let listen = pick!(listen).unwrap_or_else(|| "127.0.0.1:6379".parse().expect("literal"));
        let peer_listen = pick!(peer_listen)
            .unwrap_or_else(|| SocketAddr::new(listen.ip(), listen.port().wrapping_add(10_000)));
        let join = pick!(join);
        let peers = match pick!(peers) {
            Some(_) if join.is_some() => {
                bail!("--join and --peers exclude each other: a joining node learns the members")
            }
            Some(text) => parse_addr_map(&text, "--peers")?,
            None => BTreeMap::from([(id, peer_listen)]),
        };
        if !peers.contains_key(&id) {
            bail!("--peers must include this node's id {id}");
        }
        let client_addrs = match pick!(client_addrs) {
            Some(text) => parse_addr_map(&text, "--client-addrs")?,
            None => BTreeMap::from([(id, listen)]),
        };
        let defaults = NodeConfig::default();
        let mut node = NodeConfig {
            id,
            peers,
            client_addrs: client_addrs.clone(),
            join: join.is_some(),
            ..defaults.clone()
        };
        if let Some(path) = pick!(cluster_secret_file) {
            let secret = std::fs::read(&path)
                .with_context(|| format!("reading the cluster secret {}", path.display()))?;
            let secret = secret.trim_ascii().to_vec();
            if secret.len() < 16 {
                bail!("--cluster-secret-file: the secret must have at least 16 bytes");
            }
            node.cluster_secret = Some(lockstep_raft::ClusterSecret(secret.into()));
        }
        let zk = match pick!(zk_listen) {
            None => None,
            Some(addr) => {
                let defaults = lockstep_zk::ZkConfig::default();
                let tick_ms = pick!(zk_tick_ms).unwrap_or(defaults.tick_ms);
                if tick_ms == 0 {
                    bail!("--zk-tick-ms must be positive");
                }
                let min_session_ms = pick!(zk_min_session_timeout_ms).unwrap_or(2 * tick_ms);
                let max_session_ms = pick!(zk_max_session_timeout_ms).unwrap_or(20 * tick_ms);
                if min_session_ms == 0 || min_session_ms > max_session_ms {
                    bail!("--zk-min-session-timeout-ms must be positive and at most --zk-max-session-timeout-ms");
                }
                let max_frame = pick!(zk_max_request_bytes).unwrap_or(defaults.max_frame);
                if !(1024..=64 << 20).contains(&max_frame) {
                    bail!("--zk-max-request-bytes must be between 1024 and 67108864");
                }
                let four_letter_words = match pick!(zk_4lw_whitelist) {
                    None => defaults.four_letter_words,
                    Some(list) => {
                        let words: Vec<String> = list
                            .split(',')
                            .map(|w| w.trim().to_string())
                            .filter(|w| !w.is_empty())
                            .collect();
                        for word in &words {
                            if word != "*"
                                && !lockstep_zk::FOUR_LETTER_WORDS.contains(&word.as_str())
                            {
                                bail!(
                                    "--zk-4lw-whitelist: unknown word '{word}' (known: {})",
                                    lockstep_zk::FOUR_LETTER_WORDS.join(", ")
                                );
                            }
                        }
                        words
                    }
                };
                let mut addrs = match pick!(zk_addrs) {
                    Some(text) => parse_addr_map(&text, "--zk-addrs")?,
                    None => BTreeMap::new(),
                };
                addrs.insert(id, addr);
                Some((
                    addr,
                    lockstep_zk::ZkConfig {
                        client_port: addr.port(),
                        secure_client_port: None,
                        addrs,
                        tick_ms,
                        min_session_ms,
                        max_session_ms,
                        max_frame,
                        four_letter_words,
                        super_digest: match pick!(zk_super_digest) {
                            Some(d) if !d.contains(':') => {
                                bail!("--zk-super-digest is user:base64(sha1(user:password))")
                            }
                            other => other,
                        },
                        secret: node
                            .cluster_secret
                            .as_ref()
                            .map(|s| s.0.to_vec())
                            .unwrap_or_default(),
                    },
                ))
            }
        };
        match (
            pick!(peer_tls_cert_file),
            pick!(peer_tls_key_file),
            pick!(peer_tls_ca_file),
        ) {
            (None, None, None) => {}
            (Some(cert), Some(key), Some(ca)) => {
                let files = lockstep_raft::tls::PeerTlsFiles { cert, key, ca };
                files.load().map_err(anyhow::Error::msg)?;
                node.peer_tls = Some(files);
            }
            _ => bail!(
                "peer TLS needs all of --peer-tls-cert-file, --peer-tls-key-file and --peer-tls-ca-file"
            ),
        }
        if let Some(ms) = pick!(tick_ms) {
            if ms == 0 {
                bail!("--tick-ms must be positive");
            }
            node.tick = Duration::from_millis(ms);
        }
        node.election_ticks = pick!(election_ticks).unwrap_or(defaults.election_ticks);
        node.heartbeat_ticks = pick!(heartbeat_ticks).unwrap_or(defaults.heartbeat_ticks);
        if node.heartbeat_ticks == 0 || node.election_ticks <= node.heartbeat_ticks {
            bail!("--election-ticks must exceed --heartbeat-ticks, which must be positive");
        }
        node.snapshot_threshold = pick!(snapshot_threshold).unwrap_or(defaults.snapshot_threshold);
        if node.snapshot_threshold == 0 {
            bail!("--snapshot-threshold must be positive");
        }
        if let Some(ms) = pick!(request_timeout_ms) {
            node.request_timeout = Duration::from_millis(ms.max(1));
        }
        let base = Limits::default();
        let limits = Limits {
            max_bulk_bytes: pick!(max_bulk_bytes).unwrap_or(base.max_bulk_bytes),
            max_args: pick!(max_args).unwrap_or(base.max_args),
            max_query_buffer_bytes: pick!(max_query_buffer_bytes)
                .unwrap_or(base.max_query_buffer_bytes),
            max_connections: pick!(max_connections).unwrap_or(base.max_connections),
            ..base
        };
        let io_threads = match pick!(io_threads) {
            None => default_io_threads(),
            Some(n @ 1..=MAX_IO_THREADS) => n,
            Some(_) => bail!("--io-threads must be between 1 and {MAX_IO_THREADS}"),
        };
        let log_level = match pick!(log_level).as_deref().unwrap_or("info") {
            "critical" => slog::Level::Critical,
            "error" => slog::Level::Error,
            "warning" | "warn" => slog::Level::Warning,
            "info" => slog::Level::Info,
            "debug" => slog::Level::Debug,
            "trace" => slog::Level::Trace,
            other => bail!("--log-level: unknown level '{other}'"),
        };
        let tls_files = match (pick!(tls_cert_file), pick!(tls_key_file)) {
            (Some(cert), Some(key)) => {
                let ca = pick!(tls_ca_cert_file);
                use lockstep_server::ClientAuth;
                let client_auth = match pick!(tls_auth_clients).as_deref() {
                    None if ca.is_some() => ClientAuth::Required,
                    None | Some("no") => ClientAuth::None,
                    Some("yes") => ClientAuth::Required,
                    Some("optional") => ClientAuth::Optional,
                    Some(other) => {
                        bail!("--tls-auth-clients: '{other}' is not yes, optional or no")
                    }
                };
                let files = lockstep_server::TlsFiles {
                    cert,
                    key,
                    ca,
                    client_auth,
                };
                // Refuse bad files at start, not at the first client.
                files.load().map_err(anyhow::Error::msg)?;
                Some(files)
            }
            (None, None) => None,
            _ => bail!("--tls-cert-file and --tls-key-file go together"),
        };
        let zk_tls = match pick!(zk_tls_listen) {
            None => None,
            Some(_) if zk.is_none() => bail!("--zk-tls-listen needs --zk-listen"),
            Some(addr) => Some((
                addr,
                tls_files
                    .clone()
                    .context("--zk-tls-listen needs --tls-cert-file and --tls-key-file")?,
            )),
        };
        let mut zk = zk;
        if let (Some((_, config)), Some((addr, _))) = (zk.as_mut(), &zk_tls) {
            config.secure_client_port = Some(addr.port());
        }
        Ok(Settings {
            id,
            listen,
            peer_listen,
            data_dir: pick!(data_dir).unwrap_or_else(|| PathBuf::from("lockstep-data")),
            client_addrs,
            join,
            metrics_listen: pick!(metrics_listen),
            tls: match pick!(tls_listen) {
                None => None,
                Some(addr) => Some((
                    addr,
                    tls_files
                        .clone()
                        .context("--tls-listen needs --tls-cert-file and --tls-key-file")?,
                )),
            },
            zk_tls,
            zk,
            requirepass: pick!(requirepass).filter(|p| !p.is_empty()),
            protected_mode: match pick!(protected_mode).as_deref() {
                None | Some("yes") => true,
                Some("no") => false,
                Some(other) => bail!("--protected-mode: '{other}' is neither yes nor no"),
            },
            node,
            limits,
            io_threads,
            log_level,
            #[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
            switches: cli.switches.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_means_single_node_on_6379() {
        let settings = Settings::resolve(Cli::default()).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:6379");
        assert_eq!(settings.node.peers.len(), 1);
        assert_eq!(settings.data_dir, PathBuf::from("lockstep-data"));
    }

    #[test]
    fn io_threads_default_to_the_cores_and_refuse_zero() {
        let cores = std::thread::available_parallelism().unwrap().get();
        let settings = Settings::resolve(Cli::default()).unwrap();
        assert_eq!(settings.io_threads, cores);
        let three = Cli {
            io_threads: Some(3),
            ..Cli::default()
        };
        assert_eq!(Settings::resolve(three).unwrap().io_threads, 3);
        for bad in [0, MAX_IO_THREADS + 1] {
            let cli = Cli {
                io_threads: Some(bad),
                ..Cli::default()
            };
            let error = Settings::resolve(cli).err().unwrap().to_string();
            assert_eq!(error, "--io-threads must be between 1 and 1024");
        }
    }

    #[test]
    fn peers_must_include_self_and_be_well_formed() {
        let cli = Cli {
            id: Some(4),
            peers: Some("1=127.0.0.1:1,2=127.0.0.1:2".into()),
            ..Cli::default()
        };
        assert!(Settings::resolve(cli).is_err());
        assert!(parse_addr_map("1=nothere", "x").is_err());
        assert!(parse_addr_map("0=127.0.0.1:1", "x").is_err());
        assert_eq!(
            parse_addr_map("1=127.0.0.1:1, 2=127.0.0.1:2", "x")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn the_zookeeper_tls_port_needs_its_plain_port_and_a_certificate() {
        let error = |cli: Cli| Settings::resolve(cli).err().map(|e| e.to_string());
        let tls = Some("127.0.0.1:2281".parse().unwrap());
        let without_plain = Cli {
            zk_tls_listen: tls,
            ..Cli::default()
        };
        assert_eq!(
            error(without_plain).as_deref(),
            Some("--zk-tls-listen needs --zk-listen")
        );
        let without_cert = Cli {
            zk_listen: Some("127.0.0.1:2181".parse().unwrap()),
            zk_tls_listen: tls,
            ..Cli::default()
        };
        assert_eq!(
            error(without_cert).as_deref(),
            Some("--zk-tls-listen needs --tls-cert-file and --tls-key-file")
        );
        let half = Cli {
            tls_cert_file: Some(PathBuf::from("server.pem")),
            ..Cli::default()
        };
        assert_eq!(
            error(half).as_deref(),
            Some("--tls-cert-file and --tls-key-file go together")
        );
    }
}
