//! Blocking pops: parked waiters served in FIFO order by the push that
//! fills the list; cancels that race pushes decide once.

mod common;

use common::{bulk, err, Replica};
use lockstep_engine::Reply;

#[test]
fn pushes_serve_waiters_in_fifo_order() {
    let mut r = Replica::new();
    let first = r.apply_command(1, "BLOCK.WAIT w1 BLPOP jobs other 0");
    assert!(first.parked);
    let second = r.apply_command(2, "BLOCK.WAIT w2 BRPOP jobs 5");
    assert!(second.parked);
    let push = r.apply_command(3, "RPUSH jobs a b c");
    assert_eq!(
        push.reply,
        Some(Reply::Integer(3)),
        "the length after the push"
    );
    assert_eq!(
        push.deferred,
        vec![
            (
                first.request.unwrap(),
                Reply::Array(vec![bulk("jobs"), bulk("a")])
            ),
            (
                second.request.unwrap(),
                Reply::Array(vec![bulk("jobs"), bulk("c")])
            ),
        ]
    );
    assert_eq!(r.read(4, "LRANGE jobs 0 -1"), Reply::Array(vec![bulk("b")]));
    // Served waiters are gone: a cancel finds nothing.
    assert_eq!(r.write(5, "BLOCK.CANCEL w1"), Reply::Integer(0));
}

#[test]
fn data_present_pops_at_once_and_cancel_answers_nil() {
    let mut r = Replica::new();
    r.write(1, "LPUSH q x");
    let now = r.apply_command(2, "BLOCK.WAIT w BLPOP q 1");
    assert!(!now.parked);
    assert_eq!(now.reply, Some(Reply::Array(vec![bulk("q"), bulk("x")])));
    let waiting = r.apply_command(3, "BLOCK.WAIT w2 BLMOVE q dst LEFT RIGHT 1");
    assert!(waiting.parked);
    let cancel = r.apply_command(4, "BLOCK.CANCEL w2");
    assert_eq!(cancel.reply, Some(Reply::Integer(1)));
    assert_eq!(
        cancel.deferred,
        vec![(waiting.request.unwrap(), Reply::Nil)]
    );
    // A later push finds no waiter.
    let push = r.apply_command(5, "LPUSH q y");
    assert!(push.deferred.is_empty());
    // Without a wait id (MULTI, scripts, direct) nothing waits.
    assert_eq!(r.write(6, "BLPOP empty 0"), Reply::NilArray);
    assert_eq!(r.write(7, "BLMOVE q dst LEFT RIGHT 0"), bulk("y"));
    assert_eq!(r.read(8, "LRANGE dst 0 -1"), Reply::Array(vec![bulk("y")]));
}

#[test]
fn a_push_from_a_script_wakes_a_waiter_like_python_redis_lock() {
    let mut r = Replica::new();
    let waiter = r.apply_command(1, "BLOCK.WAIT w BLPOP lock-signal:x 30");
    let unlock = "redis.call('del', KEYS[1]) redis.call('lpush', KEYS[2], 1) return 1";
    let outcome = {
        r.write_args(2, &["EVAL", unlock, "2", "lock:x", "lock-signal:x"]);
        r.read(3, "LLEN lock-signal:x")
    };
    assert_eq!(outcome, Reply::Integer(0), "the waiter took the signal");
    let _ = waiter;
}

#[test]
fn bad_timeouts() {
    let mut r = Replica::new();
    assert_eq!(err(&r.write(1, "BLPOP k -1")), "ERR timeout is negative");
    assert_eq!(
        err(&r.write(2, "BLPOP k soon")),
        "ERR timeout is not a float or out of range"
    );
    assert_eq!(
        err(&r.write(3, "BLPOP k")),
        "ERR wrong number of arguments for 'blpop' command"
    );
    assert_eq!(r.write(4, "BLPOP k 0.5"), Reply::NilArray);
    r.write(5, "SET s v");
    assert!(err(&r.write(6, "BLPOP s 1")).starts_with("WRONGTYPE"));
}
