//! Durable storage for a lockstep node.
//!
//! This crate owns every byte a node keeps on disk: the raft log, the raft
//! hard state and membership, the replicated keyspace and the applied index.
//! It offers two implementations of one contract, [`NodeStore`]:
//! [`RocksStore`] (RocksDB, used by real nodes) and [`MemStore`] (in memory,
//! used by unit tests and simulation). Both implement raft-rs's
//! [`raft::Storage`] exactly as its contract says, including around
//! compaction and snapshots. A snapshot is served from one consistent view
//! ([`NodeStore::with_snapshot_source`]) and received through a staging
//! file installed in batches, crash-safe, in bounded memory.
//!
//! What this crate must not do: interpret keyspace values (that is the
//! engine's job), read clocks, or know about the network or Redis.

mod backend;
mod entry_cache;
mod error;
mod keys;
mod mem;
mod overlay;
#[cfg(feature = "rocksdb")]
mod rocks;
mod snapshot;
mod store;

pub use error::StoreError;
pub use mem::MemBackend;
pub use overlay::Overlay;
#[cfg(feature = "rocksdb")]
pub use rocks::{count_deleted_entries_skipped, RocksBackend};
pub use store::Store;

/// A node store kept in RocksDB.
#[cfg(feature = "rocksdb")]
pub type RocksStore = Store<RocksBackend>;
/// A node store kept in memory, for tests and simulation.
pub type MemStore = Store<MemBackend>;
pub use snapshot::{
    decode_snapshot_data, encode_snapshot_data, Pairs, SnapshotReader, SnapshotWriter,
    SNAPSHOT_INLINE, SNAPSHOT_STAGED, SNAPSHOT_STREAMED,
};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};

/// The whole keyspace at one applied position: what a snapshot carries.
pub trait SnapshotSource {
    /// Index, term and membership of the state.
    fn metadata(&self) -> &SnapshotMetadata;
    /// Visits every pair, in key order, until `visit` returns false.
    fn pairs(&self, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError>;
}

/// Position of the last log entry whose effects are in the keyspace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
}

/// State changes of one applied entry, written atomically with its index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateBatch {
    ops: Vec<StateOp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

impl StateBatch {
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(StateOp::Put(key.into(), value.into()));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(StateOp::Delete(key.into()));
    }

    pub fn ops(&self) -> &[StateOp] {
        &self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Read access to the replicated keyspace, as of one consistent point.
pub trait StateRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Visits keys in `[start, end)` in byte order until `visit` returns false.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
}

/// Everything a node needs from its storage.
///
/// Durability contract:
/// - [`NodeStore::append`] of entries, term or vote is synced before it
///   returns and survives a crash once it has returned.
/// - [`NodeStore::apply`] writes the state changes and the applied index in
///   one atomic batch without syncing: a crash may lose a suffix of applied
///   entries, which are then applied again from the (synced) log. It never
///   applies an entry twice nor skips one.
/// - [`NodeStore::compact`] and [`NodeStore::install_snapshot`] are synced,
///   which also makes every earlier apply durable (one write-ahead log).
pub trait NodeStore: raft::Storage + StateRead + Send + Sync + 'static {
    /// Appends entries (replacing any conflicting suffix) and optionally a new
    /// hard state in one synced write. A hard state that differs only in its
    /// commit index is kept in memory and written with the next one.
    fn append(&self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<(), StoreError>;

    /// Writes an applied entry's state changes and its position atomically.
    fn apply(&self, batch: &StateBatch, applied: Applied) -> Result<(), StoreError>;

    fn applied(&self) -> Applied;

    /// Discards log entries up to and including `index` (which must be applied).
    fn compact(&self, index: u64) -> Result<(), StoreError>;

    /// Replaces the keyspace and the log with a snapshot received from a
    /// leader: its payload inline, or staged in [`NodeStore::staging_path`]
    /// (then written in batches, in bounded memory, and done again at the
    /// next open if a crash interrupts it).
    fn install_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// Runs `serve` with one consistent view of the keyspace and its
    /// position, for as long as `serve` takes (a snapshot streamed to a
    /// follower). Other writes go on meanwhile.
    fn with_snapshot_source(
        &self,
        serve: &mut dyn FnMut(&dyn SnapshotSource),
    ) -> Result<(), StoreError>;

    /// The file a snapshot payload being received is written to, if this
    /// store takes staged snapshots.
    fn staging_path(&self) -> Option<&std::path::Path>;

    /// Records the cluster membership. Used when bootstrapping a new cluster.
    fn set_conf_state(&self, conf_state: &ConfState) -> Result<(), StoreError>;

    fn conf_state(&self) -> ConfState;

    /// Writes (synced) a record of the replication core's own in the
    /// keyspace family, outside every engine range (its key starts with
    /// `0xff`), without moving the applied position: the membership record
    /// of a new cluster. Records under `0xff` travel in snapshots.
    fn put_system_record(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Records a newer commit index in memory: the commit index can always be
    /// learned again, and the next hard state write carries it along.
    fn set_commit(&self, commit: u64) -> Result<(), StoreError>;

    /// Counts node starts; a node stamps it into its request ids so ids stay
    /// unique across restarts.
    fn next_boot_epoch(&self) -> Result<u64, StoreError>;

    /// Makes the next boot epoch at least `min` (a node restored from a
    /// backup starts its request ids above the old cluster's).
    fn raise_boot_epoch(&self, min: u64) -> Result<(), StoreError>;

    fn hard_state(&self) -> HardState;

    /// Runs `read` against a consistent view of the keyspace and the applied
    /// position that view reflects.
    fn read_view<R>(&self, read: impl FnOnce(&dyn StateRead, Applied) -> R) -> R;
}
