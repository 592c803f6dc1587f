//! A single replica driven by (command, cluster time) sequences.
#![allow(dead_code)]

use bytes::Bytes;
use lockstep_engine::{Engine, LogEntry, Payload, Reply, RequestId};
use lockstep_store::{Applied, MemStore, NodeStore};

/// A replica over any store: memory by default, RocksDB where a test
/// counts what RocksDB does.
pub struct Replica<S = MemStore> {
    pub store: S,
    pub engine: Engine,
    pub index: u64,
    seq: u64,
}

pub fn argv(command: &str) -> Vec<Bytes> {
    command
        .split_whitespace()
        .map(|word| Bytes::copy_from_slice(word.as_bytes()))
        .collect()
}

impl Replica {
    pub fn new() -> Self {
        Replica::on(MemStore::in_memory())
    }
}

impl<S: NodeStore> Replica<S> {
    /// A fresh replica on an empty `store`.
    pub fn on(store: S) -> Self {
        Replica {
            store,
            engine: Engine::new(),
            index: 0,
            seq: 0,
        }
    }

    pub fn apply_entry(&mut self, entry: &LogEntry) -> Option<Reply> {
        self.apply_outcome(entry).reply
    }

    /// Applies a command and returns everything the entry did.
    pub fn apply_command(&mut self, ct: u64, command: &str) -> lockstep_engine::Applied {
        let entry = self.next_entry(ct, argv(command));
        self.apply_outcome(&entry)
    }

    /// The next command entry of this replica's client.
    fn next_entry(&mut self, ct: u64, command: Vec<Bytes>) -> LogEntry {
        self.seq += 1;
        LogEntry {
            request: RequestId {
                origin: 1,
                seq: self.seq,
            },
            // One request at a time: every earlier one is settled.
            settled_below: self.seq,
            ct,
            payload: Payload::Command(command),
        }
    }

    pub fn apply_outcome(&mut self, entry: &LogEntry) -> lockstep_engine::Applied {
        self.index += 1;
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

    /// Applies `command` as a log entry stamped with cluster time `ct`.
    pub fn write(&mut self, ct: u64, command: &str) -> Reply {
        self.write_argv(ct, argv(command))
    }

    /// Applies an argument vector (arguments may contain spaces).
    pub fn write_args(&mut self, ct: u64, args: &[&str]) -> Reply {
        self.write_argv(
            ct,
            args.iter()
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect(),
        )
    }

    pub fn read_args(&self, ct: u64, args: &[&str]) -> Reply {
        let args: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        self.engine
            .read(&self.store, self.index, ct, &args)
            .unwrap()
    }

    pub fn write_argv(&mut self, ct: u64, command: Vec<Bytes>) -> Reply {
        let entry = self.next_entry(ct, command);
        self.apply_entry(&entry).expect("commands get replies")
    }

    pub fn read(&self, ct: u64, command: &str) -> Reply {
        self.engine
            .read(&self.store, self.index, ct, &argv(command))
            .unwrap()
    }

    /// Applies a leader's sweep entry at `ct`; returns the keys it removed
    /// (value records gone from the store).
    pub fn expire_pass(&mut self, ct: u64) -> usize {
        self.sweep(ct).batch.ops().iter().filter(|op| {
            matches!(op, lockstep_store::StateOp::Delete(key) if key.first() == Some(&b'k'))
        }).count()
    }

    /// Applies a leader's sweep entry at `ct`.
    pub fn sweep(&mut self, ct: u64) -> lockstep_engine::Applied {
        self.apply_outcome(&LogEntry {
            request: RequestId { origin: 0, seq: 0 },
            settled_below: 0,
            ct,
            payload: Payload::Sweep,
        })
    }
}

pub fn int(reply: &Reply) -> i64 {
    match reply {
        Reply::Integer(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// The value of field `name` in a map reply.
pub fn field<'a>(reply: &'a Reply, name: &str) -> &'a Reply {
    let Reply::Map(fields) = reply else {
        panic!("expected a map, got {reply:?}")
    };
    &fields
        .iter()
        .find(|(k, _)| *k == bulk(name))
        .unwrap_or_else(|| panic!("no field {name} in {reply:?}"))
        .1
}

pub fn bulk(text: &str) -> Reply {
    Reply::bulk(Bytes::copy_from_slice(text.as_bytes()))
}

pub fn err(reply: &Reply) -> &str {
    match reply {
        Reply::Error(text) => text,
        other => panic!("expected an error, got {other:?}"),
    }
}
