use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The shared secret peers authenticate with; never printed.
#[derive(Clone)]
pub struct ClusterSecret(pub std::sync::Arc<[u8]>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

/// Settings of one node's replication core.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: u64,
    /// Peer (raft) addresses of every voter, this node included: the
    /// members of a new cluster. Once the membership record exists (it is
    /// replicated), it decides.
    pub peers: BTreeMap<u64, SocketAddr>,
    /// Client addresses of the members of a new cluster.
    pub client_addrs: BTreeMap<u64, SocketAddr>,
    /// Peers prove they know this (HMAC of a nonce) before their frames
    /// are taken; None: no peer authentication.
    pub cluster_secret: Option<ClusterSecret>,
    /// Build snapshots for followers on a thread of their own (a real node;
    /// the deterministic simulation builds them in line).
    pub background_snapshots: bool,
    /// Mutual TLS between peers, with the cluster CA.
    pub peer_tls: Option<crate::tls::PeerTlsFiles>,
    /// Joining an existing cluster: an empty store is not bootstrapped; it
    /// waits for the leader's snapshot.
    pub join: bool,
    /// Length of one raft tick.
    pub tick: Duration,
    /// Election timeout in ticks (randomized up to twice this by raft).
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Compact the log once this many applied entries sit in it.
    pub snapshot_threshold: u64,
    /// How long a client command may wait for its entry to apply.
    pub request_timeout: Duration,
    /// While keys have TTLs, the leader makes sure an entry carrying fresh
    /// cluster time commits at least this often.
    pub clock_interval: Duration,
    /// Largest peer message accepted (a snapshot, reassembled from the
    /// chunks it travels in).
    pub max_peer_frame_bytes: usize,
    /// Frames queued per peer before new ones are dropped (raft retries).
    pub peer_queue_frames: usize,
    /// Proposals and reads waiting in the node at once.
    pub max_pending_requests: usize,
}

impl NodeConfig {
    pub fn single(id: u64, peer_addr: SocketAddr) -> Self {
        let mut peers = BTreeMap::new();
        peers.insert(id, peer_addr);
        NodeConfig {
            id,
            peers,
            ..NodeConfig::default()
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: 1,
            peers: BTreeMap::new(),
            client_addrs: BTreeMap::new(),
            join: false,
            cluster_secret: None,
            peer_tls: None,
            background_snapshots: false,
            tick: Duration::from_millis(50),
            election_ticks: 20,
            heartbeat_ticks: 4,
            snapshot_threshold: 10_000,
            request_timeout: Duration::from_secs(5),
            clock_interval: Duration::from_millis(50),
            max_peer_frame_bytes: 4 << 30,
            peer_queue_frames: 4096,
            max_pending_requests: 100_000,
        }
    }
}
