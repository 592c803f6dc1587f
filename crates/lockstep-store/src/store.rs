//! The raft log, raft state and keyspace on top of any [`Backend`].
//!
//! Small, hot records (hard state, membership, truncation point, last
//! index, applied position) are cached in memory and written through; the
//! cache is rebuilt from the backend at open, so it never disagrees with disk
//! after a restart.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::backend::{Backend, Family, View, WriteOp};
use crate::entry_cache::EntryCache;
use crate::keys::{
    decode_pair, decode_u64, encode_pair, log_key, APPLIED_KEY, BOOT_EPOCH_KEY, CONF_STATE_KEY,
    HARD_STATE_KEY, INSTALLING_KEY, TRUNCATED_KEY,
};
use crate::snapshot::{
    decode_snapshot_data, SnapshotReader, SnapshotWriter, SNAPSHOT_STAGED, SNAPSHOT_STREAMED,
};
use crate::{Applied, NodeStore, SnapshotSource, StateBatch, StateOp, StateRead, StoreError};

/// A staged snapshot is written to the keyspace in batches of about this
/// many bytes.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

#[derive(Debug, Default)]
struct Cached {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry no longer in the log.
    truncated: (u64, u64),
    last_index: u64,
    applied: Applied,
    tail: EntryCache,
}

pub struct Store<B: Backend> {
    backend: B,
    cached: Mutex<Cached>,
    /// Where a snapshot being received is written (None: this store only
    /// takes snapshots whose payload is in the message).
    staging: Option<PathBuf>,
    /// A staged snapshot goes into the keyspace in several writes; views
    /// wait for it (held for writing) so none sees half of it.
    installing: RwLock<()>,
}

fn parse<M: protobuf::Message>(bytes: &[u8]) -> Result<M, StoreError> {
    Ok(M::parse_from_bytes(bytes)?)
}

impl<B: Backend> Store<B> {
    pub fn with_backend(backend: B) -> Result<Self, StoreError> {
        Self::with_staging(backend, None)
    }

    /// A store that receives snapshots into the file `staging`. An install
    /// that a crash interrupted is done again from that file here.
    pub fn with_staging(backend: B, staging: Option<PathBuf>) -> Result<Self, StoreError> {
        let mut cached = Cached::default();
        if let Some(bytes) = backend.get(Family::Raft, HARD_STATE_KEY)? {
            cached.hard_state = parse(&bytes)?;
        }
        if let Some(bytes) = backend.get(Family::Raft, CONF_STATE_KEY)? {
            cached.conf_state = parse(&bytes)?;
        }
        if let Some(bytes) = backend.get(Family::Raft, TRUNCATED_KEY)? {
            cached.truncated = decode_pair(&bytes, "truncated")?;
        }
        if let Some(bytes) = backend.get(Family::Meta, APPLIED_KEY)? {
            let (index, term) = decode_pair(&bytes, "applied")?;
            cached.applied = Applied { index, term };
        }
        cached.last_index = cached.truncated.0;
        // The log is short (compacted), so one pass to its end is cheap.
        backend.scan(
            Family::Log,
            &log_key(cached.truncated.0 + 1),
            None,
            &mut |key, _| {
                cached.last_index = u64::from_be_bytes(key.try_into().unwrap_or([0; 8]));
                true
            },
        )?;
        let interrupted = backend.get(Family::Meta, INSTALLING_KEY)?;
        let store = Self {
            backend,
            cached: Mutex::new(cached),
            staging,
            installing: RwLock::new(()),
        };
        match (interrupted, &store.staging) {
            (Some(metadata), Some(staging)) => {
                let metadata: SnapshotMetadata = parse(&metadata)?;
                if !staging.exists() {
                    return Err(StoreError::corrupt(
                        "snapshot install",
                        format!(
                            "interrupted at {} and its staged file {} is gone; \
                             empty the data directory and join the cluster again",
                            metadata.index,
                            staging.display()
                        ),
                    ));
                }
                store.install_staged(&metadata)?;
            }
            (Some(_), None) => {
                return Err(StoreError::corrupt(
                    "snapshot install",
                    "interrupted, and this store has no staging file",
                ))
            }
            (None, Some(staging)) => {
                // A payload received but never installed is stale.
                let _ = std::fs::remove_file(staging);
            }
            (None, None) => {}
        }
        Ok(store)
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cached.lock().expect("store cache lock")
    }

