//! The engine's command table: names, arity, access and key positions, as
//! Redis's COMMAND reports them.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Served on the linearizable read path, without a log entry.
    Read,
    /// Goes through the log.
    Write,
}

#[derive(Clone, Copy, Debug)]
pub struct CommandSpec {
    pub name: &'static str,
    /// Redis convention: positive is exact argc (name included), negative is a minimum.
    pub arity: i32,
    pub access: Access,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
}

impl CommandSpec {
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = self.arity as i64;
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    pub fn flags(&self) -> &'static [&'static str] {
        match self.access {
            Access::Read => &["readonly", "fast"],
            Access::Write => &["write", "denyoom"],
        }
    }
}

const fn spec(
    name: &'static str,
    arity: i32,
    access: Access,
    first_key: i32,
    last_key: i32,
    step: i32,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        access,
        first_key,
        last_key,
        step,
    }
}

use Access::{Read, Write};

pub static COMMANDS: &[CommandSpec] = &[
    spec("get", 2, Read, 1, 1, 1),
    spec("set", -3, Write, 1, 1, 1),
    spec("setnx", 3, Write, 1, 1, 1),
    spec("setex", 4, Write, 1, 1, 1),
    spec("psetex", 4, Write, 1, 1, 1),
    spec("getset", 3, Write, 1, 1, 1),
    spec("getdel", 2, Write, 1, 1, 1),
    spec("getex", -2, Write, 1, 1, 1),
    spec("mget", -2, Read, 1, -1, 1),
    spec("mset", -3, Write, 1, -1, 2),
    spec("msetnx", -3, Write, 1, -1, 2),
    spec("del", -2, Write, 1, -1, 1),
    spec("unlink", -2, Write, 1, -1, 1),
    spec("exists", -2, Read, 1, -1, 1),
    spec("type", 2, Read, 1, 1, 1),
    spec("expire", -3, Write, 1, 1, 1),
    spec("pexpire", -3, Write, 1, 1, 1),
    spec("expireat", -3, Write, 1, 1, 1),
    spec("pexpireat", -3, Write, 1, 1, 1),
    spec("ttl", 2, Read, 1, 1, 1),
    spec("pttl", 2, Read, 1, 1, 1),
    spec("expiretime", 2, Read, 1, 1, 1),
    spec("pexpiretime", 2, Read, 1, 1, 1),
    spec("persist", 2, Write, 1, 1, 1),
    spec("incr", 2, Write, 1, 1, 1),
    spec("incrby", 3, Write, 1, 1, 1),
    spec("decr", 2, Write, 1, 1, 1),
    spec("decrby", 3, Write, 1, 1, 1),
    spec("append", 3, Write, 1, 1, 1),
    spec("strlen", 2, Read, 1, 1, 1),
    spec("incrbyfloat", 3, Write, 1, 1, 1),
    spec("getrange", 4, Read, 1, 1, 1),
    spec("substr", 4, Read, 1, 1, 1),
    spec("setrange", 4, Write, 1, 1, 1),
    spec("getbit", 3, Read, 1, 1, 1),
    spec("setbit", 4, Write, 1, 1, 1),
    spec("bitcount", -2, Read, 1, 1, 1),
    spec("touch", -2, Read, 1, -1, 1),
    spec("rename", 3, Write, 1, 2, 1),
    spec("renamenx", 3, Write, 1, 2, 1),
    spec("copy", -3, Write, 1, 2, 1),
    spec("object", -2, Read, 2, 2, 1),
    spec("keys", 2, Read, 0, 0, 0),
    spec("scan", -2, Read, 0, 0, 0),
    spec("dbsize", 1, Read, 0, 0, 0),
    spec("flushall", -1, Write, 0, 0, 0),
    spec("flushdb", -1, Write, 0, 0, 0),
    spec("fence", 2, Read, 1, 1, 1),
    spec("debug", -2, Read, 0, 0, 0),
    spec("time", 1, Read, 0, 0, 0),
    spec("exec", -1, Write, 0, 0, 0),
    spec("publish", 3, Write, 0, 0, 0),
    spec("blpop", -3, Write, 1, -2, 1),
    spec("brpop", -3, Write, 1, -2, 1),
    spec("blmove", 6, Write, 1, 2, 1),
    spec("brpoplpush", 4, Write, 1, 2, 1),
    spec("block.wait", -4, Write, 0, 0, 0),
    spec("block.cancel", 2, Write, 0, 0, 0),
    spec("lock.acquire", -4, Write, 1, 1, 1),
    spec("lock.try", -4, Write, 1, 1, 1),
    spec("lock.release", 3, Write, 1, 1, 1),
    spec("lock.extend", 4, Write, 1, 1, 1),
    spec("lock.cancel", 3, Write, 1, 1, 1),
    spec("lock.info", 2, Read, 1, 1, 1),
    spec("spublish", 3, Write, 1, 1, 1),
    spec("hset", -4, Write, 1, 1, 1),
    spec("hmset", -4, Write, 1, 1, 1),
    spec("hsetnx", 4, Write, 1, 1, 1),
    spec("hget", 3, Read, 1, 1, 1),
    spec("hmget", -3, Read, 1, 1, 1),
    spec("hdel", -3, Write, 1, 1, 1),
    spec("hexists", 3, Read, 1, 1, 1),
    spec("hincrby", 4, Write, 1, 1, 1),
    spec("hgetall", 2, Read, 1, 1, 1),
    spec("hkeys", 2, Read, 1, 1, 1),
    spec("hvals", 2, Read, 1, 1, 1),
    spec("hlen", 2, Read, 1, 1, 1),
    spec("hincrbyfloat", 4, Write, 1, 1, 1),
    spec("hstrlen", 3, Read, 1, 1, 1),
    spec("lpush", -3, Write, 1, 1, 1),
    spec("rpush", -3, Write, 1, 1, 1),
    spec("lpushx", -3, Write, 1, 1, 1),
    spec("rpushx", -3, Write, 1, 1, 1),
    spec("lpop", -2, Write, 1, 1, 1),
    spec("rpop", -2, Write, 1, 1, 1),
    spec("llen", 2, Read, 1, 1, 1),
    spec("lindex", 3, Read, 1, 1, 1),
    spec("lrange", 4, Read, 1, 1, 1),
    spec("lrem", 4, Write, 1, 1, 1),
    spec("lset", 4, Write, 1, 1, 1),
    spec("ltrim", 4, Write, 1, 1, 1),
    spec("lmove", 5, Write, 1, 2, 1),
    spec("rpoplpush", 3, Write, 1, 2, 1),
    spec("lpos", -3, Read, 1, 1, 1),
    spec("linsert", 5, Write, 1, 1, 1),
    spec("sadd", -3, Write, 1, 1, 1),
    spec("srem", -3, Write, 1, 1, 1),
    spec("smembers", 2, Read, 1, 1, 1),
    spec("sismember", 3, Read, 1, 1, 1),
    spec("smismember", -3, Read, 1, 1, 1),
    spec("scard", 2, Read, 1, 1, 1),
    spec("spop", -2, Write, 1, 1, 1),
    spec("srandmember", -2, Read, 1, 1, 1),
    spec("smove", 4, Write, 1, 2, 1),
    spec("sinter", -2, Read, 1, -1, 1),
    spec("sunion", -2, Read, 1, -1, 1),
    spec("sdiff", -2, Read, 1, -1, 1),
    spec("sinterstore", -3, Write, 1, -1, 1),
    spec("sunionstore", -3, Write, 1, -1, 1),
    spec("sdiffstore", -3, Write, 1, -1, 1),
    spec("sintercard", -3, Read, 0, 0, 0),
    spec("zadd", -4, Write, 1, 1, 1),
    spec("zrem", -3, Write, 1, 1, 1),
    spec("zscore", 3, Read, 1, 1, 1),
    spec("zincrby", 4, Write, 1, 1, 1),
    spec("zcard", 2, Read, 1, 1, 1),
    spec("zrank", -3, Read, 1, 1, 1),
    spec("zrevrank", -3, Read, 1, 1, 1),
    spec("zrange", -4, Read, 1, 1, 1),
    spec("zrangebyscore", -4, Read, 1, 1, 1),
    spec("zcount", 4, Read, 1, 1, 1),
    spec("zmscore", -3, Read, 1, 1, 1),
    spec("zrevrange", -4, Read, 1, 1, 1),
    spec("zrevrangebyscore", -4, Read, 1, 1, 1),
    spec("zrangebylex", -4, Read, 1, 1, 1),
    spec("zrevrangebylex", -4, Read, 1, 1, 1),
    spec("zlexcount", 4, Read, 1, 1, 1),
    spec("zremrangebyscore", 4, Write, 1, 1, 1),
    spec("zremrangebyrank", 4, Write, 1, 1, 1),
    spec("zremrangebylex", 4, Write, 1, 1, 1),
    spec("zpopmin", -2, Write, 1, 1, 1),
    spec("zpopmax", -2, Write, 1, 1, 1),
    spec("zunionstore", -4, Write, 1, 1, 1),
    spec("zinterstore", -4, Write, 1, 1, 1),
    spec("zdiffstore", -4, Write, 1, 1, 1),
    spec("zunion", -3, Read, 0, 0, 0),
    spec("zinter", -3, Read, 0, 0, 0),
    spec("zdiff", -3, Read, 0, 0, 0),
    spec("watch", -2, Read, 1, -1, 1),
    spec("delifeq", 3, Write, 1, 1, 1),
    spec("delex", -2, Write, 1, 1, 1),
    spec("digest", 2, Read, 1, 1, 1),
    spec("pexpireifeq", 4, Write, 1, 1, 1),
    spec("eval", -3, Write, 0, 0, 0),
    spec("evalsha", -3, Write, 0, 0, 0),
    spec("eval_ro", -3, Read, 0, 0, 0),
    spec("evalsha_ro", -3, Read, 0, 0, 0),
    spec("script", -2, Write, 0, 0, 0),
];

pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    COMMANDS
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}
