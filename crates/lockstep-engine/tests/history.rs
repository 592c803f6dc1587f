//! Costs that must not grow with history: after many keys, locks and
//! waiters existed and were deleted, the leader's expiry check, a sweep, a
//! push to a list and a cancelled wait step over (almost) none of the
//! deleted entries. RocksDB keeps a deleted key as a tombstone until
//! compaction, and a scan steps over every tombstone in its range, so
//! these tests run on the real RocksDB store and count, with RocksDB's own
//! counter, the deleted entries its iterators skipped.

use bytes::Bytes;
use lockstep_engine::{Engine, LogEntry, Payload, Reply, RequestId};
use lockstep_store::{count_deleted_entries_skipped, Applied, NodeStore, RocksStore};

struct Replica {
    _dir: tempfile::TempDir,
    store: RocksStore,
    engine: Engine,
    index: u64,
}

impl Replica {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(&dir.path().join("store")).unwrap();
        Replica {
            _dir: dir,
            store,
            engine: Engine::new(),
            index: 0,
        }
    }

    fn apply(&mut self, ct: u64, payload: Payload) -> lockstep_engine::Applied {
        self.index += 1;
        let entry = LogEntry {
            request: RequestId {
                origin: 1,
                seq: self.index,
            },
            settled_below: self.index,
            ct,
            payload,
        };
        let outcome = self
            .engine
            .apply(&self.store, self.index, &entry.encode())
            .unwrap();
        self.store
            .apply(
                &outcome.batch,
                Applied {
                    index: self.index,
                    term: 1,
                },
            )
            .unwrap();
        outcome
    }

    fn write(&mut self, ct: u64, command: &str) -> Option<Reply> {
        let argv = command
            .split_whitespace()
            .map(|word| Bytes::copy_from_slice(word.as_bytes()))
            .collect();
        self.apply(ct, Payload::Command(argv)).reply
    }

    fn next_deadline(&self) -> (Option<u64>, u64) {
        count_deleted_entries_skipped(|| {
            self.store
                .read_view(|state, _| self.engine.next_deadline(state).unwrap())
        })
    }
}

/// Deleted entries a step may pass: a handful (the cursor's own, the
/// bounds of a seek), nowhere near the thousands deleted before it.
const FEW: u64 = 16;
const CYCLES: u64 = 20_000;

#[test]
fn expiry_checks_and_sweeps_do_not_step_over_released_locks() {
    let mut r = Replica::new();
    // A lock cycle workload: acquire with a TTL, release at once.
    for i in 0..CYCLES {
        let ct = 1_000 + i / 10;
        r.write(ct, &format!("SET lock:{i} token NX PX 30000"));
        r.write(ct, &format!("DEL lock:{i}"));
    }
    // One lock still held: the leader must find its deadline at once.
    r.write(3_000, "SET held token PX 60000");
    let (next, skipped) = r.next_deadline();
    assert_eq!(next, Some(31_000), "the first released lock's stale entry");
    assert!(
        skipped <= FEW,
        "expiry check skipped {skipped} deleted entries"
    );

    // Time passes every released lock's deadline: sweeps consume their
    // entries in order, each sweep a bounded batch.
    let mut sweeps = 0;
    loop {
        let (outcome, skipped) = count_deleted_entries_skipped(|| r.apply(40_000, Payload::Sweep));
        assert!(
            skipped <= FEW,
            "sweep {sweeps} skipped {skipped} deleted entries"
        );
        assert!(outcome.reply.is_none());
        sweeps += 1;
        let (next, skipped) = r.next_deadline();
        assert!(
            skipped <= FEW,
            "expiry check skipped {skipped} deleted entries"
        );
        if next == Some(63_000) {
            break;
        }
        assert!(sweeps < 1_000, "sweeps do not finish");
    }
    assert_eq!(
        sweeps,
        CYCLES.div_ceil(lockstep_engine::SWEEP_BATCH as u64),
        "each stale entry is consumed once"
    );
    // The held lock's key survived every sweep; its own sweep removes it.
    r.apply(63_000, Payload::Sweep);
    assert_eq!(r.next_deadline(), (None, 0));
    let digest_reads = r
        .engine
        .read(
            &r.store,
            63_000,
            &[Bytes::from_static(b"EXISTS"), Bytes::from_static(b"held")],
        )
        .unwrap();
    assert_eq!(digest_reads, Reply::Integer(0));
}

#[test]
fn native_lock_cycles_leave_nothing_for_expiry_to_walk() {
    let mut r = Replica::new();
    for i in 0..CYCLES {
        let ct = 1_000 + i / 10;
        r.write(ct, &format!("LOCK.TRY nlock:{} owner 30000", i % 64));
        r.write(ct, &format!("LOCK.RELEASE nlock:{} owner", i % 64));
    }
    let (_, skipped) = r.next_deadline();
    assert!(
        skipped <= FEW,
        "expiry check skipped {skipped} deleted entries"
    );
}

#[test]
fn pushes_and_cancels_do_not_step_over_served_waiters() {
    let mut r = Replica::new();
    let waits = CYCLES / 4;
    for i in 0..waits {
        // A waiter blocks on the signal list, then a push serves it (as
        // python-redis-lock's unlock does), or it times out.
        let parked = r.apply(
            1_000,
            Payload::Command(
                format!("BLOCK.WAIT w{i} BLPOP signal 0")
                    .split_whitespace()
                    .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                    .collect(),
            ),
        );
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
