//! Snapshot payload: the whole keyspace as length-prefixed pairs.
//!
//! The data of a raft snapshot message starts with a kind byte:
//! - [`SNAPSHOT_INLINE`]: the payload itself (`1`, then pairs as
//!   `klen:u32 key vlen:u32 value`), for small in-memory stores;
//! - [`SNAPSHOT_STREAMED`]: a ticket for a payload the sender streams on
//!   request (the replication core's format follows the byte);
//! - [`SNAPSHOT_STAGED`]: the payload was received into this store's
//!   staging file ([`crate::NodeStore::staging_path`]); only ever made
//!   locally, never accepted from a peer.

use std::io::Read;

use crate::StoreError;

const SNAPSHOT_FORMAT_V1: u8 = 1;
pub const SNAPSHOT_INLINE: u8 = SNAPSHOT_FORMAT_V1;
pub const SNAPSHOT_STREAMED: u8 = 2;
pub const SNAPSHOT_STAGED: u8 = 3;
/// Largest key or value a payload may hold (a length beyond it is corruption).
const MAX_ITEM_BYTES: usize = 1 << 30;

/// One keyspace pair: key, value.
pub type Pair = (Vec<u8>, Vec<u8>);
/// Keyspace contents as (key, value) pairs in key order.
pub type Pairs = Vec<Pair>;

pub fn encode_snapshot_data(pairs: impl Iterator<Item = (Vec<u8>, Vec<u8>)>) -> Vec<u8> {
    let mut writer = SnapshotWriter::default();
    for (key, value) in pairs {
        writer.push(&key, &value);
    }
    writer.finish()
}

/// Encodes pairs as they are visited, without gathering them first (one
/// copy of the keyspace in memory, not two).
pub struct SnapshotWriter {
    out: Vec<u8>,
}

impl Default for SnapshotWriter {
    fn default() -> Self {
        SnapshotWriter {
            out: vec![SNAPSHOT_FORMAT_V1],
        }
    }
}

impl SnapshotWriter {
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        self.out
            .extend_from_slice(&(key.len() as u32).to_be_bytes());
        self.out.extend_from_slice(key);
        self.out
            .extend_from_slice(&(value.len() as u32).to_be_bytes());
        self.out.extend_from_slice(value);
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }

    /// Bytes encoded and not yet taken.
    pub fn buffered(&self) -> usize {
        self.out.len()
    }

    /// Takes the bytes encoded so far (a streamed payload is the
    /// concatenation of what is taken, then `finish`).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

/// Decodes a payload from a reader, one pair at a time (a staged file of
/// any size in bounded memory).
pub struct SnapshotReader<R> {
    input: R,
}

impl<R: Read> SnapshotReader<R> {
    pub fn new(mut input: R) -> Result<Self, StoreError> {
        let mut version = [0u8; 1];
        read_exact(&mut input, &mut version, "format byte")?;
        if version[0] != SNAPSHOT_FORMAT_V1 {
            return Err(StoreError::corrupt(
                "snapshot",
                format!("unknown format {}", version[0]),
            ));
        }
        Ok(SnapshotReader { input })
    }

    /// The next pair, or None at the end of the payload.
    pub fn next_pair(&mut self) -> Result<Option<Pair>, StoreError> {
        let mut len = [0u8; 4];
        let mut first = [0u8; 1];
        let read = self
            .input
            .read(&mut first)
            .map_err(|err| StoreError::corrupt("snapshot", err.to_string()))?;
        if read == 0 {
            return Ok(None);
        }
        len[0] = first[0];
        read_exact(&mut self.input, &mut len[1..], "key length")?;
        let key = self.item(u32::from_be_bytes(len) as usize)?;
        read_exact(&mut self.input, &mut len, "value length")?;
        let value = self.item(u32::from_be_bytes(len) as usize)?;
        Ok(Some((key, value)))
    }

    fn item(&mut self, len: usize) -> Result<Vec<u8>, StoreError> {
        if len > MAX_ITEM_BYTES {
            return Err(StoreError::corrupt(
                "snapshot",
                format!("item of {len} bytes"),
            ));
        }
        let mut item = vec![0u8; len];
        read_exact(&mut self.input, &mut item, "body")?;
        Ok(item)
    }
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), StoreError> {
    input
        .read_exact(buf)
        .map_err(|err| StoreError::corrupt("snapshot", format!("truncated {what}: {err}")))
}

pub fn decode_snapshot_data(data: &[u8]) -> Result<Pairs, StoreError> {
    let Some((&version, mut rest)) = data.split_first() else {
        return Ok(Vec::new());
    };
    if version != SNAPSHOT_FORMAT_V1 {
        return Err(StoreError::corrupt(
            "snapshot",
            format!("unknown format {version}"),
        ));
    }
    let mut pairs = Vec::new();
    let take = |rest: &mut &[u8]| -> Result<Vec<u8>, StoreError> {
        if rest.len() < 4 {
            return Err(StoreError::corrupt("snapshot", "truncated length"));
        }
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if rest.len() < 4 + len {
            return Err(StoreError::corrupt("snapshot", "truncated body"));
        }
        let item = rest[4..4 + len].to_vec();
        *rest = &rest[4 + len..];
        Ok(item)
    };
    while !rest.is_empty() {
        let key = take(&mut rest)?;
        let value = take(&mut rest)?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_pairs() {
        let pairs = vec![(b"a".to_vec(), b"1".to_vec()), (b"".to_vec(), vec![0; 300])];
        let data = encode_snapshot_data(pairs.clone().into_iter());
        assert_eq!(decode_snapshot_data(&data).unwrap(), pairs);
    }

    #[test]
    fn a_payload_taken_in_pieces_reads_back_pair_by_pair() {
        let pairs: Pairs = (0..1000u32)
            .map(|n| (n.to_be_bytes().to_vec(), vec![n as u8; (n % 70) as usize]))
            .collect();
        let mut writer = SnapshotWriter::default();
        let mut joined = Vec::new();
        for (key, value) in &pairs {
            writer.push(key, value);
            if writer.buffered() > 500 {
                joined.extend(writer.take());
            }
        }
        joined.extend(writer.finish());
        let mut reader = SnapshotReader::new(&joined[..]).unwrap();
        let mut read = Vec::new();
        while let Some(pair) = reader.next_pair().unwrap() {
            read.push(pair);
        }
        assert_eq!(read, pairs);
        // Inside the format byte, a length, a key and the last value.
        for cut in [0, 3, 7, joined.len() - 1] {
            let outcome = SnapshotReader::new(&joined[..cut]).and_then(|mut reader| {
                while reader.next_pair()?.is_some() {}
                Ok(())
            });
            assert!(outcome.is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_truncated_payload() {
        let data = encode_snapshot_data(vec![(b"key".to_vec(), b"value".to_vec())].into_iter());
        for cut in 2..data.len() {
            assert!(decode_snapshot_data(&data[..cut]).is_err(), "cut at {cut}");
        }
    }
}
