//! Native compare-and-set: Valkey's and Redis 8.4's dialects, DIGEST, and
//! PEXPIREIFEQ.

mod common;

use common::{bulk, err, Replica};
use lockstep_engine::Reply;

#[test]
fn set_ifeq_and_ifne() {
    let mut r = Replica::new();
    assert_eq!(
        r.write(1, "SET k new IFEQ old"),
        Reply::Nil,
        "absent key: IFEQ fails"
    );
    assert_eq!(
        r.write(2, "SET k v1 IFNE x"),
        Reply::ok(),
        "absent key: IFNE succeeds"
    );
    assert_eq!(r.write(3, "SET k v2 IFEQ nope"), Reply::Nil);
    assert_eq!(r.read(4, "GET k"), bulk("v1"));
    assert_eq!(r.write(5, "SET k v2 ifeq v1 PX 1000"), Reply::ok());
    assert_eq!(r.read(6, "PTTL k"), Reply::Integer(999));
    assert_eq!(r.write(7, "SET k v3 IFNE v2"), Reply::Nil);
    assert_eq!(r.write(8, "SET k v3 IFEQ v2 GET"), bulk("v2"));
    assert_eq!(r.read(9, "GET k"), bulk("v3"));
    assert_eq!(err(&r.write(10, "SET k v NX IFEQ v3")), "ERR syntax error");
    assert_eq!(
        err(&r.write(11, "SET k v IFEQ a IFNE b")),
        "ERR syntax error"
    );
    assert_eq!(err(&r.write(12, "SET k v IFEQ")), "ERR syntax error");
}

#[test]
fn digest_and_digest_conditions() {
    let mut r = Replica::new();
    assert_eq!(r.read(1, "DIGEST k"), Reply::Nil);
    r.write(2, "SET k hello");
    let Reply::Bulk(digest) = r.read(3, "DIGEST k") else {
        panic!("DIGEST returns a bulk string");
    };
    let digest = String::from_utf8(digest.to_vec()).unwrap();
    assert_eq!(
        digest,
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b"hello"))
    );
    assert_eq!(r.write(4, "SET k other IFDEQ 0000000000000000"), Reply::Nil);
    assert_eq!(
        r.write_args(5, &["SET", "k", "world", "IFDEQ", &digest.to_uppercase()]),
        Reply::ok()
    );
    assert_eq!(
        r.write_args(6, &["SET", "k", "x", "IFDNE", &digest]),
        Reply::ok()
    );
    assert_eq!(r.read(7, "GET k"), bulk("x"));
}

#[test]
fn delifeq_and_delex() {
    let mut r = Replica::new();
    r.write(1, "SET lock tok");
    assert_eq!(r.write(2, "DELIFEQ lock other"), Reply::Integer(0));
    assert_eq!(r.write(3, "DELIFEQ lock tok"), Reply::Integer(1));
    assert_eq!(r.write(4, "DELIFEQ lock tok"), Reply::Integer(0));
    r.write(5, "SET lock tok");
    assert_eq!(r.write(6, "DELEX lock IFNE tok"), Reply::Integer(0));
    assert_eq!(r.write(7, "DELEX lock IFEQ tok"), Reply::Integer(1));
    r.write(8, "SET lock tok");
    assert_eq!(r.write(9, "DELEX lock"), Reply::Integer(1));
    assert_eq!(r.write(10, "DELEX lock"), Reply::Integer(0));
    assert_eq!(err(&r.write(11, "DELEX lock IFEQ")), "ERR syntax error");
    assert_eq!(err(&r.write(12, "DELEX lock BOGUS x")), "ERR syntax error");
    assert_eq!(
        err(&r.write(13, "DELIFEQ lock")),
        "ERR wrong number of arguments for 'delifeq' command"
    );
}

#[test]
fn pexpireifeq_extends_only_the_owners_lock() {
    let mut r = Replica::new();
    assert_eq!(r.write(1, "PEXPIREIFEQ lock tok 5000"), Reply::Integer(0));
    r.write(2, "SET lock tok PX 1000");
    assert_eq!(r.write(3, "PEXPIREIFEQ lock other 5000"), Reply::Integer(0));
    assert_eq!(r.read(4, "PTTL lock"), Reply::Integer(998));
    assert_eq!(r.write(10, "PEXPIREIFEQ lock tok 5000"), Reply::Integer(1));
    assert_eq!(r.read(10, "PTTL lock"), Reply::Integer(5000));
    assert_eq!(
        err(&r.write(11, "PEXPIREIFEQ lock tok 0")),
        "ERR invalid expire time in 'pexpireifeq' command"
    );
    assert_eq!(
        err(&r.write(12, "PEXPIREIFEQ lock tok soon")),
        "ERR value is not an integer or out of range"
    );
    // An expired lock cannot be extended back to life.
    assert_eq!(
        r.write(6000, "PEXPIREIFEQ lock tok 5000"),
        Reply::Integer(0)
    );
}

/// Which conditional writes change nothing, and their replies then.
#[test]
fn conditional_writes_that_change_nothing_are_told_apart() {
    use common::argv;
    let mut r = Replica::new();
    r.write(1, "SET lock held PX 30000");
    r.write(2, "SET plain v");
    let noop = |r: &Replica, ct: u64, command: &str| {
        lockstep_engine::noop_reply(&r.store, r.index, ct, &argv(command)).unwrap()
    };
    assert_eq!(noop(&r, 3, "SET lock mine NX PX 30000"), Some(Reply::Nil));
    assert_eq!(noop(&r, 3, "SETNX lock mine"), Some(Reply::Integer(0)));
    assert_eq!(noop(&r, 3, "SET lock mine NX GET"), Some(bulk("held")));
    assert_eq!(noop(&r, 3, "SET lock mine IFEQ other"), Some(Reply::Nil));
    assert_eq!(noop(&r, 3, "DELIFEQ lock other"), Some(Reply::Integer(0)));
    assert_eq!(noop(&r, 3, "SET missing v XX"), Some(Reply::Nil));
    // Each of these would act: they go through the log.
    for acts in [
        "SET missing v NX",
        "SET lock mine IFEQ held",
        "DELIFEQ lock held",
        "SET plain w XX",
        "SET plain w",
        "DEL plain",
        "INCR counter",
    ] {
        assert_eq!(noop(&r, 3, acts), None, "{acts}");
    }
    // Once the TTL has passed the key is gone for a SET NX.
    assert_eq!(noop(&r, 30_002, "SET lock mine NX PX 30000"), None);
    // And the log gives the same replies.
    assert_eq!(r.write(4, "SET lock mine NX PX 30000"), Reply::Nil);
    assert_eq!(r.write(5, "DELIFEQ lock other"), Reply::Integer(0));
}
