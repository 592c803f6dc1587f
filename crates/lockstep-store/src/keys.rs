//! On-disk key layout. Integers are big-endian so byte order is numeric order.
//!
//! The data is split in four column families because each has its own life:
//! the log is appended and truncated from both ends, the raft state is a
//! handful of small records rewritten on every Ready, the keyspace is what a
//! snapshot carries, and the meta family records how far the keyspace got.

#[cfg(feature = "rocksdb")]
pub const CF_LOG: &str = "raft_log";
#[cfg(feature = "rocksdb")]
pub const CF_RAFT: &str = "raft_state";
#[cfg(feature = "rocksdb")]
pub const CF_STATE: &str = "keyspace";
#[cfg(feature = "rocksdb")]
pub const CF_META: &str = "meta";

pub const HARD_STATE_KEY: &[u8] = b"hard_state";
pub const CONF_STATE_KEY: &[u8] = b"conf_state";
/// Index and term of the last entry removed from the log by compaction or a snapshot.
pub const TRUNCATED_KEY: &[u8] = b"truncated";
pub const BOOT_EPOCH_KEY: &[u8] = b"boot_epoch";
pub const APPLIED_KEY: &[u8] = b"applied";
/// Present while a staged snapshot is being installed (its metadata): at
/// open, an interrupted install is done again from the staged file.
pub const INSTALLING_KEY: &[u8] = b"installing_snapshot";

pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub fn decode_u64(bytes: &[u8], what: &'static str) -> Result<u64, crate::StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| crate::StoreError::corrupt(what, format!("{} bytes, want 8", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}

pub fn encode_pair(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_be_bytes());
    out[8..].copy_from_slice(&b.to_be_bytes());
    out
}

pub fn decode_pair(bytes: &[u8], what: &'static str) -> Result<(u64, u64), crate::StoreError> {
    if bytes.len() != 16 {
        return Err(crate::StoreError::corrupt(
            what,
            format!("{} bytes, want 16", bytes.len()),
        ));
    }
    Ok((
        decode_u64(&bytes[..8], what)?,
        decode_u64(&bytes[8..], what)?,
    ))
}
