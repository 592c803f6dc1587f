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
