//! Lua scripting at the engine: Redis's semantics, determinism and limits.

mod common;

use bytes::Bytes;
use common::{bulk, err, Replica};
use lockstep_engine::{sha1_hex, Reply};
use lockstep_store::StateRead;

const RELEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

#[test]
fn compare_and_delete_release_script() {
    let mut r = Replica::new();
    r.write(1, "SET lock:a tok-1 NX PX 30000");
    assert_eq!(
        r.write_args(2, &["EVAL", RELEASE, "1", "lock:a", "other"]),
        Reply::Integer(0)
    );
    assert_eq!(r.read(3, "GET lock:a"), bulk("tok-1"));
    assert_eq!(
        r.write_args(4, &["EVAL", RELEASE, "1", "lock:a", "tok-1"]),
        Reply::Integer(1)
    );
    assert_eq!(r.read(5, "GET lock:a"), Reply::Nil);
}

#[test]
fn evalsha_uses_the_replicated_cache() {
    let mut r = Replica::new();
    let sha = sha1_hex(RELEASE.as_bytes());
    let missing = r.write_args(1, &["EVALSHA", &sha, "1", "k", "v"]);
    assert_eq!(
        err(&missing),
        "NOSCRIPT No matching script. Please use EVAL."
    );
    assert_eq!(r.write_args(2, &["SCRIPT", "LOAD", RELEASE]), bulk(&sha));
    assert_eq!(
        r.read_args(3, &["SCRIPT", "EXISTS", &sha, "0000"]),
        Reply::Array(vec![Reply::Integer(1), Reply::Integer(0)])
    );
    r.write(4, "SET k v");
    assert_eq!(
        r.write_args(5, &["EVALSHA", &sha.to_uppercase(), "1", "k", "v"]),
        Reply::Integer(1)
    );
    // EVAL caches too, as Redis does.
    let other = "return 7";
    r.write_args(6, &["EVAL", other, "0"]);
    let other_sha = sha1_hex(other.as_bytes());
    assert_eq!(
        r.write_args(7, &["EVALSHA", &other_sha, "0"]),
        Reply::Integer(7)
    );
    assert_eq!(r.write(8, "SCRIPT FLUSH"), Reply::ok());
    assert!(err(&r.write_args(9, &["EVALSHA", &other_sha, "0"])).starts_with("NOSCRIPT"));
    // FLUSHALL leaves scripts alone, as in Redis.
    r.write_args(10, &["SCRIPT", "LOAD", other]);
    r.write(11, "FLUSHALL");
    assert_eq!(
        r.write_args(12, &["EVALSHA", &other_sha, "0"]),
        Reply::Integer(7)
    );
}

#[test]
fn lua_to_resp_conversions() {
    let mut r = Replica::new();
    let mut eval = |script: &str| r.write_args(1, &["EVAL", script, "0"]);
    assert_eq!(eval("return 3.99"), Reply::Integer(3));
    assert_eq!(eval("return -3.99"), Reply::Integer(-3));
    assert_eq!(eval("return true"), Reply::Integer(1));
    assert_eq!(eval("return false"), Reply::Nil);
    assert_eq!(eval("return nil"), Reply::Nil);
    assert_eq!(eval("return 'x'"), bulk("x"));
    assert_eq!(
        eval("return {1, 'two', {3}, nil, 5}"),
        Reply::Array(vec![
            Reply::Integer(1),
            bulk("two"),
            Reply::Array(vec![Reply::Integer(3)])
        ])
    );
    assert_eq!(eval("return {ok='FINE'}"), Reply::Status("FINE".into()));
    assert_eq!(
        eval("return redis.status_reply('FINE')"),
        Reply::Status("FINE".into())
    );
    assert_eq!(eval("return {err='MYERR bad'}"), Reply::error("MYERR bad"));
    assert_eq!(
        eval("return redis.error_reply('MYERR bad')"),
        Reply::error("MYERR bad")
    );
    assert_eq!(
        eval("return redis.sha1hex('')"),
        bulk("da39a3ee5e6b4b0d3255bfef95601890afd80709")
    );
    assert_eq!(
        eval("return cjson.encode({a={1,2}})"),
        bulk("{\"a\":[1,2]}")
    );
    assert_eq!(eval("return cjson.decode('[1,2,3]')[2]"), Reply::Integer(2));
    assert_eq!(eval("return bit.band(0xff, 0x0f)"), Reply::Integer(15));
    assert_eq!(eval("return bit.tohex(255, 4)"), bulk("00ff"));
    assert_eq!(eval("return string.format('%d-%s', 5, 'x')"), bulk("5-x"));
    assert_eq!(eval("return tostring({}):sub(1, 5)"), bulk("table"));
}

