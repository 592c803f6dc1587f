//! lockstep's replication core.
//!
//! A [`Node`] drives one raft-rs `RawNode` on a thread of its own: it
//! batches client proposals into Ready rounds (one synced write per round),
//! stamps cluster time into entries as leader, forwards proposals from
//! followers to the leader, applies committed entries through the engine,
//! answers linearizable read barriers by ReadIndex, compacts the log and
//! ships snapshots (streamed from a held view on a connection of their
//! own, staged on the follower, in bounded memory: `snapshots`). It also
//! changes the membership (ConfChangeV2, one at a time, member addresses
//! replicated beside it), moves leadership, takes and restores backups
//! ([`backup`]) and counts what it does ([`RaftMetrics`]). Peers talk over
//! `transport`: length-delimited frames on TCP, optionally authenticated
//! by a cluster secret and wrapped in mutual TLS ([`tls`]).
//!
//! What this crate must not do: parse RESP or know about client
//! connections (that is the server's), or interpret commands itself (that is
//! the engine's). It is the only crate that touches `RawNode`.

pub mod backup;
mod clock;
mod config;
mod core;
mod error;
mod frame;
mod members;
mod metrics;
mod node;
mod pending;
mod snapshots;
mod status;
pub mod tls;
mod transport;

pub use crate::core::{AppliedRecord, Core, EventSink, PeerSender, SystemTime, TimeSource};
pub use config::{ClusterSecret, NodeConfig};
pub use error::{MembershipError, NodeError, ProposeError};
pub use members::{validate_address, MemberAddrs, Members};
pub use metrics::RaftMetrics;
pub use node::{Node, NodeHandle};
pub use pending::Answered;

/// A membership change, one at a time, through the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// A new node, as a learner (it votes once promoted).
    Add { id: u64, addrs: MemberAddrs },
    /// A caught-up learner becomes a voter.
    Promote { id: u64 },
    /// A voter or learner leaves for good; its id is never used again.
    Remove { id: u64 },
}
pub use status::{NodeStatus, PeerProgress, Role};

/// Decodes a frame as a peer would have sent it and returns the command
/// body of a forwarded proposal. For fuzzing and tools: the transport
/// decodes every inbound frame the same way.
pub fn decode_peer_frame(frame: bytes::Bytes) -> Result<Option<bytes::Bytes>, String> {
    match frame::PeerFrame::decode(frame).map_err(|err| err.to_string())? {
        frame::PeerFrame::Raft(_) => Ok(None),
        frame::PeerFrame::Forward { body, .. } => Ok(Some(body)),
    }
}
