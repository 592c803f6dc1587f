use thiserror::Error;

/// Why a proposal or read got no result.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProposeError {
    /// Never handed to any leader: it certainly did not take effect.
    #[error("no leader reachable within the wait bound")]
    NoLeader,
    /// Handed to a leader but not seen applied in time: it may or may not
    /// take effect.
    #[error("outcome unknown: the request may or may not have been applied")]
    Indeterminate,
    /// Refused on arrival because too many requests are waiting.
    #[error("too many pending requests")]
    Busy,
    /// The node is shutting down.
    #[error("node stopped")]
    Stopped,
}

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("storage: {0}")]
    Store(#[from] lockstep_store::StoreError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a membership change or leader transfer did not happen.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MembershipError {
    /// Only the leader changes the membership (`leader` 0: none known).
    #[error("this node is not the leader")]
    NotLeader { leader: u64 },
    /// The change would break the cluster or cannot be made; the text
    /// says why.
    #[error("{0}")]
    Refused(String),
    /// The leader does not hear from a majority of the voters.
    #[error("the leader hears from {live} of {voters} voters, not a majority")]
    NoQuorum { live: usize, voters: usize },
    /// Proposed (or requested) but not done within the wait bound.
    #[error("not completed within the wait bound")]
    TimedOut,
    /// This node was removed from the cluster.
    #[error("this node was removed from the cluster")]
    Removed,
    #[error(transparent)]
    Propose(#[from] ProposeError),
}