    fn read_entry(&self, index: u64) -> Result<Option<Entry>, StoreError> {
        match self.backend.get(Family::Log, &log_key(index))? {
            Some(bytes) => Ok(Some(parse(&bytes)?)),
            None => Ok(None),
        }
    }
}

impl<B: Backend> raft::Storage for Store<B> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let cached = self.cached();
        Ok(RaftState::new(
            cached.hard_state.clone(),
            cached.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        let (first, last) = {
            let cached = self.cached();
            (cached.truncated.0 + 1, cached.last_index)
        };
        if low < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= last + 1,
            "entries high {high} beyond last index {last} + 1"
        );
        if let Some(entries) = self.cached().tail.range(low, high, max_size) {
            return Ok(entries);
        }
        let mut entries = Vec::new();
        let mut size = 0u64;
        let mut failure = None;
        self.backend.scan(
            Family::Log,
            &log_key(low),
            Some(&log_key(high)),
            &mut |_, bytes| match parse::<Entry>(bytes) {
                Ok(entry) => {
                    size += entry.compute_size() as u64;
                    let expected = low + entries.len() as u64;
                    if entry.index != expected {
                        failure = Some(StoreError::corrupt(
                            "log",
                            format!("entry {expected} missing, found {}", entry.index),
                        ));
                        return false;
                    }
                    if !entries.is_empty() && max_size.is_some_and(|max| size > max) {
                        return false;
                    }
                    entries.push(entry);
                    true
                }
                Err(err) => {
                    failure = Some(err);
                    false
                }
            },
        )?;
        if let Some(err) = failure {
            return Err(err.into());
        }
        if entries.is_empty() && high > low {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let (truncated, last) = {
            let cached = self.cached();
            (cached.truncated, cached.last_index)
        };
        if index == truncated.0 {
            return Ok(truncated.1);
        }
        if index < truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > last {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if let Some(entry) = self.cached().tail.get(index) {
            return Ok(entry.term);
        }
        match self.read_entry(index)? {
            Some(entry) => Ok(entry.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.cached().truncated.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.cached().last_index)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // The keyspace and its position are read in one view so the
        // snapshot is exactly the state after its index.
        let mut built = None;
        self.with_snapshot_source(&mut |source: &dyn SnapshotSource| {
            let mut writer = SnapshotWriter::default();
            let scanned = source.pairs(&mut |key, value| {
                writer.push(key, value);
                true
            });
            built = Some(scanned.map(|()| (writer.finish(), source.metadata().clone())));
        })?;
        let (data, metadata) = built.expect("the source callback ran")?;
        if metadata.index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        snapshot.set_metadata(metadata);
        Ok(snapshot)
    }
}

/// One consistent view of the keyspace as a snapshot's contents.
struct SourceView<'a> {
    view: &'a dyn View,
    metadata: SnapshotMetadata,
}

impl SnapshotSource for SourceView<'_> {
    fn metadata(&self) -> &SnapshotMetadata {
        &self.metadata
    }

    fn pairs(&self, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        self.view.scan(Family::State, &[], None, visit)
    }
}

impl<B: Backend> Store<B> {
    /// The writes that begin replacing the log and keyspace with a
    /// snapshot: the old log and (one range deletion, not a tombstone per
    /// key) the old keyspace; every engine key starts below 0xff.
    fn replacing_ops() -> Vec<WriteOp> {
        vec![
            WriteOp::DeleteRange(Family::Log, log_key(0).to_vec(), log_key(u64::MAX).to_vec()),
            WriteOp::Delete(Family::Log, log_key(u64::MAX).to_vec()),
            WriteOp::DeleteRange(Family::State, Vec::new(), vec![0xff]),
        ]
    }

    /// The writes that complete an install: the snapshot's position,
    /// membership and hard state; and the cached records to match.
    fn installed_ops(
        cached: &Cached,
        metadata: &SnapshotMetadata,
    ) -> Result<(Vec<WriteOp>, HardState), StoreError> {
        let mut hard_state = cached.hard_state.clone();
        hard_state.term = hard_state.term.max(metadata.term);
        hard_state.commit = hard_state.commit.max(metadata.index);
        let position = encode_pair(metadata.index, metadata.term).to_vec();
        let ops = vec![
            WriteOp::Put(Family::Raft, TRUNCATED_KEY.to_vec(), position.clone()),
            WriteOp::Put(
                Family::Raft,
                CONF_STATE_KEY.to_vec(),
                metadata.get_conf_state().write_to_bytes()?,
            ),
            WriteOp::Put(
                Family::Raft,
                HARD_STATE_KEY.to_vec(),
                hard_state.write_to_bytes()?,
            ),
            WriteOp::Put(Family::Meta, APPLIED_KEY.to_vec(), position),
        ];
        Ok((ops, hard_state))
    }

