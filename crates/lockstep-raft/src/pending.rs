//! Requests waiting in the node, matched by request id (never by order).

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use lockstep_engine::Reply;
use tokio::sync::oneshot;

use crate::ProposeError;

/// A proposal's reply and the log index of the entry that gave it (the
/// proposal's own entry, or for a parked request the later entry that
/// answered it): what WAIT counts replicas against.
#[derive(Clone, Debug, PartialEq)]
pub struct Answered {
    pub reply: Reply,
    pub index: u64,
}

pub type ProposalReply = oneshot::Sender<Result<Answered, ProposeError>>;
pub type ReadReply = oneshot::Sender<Result<(), ProposeError>>;

/// Where a proposal was last handed for ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submission {
    pub leader: u64,
    pub term: u64,
    pub at: Instant,
}

pub struct PendingProposal {
    pub body: Bytes,
    pub reply: ProposalReply,
    pub deadline: Instant,
    pub submission: Option<Submission>,
}

impl PendingProposal {
    /// The error a client gets at its deadline: if the proposal ever reached
    /// a leader it may have taken effect.
    pub fn timeout_error(&self) -> ProposeError {
        if self.submission.is_some() {
            ProposeError::Indeterminate
        } else {
            ProposeError::NoLeader
        }
    }
}

pub struct PendingRead {
    pub reply: ReadReply,
    pub deadline: Instant,
}

#[derive(Default)]
pub struct Pending {
    /// Own proposals by sequence number, not yet applied: these may be
    /// submitted (again).
    pub proposals: BTreeMap<u64, PendingProposal>,
    /// Own proposals that applied and wait for a later entry's reply (lock
    /// waits, blocking pops): never submitted again.
    pub parked: BTreeMap<u64, PendingProposal>,
    /// Reads not yet sent as a ReadIndex request.
    pub unissued_reads: Vec<PendingRead>,
    /// ReadIndex requests in flight, by context.
    pub read_batches: BTreeMap<u64, (Instant, Vec<PendingRead>)>,
    /// Reads whose read index is known, waiting for it to apply.
    pub confirmed_reads: Vec<(u64, PendingRead)>,
}

impl Pending {
    /// Every own sequence number below this is settled: answered, given up
    /// at its deadline or parked, so it will never be submitted again.
    pub fn settled_below(&self, next_seq: u64) -> u64 {
        self.proposals
            .first_key_value()
            .map_or(next_seq, |(&seq, _)| seq)
    }

    /// Moves an applied proposal that waits for a later reply out of the
    /// submittable set.
    pub fn park(&mut self, seq: u64) {
        if let Some(proposal) = self.proposals.remove(&seq) {
            self.parked.insert(seq, proposal);
        }
    }

    /// Takes the proposal with this sequence number, to answer it.
    pub fn take(&mut self, seq: u64) -> Option<PendingProposal> {
        self.proposals
            .remove(&seq)
            .or_else(|| self.parked.remove(&seq))
    }

    pub fn len(&self) -> usize {
        self.proposals.len()
            + self.parked.len()
            + self.unissued_reads.len()
            + self
                .read_batches
                .values()
                .map(|(_, reads)| reads.len())
                .sum::<usize>()
            + self.confirmed_reads.len()
    }

    /// Answers every request whose deadline has passed.
    /// Fails what is overdue; returns how many proposals failed with an
    /// unknown outcome and how many without ever reaching a leader.
    pub fn expire(&mut self, now: Instant, leader_known: bool) -> (u64, u64) {
        let mut failed = (0, 0);
        for proposals in [&mut self.proposals, &mut self.parked] {
            let overdue: Vec<u64> = proposals
                .iter()
                .filter(|(_, proposal)| proposal.deadline <= now)
                .map(|(&seq, _)| seq)
                .collect();
            for seq in overdue {
                let proposal = proposals.remove(&seq).expect("listed above");
                let error = proposal.timeout_error();
                if error == ProposeError::NoLeader {
                    failed.1 += 1;
                } else {
                    failed.0 += 1;
                }
                let _ = proposal.reply.send(Err(error));
            }
        }
        let read_error = if leader_known {
            ProposeError::Indeterminate
        } else {
            ProposeError::NoLeader
        };
        let expire_reads = |reads: &mut Vec<PendingRead>| {
            let (overdue, kept): (Vec<_>, Vec<_>) =
                reads.drain(..).partition(|read| read.deadline <= now);
            *reads = kept;
            for read in overdue {
                let _ = read.reply.send(Err(read_error.clone()));
            }
        };
        expire_reads(&mut self.unissued_reads);
        for (_, reads) in self.read_batches.values_mut() {
            expire_reads(reads);
        }
        self.read_batches.retain(|_, (_, reads)| !reads.is_empty());
        let (overdue, kept): (Vec<_>, Vec<_>) = self
            .confirmed_reads
            .drain(..)
            .partition(|(_, read)| read.deadline <= now);
        self.confirmed_reads = kept;
        for (_, read) in overdue {
            let _ = read.reply.send(Err(read_error.clone()));
        }
        failed
    }

    /// Releases reads whose read index has applied.
    pub fn release_reads(&mut self, applied: u64) {
        let (done, waiting): (Vec<_>, Vec<_>) = self
            .confirmed_reads
            .drain(..)
            .partition(|(index, _)| *index <= applied);
        self.confirmed_reads = waiting;
        for (_, read) in done {
            let _ = read.reply.send(Ok(()));
        }
    }

    pub fn fail_all(&mut self, error: ProposeError) {
        let proposals = std::mem::take(&mut self.proposals)
            .into_values()
            .chain(std::mem::take(&mut self.parked).into_values());
        for proposal in proposals {
            let _ = proposal.reply.send(Err(error.clone()));
        }
        let reads = std::mem::take(&mut self.unissued_reads)
            .into_iter()
            .chain(
                std::mem::take(&mut self.read_batches)
                    .into_values()
                    .flat_map(|(_, reads)| reads),
            )
            .chain(
                std::mem::take(&mut self.confirmed_reads)
                    .into_iter()
                    .map(|(_, read)| read),
            );
        for read in reads {
            let _ = read.reply.send(Err(error.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal() -> PendingProposal {
        PendingProposal {
            body: Bytes::new(),
            reply: oneshot::channel().0,
            deadline: Instant::now(),
            submission: None,
        }
    }

    #[test]
    fn the_settled_floor_is_the_oldest_submittable_proposal() {
        let mut pending = Pending::default();
        assert_eq!(pending.settled_below(10), 10, "nothing pending");
        for seq in [4, 6, 8] {
            pending.proposals.insert(seq, proposal());
        }
        assert_eq!(pending.settled_below(10), 4);
        // A parked request is never submitted again: it no longer holds
        // the floor down, and can still be answered.
        pending.park(4);
        assert_eq!(pending.settled_below(10), 6);
        assert!(pending.take(4).is_some());
        assert!(pending.take(6).is_some());
        assert_eq!(pending.settled_below(10), 8);
    }
}
