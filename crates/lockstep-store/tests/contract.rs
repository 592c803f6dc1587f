//! The storage contract, run against both stores: what raft-rs's `Storage`
//! must return around compaction and snapshots, atomic apply, and recovery
//! after reopening.

use lockstep_store::{Applied, MemStore, NodeStore, RocksStore, StateBatch, StateRead};
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, Storage, StorageError};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("entry {index}").into_bytes().into(),
        ..Default::default()
    }
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

fn is_compacted<T: std::fmt::Debug>(result: raft::Result<T>) -> bool {
    matches!(result, Err(raft::Error::Store(StorageError::Compacted)))
}

fn check_log_contract<S: NodeStore>(store: &S) {
    assert_eq!(store.first_index().unwrap(), 1);
    assert_eq!(store.last_index().unwrap(), 0);
    let entries: Vec<Entry> = (1..=10).map(|i| entry(i, 1 + i / 5)).collect();
    let hs = HardState {
        term: 3,
        vote: 2,
        commit: 4,
        ..Default::default()
    };
    store.append(&entries, Some(&hs)).unwrap();
    assert_eq!(store.last_index().unwrap(), 10);
    assert_eq!(store.term(0).unwrap(), 0);
    assert_eq!(store.term(7).unwrap(), 2);
    assert!(store.term(11).is_err());
    assert_eq!(store.entries(2, 5, None, ctx()).unwrap().len(), 3);
    // A size limit still returns at least one entry.
    assert_eq!(store.entries(2, 5, 1, ctx()).unwrap().len(), 1);
    assert_eq!(store.initial_state().unwrap().hard_state, hs);

    // A conflicting append replaces the suffix.
    store.append(&[entry(8, 5), entry(9, 5)], None).unwrap();
    assert_eq!(store.last_index().unwrap(), 9);
    assert_eq!(store.term(8).unwrap(), 5);
    assert!(
        store.append(&[entry(20, 5)], None).is_err(),
        "gaps are refused"
    );

    // Compaction only up to applied; afterwards the truncated term stays known.
    assert!(store.compact(5).is_err());
    for index in 1..=6 {
        store
            .apply(
                &StateBatch::default(),
                Applied {
                    index,
                    term: store.term(index).unwrap(),
                },
            )
            .unwrap();
    }
    store.compact(5).unwrap();
    assert_eq!(store.first_index().unwrap(), 6);
    assert_eq!(store.term(5).unwrap(), 2);
    assert!(is_compacted(store.term(4)));
    assert!(is_compacted(store.entries(3, 7, None, ctx())));
    assert_eq!(store.entries(6, 10, None, ctx()).unwrap()[0].index, 6);
    assert!(
        store.append(&[entry(4, 9)], None).is_err(),
        "compacted entries cannot be rewritten"
    );
}

