//! The stored form of one key's value.
//!
//! Layout: `version:u8 type:u8 created:u64 modified:u64 expire_at:u64 body`.
//! `created` is the log index of the entry that wrote the current value (the
//! fencing token); `modified` is the index of the last change of any kind
//! (value or TTL), which optimistic checks and expiry entries compare.

use bytes::Bytes;
use lockstep_store::StoreError;

const RECORD_FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 26;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    String,
    Hash,
    List,
    Set,
    SortedSet,
    /// A native lock or semaphore (see `locks`).
    Lock,
}

impl ValueType {
    fn code(self) -> u8 {
        match self {
            ValueType::String => 0,
            ValueType::Hash => 1,
            ValueType::List => 2,
            ValueType::Set => 3,
            ValueType::SortedSet => 4,
            ValueType::Lock => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(ValueType::String),
            1 => Some(ValueType::Hash),
            2 => Some(ValueType::List),
            3 => Some(ValueType::Set),
            4 => Some(ValueType::SortedSet),
            5 => Some(ValueType::Lock),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Hash => "hash",
            ValueType::List => "list",
            ValueType::Set => "set",
            ValueType::SortedSet => "zset",
            ValueType::Lock => "lock",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub value_type: ValueType,
    pub created: u64,
    pub modified: u64,
    /// Absolute cluster time in ms; `None` means no expiry.
    pub expire_at: Option<u64>,
    pub body: Bytes,
}

impl Record {
    pub fn string(body: Bytes, index: u64, expire_at: Option<u64>) -> Self {
        Record {
            value_type: ValueType::String,
            created: index,
            modified: index,
            expire_at,
            body,
        }
    }

    pub fn is_live_at(&self, ct: u64) -> bool {
        self.expire_at.is_none_or(|at| at > ct)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        out.push(RECORD_FORMAT_V1);
        out.push(self.value_type.code());
        out.extend_from_slice(&self.created.to_be_bytes());
        out.extend_from_slice(&self.modified.to_be_bytes());
        out.extend_from_slice(&self.expire_at.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// The deadline of a stored record, reading its header only.
    pub fn deadline_of(data: &[u8]) -> Result<Option<u64>, StoreError> {
        if data.len() < HEADER_LEN || data[0] != RECORD_FORMAT_V1 {
            return Err(StoreError::corrupt("value record", "bad header"));
        }
        let at = u64::from_be_bytes(data[18..26].try_into().expect("8 bytes"));
        Ok((at != 0).then_some(at))
    }

    pub fn decode(data: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |detail: &str| StoreError::corrupt("value record", detail);
        if data.len() < HEADER_LEN {
            return Err(corrupt("shorter than its header"));
        }
        if data[0] != RECORD_FORMAT_V1 {
            return Err(corrupt("unknown format version"));
        }
        let value_type = ValueType::from_code(data[1]).ok_or_else(|| corrupt("unknown type"))?;
        let word = |at: usize| u64::from_be_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let expire_at = word(18);
        Ok(Record {
            value_type,
            created: word(2),
            modified: word(10),
            expire_at: (expire_at != 0).then_some(expire_at),
            body: Bytes::copy_from_slice(&data[HEADER_LEN..]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_truncation() {
        let record = Record {
            value_type: ValueType::String,
            created: 7,
            modified: 9,
            expire_at: Some(1234),
            body: Bytes::from_static(b"token"),
        };
        let data = record.encode();
        assert_eq!(Record::decode(&data).unwrap(), record);
        for cut in 0..HEADER_LEN {
            assert!(Record::decode(&data[..cut]).is_err());
        }
    }
}
