//! The lockstep state machine: Redis command semantics over the replicated
//! keyspace.
//!
//! Every node applies the same log entries in the same order through
//! [`Engine::apply`] and so computes the same state and the same replies.
//! Besides the replicated keyspace, the engine keeps one piece of derived
//! state in memory: the deadline of every record that has one
//! ([`Deadlines`]), rebuilt from the keyspace with [`Engine::open`] and
//! kept in step by every applied entry, so the leader's expiry check and a
//! sweep cost the same however much was deleted before.
//! That only holds because this crate is deterministic: it never reads a
//! clock (time arrives as the entry's cluster time `ct`), never draws a
//! random number, and does no I/O besides the [`lockstep_store::StateRead`]
//! view it is handed. Its writes leave as a [`lockstep_store::StateBatch`]
//! for the caller to commit atomically with the applied index.
//!
//! What this crate must not do: depend on raft, the network, RESP encoding
//! or RocksDB.

pub mod acl;
mod args;
mod barrier;
mod changes;
mod codec;
mod collections;
mod commands;
mod context;
mod election;
mod entry;
mod expiry;
mod glob;
mod layout;
mod leases;
mod limits;
mod locks;
mod managed;
mod namespace;
mod noop;
mod notify;
mod parking;
mod record;
mod registry;
mod reply;
mod requests;
mod script;
mod spec;
mod transaction;
pub mod znode_acl;

pub use commands::{access, parse, unknown_command, Command};
pub use entry::{
    decode_command, encode_command, encode_header, DecodeError, ExpireCandidate, LogEntry, Payload,
    RequestId,
};
pub use expiry::{Deadlines, Target, SWEEP_BATCH};
pub use glob::glob_match;

pub use namespace::CONFIG as ZNODE_CONFIG_PATH;
/// ZooKeeper's watch event types, as [`Event::Znode`] names them.
pub use namespace::MAX_MULTI_OPS as MAX_ZNODE_MULTI_OPS;
pub mod watch_events {
    pub use crate::namespace::{CHILDREN_CHANGED, CREATED, DATA_CHANGED, DELETED};
}
pub use limits::is_limit;
pub use noop::{exclusive_key, may_be_noop, noop_reply};
pub use parking::{parking, Parking};
pub use reply::{format_double, Reply};
pub use requests::request_seq_bound;
pub use script::{sha1_hex, INSTRUCTION_BUDGET, MEMORY_CAP};
pub use spec::{lookup, Access, CommandSpec, COMMANDS};
pub use transaction::encode_exec;

use bytes::Bytes;
use lockstep_store::{StateBatch, StateRead, StoreError};

use context::Context;
use layout::META_CLUSTER_TIME;
use record::Record;

/// The result of applying one entry.
#[derive(Debug)]
pub struct Applied {
    pub batch: StateBatch,
    /// Messages to deliver to this node's subscribers, in order.
    pub events: Vec<Event>,
    /// The reply is the number of local subscribers that received the
    /// entry's messages (PUBLISH): only the node can count them.
    pub reply_counts_deliveries: bool,
    /// Replies to earlier requests that were parked (lock waiters).
    pub deferred: Vec<(RequestId, Reply)>,
    /// The entry's request waits: a later entry replies to it.
    pub parked: bool,
    /// The reply for the entry's client, or `None` for entries without one
    /// (leader-made entries, no-ops, duplicates of an applied request).
    pub reply: Option<Reply>,
    /// Cluster time after this entry.
    pub ct: u64,
    /// The request the entry carried, if any.
    pub request: Option<RequestId>,
}

/// An effect of an applied entry outside the keyspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// PUBLISH (or SPUBLISH when sharded), also from inside scripts.
    Publish {
        channel: Bytes,
        message: Bytes,
        sharded: bool,
    },
    /// The record of `key` was written or removed: readers blocked on it
    /// (ELECT.OBSERVE, SVC.DISCOVER ... WAIT, BARRIER.WAIT) look again.
    Changed { key: Bytes },
    /// A znode changed: ZooKeeper's event type (`NodeCreated`,
    /// `NodeDeleted`, `NodeDataChanged`, `NodeChildrenChanged`) for the
    /// watches of `path`.
    Znode { path: Bytes, event: &'static str },
    /// A user was set or deleted: nodes drop what they cached of it.
    AclChanged { user: Bytes },
    /// A snapshot replaced the whole state (sent by the node, not by an
    /// entry): every cache of it is stale.
    Replaced,
    /// A membership entry applied (sent by the node, not by the engine):
    /// what `/zookeeper/config` shows changed.
    MembershipChanged,
}

/// The state machine: stateless but for the in-memory deadline set
/// derived from the keyspace it is applied to.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    deadlines: Deadlines,
}

impl Engine {
    /// An engine for an empty keyspace (or for reads only: reads do not
    /// need the deadline set).
    pub fn new() -> Self {
        Engine::default()
    }

    /// An engine for the keyspace in `state`: reads every record's
    /// deadline. Use it when a node starts and after a snapshot replaced
    /// the keyspace.
    pub fn open(state: &dyn StateRead) -> Result<Self, StoreError> {
        Ok(Engine {
            deadlines: Deadlines::load(state)?,
        })
    }

