//! What the fuzzers feed: each function takes arbitrary bytes and drives
//! one of lockstep's parsers or decoders the way a hostile peer or client
//! could. None may panic, hang or grow memory without bound; the cargo-fuzz
//! targets in `fuzz/` call these, and `tests/corpus.rs` replays the
//! committed corpus through them on every test run.
//!
//! This crate must not be linked into the server: it only exists for tests.

use bytes::{Bytes, BytesMut};
use lockstep_engine::{Engine, LogEntry, Payload, Reply, RequestId};
use lockstep_server::{Limits, RequestDecoder};
use lockstep_store::{Applied, MemStore, NodeStore, StateBatch, StoreError};
use tokio_util::codec::Decoder;

fn small_limits() -> Limits {
    Limits {
        max_bulk_bytes: 4096,
        max_args: 64,
        max_inline_bytes: 4096,
        max_query_buffer_bytes: 1 << 16,
        max_connections: 1,
    }
}

/// Client bytes through the RESP framer, as a connection reads them: in
/// chunks, until the framer wants more or refuses.
pub fn resp_frames(data: &[u8]) {
    let limits = small_limits();
    let mut decoder = RequestDecoder::new(limits.clone());
    let mut buffer = BytesMut::new();
    for chunk in data.chunks(7) {
        buffer.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(argv)) => {
                    assert!(argv.len() <= limits.max_args, "too many arguments passed");
                    assert!(argv.iter().all(|arg| arg.len() <= limits.max_bulk_bytes));
                    // What the server does next: look the command up.
                    let _ = lockstep_engine::parse(&argv);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buffer.len() <= limits.max_query_buffer_bytes + chunk.len());
    }
}

/// A replica applying and reading commands: lines of space-separated words.
struct Replica {
    store: MemStore,
    engine: Engine,
    index: u64,
}

impl Replica {
    fn new() -> Replica {
        Replica {
            store: MemStore::in_memory(),
            engine: Engine::new(),
            index: 0,
        }
    }

    /// Applies a command; storage errors (a corrupt record) come back.
    fn try_write(&mut self, argv: Vec<Bytes>) -> Result<Reply, StoreError> {
        self.index += 1;
        let entry = LogEntry {
            request: RequestId {
                origin: 1,
                seq: self.index,
            },
            settled_below: 0,
            ct: 1_000 + self.index * 10,
            payload: Payload::Command(argv),
        };
        let outcome = self
            .engine
            .apply(&self.store, self.index, &entry.encode())?;
        self.store.apply(
            &outcome.batch,
            Applied {
                index: self.index,
                term: 1,
            },
        )?;
        Ok(outcome.reply.unwrap_or(Reply::Nil))
    }

    /// Writes `batch` as the next applied index, bypassing the engine
    /// (a planted record) or after it (a sweep).
    fn commit(&mut self, batch: &StateBatch) {
        self.index += 1;
        self.store
            .apply(
                batch,
                Applied {
                    index: self.index,
                    term: 1,
                },
            )
            .expect("memory storage does not fail");
    }

    fn try_read(&self, argv: &[Bytes]) -> Result<Reply, StoreError> {
        self.engine
            .read(&self.store, self.index, 1_000 + self.index * 10, argv)
    }

    /// Applies a command on a store the engine alone wrote: any storage
    /// error is the engine misreading its own records, a bug.
    fn write(&mut self, argv: Vec<Bytes>) -> Reply {
        self.try_write(argv)
            .expect("the engine reads back what it wrote")
    }

    fn read(&self, argv: &[Bytes]) -> Reply {
        self.try_read(argv)
            .expect("the engine reads back what it wrote")
    }
}

fn words(line: &[u8]) -> Vec<Bytes> {
    line.split(|&byte| byte == b' ')
        .filter(|word| !word.is_empty())
        .map(Bytes::copy_from_slice)
        .collect()
}

/// Commands (one per line) applied through the engine, each also tried on
/// the read path, on one replica.
pub fn commands(data: &[u8]) {
    let mut replica = Replica::new();
    for line in data.split(|&byte| byte == b'\n').take(64) {
        let argv = words(line);
        if argv.is_empty() {
            continue;
        }
        let _ = replica.read(&argv);
        let _ = replica.write(argv);
    }
}

/// A script body run by EVAL: whatever it does, it ends (instruction
/// budget, memory cap) with a reply or a Redis-style error.
pub fn scripts(data: &[u8]) {
    let mut replica = Replica::new();
    replica.write(words(b"SET k v"));
    let reply = replica.write(vec![
        Bytes::from_static(b"EVAL"),
        Bytes::copy_from_slice(data),
        Bytes::from_static(b"1"),
        Bytes::from_static(b"k"),
        Bytes::from_static(b"arg"),
    ]);
    if let Reply::Error(message) = reply {
        assert!(!message.is_empty());
    }
}

/// Bytes a peer could send, through the peer frame decoder; a forwarded
/// proposal's body then goes into a log entry, as a leader would propose
/// it, and through the engine.
pub fn peer_frames(data: &[u8]) {
    let Ok(Some(body)) = lockstep_raft::decode_peer_frame(Bytes::copy_from_slice(data)) else {
        return;
    };
    let mut replica = Replica::new();
    let request = RequestId { origin: 2, seq: 1 };
    let mut entry = lockstep_engine::encode_header(true, request, 0, 1_000);
    entry.extend_from_slice(&body);
    let _ = replica.engine.apply(&replica.store, 1, &entry);
}