    fn note_installed(cached: &mut Cached, metadata: &SnapshotMetadata, hard_state: HardState) {
        cached.truncated = (metadata.index, metadata.term);
        cached.tail.clear();
        cached.last_index = metadata.index;
        cached.conf_state = metadata.get_conf_state().clone();
        cached.hard_state = hard_state;
        cached.applied = Applied {
            index: metadata.index,
            term: metadata.term,
        };
    }

    /// Installs the payload in the staging file, in bounded memory: a
    /// synced marker and the old keyspace's deletion, the pairs in batches,
    /// then the new position with the marker's removal (synced). A crash
    /// in between leaves the marker, and the next open installs again.
    fn install_staged(&self, metadata: &SnapshotMetadata) -> Result<(), StoreError> {
        let Some(staging) = &self.staging else {
            return Err(StoreError::Invalid(
                "a staged snapshot, and this store has no staging file".into(),
            ));
        };
        let _exclusive = self.installing.write().expect("install lock");
        let mut cached = self.cached();
        if metadata.index < cached.applied.index {
            return Err(StoreError::Invalid(format!(
                "snapshot at {} is older than applied {}",
                metadata.index, cached.applied.index
            )));
        }
        let file = std::fs::File::open(staging).map_err(|err| {
            StoreError::corrupt("snapshot", format!("{}: {err}", staging.display()))
        })?;
        let mut reader = SnapshotReader::new(std::io::BufReader::with_capacity(1 << 20, file))?;
        let mut ops = Self::replacing_ops();
        ops.push(WriteOp::Put(
            Family::Meta,
            INSTALLING_KEY.to_vec(),
            metadata.write_to_bytes()?,
        ));
        self.backend.write(ops, true)?;
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        while let Some((key, value)) = reader.next_pair()? {
            batch_bytes += key.len() + value.len();
            batch.push(WriteOp::Put(Family::State, key, value));
            if batch_bytes >= INSTALL_BATCH_BYTES {
                self.backend.write(std::mem::take(&mut batch), false)?;
                batch_bytes = 0;
            }
        }
        let (mut ops, hard_state) = Self::installed_ops(&cached, metadata)?;
        batch.append(&mut ops);
        batch.push(WriteOp::Delete(Family::Meta, INSTALLING_KEY.to_vec()));
        self.backend.write(batch, true)?;
        Self::note_installed(&mut cached, metadata, hard_state);
        let _ = std::fs::remove_file(staging);
        Ok(())
    }
}