    /// The earliest deadline of any record (a TTL, a lock holder's or
    /// waiter's deadline): the leader proposes a [`Payload::Sweep`] once
    /// cluster time reaches it, and keeps time moving while there is one.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first()
    }

    /// Records with a deadline.
    pub fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }

    /// The cluster time of the last applied entry, as stored in `state`.
    pub fn cluster_time(state: &dyn StateRead) -> Result<u64, StoreError> {
        Ok(state
            .get(META_CLUSTER_TIME)?
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Applies one committed entry at log `index`.
    ///
    /// `data` is the raw entry; an entry this version cannot decode is
    /// applied as a no-op with an error reply, identically on every node.
    /// The caller must write the returned batch before applying the next
    /// entry against a state that includes it (the deadline set already
    /// counts it).
    pub fn apply(
        &mut self,
        state: &dyn StateRead,
        index: u64,
        data: &[u8],
    ) -> Result<Applied, StoreError> {
        let previous_ct = Self::cluster_time(state)?;
        if data.is_empty() {
            return Ok(Applied {
                batch: StateBatch::default(),
                events: Vec::new(),
                reply_counts_deliveries: false,
                deferred: Vec::new(),
                parked: false,
                reply: None,
                ct: previous_ct,
                request: None,
            });
        }
        let entry = match LogEntry::decode(data) {
            Ok(entry) => entry,
            Err(err) => {
                return Ok(Applied {
                    batch: StateBatch::default(),
                    events: Vec::new(),
                    reply_counts_deliveries: false,
                    deferred: Vec::new(),
                    parked: false,
                    reply: Some(Reply::error(format!("ERR undecodable log entry: {err}"))),
                    ct: previous_ct,
                    request: None,
                })
            }
        };
        // Cluster time never goes backwards in the state machine, whatever a
        // leader stamped.
        let ct = previous_ct.max(entry.ct);
        let mut ctx = Context::new(state, index, ct)?;
        ctx.raw_put(META_CLUSTER_TIME.to_vec(), ct.to_be_bytes().to_vec());
        let mut reply_counts_deliveries = false;
        let reply = match entry.payload {
            Payload::Command(argv) => {
                if entry.request.origin != 0
                    && !requests::remember(&mut ctx, entry.request, entry.settled_below)?
                {
                    None
                } else {
                    Some(match commands::parse(&argv) {
                        Ok((command, _)) => {
                            reply_counts_deliveries = matches!(command, Command::Publish { .. });
                            ctx.allow_parking(entry.request);
                            commands::execute(&mut ctx, command)?
                        }
                        Err(reply) => reply,
                    })
                }
            }
            Payload::Expire(candidates) => {
                for candidate in candidates {
                    let still_expired = ctx.record_any(&candidate.key)?.is_some_and(|record| {
                        record.modified == candidate.modified && !record.is_live_at(ct)
                    });
                    if still_expired {
                        let is_lock = ctx
                            .record_any(&candidate.key)?
                            .is_some_and(|record| record.value_type == record::ValueType::Lock);
                        if is_lock {
                            locks::settle_expired(&mut ctx, &candidate.key)?;
                        } else {
                            ctx.remove(&candidate.key)?;
                        }
                    }
                }
                None
            }
            Payload::Sweep => {
                let due = self.deadlines.due(ct, SWEEP_BATCH);
                expiry::sweep(&mut ctx, due)?;
                None
            }
        };
        let (added, added_bytes) = ctx.recorded_changes();
        changes::settle(&mut ctx, added, added_bytes)?;
        let finished = ctx.finish();
        for (target, deadline) in finished.deadlines {
            self.deadlines.set(target, deadline);
        }
        for (name, present) in finished.lock_records {
            self.deadlines.set_lock(name, present);
        }
        // A parked request is answered by a later entry, not by this one.
        let reply = if finished.parked { None } else { reply };
        Ok(Applied {
            batch: finished.batch,
            events: finished.events,
            deferred: finished.deferred,
            parked: finished.parked,
            reply_counts_deliveries,
            reply,
            ct,
            request: Some(entry.request),
        })
    }

    /// Runs a read-only command at cluster time `ct` against `state`, the
    /// state after log index `applied`, without changing it.
    pub fn read(
        &self,
        state: &dyn StateRead,
        applied: u64,
        ct: u64,
        argv: &[Bytes],
    ) -> Result<Reply, StoreError> {
        match commands::parse(argv) {
            Ok((command, spec)) => {
                if commands::access(&command, spec) != Access::Read {
                    return Ok(Reply::error(format!(
                        "ERR '{}' is not a read-only command",
                        spec.name
                    )));
                }
                let mut ctx = Context::new(state, 0, ct)?;
                ctx.applied = applied;
                commands::execute(&mut ctx, command)
            }
            Err(reply) => Ok(reply),
        }
    }
}

/// Checks a znode path by ZooKeeper's rules (for the node's own watch
/// commands); the error is the reply.
pub fn validate_znode_path(path: &[u8]) -> Result<(), Reply> {
    namespace::validate_path(path, false)
        .map(|_| ())
        .map_err(|err| Reply::error(format!("{} {}", err.0, err.1)))
}

/// The keyspace key under which `key`'s value record is stored; exposed
/// for fuzzing and tools.
pub fn value_record_key(key: &[u8]) -> Vec<u8> {
    layout::value_key(key)
}

/// The keyspace key of the znode at `path`; exposed for fuzzing and tools.
pub fn znode_record_key(path: &str) -> Vec<u8> {
    let mut out = vec![namespace::NODE];
    out.extend_from_slice(path.as_bytes());
    out
}

/// The keyspace key of the `n`-th change of entry `index`; exposed for
/// fuzzing and tools.
pub fn change_record_key(index: u64, n: u32) -> Vec<u8> {
    changes::change_key(index, n)
}

/// Decodes a stored value record; exposed for fuzzing and tools.
pub fn decode_record(data: &[u8]) -> Result<(), StoreError> {
    Record::decode(data).map(|_| ())
}
