//! Engine semantics driven only by (command, cluster time) sequences, the
//! way every replica sees them.

mod common;

use common::{argv, bulk, err, Replica};
use lockstep_engine::{Engine, LogEntry, Payload, Reply, RequestId};
use lockstep_store::NodeStore;

#[test]
fn set_nx_px_is_a_lock_that_expires_at_cluster_time() {
    let mut r = Replica::new();
    assert_eq!(r.write(1_000, "SET lock:a t1 NX PX 500"), Reply::ok());
    assert_eq!(r.write(1_200, "SET lock:a t2 NX PX 500"), Reply::Nil);
    assert_eq!(r.read(1_499, "GET lock:a"), bulk("t1"));
    assert_eq!(r.read(1_300, "PTTL lock:a"), Reply::Integer(200));
    // At the deadline the key is gone for every entry and every read.
    assert_eq!(r.read(1_500, "GET lock:a"), Reply::Nil);
    assert_eq!(r.write(1_500, "SET lock:a t2 NX PX 500"), Reply::ok());
    assert_eq!(r.read(1_600, "GET lock:a"), bulk("t2"));
}

#[test]
fn fencing_token_is_the_index_that_wrote_the_value() {
    let mut r = Replica::new();
    r.write(10, "SET other x");
    r.write(10, "SET lock v1 NX PX 100");
    let first = r.read(20, "FENCE lock");
    assert_eq!(first, Reply::Integer(2));
    // Extending the TTL keeps the token; a new value gets a new, larger one.
    r.write(30, "PEXPIRE lock 1000");
    assert_eq!(r.read(40, "FENCE lock"), first);
    r.write(2_000, "SET lock v2 NX PX 100");
    assert_eq!(r.read(2_010, "FENCE lock"), Reply::Integer(4));
    assert_eq!(r.read(2_010, "FENCE missing"), Reply::Nil);
}

#[test]
fn set_options_in_any_order_and_case() {
    let mut r = Replica::new();
    assert_eq!(r.write(0, "set k v px 100 nx"), Reply::ok());
    assert_eq!(r.write(0, "SET k w Xx GeT"), bulk("v"));
    assert_eq!(
        r.read(0, "PTTL k"),
        Reply::Integer(-1),
        "SET without KEEPTTL clears the TTL"
    );
    r.write(0, "SET k v EX 10");
    r.write(1_000, "SET k v2 KEEPTTL");
    assert_eq!(r.read(1_000, "TTL k"), Reply::Integer(9));
    assert_eq!(r.write(0, "SET k v EXAT 5000"), Reply::ok());
    assert_eq!(r.read(0, "PEXPIRETIME k"), Reply::Integer(5_000_000));
    assert_eq!(r.write(0, "SET k v PXAT 7000"), Reply::ok());
    assert_eq!(r.read(0, "EXPIRETIME k"), Reply::Integer(7));
}

#[test]
fn bad_set_arguments_get_redis_errors() {
    let mut r = Replica::new();
    assert_eq!(err(&r.write(0, "SET k v NX XX")), "ERR syntax error");
    assert_eq!(err(&r.write(0, "SET k v EX 1 PX 1")), "ERR syntax error");
    assert_eq!(err(&r.write(0, "SET k v KEEPTTL EX 1")), "ERR syntax error");
    assert_eq!(err(&r.write(0, "SET k v EX")), "ERR syntax error");
    assert_eq!(
        err(&r.write(0, "SET k v EX ten")),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&r.write(0, "SET k v EX 0")),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err(&r.write(0, "SET k v PX -5")),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err(&r.write(0, "SET k v EX 9223372036854775807")),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err(&r.write(0, "SETEX k 0 v")),
        "ERR invalid expire time in 'setex' command"
    );
    assert_eq!(
        err(&r.write(0, "GET")),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err(&r.write(0, "MSET a 1 b")),
        "ERR wrong number of arguments for 'mset' command"
    );
    assert!(err(&r.write(0, "NOPE a")).starts_with("ERR unknown command 'NOPE'"));
    assert_eq!(
        r.read(0, "DBSIZE"),
        Reply::Integer(0),
        "errors change nothing"
    );
}

