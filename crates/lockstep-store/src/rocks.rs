use std::path::Path;

use rocksdb::{
    BlockBasedOptions, BoundColumnFamily, ColumnFamilyDescriptor, DBWithThreadMode, Direction,
    IteratorMode, MultiThreaded, Options, ReadOptions, WriteBatch, WriteOptions,
};

use crate::backend::{Backend, Family, View, Visitor, WriteOp};
use crate::keys::{CF_LOG, CF_META, CF_RAFT, CF_STATE};
use crate::{Store, StoreError};

type Db = DBWithThreadMode<MultiThreaded>;

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

/// Most keyspace reads on the write path look up keys that do not exist
/// (new request ids, new keys): bloom filters answer those without walking
/// the memtable's skiplist or reading table blocks.
fn family_options(name: &str) -> Options {
    let mut options = Options::default();
    if name == CF_STATE {
        options.set_memtable_whole_key_filtering(true);
        options.set_memtable_prefix_bloom_ratio(0.1);
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(true);
        options.set_block_based_table_factory(&table);
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
        let iter = self.db.iterator_cf(
            &self.cf(family),
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
        let mut options = ReadOptions::default();
        options.set_snapshot(self.snapshot);
        let iter = self.backend.db.iterator_cf_opt(
            &self.backend.cf(family),
            options,
            IteratorMode::From(start, Direction::Forward),
        );
        scan_iter(iter, end, visit)
    }
}

impl Store<RocksBackend> {
    /// Opens (creating if needed) the RocksDB store in `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Store::with_backend(RocksBackend::open(path)?)
    }

    /// Opens the store with no write-ahead log: what a crash takes away
    /// was never durable. A negative control for the fault tests only.
    #[cfg(all(feature = "unsafe-test-switches", debug_assertions))]
    pub fn open_volatile(path: &Path) -> Result<Self, StoreError> {
        let mut backend = RocksBackend::open(path)?;
        backend.volatile = true;
        Store::with_backend(backend)
    }
}
