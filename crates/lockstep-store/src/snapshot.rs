//! Snapshot payload: the whole keyspace as length-prefixed pairs.

use crate::StoreError;

const SNAPSHOT_FORMAT_V1: u8 = 1;

/// Keyspace contents as (key, value) pairs in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

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
    fn rejects_truncated_payload() {
        let data = encode_snapshot_data(vec![(b"key".to_vec(), b"value".to_vec())].into_iter());
        for cut in 2..data.len() {
            assert!(decode_snapshot_data(&data[..cut]).is_err(), "cut at {cut}");
        }
    }
}