impl<B: Backend> NodeStore for Store<B> {
    fn append(&self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<(), StoreError> {
        let mut cached = self.cached();
        let mut ops = Vec::with_capacity(entries.len() + 2);
        let mut new_last = cached.last_index;
        if let Some(first) = entries.first() {
            if first.index <= cached.truncated.0 {
                return Err(StoreError::Invalid(format!(
                    "append at {} overwrites compacted log (truncated at {})",
                    first.index, cached.truncated.0
                )));
            }
            if first.index > cached.last_index + 1 {
                return Err(StoreError::Invalid(format!(
                    "append at {} leaves a gap after {}",
                    first.index, cached.last_index
                )));
            }
            if first.index <= cached.last_index {
                ops.push(WriteOp::DeleteRange(
                    Family::Log,
                    log_key(first.index).to_vec(),
                    log_key(cached.last_index + 1).to_vec(),
                ));
            }
            for entry in entries {
                ops.push(WriteOp::Put(
                    Family::Log,
                    log_key(entry.index).to_vec(),
                    entry.write_to_bytes()?,
                ));
            }
            new_last = entries.last().expect("non-empty").index;
        }
        if let Some(hard_state) = hard_state {
            ops.push(WriteOp::Put(
                Family::Raft,
                HARD_STATE_KEY.to_vec(),
                hard_state.write_to_bytes()?,
            ));
        }
        // Term and vote must be durable before raft acts on them. A commit
        // index alone can always be learned again (and is raised to the
        // applied index at start), so it is only written along with them.
        let vote_changed = hard_state.is_some_and(|hs| {
            hs.term != cached.hard_state.term || hs.vote != cached.hard_state.vote
        });
        if entries.is_empty() && !vote_changed {
            if let Some(hard_state) = hard_state {
                cached.hard_state = hard_state.clone();
            }
            return Ok(());
        }
        self.backend.write(ops, true)?;
        cached.tail.append(entries);
        cached.last_index = new_last;
        if let Some(hard_state) = hard_state {
            cached.hard_state = hard_state.clone();
        }
        Ok(())
    }

    fn apply(&self, batch: &StateBatch, applied: Applied) -> Result<(), StoreError> {
        let mut cached = self.cached();
        if applied.index <= cached.applied.index {
            return Err(StoreError::Invalid(format!(
                "applied index would regress from {} to {}",
                cached.applied.index, applied.index
            )));
        }
        let mut ops: Vec<WriteOp> = batch
            .ops()
            .iter()
            .map(|op| match op {
                StateOp::Put(key, value) => WriteOp::Put(Family::State, key.clone(), value.clone()),
                StateOp::Delete(key) => WriteOp::Delete(Family::State, key.clone()),
            })
            .collect();
        ops.push(WriteOp::Put(
            Family::Meta,
            APPLIED_KEY.to_vec(),
            encode_pair(applied.index, applied.term).to_vec(),
        ));
        self.backend.write(ops, false)?;
        cached.applied = applied;
        Ok(())
    }

    fn applied(&self) -> Applied {
        self.cached().applied
    }

    fn compact(&self, index: u64) -> Result<(), StoreError> {
        let mut cached = self.cached();
        if index <= cached.truncated.0 {
            return Ok(());
        }
        if index > cached.applied.index {
            return Err(StoreError::Invalid(format!(
                "compact to {index} beyond applied {}",
                cached.applied.index
            )));
        }
        let term = match self.read_entry(index)? {
            Some(entry) => entry.term,
            None => {
                return Err(StoreError::Invalid(format!(
                    "compact to {index}: entry missing"
                )))
            }
        };
        let ops = vec![
            WriteOp::DeleteRange(
                Family::Log,
                log_key(0).to_vec(),
                log_key(index + 1).to_vec(),
            ),
            WriteOp::Put(
                Family::Raft,
                TRUNCATED_KEY.to_vec(),
                encode_pair(index, term).to_vec(),
            ),
        ];
        self.backend.write(ops, true)?;
        cached.tail.compact(index);
        cached.truncated = (index, term);
        Ok(())
    }

    fn install_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let metadata = snapshot.get_metadata();
        match snapshot.data.first() {
            Some(&SNAPSHOT_STAGED) => return self.install_staged(metadata),
            Some(&SNAPSHOT_STREAMED) => {
                return Err(StoreError::Invalid(
                    "a streamed snapshot is installed once it is staged".into(),
                ))
            }
            _ => {}
        }
        let pairs = decode_snapshot_data(&snapshot.data)?;
        let mut cached = self.cached();
        if metadata.index < cached.applied.index {
            return Err(StoreError::Invalid(format!(
                "snapshot at {} is older than applied {}",
                metadata.index, cached.applied.index
            )));
        }
        let mut ops = Self::replacing_ops();
        for (key, value) in pairs {
            ops.push(WriteOp::Put(Family::State, key, value));
        }
        let (mut installed, hard_state) = Self::installed_ops(&cached, metadata)?;
        ops.append(&mut installed);
        self.backend.write(ops, true)?;
        Self::note_installed(&mut cached, metadata, hard_state);
        Ok(())
    }

    fn with_snapshot_source(
        &self,
        serve: &mut dyn FnMut(&dyn SnapshotSource),
    ) -> Result<(), StoreError> {
        let mut failure = None;
        self.backend.with_view(&mut |view: &dyn View| {
            let position = (|| {
                let applied = match view.get(Family::Meta, APPLIED_KEY)? {
                    Some(bytes) => decode_pair(&bytes, "applied")?,
                    None => (0, 0),
                };
                let conf_state = match view.get(Family::Raft, CONF_STATE_KEY)? {
                    Some(bytes) => parse(&bytes)?,
                    None => self.cached().conf_state.clone(),
                };
                Ok::<_, StoreError>((applied, conf_state))
            })();
            match position {
                Ok(((index, term), conf_state)) => {
                    let mut metadata = SnapshotMetadata {
                        index,
                        term,
                        ..Default::default()
                    };
                    metadata.set_conf_state(conf_state);
                    serve(&SourceView { view, metadata });
                }
                Err(err) => failure = Some(err),
            }
        });
        failure.map_or(Ok(()), Err)
    }

