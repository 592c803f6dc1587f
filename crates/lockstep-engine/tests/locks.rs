//! Native fair locks: tokens, FIFO waiters, expiry, semaphores.

mod common;

use common::{bulk, err, Replica};
use lockstep_engine::Reply;

fn token(reply: &Reply) -> i64 {
    match reply {
        Reply::Integer(token) => *token,
        other => panic!("expected a token, got {other:?}"),
    }
}

#[test]
fn acquire_release_extend_and_tokens() {
    let mut r = Replica::new();
    let first = token(&r.write(1, "LOCK.ACQUIRE job a 1000"));
    assert_eq!(r.write(2, "LOCK.TRY job b 1000"), Reply::Nil);
    assert_eq!(
        r.write(3, "LOCK.ACQUIRE job a 1000"),
        Reply::Integer(first),
        "idempotent"
    );
    assert_eq!(r.read(4, "FENCE job"), Reply::Integer(first));
    assert_eq!(r.write(5, "LOCK.EXTEND job b 5000"), Reply::Integer(0));
    assert_eq!(r.write(6, "LOCK.EXTEND job a 5000"), Reply::Integer(1));
    assert_eq!(r.write(7, "LOCK.RELEASE job b"), Reply::Integer(0));
    assert_eq!(r.write(8, "LOCK.RELEASE job a"), Reply::Integer(1));
    assert_eq!(r.read(9, "EXISTS job"), Reply::Integer(0));
    let second = token(&r.write(10, "LOCK.TRY job b 1000"));
    assert!(second > first, "tokens strictly increase");
    // It expires on its own at cluster time.
    let third = token(&r.write(1011, "LOCK.TRY job c 1000"));
    assert!(third > second);
    assert_eq!(r.read(1012, "TYPE job"), Reply::Status("lock".into()));
    assert!(err(&r.read(1012, "GET job")).starts_with("WRONGTYPE"));
}

#[test]
fn waiters_are_granted_in_fifo_order_by_later_entries() {
    let mut r = Replica::new();
    let holder = token(&r.write(1, "LOCK.ACQUIRE q holder 10000"));
    let mut waiters = Vec::new();
    for (i, owner) in ["w1", "w2", "w3"].iter().enumerate() {
        let outcome = r.apply_command(
            2 + i as u64,
            &format!("LOCK.ACQUIRE q {owner} 10000 WAIT 60000"),
        );
        assert!(outcome.parked, "{owner} waits");
        assert_eq!(outcome.reply, None);
        waiters.push(outcome.request.unwrap());
    }
    let Reply::Map(info) = r.read(10, "LOCK.INFO q") else {
        panic!("map")
    };
    assert!(info.contains(&(bulk("waiters"), Reply::Integer(3))));
    assert!(info.contains(&(bulk("owner"), bulk("holder"))));
    // Releasing grants w1 in the same entry, with that entry's index.
    let release = r.apply_command(11, "LOCK.RELEASE q holder");
    assert_eq!(release.reply, Some(Reply::Integer(1)));
    let granted_at = r.index as i64;
    assert_eq!(
        release.deferred,
        vec![(waiters[0], Reply::Integer(granted_at))]
    );
    assert!(granted_at > holder);
    // w2 cancels (its connection closed): it leaves the queue with nil.
    let cancel = r.apply_command(12, "LOCK.CANCEL q w2");
    assert_eq!(cancel.deferred, vec![(waiters[1], Reply::Nil)]);
    // w1's TTL runs out: the next expiry settles the lock and grants w3.
    let expiry = r.sweep(10_012);
    assert_eq!(
        expiry.deferred,
        vec![(waiters[2], Reply::Integer(r.index as i64))]
    );
}

#[test]
fn a_wait_that_runs_out_gets_nil_and_scripts_never_wait() {
    let mut r = Replica::new();
    r.write(1, "LOCK.ACQUIRE k holder 60000");
    let waiter = r.apply_command(2, "LOCK.ACQUIRE k w 1000 WAIT 500");
    assert!(waiter.parked);
    let settle = r.apply_command(601, "LOCK.TRY k other 1000");
    assert_eq!(settle.reply, Some(Reply::Nil));
    assert_eq!(settle.deferred, vec![(waiter.request.unwrap(), Reply::Nil)]);
    let script = r.apply_command(
        602,
        "EVAL return(redis.call('lock.acquire','k','s','1000','WAIT','9000')) 0",
    );
    assert!(!script.parked, "a script's lock call never waits");
}

#[test]
fn semaphores_and_bad_input() {
    let mut r = Replica::new();
    let a = token(&r.write(1, "LOCK.ACQUIRE pool a 1000 LIMIT 2"));
    let b = token(&r.write(2, "LOCK.ACQUIRE pool b 1000 LIMIT 2"));
    assert!(b > a);
    assert_eq!(r.write(3, "LOCK.TRY pool c 1000 LIMIT 2"), Reply::Nil);
    assert_eq!(
        err(&r.write(4, "LOCK.TRY pool c 1000")),
        "ERR lock has LIMIT 2, not 1"
    );
    assert_eq!(r.write(5, "LOCK.RELEASE pool a"), Reply::Integer(1));
    assert!(matches!(
        r.write(6, "LOCK.TRY pool c 1000 LIMIT 2"),
        Reply::Integer(_)
    ));
    for bad in [
        "LOCK.ACQUIRE x o 0",
        "LOCK.ACQUIRE x o -5",
        "LOCK.ACQUIRE x o soon",
        "LOCK.ACQUIRE x o 1000 WAIT 0",
        "LOCK.ACQUIRE x o 1000 LIMIT 0",
        "LOCK.ACQUIRE x o 1000 BOGUS",
        "LOCK.TRY x o 1000 WAIT 10",
        "LOCK.EXTEND x o 0",
    ] {
        assert!(r.write(7, bad).is_error(), "{bad} must be refused");
    }
    assert_eq!(
        err(&r.write(8, "LOCK.RELEASE x")),
        "ERR wrong number of arguments for 'lock.release' command"
    );
    r.write(9, "SET plain v");
    assert!(err(&r.write(10, "LOCK.ACQUIRE plain o 1000")).starts_with("WRONGTYPE"));
}
