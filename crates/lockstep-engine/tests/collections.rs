//! Hashes, lists, sets and sorted sets: Redis semantics and WRONGTYPE.

mod common;

use common::{bulk, err, Replica};
use lockstep_engine::Reply;

fn ints(values: &[i64]) -> Reply {
    Reply::Array(values.iter().map(|v| Reply::Integer(*v)).collect())
}

fn bulks(values: &[&str]) -> Reply {
    Reply::Array(values.iter().map(|v| bulk(v)).collect())
}

#[test]
fn hashes() {
    let mut r = Replica::new();
    assert_eq!(r.write(1, "HSET h a 1 b 2"), Reply::Integer(2));
    assert_eq!(r.write(2, "HSET h a 3 c 4"), Reply::Integer(1));
    assert_eq!(r.read(3, "HGET h a"), bulk("3"));
    assert_eq!(
        r.read(3, "HMGET h a nope c"),
        Reply::Array(vec![bulk("3"), Reply::Nil, bulk("4")])
    );
    assert_eq!(r.write(4, "HSETNX h a 9"), Reply::Integer(0));
    assert_eq!(r.write(5, "HINCRBY h a 10"), Reply::Integer(13));
    assert_eq!(r.write(6, "HINCRBY h new -2"), Reply::Integer(-2));
    assert_eq!(r.read(7, "HEXISTS h new"), Reply::Integer(1));
    assert_eq!(r.read(7, "HLEN h"), Reply::Integer(4));
    assert_eq!(r.read(7, "HKEYS h"), bulks(&["a", "b", "c", "new"]));
    assert_eq!(
        r.read(7, "HGETALL h"),
        Reply::Map(vec![
            (bulk("a"), bulk("13")),
            (bulk("b"), bulk("2")),
            (bulk("c"), bulk("4")),
            (bulk("new"), bulk("-2")),
        ])
    );
    assert_eq!(r.write(8, "HDEL h a b c new nope"), Reply::Integer(4));
    assert_eq!(
        r.read(9, "EXISTS h"),
        Reply::Integer(0),
        "an empty hash is deleted"
    );
    r.write(10, "HSET h f text");
    assert_eq!(
        err(&r.write(11, "HINCRBY h f 1")),
        "ERR hash value is not an integer"
    );
    assert_eq!(
        err(&r.write(12, "HSET h f")),
        "ERR wrong number of arguments for 'hset' command"
    );
    assert_eq!(r.read(13, "TYPE h"), Reply::Status("hash".into()));
    assert!(err(&r.read(13, "GET h")).starts_with("WRONGTYPE"));
    r.write(14, "SET s v");
    assert!(err(&r.write(15, "HSET s f v")).starts_with("WRONGTYPE"));
}

#[test]
fn a_reentrant_lock_kept_in_a_hash_like_redisson() {
    let mut r = Replica::new();
    let lock = "if redis.call('exists', KEYS[1]) == 0 or redis.call('hexists', KEYS[1], ARGV[2]) == 1 then \
                  redis.call('hincrby', KEYS[1], ARGV[2], 1) \
                  redis.call('pexpire', KEYS[1], ARGV[1]) \
                  return nil \
                end \
                return redis.call('pttl', KEYS[1])";
    assert_eq!(
        r.write_args(1, &["EVAL", lock, "1", "rl", "30000", "owner-a"]),
        Reply::Nil
    );
    assert_eq!(
        r.write_args(2, &["EVAL", lock, "1", "rl", "30000", "owner-a"]),
        Reply::Nil
    );
    assert_eq!(r.read(3, "HGET rl owner-a"), bulk("2"), "re-entered");
    assert_eq!(
        r.write_args(1000, &["EVAL", lock, "1", "rl", "30000", "owner-b"]),
        Reply::Integer(29002),
        "another owner gets the remaining ttl"
    );
    assert_eq!(
        r.write_args(40_000, &["EVAL", lock, "1", "rl", "30000", "owner-b"]),
        Reply::Nil
    );
}