    fn staging_path(&self) -> Option<&Path> {
        self.staging.as_deref()
    }

    fn set_conf_state(&self, conf_state: &ConfState) -> Result<(), StoreError> {
        let mut cached = self.cached();
        self.backend.write(
            vec![WriteOp::Put(
                Family::Raft,
                CONF_STATE_KEY.to_vec(),
                conf_state.write_to_bytes()?,
            )],
            true,
        )?;
        cached.conf_state = conf_state.clone();
        Ok(())
    }

    fn conf_state(&self) -> ConfState {
        self.cached().conf_state.clone()
    }

    fn put_system_record(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if key.first() != Some(&0xff) {
            return Err(StoreError::Invalid(
                "system records live under the 0xff prefix".into(),
            ));
        }
        let _cached = self.cached();
        self.backend.write(
            vec![WriteOp::Put(Family::State, key.to_vec(), value.to_vec())],
            true,
        )
    }

    fn set_commit(&self, commit: u64) -> Result<(), StoreError> {
        let mut cached = self.cached();
        cached.hard_state.commit = cached.hard_state.commit.max(commit);
        Ok(())
    }

    fn next_boot_epoch(&self) -> Result<u64, StoreError> {
        let _cached = self.cached();
        let previous = match self.backend.get(Family::Raft, BOOT_EPOCH_KEY)? {
            Some(bytes) => decode_u64(&bytes, "boot epoch")?,
            None => 0,
        };
        let epoch = previous + 1;
        self.backend.write(
            vec![WriteOp::Put(
                Family::Raft,
                BOOT_EPOCH_KEY.to_vec(),
                epoch.to_be_bytes().to_vec(),
            )],
            true,
        )?;
        Ok(epoch)
    }

    fn raise_boot_epoch(&self, min: u64) -> Result<(), StoreError> {
        let _cached = self.cached();
        let previous = match self.backend.get(Family::Raft, BOOT_EPOCH_KEY)? {
            Some(bytes) => decode_u64(&bytes, "boot epoch")?,
            None => 0,
        };
        // The next start takes previous + 1.
        if previous + 1 < min {
            self.backend.write(
                vec![WriteOp::Put(
                    Family::Raft,
                    BOOT_EPOCH_KEY.to_vec(),
                    (min - 1).to_be_bytes().to_vec(),
                )],
                true,
            )?;
        }
        Ok(())
    }

    fn hard_state(&self) -> HardState {
        self.cached().hard_state.clone()
    }

    fn read_view<R>(&self, read: impl FnOnce(&dyn StateRead, Applied) -> R) -> R {
        let _no_install = self.installing.read().expect("install lock");
        let mut read = Some(read);
        let mut result = None;
        self.backend.with_view(&mut |view: &dyn View| {
            let applied = view
                .get(Family::Meta, APPLIED_KEY)
                .ok()
                .flatten()
                .and_then(|bytes| decode_pair(&bytes, "applied").ok())
                .map(|(index, term)| Applied { index, term })
                .unwrap_or_default();
            let read = read.take().expect("the view callback runs once");
            result = Some(read(&StateView(view), applied));
        });
        result.expect("the view callback ran")
    }
}

struct StateView<'a>(&'a dyn View);

impl StateRead for StateView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(Family::State, key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.0.scan(Family::State, start, Some(end), visit)
    }
}

