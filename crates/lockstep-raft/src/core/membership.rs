//! Membership changes and leader transfer: the leader's checks before a
//! change enters the log, applying a change (raft's configuration, the
//! members' addresses, the transport's peers), and the waits of the
//! client that asked.

use std::time::{Duration, Instant};

use bytes::Bytes;
use lockstep_store::{Applied, NodeStore, StateBatch};
use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};
use raft::StateRole;
use raft_proto::ConfChangeI;
use slog::{info, warn};
use tokio::sync::oneshot;

use super::Core;
use crate::members::{MemberAddrs, Members, MEMBERS_KEY};
use crate::{MembershipChange, MembershipError, NodeError};

/// A learner may be promoted once it is at most this many entries behind
/// the leader's log.
pub const PROMOTE_MAX_LAG: u64 = 1000;

pub(crate) type ChangeReply = oneshot::Sender<Result<u64, MembershipError>>;

/// The change this node proposed as leader, answered when it applies.
pub(super) struct PendingChange {
    index: u64,
    term: u64,
    reply: ChangeReply,
    deadline: Instant,
}

/// A leader transfer someone waits for.
pub(super) struct PendingTransfer {
    to: u64,
    reply: ChangeReply,
    deadline: Instant,
}

impl<S: NodeStore> Core<S> {
    /// Loads the membership record; a node of a cluster made before the
    /// record existed (or a new cluster) writes it from its flags.
    pub(super) fn load_members(&mut self, bootstrapped: bool) -> Result<(), NodeError> {
        let stored = self
            .store
            .read_view(|state, _| state.get(MEMBERS_KEY))?
            .map(|bytes| Members::decode(&bytes))
            .transpose()
            .map_err(|err| lockstep_store::StoreError::corrupt("membership", err))?;
        let has_conf = !self.store.conf_state().voters.is_empty();
        self.members = match stored {
            Some(members) => members,
            None if bootstrapped || has_conf => {
                let mut members = Members::default();
                for (&id, addr) in &self.config.peers {
                    let client = self
                        .config
                        .client_addrs
                        .get(&id)
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    members.addrs.insert(
                        id,
                        MemberAddrs {
                            peer: addr.to_string(),
                            client,
                        },
                    );
                }
                self.store
                    .put_system_record(MEMBERS_KEY, &members.encode())?;
                members
            }
            // A node joining a cluster: it learns the members from the
            // leader's snapshot; until then it knows the addresses it was
            // given.
            None => Members::default(),
        };
        self.members_changed();
        self.load_identity()
    }

    /// After the membership record changed: the transport's peers, and
    /// whether this node is still a member.
    fn members_changed(&mut self) {
        let peers = if self.members.addrs.is_empty() {
            self.config
                .peers
                .iter()
                .map(|(&id, addr)| (id, addr.to_string()))
                .collect()
        } else {
            self.members
                .addrs
                .iter()
                .map(|(&id, addrs)| (id, addrs.peer.clone()))
                .collect()
        };
        self.outbound.set_peers(&peers);
        let removed = self.members.removed.contains(&self.config.id);
        if removed && !self.removed {
            warn!(
                self.log,
                "this node was removed from the cluster; it serves no more"
            );
        }
        self.removed = removed;
        self.removed_flag
            .store(removed, std::sync::atomic::Ordering::Release);
        self.status_members = std::sync::Arc::new(self.members.clone());
    }

