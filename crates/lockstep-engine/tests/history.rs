//! Costs that must not grow with history: after many keys, locks and
//! waiters existed and were deleted, the leader's expiry check, a sweep, a
//! lock, a push to a list and a cancelled wait step over (almost) none of
//! the deleted entries, and the engine's deadline set holds only what is
//! live. RocksDB keeps a deleted key as a tombstone until compaction, and
//! a scan steps over every tombstone in its range, so these tests run on
//! the real RocksDB store and count, with RocksDB's own counter, the
//! deleted entries its iterators skipped.

mod common;

use lockstep_engine::{Engine, Reply};
use lockstep_store::{count_deleted_entries_skipped, RocksStore};

/// The common replica, on a RocksDB store in a temporary directory.
struct Replica {
    _dir: tempfile::TempDir,
    inner: common::Replica<RocksStore>,
}

impl std::ops::Deref for Replica {
    type Target = common::Replica<RocksStore>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl Replica {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(&dir.path().join("store")).unwrap();
        Replica {
            _dir: dir,
            inner: common::Replica::on(store),
        }
    }

    /// The reply, or None for a parked request.
    fn write(&mut self, ct: u64, command: &str) -> Option<Reply> {
        self.inner.apply_command(ct, command).reply
    }

    /// A sweep at `ct`, and the deleted entries RocksDB skipped for it.
    fn sweep(&mut self, ct: u64) -> u64 {
        let (outcome, skipped) = count_deleted_entries_skipped(|| self.inner.sweep(ct));
        assert!(outcome.reply.is_none());
        skipped
    }
}

/// Deleted entries a step may pass: a handful (the cursor's own, the
/// bounds of a seek), nowhere near the thousands deleted before it.
const FEW: u64 = 16;
const CYCLES: u64 = 20_000;

#[test]
fn released_locks_leave_nothing_for_expiry() {
    let mut r = Replica::new();
    // A lock cycle workload: acquire with a TTL, release at once.
    for i in 0..CYCLES {
        let ct = 1_000 + i / 10;
        r.write(ct, &format!("SET lock:{i} token NX PX 30000"));
        r.write(ct, &format!("DEL lock:{i}"));
    }
    assert_eq!(
        r.engine.deadlines().len(),
        0,
        "released locks left deadlines"
    );
    assert_eq!(r.engine.next_deadline(), None);
    // One lock still held: the leader finds its deadline at once.
    r.write(3_000, "SET held token PX 60000");
    assert_eq!(r.engine.next_deadline(), Some(63_000));
    // A sweep once the released locks' TTLs would have run out does nothing
    // and walks nothing.
    let skipped = r.sweep(40_000);
    assert!(skipped <= FEW, "sweep skipped {skipped} deleted entries");
    assert_eq!(r.engine.next_deadline(), Some(63_000));
    r.sweep(63_000);
    assert_eq!(r.engine.deadlines().len(), 0);
    let reply = r.read(63_000, "EXISTS held");
    assert_eq!(reply, Reply::Integer(0));
}

#[test]
fn many_expired_keys_are_swept_in_bounded_steps_and_then_cost_nothing() {
    let mut r = Replica::new();
    let keys = 2 * CYCLES;
    for i in 0..keys {
        r.write(1_000, &format!("SET key:{i} v PX {}", 10 + i % 100));
    }
    assert_eq!(r.engine.deadlines().len() as u64, keys);
    let mut sweeps = 0;
    while r.engine.next_deadline().is_some() {
        let skipped = r.sweep(2_000);
        assert!(
            skipped <= FEW,
            "sweep {sweeps} skipped {skipped} deleted entries"
        );
        sweeps += 1;
        assert!(sweeps <= keys, "sweeps do not finish");
    }
    assert_eq!(
        sweeps,
        keys.div_ceil(lockstep_engine::SWEEP_BATCH as u64),
        "each sweep ends a full batch"
    );
    // 40,000 keys came and went: a sweep, a read and a write cost the same
    // as on an empty keyspace.
    assert!(r.sweep(3_000) <= FEW);
    let (_, skipped) = count_deleted_entries_skipped(|| r.write(3_000, "SET fresh v PX 100"));
    assert!(skipped <= FEW, "a write skipped {skipped} deleted entries");
    // A node restarting on this store rebuilds the set from the records.
    let reopened = Engine::open(&r.store).unwrap();
    assert_eq!(reopened.deadlines(), r.engine.deadlines());
}