/// Reads of the current keyspace; only the single writer (the apply loop)
/// should rely on these being consistent across calls.
impl<B: Backend> StateRead for Store<B> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.get(Family::State, key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.backend.scan(Family::State, start, Some(end), visit)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::backend::Visitor;
    use crate::MemBackend;

    /// A memory backend whose writes fail after a number of them.
    struct Failing {
        inner: MemBackend,
        writes_left: AtomicUsize,
    }

    impl Backend for Failing {
        fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(family, key)
        }
        fn scan(
            &self,
            family: Family,
            start: &[u8],
            end: Option<&[u8]>,
            visit: &mut Visitor<'_>,
        ) -> Result<(), StoreError> {
            self.inner.scan(family, start, end, visit)
        }
        fn write(&self, ops: Vec<WriteOp>, sync: bool) -> Result<(), StoreError> {
            let left = self.writes_left.load(Ordering::SeqCst);
            if left == 0 {
                return Err(StoreError::Invalid("injected write failure".into()));
            }
            self.writes_left.store(left - 1, Ordering::SeqCst);
            self.inner.write(ops, sync)
        }
        fn with_view(&self, read: &mut dyn FnMut(&dyn View)) {
            self.inner.with_view(read)
        }
    }

    fn keyspace<S: NodeStore>(store: &S) -> Vec<(Vec<u8>, Vec<u8>)> {
        store.read_view(|state, _| {
            let mut pairs = Vec::new();
            state
                .scan(b"", b"\xff", &mut |key, value| {
                    pairs.push((key.to_vec(), value.to_vec()));
                    true
                })
                .unwrap();
            pairs
        })
    }

    /// Writes `source`'s payload into `path` as a fetch does, in pieces.
    fn stage(source: &dyn SnapshotSource, path: &Path) {
        use std::io::Write;
        let mut file = std::fs::File::create(path).unwrap();
        let mut writer = SnapshotWriter::default();
        source
            .pairs(&mut |key, value| {
                writer.push(key, value);
                if writer.buffered() > 100_000 {
                    file.write_all(&writer.take()).unwrap();
                }
                true
            })
            .unwrap();
        file.write_all(&writer.finish()).unwrap();
    }

    #[test]
    fn an_interrupted_staged_install_is_done_again_at_open() {
        let leader = Store::with_backend(MemBackend::default()).unwrap();
        let mut batch = StateBatch::default();
        // About 12 MiB: several install batches.
        for n in 0..3000u32 {
            batch.put(format!("k{n:05}").into_bytes(), vec![n as u8; 4096]);
        }
        leader.apply(&batch, Applied { index: 7, term: 2 }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staged");
        let disk = MemBackend::default();
        let follower = Store::with_staging(
            Failing {
                inner: disk.clone(),
                writes_left: AtomicUsize::new(3),
            },
            Some(path.clone()),
        )
        .unwrap();
        let mut metadata = None;
        leader
            .with_snapshot_source(&mut |source| {
                stage(source, &path);
                metadata = Some(source.metadata().clone());
            })
            .unwrap();
        let metadata = metadata.unwrap();
        assert_eq!((metadata.index, metadata.term), (7, 2));
        let mut junk = StateBatch::default();
        junk.put(b"stale".to_vec(), b"x".to_vec());
        follower
            .apply(&junk, Applied { index: 1, term: 1 })
            .unwrap();
        let mut snapshot = Snapshot {
            data: vec![SNAPSHOT_STAGED].into(),
            ..Default::default()
        };
        snapshot.set_metadata(metadata.clone());
        // The marker, one batch, then the failure.
        let failed = follower.install_snapshot(&snapshot).unwrap_err();
        assert!(failed.to_string().contains("injected"), "{failed}");
        drop(follower);
        let reopened = Store::with_staging(disk.crash(), Some(path.clone())).unwrap();
        assert_eq!(reopened.applied(), Applied { index: 7, term: 2 });
        assert_eq!(raft::Storage::first_index(&reopened).unwrap(), 8);
        assert_eq!(keyspace(&reopened), keyspace(&leader));
        assert!(!path.exists(), "the staged file goes once installed");
        assert_eq!(
            reopened
                .backend()
                .get(Family::Meta, INSTALLING_KEY)
                .unwrap(),
            None
        );

        // Without its staged file an interrupted install cannot finish.
        let disk = MemBackend::default();
        let follower = Store::with_staging(
            Failing {
                inner: disk.clone(),
                writes_left: AtomicUsize::new(2),
            },
            Some(path.clone()),
        )
        .unwrap();
        leader
            .with_snapshot_source(&mut |source| stage(source, &path))
            .unwrap();
        let failed = follower.install_snapshot(&snapshot).unwrap_err();
        assert!(failed.to_string().contains("injected"), "{failed}");
        std::fs::remove_file(&path).unwrap();
        let err = Store::with_staging(disk.crash(), Some(path.clone()))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("join the cluster again"), "{err}");
    }

    #[test]
    fn a_streamed_ticket_is_never_installed_as_is() {
        let store = Store::with_backend(MemBackend::default()).unwrap();
        let snapshot = Snapshot {
            data: vec![SNAPSHOT_STREAMED, 0, 0].into(),
            ..Default::default()
        };
        assert!(store.install_snapshot(&snapshot).is_err());
        let staged = Snapshot {
            data: vec![SNAPSHOT_STAGED].into(),
            ..Default::default()
        };
        assert!(store.install_snapshot(&staged).is_err(), "no staging file");
    }
}