fn check_apply_and_snapshot<S: NodeStore>(leader: &S, follower: &S) {
    let conf = ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    };
    leader.set_conf_state(&conf).unwrap();
    leader
        .append(&(1..=3).map(|i| entry(i, 1)).collect::<Vec<_>>(), None)
        .unwrap();
    let mut batch = StateBatch::default();
    batch.put(b"k1".to_vec(), b"v1".to_vec());
    batch.put(b"k2".to_vec(), b"v2".to_vec());
    leader.apply(&batch, Applied { index: 1, term: 1 }).unwrap();
    let mut batch = StateBatch::default();
    batch.delete(b"k1".to_vec());
    leader.apply(&batch, Applied { index: 2, term: 1 }).unwrap();
    assert!(
        leader
            .apply(&StateBatch::default(), Applied { index: 2, term: 1 })
            .is_err(),
        "an entry is never applied twice"
    );
    leader.read_view(|state, applied| {
        assert_eq!(applied.index, 2);
        assert_eq!(state.get(b"k1").unwrap(), None);
        assert_eq!(state.get(b"k2").unwrap(), Some(b"v2".to_vec()));
    });

    let snapshot: Snapshot = leader.snapshot(0, 2).unwrap();
    assert_eq!(snapshot.get_metadata().index, 2);
    assert_eq!(snapshot.get_metadata().term, 1);
    assert_eq!(
        snapshot.get_metadata().get_conf_state().voters,
        vec![1, 2, 3]
    );
    assert!(
        leader.snapshot(3, 2).is_err(),
        "a snapshot is never older than requested"
    );

    // The follower had diverging state and log; the snapshot replaces both.
    follower.append(&[entry(1, 1)], None).unwrap();
    let mut junk = StateBatch::default();
    junk.put(b"stale".to_vec(), b"x".to_vec());
    follower
        .apply(&junk, Applied { index: 1, term: 1 })
        .unwrap();
    follower.install_snapshot(&snapshot).unwrap();
    assert_eq!(follower.first_index().unwrap(), 3);
    assert_eq!(follower.last_index().unwrap(), 2);
    assert_eq!(follower.term(2).unwrap(), 1);
    assert_eq!(follower.applied(), Applied { index: 2, term: 1 });
    assert_eq!(follower.conf_state().voters, vec![1, 2, 3]);
    assert!(follower.hard_state().commit >= 2);
    follower.read_view(|state, _| {
        assert_eq!(state.get(b"stale").unwrap(), None);
        assert_eq!(state.get(b"k2").unwrap(), Some(b"v2".to_vec()));
    });
    let mut seen = Vec::new();
    follower
        .scan(b"", b"\xff", &mut |key, _| {
            seen.push(key.to_vec());
            true
        })
        .unwrap();
    assert_eq!(seen, vec![b"k2".to_vec()]);
}

#[test]
fn memory_store_meets_the_log_contract() {
    check_log_contract(&MemStore::in_memory());
}

#[test]
fn rocks_store_meets_the_log_contract() {
    let dir = tempfile::tempdir().unwrap();
    check_log_contract(&RocksStore::open(dir.path()).unwrap());
}

#[test]
fn memory_store_applies_and_snapshots() {
    check_apply_and_snapshot(&MemStore::in_memory(), &MemStore::in_memory());
}

#[test]
fn rocks_store_applies_and_snapshots() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    check_apply_and_snapshot(
        &RocksStore::open(a.path()).unwrap(),
        &RocksStore::open(b.path()).unwrap(),
    );
}

#[test]
fn rocks_store_recovers_everything_synced_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RocksStore::open(dir.path()).unwrap();
        let hs = HardState {
            term: 4,
            commit: 3,
            ..Default::default()
        };
        store
            .append(&(1..=5).map(|i| entry(i, 4)).collect::<Vec<_>>(), Some(&hs))
            .unwrap();
        let mut batch = StateBatch::default();
        batch.put(b"k".to_vec(), b"v".to_vec());
        store.apply(&batch, Applied { index: 1, term: 4 }).unwrap();
        store.compact(1).unwrap();
        assert_eq!(store.next_boot_epoch().unwrap(), 1);
        // Dropped without a clean shutdown.
    }
    let store = RocksStore::open(dir.path()).unwrap();
    assert_eq!(store.first_index().unwrap(), 2);
    assert_eq!(store.last_index().unwrap(), 5);
    assert_eq!(store.term(1).unwrap(), 4);
    assert_eq!(store.hard_state().term, 4);
    assert_eq!(store.applied(), Applied { index: 1, term: 4 });
    assert_eq!(StateRead::get(&store, b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(store.next_boot_epoch().unwrap(), 2);
}

#[test]
fn memory_crash_loses_only_unsynced_writes() {
    let store = MemStore::in_memory();
    store.append(&[entry(1, 1), entry(2, 1)], None).unwrap();
    let mut batch = StateBatch::default();
    batch.put(b"k".to_vec(), b"v".to_vec());
    store.apply(&batch, Applied { index: 1, term: 1 }).unwrap();
    let survivor = lockstep_store::Store::with_backend(store.backend().crash()).unwrap();
    assert_eq!(survivor.last_index().unwrap(), 2, "synced log survives");
    assert_eq!(
        survivor.applied().index,
        0,
        "the unsynced apply is lost whole"
    );
    assert_eq!(StateRead::get(&survivor, b"k").unwrap(), None);
}
