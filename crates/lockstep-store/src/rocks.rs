use std::path::Path;

use rocksdb::{
    BlockBasedOptions, BoundColumnFamily, ColumnFamilyDescriptor, DBWithThreadMode, Direction,
    IteratorMode, MultiThreaded, Options, ReadOptions, WriteBatch, WriteOptions,
};

use crate::backend::{Backend, Family, View, Visitor, WriteOp};
use crate::keys::{CF_LOG, CF_META, CF_RAFT, CF_STATE};
use crate::{Store, StoreError};

type Db = DBWithThreadMode<MultiThreaded>;

/// The staged payload of a snapshot being received, in the store's directory.
const STAGED_SNAPSHOT_FILE: &str = "SNAPSHOT-INCOMING";

/// RocksDB with one column family per [`Family`].
pub struct RocksBackend {
    db: Db,
    /// Writes skip the write-ahead log (test switch, see `open_volatile`).
    #[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
    volatile: bool,
}

fn cf_name(family: Family) -> &'static str {
    match family {
        Family::Log => CF_LOG,
        Family::Raft => CF_RAFT,
        Family::State => CF_STATE,
        Family::Meta => CF_META,
    }
}

impl RocksBackend {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let families = [CF_LOG, CF_RAFT, CF_STATE, CF_META]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, family_options(name)));
        let db = Db::open_cf_descriptors(&options, path, families)?;
        let state = db.cf_handle(CF_STATE).expect("created at open");
        // Only settable by name: a scan that steps over this many deleted
        // or overwritten entries in the active memtable flushes it, and
        // the flushed file is then compacted for its tombstones (below).
        db.set_options_cf(
            &state,
            &[
                ("memtable_op_scan_flush_trigger", TOMBSTONES_SCANNED_FLUSH),
                (
                    "memtable_avg_op_scan_flush_trigger",
                    TOMBSTONES_SCANNED_AVG_FLUSH,
                ),
            ],
        )?;
        drop(state);
        Ok(Self {
            db,
            #[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
            volatile: false,
        })
    }

    fn cf(&self, family: Family) -> std::sync::Arc<BoundColumnFamily<'_>> {
        self.db
            .cf_handle(cf_name(family))
            .expect("column families are created at open")
    }
}

/// Deleted entries one keyspace scan step may pass in the active memtable
/// before RocksDB flushes it (a scan over deleted keys then meets them in
/// one table file, which deletion-triggered compaction rewrites).
const TOMBSTONES_SCANNED_FLUSH: &str = "10000";
/// The same, averaged over the steps of one iterator.
const TOMBSTONES_SCANNED_AVG_FLUSH: &str = "100";
/// A table file with this many deletions among any `DELETION_WINDOW`
/// consecutive entries, or more than half deletions, is compacted so its
/// tombstones go (they otherwise stay until compaction reaches them).
const DELETION_WINDOW: usize = 4096;
const DELETIONS_IN_WINDOW: usize = 1024;
const DELETION_RATIO: f64 = 0.5;

/// Most keyspace reads on the write path look up keys that do not exist
/// (new request ids, new keys): bloom filters answer those without walking
/// the memtable's skiplist or reading table blocks. Keys are deleted all
/// the time (released locks, served waiters, swept expiry entries): the
/// deletion triggers above keep scans from stepping over their tombstones
/// for long.
fn family_options(name: &str) -> Options {
    let mut options = Options::default();
    if name == CF_STATE {
        options.add_compact_on_deletion_collector_factory(
            DELETION_WINDOW,
            DELETIONS_IN_WINDOW,
            DELETION_RATIO,
        );
        options.set_memtable_whole_key_filtering(true);
        options.set_memtable_prefix_bloom_ratio(0.1);
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(true);
        options.set_block_based_table_factory(&table);
    }
    options
}

/// A scan stops at its end inside RocksDB: without the bound the iterator
/// would step over every deleted entry between the last key in range and
/// the next live key after it.
fn scan_options(end: Option<&[u8]>) -> ReadOptions {
    let mut options = ReadOptions::default();
    if let Some(end) = end {
        options.set_iterate_upper_bound(end.to_vec());
    }
    options
}