    /// The cluster identity record, as text (empty if none).
    pub(super) fn load_identity(&mut self) -> Result<(), NodeError> {
        let identity = self
            .store
            .read_view(|state, _| state.get(crate::backup::CLUSTER_KEY))?
            .map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .trim_start_matches("id=")
                    .to_string()
            })
            .unwrap_or_default();
        self.cluster_id = std::sync::Arc::new(identity);
        Ok(())
    }

    /// After a snapshot replaced the keyspace.
    pub(super) fn reload_members(&mut self) -> Result<(), NodeError> {
        self.load_identity()?;
        if let Some(bytes) = self.store.read_view(|state, _| state.get(MEMBERS_KEY))? {
            self.members = Members::decode(&bytes)
                .map_err(|err| lockstep_store::StoreError::corrupt("membership", err))?;
            self.members_changed();
        }
        Ok(())
    }

    /// Whether a raft message from `from` is taken: only from members
    /// (a removed node that is still running is not heard, so it cannot
    /// disturb the cluster). A node that knows no configuration yet (it
    /// is joining) hears everyone.
    pub(super) fn accepts_from(&self, from: u64) -> bool {
        let conf = self.raw.raft.prs().conf();
        if conf.voters().ids().is_empty() && conf.learners().is_empty() {
            return true;
        }
        conf.voters().contains(from)
            || conf.learners().contains(&from)
            || conf.learners_next().contains(&from)
            || self.members.addrs.contains_key(&from)
    }

    pub(super) fn handle_membership(&mut self, change: MembershipChange, reply: ChangeReply) {
        let result = self
            .check_change(&change)
            .and_then(|()| self.propose_change(change));
        match result {
            Ok((index, term)) => {
                self.pending_change = Some(PendingChange {
                    index,
                    term,
                    reply,
                    deadline: self.time.now() + self.config.request_timeout,
                });
            }
            Err(err) => {
                let _ = reply.send(Err(err));
            }
        }
    }

    /// The refusals: what would break the cluster or cannot work.
    fn check_change(&self, change: &MembershipChange) -> Result<(), MembershipError> {
        if self.removed {
            return Err(MembershipError::Removed);
        }
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            return Err(MembershipError::NotLeader {
                leader: raft.leader_id,
            });
        }
        if self.pending_change.is_some() || raft.has_pending_conf() {
            return Err(MembershipError::Refused(
                "a membership change is in progress; retry once it has applied".into(),
            ));
        }
        if raft.lead_transferee.is_some() {
            return Err(MembershipError::Refused(
                "a leader transfer is in progress; retry once it has finished".into(),
            ));
        }
        let conf = raft.prs().conf();
        let voters: Vec<u64> = conf.voters().ids().iter().collect();
        let is_voter = |id: u64| voters.contains(&id);
        let is_learner = |id: u64| conf.learners().contains(&id);
        let live = self.live_voters();
        if live < voters.len() / 2 + 1 {
            return Err(MembershipError::NoQuorum {
                live,
                voters: voters.len(),
            });
        }
        match change {
            MembershipChange::Add { id, addrs } => {
                if *id == 0 {
                    return Err(MembershipError::Refused("node ids start at 1".into()));
                }
                if self.members.removed.contains(id) {
                    return Err(MembershipError::Refused(format!(
                        "node id {id} was removed from this cluster and is never used again; \
                         give the new node a new id"
                    )));
                }
                if is_voter(*id) || is_learner(*id) || self.members.addrs.contains_key(id) {
                    return Err(MembershipError::Refused(format!(
                        "node id {id} is already in use"
                    )));
                }
                if let Some((other, _)) = self
                    .members
                    .addrs
                    .iter()
                    .find(|(_, known)| known.peer == addrs.peer)
                {
                    return Err(MembershipError::Refused(format!(
                        "peer address {} is already node {other}'s",
                        addrs.peer
                    )));
                }
            }
            MembershipChange::Promote { id } => {
                if is_voter(*id) {
                    return Err(MembershipError::Refused(format!(
                        "node {id} is already a voter"
                    )));
                }
                if !is_learner(*id) {
                    return Err(MembershipError::Refused(format!(
                        "no such learner: node {id}; add it with CLUSTER.ADD first"
                    )));
                }
                let last = raft.raft_log.last_index();
                let matched = raft.prs().get(*id).map_or(0, |progress| progress.matched);
                let lag = last.saturating_sub(matched);
                if matched == 0 || lag > PROMOTE_MAX_LAG {
                    return Err(MembershipError::Refused(format!(
                        "node {id} has not caught up: {lag} entries behind the leader \
                         (matched {matched}, leader's last {last}, at most {PROMOTE_MAX_LAG} \
                         allowed); retry once it has"
                    )));
                }
            }
            MembershipChange::Remove { id } => {
                if !is_voter(*id) && !is_learner(*id) {
                    return Err(MembershipError::Refused(format!("no such node {id}")));
                }
                if is_voter(*id) && voters.len() == 1 {
                    return Err(MembershipError::Refused(format!(
                        "node {id} is the last voter; a cluster cannot remove its last voter"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Voters the leader heard from within an election timeout, itself
    /// included.
    fn live_voters(&self) -> usize {
        let now = self.time.now();
        let window = self.config.tick * self.config.election_ticks as u32;
        self.raw
            .raft
            .prs()
            .conf()
            .voters()
            .ids()
            .iter()
            .filter(|&id| {
                id == self.config.id
                    || self
                        .last_heard
                        .get(&id)
                        .is_some_and(|&at| now.saturating_duration_since(at) <= window)
            })
            .count()
    }

    fn propose_change(&mut self, change: MembershipChange) -> Result<(u64, u64), MembershipError> {
        let (change_type, node_id, context) = match change {
            MembershipChange::Add { id, addrs } => (
                ConfChangeType::AddLearnerNode,
                id,
                Bytes::from(addrs.encode_context()),
            ),
            MembershipChange::Promote { id } => (ConfChangeType::AddNode, id, Bytes::new()),
            MembershipChange::Remove { id } => (ConfChangeType::RemoveNode, id, Bytes::new()),
        };
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change_type);
        single.node_id = node_id;
        let mut change = ConfChangeV2::default();
        change.set_transition(ConfChangeTransition::Auto);
        change.set_changes(vec![single].into());
        change.context = context;
        let before = self.raw.raft.raft_log.last_index();
        if self.raw.propose_conf_change(Vec::new(), change).is_err()
            || self.raw.raft.raft_log.last_index() == before
        {
            return Err(MembershipError::Refused(
                "the leader did not take the change (leadership is moving); retry".into(),
            ));
        }
        info!(self.log, "proposed membership change"; "change" => ?change_type, "node" => node_id);
        Ok((self.raw.raft.raft_log.last_index(), self.raw.raft.term))
    }

    /// Applies a committed membership entry: raft's configuration, then
    /// the members' addresses, in one store write with the entry's
    /// position.
    pub(super) fn apply_conf_change(
        &mut self,
        change: &impl ConfChangeI,
        position: Applied,
    ) -> Result<(), NodeError> {
        let before = self.store.conf_state();
        let conf_state = self.raw.apply_conf_change(change)?;
        if self.raw.raft.state == StateRole::Leader && !conf_state.voters.contains(&self.config.id)
        {
            // A leader applying its own removal: raft-rs leaves it in
            // charge without its own progress, and it panics at the next
            // commit. Step down; the remaining voters elect a leader.
            let term = self.raw.raft.term;
            self.raw.raft.become_follower(term, raft::INVALID_ID);
            info!(self.log, "stepped down: removed from the voters"; "term" => term);
        }
        let v2 = change.as_v2();
        let mut joined = false;
        for single in v2.get_changes() {
            let id = single.node_id;
            match single.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    if let Some(addrs) = MemberAddrs::decode_context(&v2.context) {
                        self.members.addrs.insert(id, addrs);
                    }
                    self.members.removed.remove(&id);
                    joined |= !before.voters.contains(&id) && !before.learners.contains(&id);
                }
                ConfChangeType::RemoveNode => {
                    self.members.addrs.remove(&id);
                    self.members.removed.insert(id);
                }
            }
        }
        let mut batch = StateBatch::default();
        batch.put(MEMBERS_KEY.to_vec(), self.members.encode());
        self.store.set_conf_state(&conf_state)?;
        self.store.apply(&batch, position)?;
        if joined {
            // A new member must start from a snapshot: the log's first
            // entries do not carry the configuration the cluster was
            // bootstrapped with. Compacting here makes the leader send one.
            self.store.compact(position.index)?;
        }
        self.members_changed();
        self.metrics.membership_changes.inc();
        (self.sink)(position.index, &lockstep_engine::Event::MembershipChanged);
        self.delivered.set(position.index);
        info!(self.log, "membership changed"; "index" => position.index,
            "voters" => ?conf_state.voters, "learners" => ?conf_state.learners);
        if let Some(pending) = self.pending_change.take() {
            if pending.index == position.index && pending.term == position.term {
                // The reply's client may list the members next: the status
                // shows the change first.
                self.publish_status();
                let _ = pending.reply.send(Ok(position.index));
            } else if pending.index > position.index {
                self.pending_change = Some(pending);
            } else {
                let _ = pending.reply.send(Err(MembershipError::Refused(
                    "the change was overtaken by another leader's log; check CLUSTER.MEMBERS \
                     and retry"
                        .into(),
                )));
            }
        }
        Ok(())
    }

    pub(super) fn handle_transfer(&mut self, to: u64, reply: ChangeReply) {
        if self.removed {
            let _ = reply.send(Err(MembershipError::Removed));
            return;
        }
        let raft = &self.raw.raft;
        if !raft.prs().conf().voters().contains(to) {
            let what = if raft.prs().conf().learners().contains(&to) {
                format!("node {to} is a learner; only a voter can lead")
            } else {
                format!("no such voter: node {to}")
            };
            let _ = reply.send(Err(MembershipError::Refused(what)));
            return;
        }
        if raft.leader_id == to {
            let _ = reply.send(Ok(raft.term));
            return;
        }
        if raft.leader_id == raft::INVALID_ID {
            let _ = reply.send(Err(MembershipError::NotLeader { leader: 0 }));
            return;
        }
        if let Some(previous) = self.pending_transfer.take() {
            let _ = previous.reply.send(Err(MembershipError::Refused(
                "superseded by another leader transfer".into(),
            )));
        }
        // A follower passes the request on to the leader.
        self.raw.transfer_leader(to);
        let window = self.config.tick * (2 * self.config.election_ticks) as u32;
        self.pending_transfer = Some(PendingTransfer {
            to,
            reply,
            deadline: self.time.now() + window.max(Duration::from_secs(1)),
        });
        info!(self.log, "leader transfer requested"; "to" => to);
    }

    /// Answers the waits that are done or due: called after each round
    /// and tick.
    pub(super) fn settle_membership_waits(&mut self, now: Instant) {
        if let Some(transfer) = self.pending_transfer.take() {
            if self.raw.raft.leader_id == transfer.to {
                let _ = transfer.reply.send(Ok(self.raw.raft.term));
            } else if now >= transfer.deadline {
                let _ = transfer.reply.send(Err(MembershipError::TimedOut));
            } else {
                self.pending_transfer = Some(transfer);
            }
        }
        if let Some(change) = self.pending_change.take() {
            if now >= change.deadline {
                let _ = change.reply.send(Err(MembershipError::TimedOut));
            } else {
                self.pending_change = Some(change);
            }
        }
    }
}
