use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use crate::backend::{Backend, Family, View, Visitor, WriteOp};
use crate::{Store, StoreError};

type Tables = BTreeMap<(Family, Vec<u8>), Vec<u8>>;

#[derive(Default)]
struct MemTables {
    /// What a reader sees: every write so far.
    current: Tables,
    /// What survives [`MemBackend::crash`]: the state as of the last synced write.
    durable: Tables,
    /// Writes since the last synced one, replayed onto `durable` by the
    /// next sync (so a sync costs what was written, not the whole store).
    unsynced: Vec<WriteOp>,
}

/// An in-memory backend that models a disk: unsynced writes are lost by
/// [`MemBackend::crash`], synced ones are not.
#[derive(Clone, Default)]
pub struct MemBackend {
    tables: Arc<Mutex<MemTables>>,
}

impl MemBackend {
    /// Forgets every write that was not followed by a synced write, as a
    /// power loss would. Returns a backend sharing the surviving data.
    pub fn crash(&self) -> MemBackend {
        let mut tables = self.tables.lock().expect("mem backend lock");
        tables.current = tables.durable.clone();
        tables.unsynced.clear();
        self.clone()
    }
}

fn apply(tables: &mut Tables, op: WriteOp) {
    match op {
        WriteOp::Put(family, key, value) => {
            tables.insert((family, key), value);
        }
        WriteOp::Delete(family, key) => {
            tables.remove(&(family, key));
        }
        WriteOp::DeleteRange(family, start, end) => {
            let doomed: Vec<_> = tables
                .range((family, start)..(family, end))
                .map(|(key, _)| key.clone())
                .collect();
            for key in doomed {
                tables.remove(&key);
            }
        }
    }
}

fn scan_tables(
    tables: &Tables,
    family: Family,
    start: &[u8],
    end: Option<&[u8]>,
    visit: &mut Visitor<'_>,
) {
    let upper = match end {
        Some(end) => Bound::Excluded((family, end.to_vec())),
        None => Bound::Excluded((next_family(family), Vec::new())),
    };
    for ((fam, key), value) in tables.range((Bound::Included((family, start.to_vec())), upper)) {
        if *fam != family || !visit(key, value) {
            break;
        }
    }
}

fn next_family(family: Family) -> Family {
    match family {
        Family::Log => Family::Raft,
        Family::Raft => Family::State,
        Family::State | Family::Meta => Family::Meta,
    }
}

impl Backend for MemBackend {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let tables = self.tables.lock().expect("mem backend lock");
        Ok(tables.current.get(&(family, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let tables = self.tables.lock().expect("mem backend lock");
        scan_tables(&tables.current, family, start, end, visit);
        Ok(())
    }

    fn write(&self, ops: Vec<WriteOp>, sync: bool) -> Result<(), StoreError> {
        let mut guard = self.tables.lock().expect("mem backend lock");
        let tables = &mut *guard;
        for op in &ops {
            apply(&mut tables.current, op.clone());
        }
        tables.unsynced.extend(ops);
        if sync {
            for op in tables.unsynced.drain(..) {
                apply(&mut tables.durable, op);
            }
        }
        Ok(())
    }

    fn with_view(&self, read: &mut dyn FnMut(&dyn View)) {
        let tables = self.tables.lock().expect("mem backend lock");
        read(&MemView(&tables.current));
    }
}

struct MemView<'a>(&'a Tables);

impl View for MemView<'_> {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.0.get(&(family, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        scan_tables(self.0, family, start, end, visit);
        Ok(())
    }
}

impl Store<MemBackend> {
    pub fn in_memory() -> Self {
        Store::with_backend(MemBackend::default()).expect("an empty memory store opens")
    }
}