/// Arbitrary bytes stored as a key's value record, then every command that
/// reads or rewrites a value of some type: corruption must give an error
/// (on which a node stops), never a panic or a wrong answer.
pub fn stored_records(data: &[u8]) {
    let mut replica = Replica::new();
    replica.write(words(b"SET k v"));
    let mut batch = StateBatch::default();
    batch.put(lockstep_engine::value_record_key(b"k"), data.to_vec());
    replica.commit(&batch);
    // A node starting on this keyspace reads every record's deadline.
    let _ = Engine::open(&replica.store);
    for command in [
        "GET k",
        "TYPE k",
        "TTL k",
        "FENCE k",
        "STRLEN k",
        "HGETALL k",
        "LRANGE k 0 -1",
        "SMEMBERS k",
        "ZRANGE k 0 -1 WITHSCORES",
        "LOCK.INFO k",
        "DIGEST k",
        "SCAN 0",
        "DEBUG DIGEST",
    ] {
        let _ = replica.try_read(&words(command.as_bytes()));
    }
    for command in [
        "APPEND k x",
        "HSET k f v",
        "RPUSH k x",
        "SADD k x",
        "ZADD k 1 x",
        "LOCK.TRY k me 1000",
        "INCR k",
        "EXPIRE k 10",
        "OBJECT ENCODING k",
        "RENAME k k2",
        "COPY k2 k3",
        "SETRANGE k3 2 x",
        "ZPOPMIN k3",
        "SPOP k3",
        "DEL k",
    ] {
        let _ = replica.try_write(words(command.as_bytes()));
    }
}

/// Namespace commands (one per line, `ZNODE.` added when missing) on a
/// small tree: every parse path of ZNODE.* and ZNODE.MULTI, and the
/// namespace's own bookkeeping (children counts, sequence counters,
/// containers, TTL nodes, ephemerals) checked by reading it back.
pub fn znode_commands(data: &[u8]) {
    let mut replica = Replica::new();
    for setup in [
        "LEASE.GRANT 100000",
        "ZNODE.CREATE /a x",
        "ZNODE.CREATE /a/b y",
        "ZNODE.CREATE /c x CONTAINER",
        "ZNODE.CREATE /c/d x",
        "ZNODE.CREATE /t x TTL 50",
        "ZNODE.CREATE /e x EPHEMERAL 1",
    ] {
        replica.write(words(setup.as_bytes()));
    }
    for line in data.split(|&byte| byte == b'\n').take(64) {
        let mut argv = words(line);
        let Some(first) = argv.first() else {
            continue;
        };
        if !first.to_ascii_lowercase().starts_with(b"znode.") {
            let mut named = b"ZNODE.".to_vec();
            named.extend_from_slice(first);
            argv[0] = Bytes::from(named);
        }
        let _ = replica.read(&argv);
        let _ = replica.write(argv);
    }
    // Sweeps end TTL nodes; the tree must still read back.
    let sweep = LogEntry {
        request: RequestId { origin: 0, seq: 0 },
        settled_below: 0,
        ct: 1_000_000,
        payload: Payload::Sweep,
    };
    let outcome = replica
        .engine
        .apply(&replica.store, replica.index + 1, &sweep.encode())
        .expect("the engine reads back what it wrote");
    replica.commit(&outcome.batch);
    for path in ["/", "/a", "/c", "/t", "/e"] {
        let _ = replica.read(&words(format!("ZNODE.CHILDREN {path} STAT").as_bytes()));
    }
}

/// Arbitrary bytes stored as a znode's record and as a change record,
/// then every command that reads or rewrites them: corruption must give
/// an error, never a panic.
pub fn stored_znodes(data: &[u8]) {
    let mut replica = Replica::new();
    replica.write(words(b"ZNODE.CREATE /a x"));
    replica.write(words(b"ZNODE.CREATE /a/b x"));
    let mut batch = StateBatch::default();
    batch.put(lockstep_engine::znode_record_key("/a"), data.to_vec());
    batch.put(lockstep_engine::change_record_key(1, 0), data.to_vec());
    replica.commit(&batch);
    let _ = Engine::open(&replica.store);
    for command in [
        "ZNODE.GET /a",
        "ZNODE.STAT /a",
        "ZNODE.CHILDREN / STAT",
        "ZNODE.CHILDREN /a STAT",
        "CHANGES.READ * FROM 0 WITHVALUES",
        "CHANGES.INFO",
    ] {
        let _ = replica.try_read(&words(command.as_bytes()));
    }
    for command in [
        "ZNODE.SET /a y",
        "ZNODE.CREATE /a/c x SEQUENTIAL",
        "ZNODE.DELETE /a/b",
        "ZNODE.MULTI CHECK /a VERSION 1 SET /a z",
        "ZNODE.DELETE /a",
    ] {
        let _ = replica.try_write(words(command.as_bytes()));
    }
}
