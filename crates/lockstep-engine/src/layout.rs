//! Where the engine keeps things in the replicated keyspace.
//!
//! Every kind of record has its own one-byte prefix so that scans over one
//! kind never meet another. Integers are big-endian so byte order is numeric
//! order: the value records are sorted by key hash.

/// `k hash:u64 key` -> value record. Values sit in key-hash order so a SCAN
/// cursor is a number that stays valid while keys come and go, with no
/// second index to keep in step on every write.
pub const VALUE: u8 = b'k';
// `e`: the expiry index of earlier versions, no longer written (deadlines
// are kept in memory, see `expiry`); `w` and `B`: blocked clients (see
// `collections::blocking`).
/// `d origin:u64 chunk:u64` -> bitmap of the origin's applied sequence
/// numbers in that chunk (see `requests`).
pub const APPLIED_CHUNK: u8 = b'd';
/// `p origin:u64` -> seq:u64: the origin's settled floor (see `requests`).
pub const SETTLED_FLOOR: u8 = b'p';
/// `S sha1-hex` -> script body: the replicated script cache.
pub const SCRIPT: u8 = b's';
/// `mct` -> cluster time of the last applied entry (engine metadata).
pub const META_CLUSTER_TIME: &[u8] = b"mct";

/// Bytes before the user's key in a value record's key.
pub const VALUE_KEY_HEADER: usize = 9;

pub fn value_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + VALUE_KEY_HEADER);
    out.push(VALUE);
    out.extend_from_slice(&key_hash(key).to_be_bytes());
    out.extend_from_slice(key);
    out
}

pub fn script_key(sha: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(sha.len() + 1);
    out.push(SCRIPT);
    out.extend_from_slice(sha.as_bytes());
    out
}

pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

pub fn applied_chunk_key(origin: u64, chunk: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.push(APPLIED_CHUNK);
    out.extend_from_slice(&origin.to_be_bytes());
    out.extend_from_slice(&chunk.to_be_bytes());
    out
}

/// The first key after every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

pub fn settled_floor_key(origin: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(SETTLED_FLOOR);
    out.extend_from_slice(&origin.to_be_bytes());
    out
}