fn scan_iter<'a>(
    iter: impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>> + 'a,
    end: Option<&[u8]>,
    visit: &mut Visitor<'_>,
) -> Result<(), StoreError> {
    for item in iter {
        let (key, value) = item?;
        if end.is_some_and(|end| &*key >= end) {
            break;
        }
        if !visit(&key, &value) {
            break;
        }
    }
    Ok(())
}

impl Backend for RocksBackend {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(&self.cf(family), key)?)
    }

    fn scan(
        &self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let iter = self.db.iterator_cf_opt(
            &self.cf(family),
            scan_options(end),
            IteratorMode::From(start, Direction::Forward),
        );
        scan_iter(iter, end, visit)
    }

    fn write(&self, ops: Vec<WriteOp>, sync: bool) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                WriteOp::Put(family, key, value) => batch.put_cf(&self.cf(family), key, value),
                WriteOp::Delete(family, key) => batch.delete_cf(&self.cf(family), key),
                WriteOp::DeleteRange(family, start, end) => {
                    batch.delete_range_cf(&self.cf(family), start, end)
                }
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        #[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
        if self.volatile {
            options.set_sync(false);
            options.disable_wal(true);
        }
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    fn with_view(&self, read: &mut dyn FnMut(&dyn View)) {
        let snapshot = self.db.snapshot();
        let view = RocksView {
            backend: self,
            snapshot: &snapshot,
        };
        read(&view);
    }
}

struct RocksView<'a> {
    backend: &'a RocksBackend,
    snapshot: &'a rocksdb::SnapshotWithThreadMode<'a, Db>,
}

impl View for RocksView<'_> {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.snapshot.get_cf(&self.backend.cf(family), key)?)
    }

    fn scan(
        &self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let mut options = scan_options(end);
        options.set_snapshot(self.snapshot);
        let iter = self.backend.db.iterator_cf_opt(
            &self.backend.cf(family),
            options,
            IteratorMode::From(start, Direction::Forward),
        );
        scan_iter(iter, end, visit)
    }
}

/// RocksDB properties reported as sizes (bytes).
const SIZE_PROPERTIES: [&str; 4] = [
    "rocksdb.total-sst-files-size",
    "rocksdb.estimate-live-data-size",
    "rocksdb.cur-size-all-mem-tables",
    "rocksdb.estimate-pending-compaction-bytes",
];

impl RocksBackend {
    /// (column family, property, bytes) for each size property.
    pub fn sizes(&self) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for family in [CF_LOG, CF_RAFT, CF_STATE, CF_META] {
            let Some(handle) = self.db.cf_handle(family) else {
                continue;
            };
            for property in SIZE_PROPERTIES {
                if let Ok(Some(value)) = self.db.property_int_value_cf(&handle, property) {
                    let name = property.trim_start_matches("rocksdb.").replace('-', "_");
                    out.push((family.to_string(), name, value));
                }
            }
        }
        out
    }
}

impl Store<RocksBackend> {
    /// Opens (creating if needed) the RocksDB store in `path`.
    /// Snapshots being received are staged in a file in the same directory.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Store::with_staging(
            RocksBackend::open(path)?,
            Some(path.join(STAGED_SNAPSHOT_FILE)),
        )
    }

    /// Opens the store with no write-ahead log: what a crash takes away
    /// was never durable. A negative control for the fault tests only.
    #[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
    pub fn open_volatile(path: &Path) -> Result<Self, StoreError> {
        let mut backend = RocksBackend::open(path)?;
        backend.volatile = true;
        Store::with_staging(backend, Some(path.join(STAGED_SNAPSHOT_FILE)))
    }
}

/// Runs `work` on this thread and counts the deleted entries RocksDB's
/// iterators stepped over meanwhile: a probe for tests that hold periodic
/// work to a cost independent of what was deleted before.
pub fn count_deleted_entries_skipped<R>(work: impl FnOnce() -> R) -> (R, u64) {
    use rocksdb::perf::{set_perf_stats, PerfContext, PerfMetric, PerfStatsLevel};
    set_perf_stats(PerfStatsLevel::EnableCount);
    let mut context = PerfContext::default();
    context.reset();
    let result = work();
    let skipped = context.metric(PerfMetric::InternalDeleteSkippedCount);
    set_perf_stats(PerfStatsLevel::Disable);
    (result, skipped)
}
