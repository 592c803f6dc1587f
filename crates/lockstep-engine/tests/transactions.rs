//! MULTI/EXEC as one entry, and WATCH by modification index.

mod common;

use bytes::Bytes;
use common::{bulk, Replica};
use lockstep_engine::{encode_exec, Reply};

fn args(words: &str) -> Vec<Bytes> {
    common::argv(words)
}

fn versions(r: &Replica, ct: u64, keys: &str) -> Vec<(Bytes, u64)> {
    let mut argv = vec!["WATCH"];
    argv.extend(keys.split_whitespace());
    let Reply::Array(found) = r.read_args(ct, &argv) else {
        panic!("WATCH returns versions");
    };
    keys.split_whitespace()
        .zip(found)
        .map(|(key, version)| match version {
            Reply::Integer(v) => (Bytes::copy_from_slice(key.as_bytes()), v as u64),
            other => panic!("version {other:?}"),
        })
        .collect()
}

#[test]
fn exec_applies_all_commands_with_their_replies() {
    let mut r = Replica::new();
    r.write(1, "SET s text");
    let tx = encode_exec(
        &[],
        &[
            args("SET a 1"),
            args("INCR a"),
            args("INCR s"),
            args("GET a"),
        ],
    );
    assert_eq!(
        r.write_argv(2, tx),
        Reply::Array(vec![
            Reply::ok(),
            Reply::Integer(2),
            Reply::error("ERR value is not an integer or out of range"),
            bulk("2"),
        ])
    );
}

#[test]
fn watch_aborts_when_a_key_changed_and_only_then() {
    let mut r = Replica::new();
    r.write(1, "SET balance 10");
    let watched = versions(&r, 2, "balance other");
    assert_eq!(watched[1].1, 0, "an absent key has version 0");
    let tx = encode_exec(&watched, &[args("INCRBY balance 5")]);
    assert_eq!(
        r.write_argv(3, tx.clone()),
        Reply::Array(vec![Reply::Integer(15)])
    );
    // The same watch is now stale: the key changed (by the transaction).
    assert_eq!(r.write_argv(4, tx), Reply::NilArray);
    assert_eq!(r.read(5, "GET balance"), bulk("15"));
    // A key created after WATCH also aborts.
    let watched = versions(&r, 6, "other");
    r.write(7, "SET other x");
    assert_eq!(
        r.write_argv(8, encode_exec(&watched, &[args("DEL other")])),
        Reply::NilArray
    );
    // A key that expired after WATCH counts as changed.
    r.write(9, "SET lease v PX 10");
    let watched = versions(&r, 10, "lease");
    assert_eq!(
        r.write_argv(30, encode_exec(&watched, &[args("GET lease")])),
        Reply::NilArray
    );
    // Rewriting only the TTL is a change too.
    r.write(31, "SET k v");
    let watched = versions(&r, 32, "k");
    r.write(33, "PEXPIRE k 100000");
    assert_eq!(
        r.write_argv(34, encode_exec(&watched, &[args("GET k")])),
        Reply::NilArray
    );
}
