//! What the replication core counts and times, as Prometheus metrics.
//! The core updates them as it works (atomic operations, no locks on the
//! write path); the server registers them with its registry and serves
//! them. Gauges that are a reading of the status (term, indexes, role)
//! are the server's, computed when scraped.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};

/// The replication core's metrics.
#[derive(Clone)]
pub struct RaftMetrics {
    /// Own proposals answered after applying.
    pub proposals_committed: IntCounter,
    /// Own proposals that got no result, by reason.
    pub proposals_failed: IntCounterVec,
    /// ReadIndex requests issued (one per batch of reads).
    pub read_index_requests: IntCounter,
    /// Time to apply a run of committed entries and write their state.
    pub apply_seconds: Histogram,
    /// Time of the synced write of a Ready round (entries, hard state).
    pub fsync_seconds: Histogram,
    /// Entries persisted per Ready round.
    pub ready_entries: Histogram,
    pub snapshots_sent: IntCounter,
    pub snapshots_received: IntCounter,
    /// Snapshot payload bytes streamed, by direction (sent, received).
    pub snapshot_stream_bytes: IntCounterVec,
    /// Times the known leader changed.
    pub leader_changes: IntCounter,
    /// Sweep entries the leader proposed (expiry, clock).
    pub expiry_entries: IntCounter,
    /// Membership entries applied.
    pub membership_changes: IntCounter,
    /// Frames and bytes queued for a peer, and frames dropped, by peer.
    pub peer_sent_bytes: IntCounterVec,
    pub peer_sent_frames: IntCounterVec,
    pub peer_dropped_frames: IntCounterVec,
    pub peer_received_bytes: IntCounterVec,
    /// 1 while the outbound link to a peer is connected.
    pub peer_connected: IntGaugeVec,
    /// Inbound peer connections refused (failed handshake).
    pub peer_rejected: IntCounter,
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric")
}

fn counter_vec(name: &str, help: &str, label: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric")
}

fn seconds(name: &str, help: &str) -> Histogram {
    // 20 us .. ~5 s.
    Histogram::with_opts(
        HistogramOpts::new(name, help)
            .buckets(exponential_buckets(20e-6, 2.0, 18).expect("buckets")),
    )
    .expect("valid metric")
}

impl Default for RaftMetrics {
    fn default() -> Self {
        let metrics = RaftMetrics {
            proposals_committed: counter(
                "lockstep_raft_proposals_committed_total",
                "Proposals of this node answered after they applied.",
            ),
            proposals_failed: counter_vec(
                "lockstep_raft_proposals_failed_total",
                "Proposals of this node that got no result, by reason.",
                "reason",
            ),
            read_index_requests: counter(
                "lockstep_raft_read_index_requests_total",
                "ReadIndex requests issued (one per batch of linearizable reads).",
            ),
            apply_seconds: seconds(
                "lockstep_raft_apply_seconds",
                "Time to apply a run of committed entries and write their state.",
            ),
            fsync_seconds: seconds(
                "lockstep_raft_fsync_seconds",
                "Time of a Ready round's synced log write.",
            ),
            ready_entries: Histogram::with_opts(
                HistogramOpts::new(
                    "lockstep_raft_ready_entries",
                    "Entries persisted per Ready round.",
                )
                .buckets(exponential_buckets(1.0, 2.0, 13).expect("buckets")),
            )
            .expect("valid metric"),
            snapshots_sent: counter(
                "lockstep_raft_snapshots_sent_total",
                "Snapshots sent to peers.",
            ),
            snapshots_received: counter(
                "lockstep_raft_snapshots_received_total",
                "Snapshots installed from a leader.",
            ),
            snapshot_stream_bytes: counter_vec(
                "lockstep_raft_snapshot_stream_bytes_total",
                "Snapshot payload bytes streamed to (sent) or from (received) peers.",
                "direction",
            ),
            leader_changes: counter(
                "lockstep_raft_leader_changes_total",
                "Times the leader this node knows changed.",
            ),
            expiry_entries: counter(
                "lockstep_raft_expiry_entries_total",
                "Sweep entries (expiry and cluster time) this node proposed as leader.",
            ),
            membership_changes: counter(
                "lockstep_raft_membership_changes_total",
                "Membership entries applied.",
            ),
            peer_sent_bytes: counter_vec(
                "lockstep_peer_sent_bytes_total",
                "Bytes of frames queued for a peer.",
                "peer",
            ),
            peer_sent_frames: counter_vec(
                "lockstep_peer_sent_frames_total",
                "Frames queued for a peer.",
                "peer",
            ),
            peer_dropped_frames: counter_vec(
                "lockstep_peer_dropped_frames_total",
                "Frames for a peer dropped (queue full or link down; raft resends).",
                "peer",
            ),
            peer_received_bytes: counter_vec(
                "lockstep_peer_received_bytes_total",
                "Bytes of frames received from a peer.",
                "peer",
            ),
            peer_rejected: counter(
                "lockstep_peer_rejected_total",
                "Inbound peer connections refused: a failed or unfinished handshake.",
            ),
            peer_connected: IntGaugeVec::new(
                Opts::new(
                    "lockstep_peer_connected",
                    "1 while the outbound link to a peer is connected.",
                ),
                &["peer"],
            )
            .expect("valid metric"),
        };
        // Every reason shows (at 0) before the first failure.
        for reason in ["busy", "timeout", "no_leader"] {
            metrics.proposals_failed.with_label_values(&[reason]);
        }
        metrics
    }
}

impl RaftMetrics {
    /// Registers every metric with `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.proposals_committed.clone()))?;
        registry.register(Box::new(self.proposals_failed.clone()))?;
        registry.register(Box::new(self.read_index_requests.clone()))?;
        registry.register(Box::new(self.apply_seconds.clone()))?;
        registry.register(Box::new(self.fsync_seconds.clone()))?;
        registry.register(Box::new(self.ready_entries.clone()))?;
        registry.register(Box::new(self.snapshots_sent.clone()))?;
        registry.register(Box::new(self.snapshots_received.clone()))?;
        registry.register(Box::new(self.snapshot_stream_bytes.clone()))?;
        registry.register(Box::new(self.leader_changes.clone()))?;
        registry.register(Box::new(self.expiry_entries.clone()))?;
        registry.register(Box::new(self.membership_changes.clone()))?;
        registry.register(Box::new(self.peer_sent_bytes.clone()))?;
        registry.register(Box::new(self.peer_sent_frames.clone()))?;
        registry.register(Box::new(self.peer_dropped_frames.clone()))?;
        registry.register(Box::new(self.peer_received_bytes.clone()))?;
        registry.register(Box::new(self.peer_connected.clone()))?;
        registry.register(Box::new(self.peer_rejected.clone()))?;
        Ok(())
    }
}