#[test]
fn resp_to_lua_conversions() {
    let mut r = Replica::new();
    r.write(1, "SET s hello");
    let script = "return {type(redis.call('get','s')), tostring(redis.call('get','missing')), \
                  redis.call('set','x','1').ok, redis.call('incr','x'), \
                  type(redis.pcall('incr','s')), redis.pcall('incr','s').err}";
    assert_eq!(
        r.write_args(2, &["EVAL", script, "0"]),
        Reply::Array(vec![
            bulk("string"),
            bulk("false"),
            bulk("OK"),
            Reply::Integer(2),
            bulk("table"),
            bulk("ERR value is not an integer or out of range"),
        ])
    );
}

#[test]
fn script_errors_look_like_redis() {
    let mut r = Replica::new();
    r.write(1, "SET s hello");
    let script = "local n = redis.call('incr', 's')\nreturn n";
    let failed = r.write_args(2, &["EVAL", script, "0"]);
    let sha = sha1_hex(script.as_bytes());
    assert_eq!(
        err(&failed),
        format!("ERR value is not an integer or out of range script: {sha}, on @user_script:1.")
    );
    let compile = r.write_args(3, &["EVAL", "return +", "0"]);
    assert!(
        err(&compile).starts_with("ERR Error compiling script (new function): user_script:1:"),
        "{compile:?}"
    );
    let global = r.write_args(4, &["EVAL", "return undefined_thing", "0"]);
    assert!(
        err(&global)
            .contains("Script attempted to access nonexistent global variable 'undefined_thing'"),
        "{global:?}"
    );
    let assign = r.write_args(5, &["EVAL", "x = 1", "0"]);
    assert!(
        err(&assign).contains("Attempt to modify a readonly table"),
        "{assign:?}"
    );
    let unknown = r.write_args(6, &["EVAL", "return redis.call('nosuch')", "0"]);
    assert!(err(&unknown).starts_with("ERR Unknown Redis command called from script"));
    let arity = r.write_args(7, &["EVAL", "return redis.call('get')", "0"]);
    assert!(err(&arity).starts_with("ERR Wrong number of args calling Redis command from script"));
    let nested = r.write_args(
        8,
        &["EVAL", "return redis.call('eval', 'return 1', 0)", "0"],
    );
    assert!(err(&nested).starts_with("ERR This Redis command is not allowed from script"));
    let bad_arg = r.write_args(9, &["EVAL", "return redis.call('get', {})", "0"]);
    assert!(err(&bad_arg)
        .starts_with("ERR Lua redis lib command arguments must be strings or integers"));
    assert_eq!(
        err(&r.write_args(10, &["EVAL", "return 1", "-1"])),
        "ERR Number of keys can't be negative"
    );
    assert_eq!(
        err(&r.write_args(11, &["EVAL", "return 1", "2", "a"])),
        "ERR Number of keys can't be greater than number of args"
    );
    assert_eq!(
        err(&r.write_args(12, &["EVAL", "return 1", "x"])),
        "ERR value is not an integer or out of range"
    );
}