#[test]
fn string_commands() {
    let mut r = Replica::new();
    assert_eq!(r.write(0, "SETNX a 1"), Reply::Integer(1));
    assert_eq!(r.write(0, "SETNX a 2"), Reply::Integer(0));
    assert_eq!(r.write(0, "INCR a"), Reply::Integer(2));
    assert_eq!(r.write(0, "INCRBY a 10"), Reply::Integer(12));
    assert_eq!(r.write(0, "DECRBY a 20"), Reply::Integer(-8));
    assert_eq!(r.write(0, "DECR a"), Reply::Integer(-9));
    r.write(0, "SET big 9223372036854775807");
    assert_eq!(
        err(&r.write(0, "INCR big")),
        "ERR increment or decrement would overflow"
    );
    r.write(0, "SET s hello");
    assert_eq!(
        err(&r.write(0, "INCR s")),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(r.write(0, "APPEND s !"), Reply::Integer(6));
    assert_eq!(r.read(0, "STRLEN s"), Reply::Integer(6));
    assert_eq!(r.write(0, "GETSET s x"), bulk("hello!"));
    assert_eq!(r.write(0, "GETDEL s"), bulk("x"));
    assert_eq!(r.read(0, "EXISTS s a a"), Reply::Integer(2));
    assert_eq!(r.write(0, "MSET m1 1 m2 2"), Reply::ok());
    assert_eq!(r.write(0, "MSETNX m2 x m3 y"), Reply::Integer(0));
    assert_eq!(
        r.read(0, "MGET m1 m2 m3"),
        Reply::Array(vec![bulk("1"), bulk("2"), Reply::Nil])
    );
    assert_eq!(r.write(0, "DEL m1 m2 m3"), Reply::Integer(2));
    assert_eq!(r.read(0, "TYPE a"), Reply::Status("string".into()));
    assert_eq!(r.read(0, "TYPE zz"), Reply::Status("none".into()));
}

#[test]
fn expire_family_with_conditions() {
    let mut r = Replica::new();
    r.write(0, "SET k v");
    assert_eq!(r.write(0, "EXPIRE k 10 XX"), Reply::Integer(0));
    assert_eq!(
        r.write(0, "EXPIRE k 10 GT"),
        Reply::Integer(0),
        "no TTL is infinite"
    );
    assert_eq!(r.write(0, "EXPIRE k 10 NX"), Reply::Integer(1));
    assert_eq!(r.write(0, "EXPIRE k 5 GT"), Reply::Integer(0));
    assert_eq!(r.write(0, "EXPIRE k 20 GT"), Reply::Integer(1));
    assert_eq!(r.write(0, "PEXPIRE k 100 LT"), Reply::Integer(1));
    assert_eq!(r.read(0, "PTTL k"), Reply::Integer(100));
    assert_eq!(r.write(50, "PERSIST k"), Reply::Integer(1));
    assert_eq!(r.read(50, "TTL k"), Reply::Integer(-1));
    assert_eq!(r.read(50, "TTL nothing"), Reply::Integer(-2));
    assert_eq!(
        err(&r.write(0, "EXPIRE k 10 NX XX")),
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(
        err(&r.write(0, "EXPIRE k 10 GT LT")),
        "ERR GT and LT options at the same time are not compatible"
    );
    assert_eq!(
        err(&r.write(0, "EXPIRE k 10 FOO")),
        "ERR Unsupported option FOO"
    );
    assert_eq!(
        r.write(100, "PEXPIREAT k 50"),
        Reply::Integer(1),
        "a past deadline deletes"
    );
    assert_eq!(r.read(100, "EXISTS k"), Reply::Integer(0));
    assert_eq!(r.write(100, "EXPIRE nothing 10"), Reply::Integer(0));
}

#[test]
fn active_expiry_deletes_only_keys_still_due() {
    let mut r = Replica::new();
    r.write(0, "SET a 1 PX 10");
    r.write(0, "SET b 1 PX 10");
    r.write(0, "SET c 1");
    r.write(0, "SET d 1 PX 10");
    assert_eq!(r.engine.next_deadline(), Some(10));
    // b is rewritten without a TTL and d gets a later one before the sweep.
    r.write(5, "SET b 2");
    r.write(5, "PEXPIRE d 100");
    assert_eq!(r.expire_pass(20), 1, "only a was still due");
    assert_eq!(r.read(20, "EXISTS a b c d"), Reply::Integer(3));
    assert_eq!(r.read(20, "EXISTS a"), Reply::Integer(0));
    assert_eq!(r.engine.next_deadline(), Some(105));
    assert_eq!(r.expire_pass(104), 0);
    assert_eq!(r.expire_pass(105), 1);
    assert_eq!(r.engine.next_deadline(), None);
}

#[test]
fn a_sweep_takes_a_bounded_batch_in_deadline_order() {
    let mut r = Replica::new();
    let n = lockstep_engine::SWEEP_BATCH + 10;
    for i in 0..n {
        r.write(0, &format!("SET key:{i} v PX {}", 1 + i));
    }
    assert_eq!(r.expire_pass(10_000), lockstep_engine::SWEEP_BATCH);
    // The earliest deadlines went first.
    assert_eq!(r.read(10_000, "EXISTS key:0"), Reply::Integer(0));
    assert_eq!(
        r.engine.next_deadline(),
        Some(1 + lockstep_engine::SWEEP_BATCH as u64)
    );
    assert_eq!(r.expire_pass(10_000), 10);
    assert_eq!(r.engine.next_deadline(), None);
}

#[test]
fn a_deadline_already_past_deletes_instead_of_storing() {
    let mut r = Replica::new();
    r.write(100, "SET k v PXAT 50");
    assert_eq!(r.read(100, "EXISTS k"), Reply::Integer(0));
    assert_eq!(r.engine.next_deadline(), None);
}

#[test]
fn cluster_time_never_goes_backwards() {
    let mut r = Replica::new();
    r.write(1_000, "SET k v PX 100");
    // An entry stamped earlier (a bug elsewhere) still sees time 1000.
    r.write(500, "SET other x");
    assert_eq!(r.read(1_050, "PTTL k"), Reply::Integer(50));
    assert_eq!(
        Engine::cluster_time(&r.store).unwrap(),
        1_000,
        "the stored cluster time is the maximum seen"
    );
}

#[test]
fn a_request_id_is_applied_at_most_once() {
    let mut r = Replica::new();
    let entry = LogEntry {
        request: RequestId { origin: 2, seq: 7 },
        settled_below: 0,
        ct: 5,
        payload: Payload::Command(argv("INCR counter")),
    };
    assert_eq!(r.apply_entry(&entry), Some(Reply::Integer(1)));
    assert_eq!(r.apply_entry(&entry), None, "a retried proposal is a no-op");
    assert_eq!(r.read(5, "GET counter"), bulk("1"));
}

#[test]
fn scan_returns_every_key_once_across_pages() {
    let mut r = Replica::new();
    for i in 0..57 {
        r.write(0, &format!("SET key:{i} v"));
    }
    r.write(0, "SET other v");
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = "0".to_string();
    let mut pages = 0;
    loop {
        let reply = r.read(0, &format!("SCAN {cursor} MATCH key:* COUNT 7"));
        let Reply::Array(parts) = reply else { panic!() };
        let (Reply::Bulk(next), Reply::Array(keys)) = (&parts[0], &parts[1]) else {
            panic!()
        };
        for key in keys {
            let Reply::Bulk(key) = key else { panic!() };
            assert!(seen.insert(key.clone()), "duplicate {key:?}");
        }
        pages += 1;
        cursor = String::from_utf8(next.to_vec()).unwrap();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 57);
    assert!(pages > 5);
    assert_eq!(err(&r.read(0, "SCAN abc")), "ERR invalid cursor");
}

#[test]
fn flushall_empties_everything() {
    let mut r = Replica::new();
    r.write(0, "SET a 1 PX 100");
    r.write(0, "SET b 1");
    assert_eq!(r.write(0, "FLUSHALL"), Reply::ok());
    assert_eq!(r.read(0, "DBSIZE"), Reply::Integer(0));
    assert_eq!(
        r.read(0, "SCAN 0"),
        Reply::Array(vec![bulk("0"), Reply::Array(vec![])])
    );
    assert_eq!(r.engine.next_deadline(), None, "a's deadline went with it");
}

#[test]
fn writes_are_refused_on_the_read_path() {
    let r = Replica::new();
    assert!(err(&r.read(0, "SET a b")).contains("not a read-only command"));
}

#[test]
fn replicas_applying_the_same_entries_agree() {
    let commands = [
        "SET a 1 PX 100",
        "INCR n",
        "SET lock x NX PX 50",
        "APPEND a z",
        "SET lock y NX PX 50",
        "DEL n",
        "GETEX a PERSIST",
    ];
    let mut left = Replica::new();
    let mut right = Replica::new();
    for (step, command) in commands.iter().enumerate() {
        let ct = step as u64 * 30;
        assert_eq!(
            left.write(ct, command),
            right.write(ct, command),
            "{command}"
        );
    }
    let dump = |r: &Replica| {
        let mut all = Vec::new();
        lockstep_store::StateRead::scan(&r.store, b"", b"\xff", &mut |k, v| {
            all.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
        all
    };
    assert_eq!(dump(&left), dump(&right));
    let _ = left.store.applied();
}

fn request_entry(seq: u64, settled_below: u64, command: &str) -> LogEntry {
    LogEntry {
        request: RequestId { origin: 2, seq },
        settled_below,
        ct: 5,
        payload: Payload::Command(argv(command)),
    }
}

fn applied_chunks(r: &Replica) -> usize {
    let mut n = 0;
    lockstep_store::StateRead::scan(&r.store, b"d", b"e", &mut |_, _| {
        n += 1;
        true
    })
    .unwrap();
    n
}

#[test]
fn requests_apply_in_any_order_but_once() {
    let mut r = Replica::new();
    assert_eq!(
        r.apply_entry(&request_entry(20, 0, "INCR n")),
        Some(Reply::Integer(1))
    );
    assert_eq!(
        r.apply_entry(&request_entry(15, 0, "INCR n")),
        Some(Reply::Integer(2))
    );
    assert_eq!(r.apply_entry(&request_entry(20, 0, "INCR n")), None);
    assert_eq!(r.apply_entry(&request_entry(15, 16, "INCR n")), None);
    assert_eq!(r.read(5, "GET n"), bulk("2"));
}

#[test]
fn a_request_below_its_origins_settled_floor_is_dropped() {
    let mut r = Replica::new();
    assert_eq!(
        r.apply_entry(&request_entry(10, 10, "INCR n")),
        Some(Reply::Integer(1))
    );
    // Settled at its origin (answered or given up): a late copy is dropped.
    assert_eq!(r.apply_entry(&request_entry(5, 0, "INCR n")), None);
    // An older entry carries a lower floor; the highest floor seen counts.
    assert_eq!(r.apply_entry(&request_entry(9, 3, "INCR n")), None);
    assert_eq!(
        r.apply_entry(&request_entry(11, 3, "INCR n")),
        Some(Reply::Integer(2))
    );
    assert_eq!(r.read(5, "GET n"), bulk("2"));
}

#[test]
fn applied_request_chunks_fall_away_as_the_floor_rises() {
    let mut r = Replica::new();
    for seq in [1, 2, 5000, 9000] {
        assert!(r.apply_entry(&request_entry(seq, 0, "INCR n")).is_some());
    }
    assert_eq!(applied_chunks(&r), 3, "chunks 0, 1 and 2 of 4096 ids each");
    assert!(r
        .apply_entry(&request_entry(9001, 8192, "INCR n"))
        .is_some());
    assert_eq!(applied_chunks(&r), 1, "only the chunk at the floor remains");
    assert_eq!(r.apply_entry(&request_entry(9000, 0, "INCR n")), None);
    assert_eq!(r.apply_entry(&request_entry(9001, 0, "INCR n")), None);
    // A restarted origin numbers from a new epoch: its first floor clears
    // every chunk of the old one.
    assert!(r
        .apply_entry(&request_entry(7 << 32, 7 << 32, "INCR n"))
        .is_some());
    assert_eq!(applied_chunks(&r), 1);
    assert_eq!(r.read(5, "GET n"), bulk("6"));
}

#[test]
fn debug_digest_names_the_whole_state() {
    let mut a = Replica::new();
    let mut b = Replica::new();
    for r in [&mut a, &mut b] {
        r.write(1, "SET k v PX 1000");
        r.write(2, "RPUSH q x y");
    }
    let digest = |r: &Replica| match r.read(3, "DEBUG DIGEST") {
        Reply::Bulk(hex) => String::from_utf8(hex.to_vec()).unwrap(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(digest(&a), digest(&b));
    assert_eq!(digest(&a).len(), 32);
    b.write(4, "SET k w");
    assert_ne!(digest(&a), digest(&b));
    assert!(matches!(a.read(5, "DEBUG SLEEP 0"), Reply::Error(_)));
}
