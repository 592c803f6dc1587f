//! The follower's side of a streamed snapshot: a raft snapshot message
//! that carries a ticket is held back while its payload is fetched into
//! the store's staging file, then stepped as a staged snapshot (see
//! [`crate::snapshots`]).

use lockstep_store::{NodeStore, SNAPSHOT_INLINE, SNAPSHOT_STAGED};
use raft::eraftpb::{Message, MessageType};
use slog::{info, warn};

use super::Core;
use crate::node::Event;
use crate::snapshots::{ticket_id, SnapshotServer};

/// Where this node's snapshot fetch is.
pub(crate) enum Fetch {
    /// A payload is being fetched.
    Fetching,
    /// The payload is staged and its message stepped; the staging file
    /// is not reused before this round's install.
    Staged,
}

impl<S: NodeStore> Core<S> {
    /// The inbox a fetched snapshot is reported to (the raft thread's).
    pub(crate) fn use_inbox(&mut self, events: crossbeam_channel::Sender<Event>) {
        self.events = Some(events);
    }

    pub(crate) fn snapshot_server(&self) -> Option<std::sync::Arc<SnapshotServer>> {
        self.snapshots.clone()
    }

    /// A raft message to step now, or None when it is a snapshot whose
    /// payload must be fetched first (or that cannot be taken).
    pub(super) fn snapshot_payload_here(&mut self, message: Box<Message>) -> Option<Box<Message>> {
        if message.get_msg_type() != MessageType::MsgSnapshot {
            return Some(message);
        }
        let data = message.get_snapshot().get_data();
        if data.is_empty() || data[0] == SNAPSHOT_INLINE {
            return Some(message);
        }
        let Some(id) = ticket_id(data) else {
            // Staged data only ever comes from this node's own fetch.
            warn!(self.log, "dropped a snapshot message of an unknown kind"; "from" => message.from);
            return None;
        };
        let index = message.get_snapshot().get_metadata().index;
        if self.snapshot_fetch.is_some() || self.store.applied().index >= index {
            return None;
        }
        let (Some(path), Some(events)) = (self.store.staging_path(), self.events.clone()) else {
            warn!(
                self.log,
                "a streamed snapshot, and this store cannot stage one"
            );
            return None;
        };
        let from = message.from;
        let done = Box::new(move |outcome| {
            let _ = events.send(Event::SnapshotStaged { message, outcome });
        });
        if self
            .outbound
            .fetch_snapshot(from, id, path.to_path_buf(), done)
        {
            info!(self.log, "fetching snapshot"; "from" => from, "index" => index);
            self.snapshot_fetch = Some(Fetch::Fetching);
        }
        None
    }

    /// A fetch ended: a staged payload's message is stepped (raft-rs then
    /// hands the snapshot to this round's install, or ignores it if it is
    /// stale by now).
    pub(super) fn snapshot_staged(&mut self, mut message: Message, outcome: Result<u64, String>) {
        let index = message.get_snapshot().get_metadata().index;
        match outcome {
            Ok(bytes) => {
                info!(self.log, "snapshot staged"; "index" => index, "bytes" => bytes);
                message
                    .mut_snapshot()
                    .set_data(vec![SNAPSHOT_STAGED].into());
                self.snapshot_fetch = Some(Fetch::Staged);
                if !self.accepts_from(message.from) {
                    return;
                }
                if let Err(err) = self.raw.step(message) {
                    warn!(self.log, "raft rejected the staged snapshot"; "error" => %err);
                }
            }
            Err(reason) => {
                // The leader sends the snapshot again when the follower
                // still lags.
                warn!(self.log, "snapshot fetch failed"; "index" => index, "error" => %reason);
                self.snapshot_fetch = None;
            }
        }
    }

    /// After a round: a staged snapshot was installed or found stale.
    pub(super) fn staged_snapshot_settled(&mut self) {
        if matches!(self.snapshot_fetch, Some(Fetch::Staged)) {
            self.snapshot_fetch = None;
        }
    }
}