#[test]
fn the_sandbox_has_no_os_io_or_loading() {
    let mut r = Replica::new();
    for script in [
        "return os.time()",
        "return io.open('/etc/passwd')",
        "return loadstring('return 1')()",
        "return dofile('/etc/passwd')",
        "return require('os')",
        "return string.dump(function() end)",
        "return getfenv(0)",
    ] {
        let reply = r.write_args(1, &["EVAL", script, "0"]);
        assert!(reply.is_error(), "{script} gave {reply:?}");
    }
    // Library tables are read-only and nothing leaks into the next run.
    assert!(r
        .write_args(2, &["EVAL", "string.len = nil", "0"])
        .is_error());
    r.write_args(3, &["EVAL", "rawset(string, 'leak', 1) return 1", "0"]);
    assert_eq!(
        r.write_args(4, &["EVAL", "return string.leak", "0"]),
        Reply::Nil
    );
    assert_eq!(
        r.write_args(5, &["EVAL", "return string.len('abc')", "0"]),
        Reply::Integer(3)
    );
}

#[test]
fn time_and_randomness_are_deterministic() {
    let mut r = Replica::new();
    let now = r.write_args(
        1_700_000_123_456,
        &["EVAL", "return redis.call('TIME')", "0"],
    );
    assert_eq!(now, Reply::Array(vec![bulk("1700000123"), bulk("456000")]));
    let script = "return {math.random(1000000), math.random(1000000)}";
    let first = r.write_args(2, &["EVAL", script, "0"]);
    let second = r.write_args(3, &["EVAL", script, "0"]);
    assert_eq!(first, second, "every run starts from the same seed");
    let mut other = Replica::new();
    assert_eq!(other.write_args(9, &["EVAL", script, "0"]), first);
}

#[test]
fn runaway_scripts_stop_alike_and_have_no_effect() {
    let mut r = Replica::new();
    let looping = "redis.call('set', 'partial', '1') while true do end";
    let reply = r.write_args(1, &["EVAL", looping, "0"]);
    assert_eq!(
        err(&reply),
        "ERR Script exceeded the instruction limit of every node"
    );
    assert_eq!(r.read(2, "EXISTS partial"), Reply::Integer(0));
    // pcall cannot swallow the abort.
    let sneaky = "while true do pcall(function() while true do end end) end";
    assert!(err(&r.write_args(3, &["EVAL", sneaky, "0"])).contains("instruction limit"));
    let hungry = "local t = {} for i = 1, 1e9 do t[i] = {i, i + 1, i + 2, i + 3} end";
    assert_eq!(
        err(&r.write_args(4, &["EVAL", hungry, "0"])),
        "ERR Script exceeded the memory limit of every node"
    );
    let huge = "return string.rep('x', 1e9)";
    assert!(err(&r.write_args(5, &["EVAL", huge, "0"])).contains("memory limit"));
    // The node goes on serving scripts.
    assert_eq!(
        r.write_args(6, &["EVAL", "return 1", "0"]),
        Reply::Integer(1)
    );
}

#[test]
fn read_only_scripts_refuse_writes() {
    let mut r = Replica::new();
    r.write(1, "SET k v");
    assert_eq!(
        r.read_args(
            2,
            &["EVAL_RO", "return redis.call('get', KEYS[1])", "1", "k"]
        ),
        bulk("v")
    );
    let write = r.read_args(3, &["EVAL_RO", "return redis.call('set', 'k', 'w')", "0"]);
    assert!(err(&write).starts_with("ERR Write commands are not allowed from read-only scripts."));
    let sha = sha1_hex(b"return 5");
    r.write_args(4, &["SCRIPT", "LOAD", "return 5"]);
    assert_eq!(
        r.read_args(5, &["EVALSHA_RO", &sha, "0"]),
        Reply::Integer(5)
    );
    // The script cache lives in the keyspace, not as user keys.
    assert_eq!(r.read(6, "DBSIZE"), Reply::Integer(1));
    let mut keys = 0;
    r.store
        .scan(b"k", b"l", &mut |_, _| {
            keys += 1;
            true
        })
        .unwrap();
    assert_eq!(keys, 1);
    let _ = Bytes::new();
}