#[test]
fn lists() {
    let mut r = Replica::new();
    assert_eq!(r.write(1, "RPUSH l a b c"), Reply::Integer(3));
    assert_eq!(r.write(2, "LPUSH l z y"), Reply::Integer(5));
    assert_eq!(
        r.read(3, "LRANGE l 0 -1"),
        bulks(&["y", "z", "a", "b", "c"])
    );
    assert_eq!(r.read(3, "LRANGE l -2 100"), bulks(&["b", "c"]));
    assert_eq!(r.read(3, "LINDEX l -1"), bulk("c"));
    assert_eq!(r.read(3, "LINDEX l 9"), Reply::Nil);
    assert_eq!(r.write(4, "LPOP l"), bulk("y"));
    assert_eq!(r.write(5, "RPOP l 2"), bulks(&["c", "b"]));
    assert_eq!(r.write(6, "RPUSH l a x a"), Reply::Integer(5));
    assert_eq!(r.write(7, "LREM l -2 a"), Reply::Integer(2));
    assert_eq!(r.read(8, "LRANGE l 0 -1"), bulks(&["z", "a", "x"]));
    assert_eq!(r.write(9, "LMOVE l other RIGHT LEFT"), bulk("x"));
    assert_eq!(r.write(10, "RPOPLPUSH l other"), bulk("a"));
    assert_eq!(r.read(11, "LRANGE other 0 -1"), bulks(&["a", "x"]));
    assert_eq!(r.write(12, "LSET other 1 y"), Reply::ok());
    assert_eq!(
        err(&r.write(13, "LSET other 5 y")),
        "ERR index out of range"
    );
    assert_eq!(r.write(14, "LTRIM other 1 1"), Reply::ok());
    assert_eq!(r.read(15, "LRANGE other 0 -1"), bulks(&["y"]));
    assert_eq!(r.write(16, "LPOP l"), bulk("z"));
    assert_eq!(r.read(17, "EXISTS l"), Reply::Integer(0));
    assert_eq!(r.write(18, "LPOP l"), Reply::Nil);
    assert_eq!(r.write(19, "LPOP l 2"), Reply::NilArray);
    assert_eq!(r.write(20, "RPUSHX l a"), Reply::Integer(0));
    assert_eq!(
        err(&r.write(21, "LPOP other -1")),
        "ERR value is out of range, must be positive"
    );
}

#[test]
fn sets() {
    let mut r = Replica::new();
    assert_eq!(r.write(1, "SADD s b a b c"), Reply::Integer(3));
    assert_eq!(r.read(2, "SMEMBERS s"), bulks(&["a", "b", "c"]));
    assert_eq!(r.read(2, "SISMEMBER s a"), Reply::Integer(1));
    assert_eq!(r.read(2, "SMISMEMBER s a z"), ints(&[1, 0]));
    assert_eq!(r.write(3, "SREM s a z"), Reply::Integer(1));
    assert_eq!(r.read(4, "SCARD s"), Reply::Integer(2));
    assert_eq!(r.read(4, "TYPE s"), Reply::Status("set".into()));
}

#[test]
fn sorted_sets() {
    let mut r = Replica::new();
    assert_eq!(r.write(1, "ZADD z 1 a 2 b 3 c"), Reply::Integer(3));
    assert_eq!(r.write(2, "ZADD z CH 5 a 2 b 1 d"), Reply::Integer(2));
    assert_eq!(r.read(3, "ZRANGE z 0 -1"), bulks(&["d", "b", "c", "a"]));
    assert_eq!(
        r.read(3, "ZRANGE z 0 1 WITHSCORES"),
        bulks(&["d", "1", "b", "2"])
    );
    assert_eq!(r.read(3, "ZRANGEBYSCORE z (1 3"), bulks(&["b", "c"]));
    assert_eq!(
        r.read(3, "ZRANGE z +inf -inf BYSCORE REV LIMIT 0 2"),
        bulks(&["a", "c"])
    );
    assert_eq!(r.read(3, "ZSCORE z a"), Reply::Double(5.0));
    assert_eq!(r.read(3, "ZRANK z c"), Reply::Integer(2));
    assert_eq!(r.read(3, "ZREVRANK z c"), Reply::Integer(1));
    assert_eq!(r.read(3, "ZCOUNT z -inf 2"), Reply::Integer(2));
    assert_eq!(r.write(4, "ZINCRBY z 2.5 d"), Reply::Double(3.5));
    assert_eq!(r.write(5, "ZADD z XX GT 1 a"), Reply::Integer(0));
    assert_eq!(r.read(6, "ZSCORE z a"), Reply::Double(5.0));
    assert_eq!(r.write(7, "ZADD z NX INCR 1 a"), Reply::Nil);
    assert_eq!(r.write(8, "ZREM z a b c d"), Reply::Integer(4));
    assert_eq!(r.read(9, "ZCARD z"), Reply::Integer(0));
    assert_eq!(
        err(&r.write(10, "ZADD z nan a")),
        "ERR value is not a valid float"
    );
    assert_eq!(
        err(&r.write(11, "ZADD z 1")),
        "ERR wrong number of arguments for 'zadd' command"
    );
    assert_eq!(err(&r.write(12, "ZADD z 1 a 2")), "ERR syntax error");
    assert_eq!(
        err(&r.write(13, "ZADD z NX XX 1 a")),
        "ERR XX and NX options at the same time are not compatible"
    );
    assert_eq!(
        err(&r.read(14, "ZRANGEBYSCORE z x 1")),
        "ERR min or max is not a float"
    );
}