#[test]
fn native_lock_cycles_leave_nothing_for_expiry() {
    let mut r = Replica::new();
    for i in 0..CYCLES {
        let ct = 1_000 + i / 10;
        r.write(ct, &format!("LOCK.TRY nlock:{} owner 30000", i % 64));
        r.write(ct, &format!("LOCK.RELEASE nlock:{} owner", i % 64));
    }
    assert_eq!(r.engine.deadlines().len(), 0);
    let (reply, skipped) =
        count_deleted_entries_skipped(|| r.write(5_000, "LOCK.TRY nlock:1 other 30000"));
    assert!(matches!(reply, Some(Reply::Integer(_))), "{reply:?}");
    assert!(skipped <= FEW, "a lock skipped {skipped} deleted entries");
}

#[test]
fn pushes_and_cancels_do_not_step_over_served_waiters() {
    let mut r = Replica::new();
    let waits = CYCLES / 4;
    for i in 0..waits {
        // A waiter blocks on the signal list, then a push serves it (as
        // python-redis-lock's unlock does), or it times out.
        let parked = r
            .inner
            .apply_command(1_000, &format!("BLOCK.WAIT w{i} BLPOP signal 0"));
        assert!(parked.parked);
        if i % 2 == 0 {
            r.write(1_000, "LPUSH signal 1");
        } else {
            assert_eq!(
                r.write(1_000, &format!("BLOCK.CANCEL w{i}")),
                Some(Reply::Integer(1))
            );
        }
    }
    let (reply, skipped) = count_deleted_entries_skipped(|| r.write(1_000, "LPUSH signal 1"));
    assert_eq!(reply, Some(Reply::Integer(1)), "nobody waits any more");
    assert!(skipped <= FEW, "a push skipped {skipped} deleted entries");
    let (reply, skipped) = count_deleted_entries_skipped(|| r.write(1_000, "BLOCK.CANCEL nobody"));
    assert_eq!(reply, Some(Reply::Integer(0)));
    assert!(skipped <= FEW, "a cancel skipped {skipped} deleted entries");
}

#[test]
fn a_full_change_feed_window_costs_the_same_however_much_it_trimmed() {
    let mut r = Replica::new();
    r.write(1, "CONFIG.SET changes-max-kept 1000");
    // Tens of thousands of changes come and go through a window of 1,000:
    // each write trims the oldest entry's changes behind the floor.
    for i in 0..CYCLES {
        r.write(1_000, &format!("SET feed:{} v", i % 500));
    }
    let info = r.inner.read(1_000, "CHANGES.INFO");
    let Reply::Map(fields) = &info else {
        panic!("{info:?}")
    };
    assert!(fields.contains(&(common::bulk("changes"), Reply::Integer(1000))));
    // Another write (and its trim) steps over a handful of the deleted
    // changes, not the window's worth behind it.
    let (_, skipped) =
        count_deleted_entries_skipped(|| r.inner.apply_command(1_000, "SET feed:last v"));
    assert!(skipped <= FEW, "a write skipped {skipped} deleted entries");
    // So does a reader starting at the floor.
    let floor = fields
        .iter()
        .find_map(|(k, v)| match (k, v) {
            (k, Reply::Integer(f)) if *k == common::bulk("floor") => Some(*f),
            _ => None,
        })
        .unwrap();
    let (page, skipped) = count_deleted_entries_skipped(|| {
        r.inner.read(
            1_000,
            &format!("CHANGES.READ feed: FROM {} COUNT 100", floor + 1),
        )
    });
    assert!(!page.is_error(), "{page:?}");
    assert!(skipped <= FEW, "a read skipped {skipped} deleted entries");
}
