impl NodeStatus {
    /// The client address of member `id`, if known.
    pub fn client_addr(&self, id: u64) -> Option<&str> {
        self.members
            .addrs
            .get(&id)
            .map(|addrs| addrs.client.as_str())
            .filter(|addr| !addr.is_empty())
    }

    /// How long ago a raft message from `id` arrived.
    pub fn heard_from(&self, id: u64) -> Option<std::time::Duration> {
        self.last_heard
            .iter()
            .find(|(peer, _)| *peer == id)
            .map(|(_, ago)| *ago)
    }
}

/// What a node knows about itself and the cluster, refreshed by the raft
/// thread after every round.
#[derive(Clone, Debug, Default)]
pub struct NodeStatus {
    pub id: u64,
    pub role: Role,
    pub term: u64,
    pub leader_id: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub cluster_time_ms: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// Every member's addresses, as replicated with the membership.
    pub members: std::sync::Arc<crate::Members>,
    /// This node was removed from the cluster and serves no more.
    pub removed: bool,
    /// The cluster's identity (hex; empty before a joining node's snapshot).
    pub cluster_id: std::sync::Arc<String>,
    /// How long ago each peer's last raft message arrived.
    pub last_heard: Vec<(u64, std::time::Duration)>,
    /// Replication progress of every peer, known on the leader only.
    pub progress: Vec<PeerProgress>,
    /// This node's requests that applied and wait for a later entry's
    /// reply (lock waits, blocking pops): its blocked clients.
    pub parked_requests: usize,
    /// Proposals and reads waiting in this node.
    pub pending_requests: usize,
    /// Records with a deadline (TTLs, leases, lock and waiter deadlines).
    pub deadlines: usize,
    /// Live leases.
    pub leases: usize,
    /// Native lock records (held, or waited on).
    pub locks: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    #[default]
    Follower,
    Candidate,
    PreCandidate,
    Leader,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate | Role::PreCandidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    pub id: u64,
    pub matched: u64,
}
