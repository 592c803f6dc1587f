//! Where the engine keeps things in the replicated keyspace.
//!
//! Every kind of record has its own one-byte prefix so that scans over one
//! kind never meet another. Integers are big-endian so byte order is numeric
//! order: the expiry index is sorted by deadline, the hash index by hash.

/// `K key` -> value record.
pub const VALUE: u8 = b'k';
/// `E expire_at:u64 key` -> empty: keys by deadline, for active expiry.
pub const EXPIRY: u8 = b'e';
/// `H hash:u64 key` -> empty: keys by hash, so a SCAN cursor is a number
/// that stays valid while keys come and go.
pub const SCAN_ORDER: u8 = b'h';
/// `D origin:u64 seq:u64` -> ct:u64: requests already applied.
pub const APPLIED_REQUEST: u8 = b'd';
/// `P origin:u64` -> seq:u64: where forgetting old request ids resumes, so
/// the scan never walks the deletions it already made.
pub const PRUNE_CURSOR: u8 = b'p';
/// `S sha1-hex` -> script body: the replicated script cache.
pub const SCRIPT: u8 = b's';
/// `mct` -> cluster time of the last applied entry (engine metadata).
pub const META_CLUSTER_TIME: &[u8] = b"mct";

pub fn value_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(VALUE);
    out.extend_from_slice(key);
    out
}

pub fn expiry_key(expire_at: u64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 9);
    out.push(EXPIRY);
    out.extend_from_slice(&expire_at.to_be_bytes());
    out.extend_from_slice(key);
    out
}

pub fn scan_order_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 9);
    out.push(SCAN_ORDER);
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

pub fn applied_request_key(origin: u64, seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.push(APPLIED_REQUEST);
    out.extend_from_slice(&origin.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
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

pub fn prune_cursor_key(origin: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(PRUNE_CURSOR);
    out.extend_from_slice(&origin.to_be_bytes());
    out
}