#[test]
fn collections_keep_ttl_and_fencing_token() {
    let mut r = Replica::new();
    r.write(1, "HSET h f 1");
    r.write(2, "PEXPIRE h 1000");
    r.write(3, "HSET h g 2");
    assert_eq!(
        r.read(4, "PTTL h"),
        Reply::Integer(998),
        "a field write keeps the TTL"
    );
    assert_eq!(
        r.read(4, "FENCE h"),
        Reply::Integer(1),
        "and the creating index"
    );
    assert_eq!(r.read(1002, "HGET h f"), Reply::Nil, "expired with its key");
}

#[test]
fn random_draws_are_the_same_on_every_replica() {
    let mut a = Replica::new();
    let mut b = Replica::new();
    for r in [&mut a, &mut b] {
        r.write(1, "SADD s m0 m1 m2 m3 m4 m5 m6 m7");
    }
    let popped_a = a.write(2, "SPOP s 3");
    let popped_b = b.write(2, "SPOP s 3");
    assert_eq!(
        popped_a, popped_b,
        "two replicas applying one entry draw alike"
    );
    let Reply::Array(popped) = &popped_a else {
        panic!("{popped_a:?}")
    };
    assert_eq!(popped.len(), 3);
    assert_eq!(a.read(3, "SCARD s"), Reply::Integer(5));
    assert_eq!(a.read(3, "SMEMBERS s"), b.read(3, "SMEMBERS s"));
    // Distinct members for a positive count, repeats allowed for a negative.
    let Reply::Array(distinct) = a.read(3, "SRANDMEMBER s 10") else {
        panic!()
    };
    assert_eq!(distinct.len(), 5);
    let Reply::Array(repeats) = a.read(3, "SRANDMEMBER s -12") else {
        panic!()
    };
    assert_eq!(repeats.len(), 12);
    assert!(err(&a.read(3, "SRANDMEMBER s -2000000")).contains("out of range"));
}

#[test]
fn a_semaphore_script_of_redis_semaphore_runs() {
    // redis-semaphore's acquire: drop expired holders, count, add.
    let acquire = "local key = KEYS[1] local limit = tonumber(ARGV[1]) \
        local identifier = ARGV[2] local lockTimeout = tonumber(ARGV[3]) \
        local now = tonumber(ARGV[4]) \
        redis.call('zremrangebyscore', key, '-inf', now - lockTimeout) \
        if redis.call('zcard', key) < limit then \
          redis.call('zadd', key, now, identifier) \
          redis.call('pexpire', key, lockTimeout) return 1 else return 0 end";
    let mut r = Replica::new();
    let call = |r: &mut Replica, who: &str, now: &str| {
        r.write_args(1, &["EVAL", acquire, "1", "sem", "2", who, "1000", now])
    };
    assert_eq!(call(&mut r, "a", "100"), Reply::Integer(1));
    assert_eq!(call(&mut r, "b", "200"), Reply::Integer(1));
    assert_eq!(call(&mut r, "c", "300"), Reply::Integer(0), "limit 2");
    // a's entry is older than the lock timeout at now = 1150: it goes.
    assert_eq!(call(&mut r, "c", "1150"), Reply::Integer(1));
    assert_eq!(r.read(2, "ZRANGE sem 0 -1"), bulks(&["b", "c"]));
}

#[test]
fn sorted_set_ranges_pops_and_algebra() {
    let mut r = Replica::new();
    r.write(1, "ZADD z 1 a 2 b 3 c 4 d");
    assert_eq!(r.write(2, "ZREMRANGEBYSCORE z -inf (2"), Reply::Integer(1));
    assert_eq!(r.write(2, "ZREMRANGEBYRANK z -1 -1"), Reply::Integer(1));
    assert_eq!(r.read(2, "ZREVRANGE z 0 -1"), bulks(&["c", "b"]));
    assert_eq!(
        r.read(2, "ZREVRANGEBYSCORE z +inf 0 LIMIT 0 1"),
        bulks(&["c"])
    );
    assert_eq!(
        r.write(3, "ZPOPMIN z"),
        Reply::Array(vec![bulk("b"), Reply::Double(2.0)])
    );
    r.write(3, "ZADD y 10 c 5 x");
    r.write(3, "SADD plain c");
    assert_eq!(
        r.write(4, "ZUNIONSTORE u 3 z y plain WEIGHTS 1 2 3"),
        Reply::Integer(2)
    );
    assert_eq!(
        r.read(5, "ZRANGE u 0 -1 WITHSCORES"),
        bulks(&["x", "10", "c", "26"])
    );
    assert_eq!(
        r.write(5, "ZINTERSTORE i 2 z y AGGREGATE MAX"),
        Reply::Integer(1)
    );
    assert_eq!(r.read(5, "ZSCORE i c"), Reply::Double(10.0));
    r.write(6, "SET str v");
    assert!(err(&r.write(6, "ZUNIONSTORE u 2 z str")).starts_with("WRONGTYPE"));
}
