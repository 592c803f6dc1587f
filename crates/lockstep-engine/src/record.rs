//! The stored form of one key's value.
//!
//! Layout: `version:u8 type:u8 created:u64 modified:u64 expire_at:u64 body`
//! (version 1), or with `lease:u64` after `expire_at` (version 2, written
//! only for a key attached to a lease). `created` is the log index of the
//! entry that wrote the current value (the fencing token); `modified` is
//! the index of the last change of any kind (value or TTL), which
//! optimistic checks compare.

use bytes::Bytes;
use lockstep_store::StoreError;

const RECORD_FORMAT_V1: u8 = 1;
/// Version 2 adds the lease a key is attached to.
const RECORD_FORMAT_V2: u8 = 2;
const HEADER_LEN: usize = 26;
const HEADER_LEN_V2: usize = 34;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    String,
    Hash,
    List,
    Set,
    SortedSet,
    /// A native lock or semaphore (see `locks`).
    Lock,
    /// A leader election (see `election`).
    Election,
    /// A registered service and its instances (see `registry`).
    Service,
    /// A barrier or double barrier (see `barrier`).
    Barrier,
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
            ValueType::Election => 6,
            ValueType::Service => 7,
            ValueType::Barrier => 8,
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
            6 => Some(ValueType::Election),
            7 => Some(ValueType::Service),
            8 => Some(ValueType::Barrier),
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
            ValueType::Election => "election",
            ValueType::Service => "service",
            ValueType::Barrier => "barrier",
        }
    }

    /// Types whose records hold parked requests or lease attachments, so
    /// a command of another family that replaces or deletes one must end
    /// them (see `managed`).
    pub fn is_managed(self) -> bool {
        matches!(
            self,
            ValueType::Lock | ValueType::Election | ValueType::Service | ValueType::Barrier
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub value_type: ValueType,
    pub created: u64,
    pub modified: u64,
    /// Absolute cluster time in ms; `None` means no expiry.
    pub expire_at: Option<u64>,
    /// The lease the key is attached to (`SET ... LEASE id`): the key goes
    /// when the lease ends.
    pub lease: Option<u64>,
    pub body: Bytes,
}

impl Record {
    pub fn string(body: Bytes, index: u64, expire_at: Option<u64>) -> Self {
        Record {
            value_type: ValueType::String,
            created: index,
            modified: index,
            expire_at,
            lease: None,
            body,
        }
    }

    pub fn is_live_at(&self, ct: u64) -> bool {
        self.expire_at.is_none_or(|at| at > ct)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN_V2 + self.body.len());
        out.push(if self.lease.is_some() {
            RECORD_FORMAT_V2
        } else {
            RECORD_FORMAT_V1
        });
        out.push(self.value_type.code());
        out.extend_from_slice(&self.created.to_be_bytes());
        out.extend_from_slice(&self.modified.to_be_bytes());
        out.extend_from_slice(&self.expire_at.unwrap_or(0).to_be_bytes());
        if let Some(lease) = self.lease {
            out.extend_from_slice(&lease.to_be_bytes());
        }
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(data: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |detail: &str| StoreError::corrupt("value record", detail);
        let header_len = match data.first() {
            Some(&RECORD_FORMAT_V1) => HEADER_LEN,
            Some(&RECORD_FORMAT_V2) => HEADER_LEN_V2,
            Some(_) => return Err(corrupt("unknown format version")),
            None => return Err(corrupt("shorter than its header")),
        };
        if data.len() < header_len {
            return Err(corrupt("shorter than its header"));
        }
        let value_type = ValueType::from_code(data[1]).ok_or_else(|| corrupt("unknown type"))?;
        let word = |at: usize| u64::from_be_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let expire_at = word(18);
        Ok(Record {
            value_type,
            created: word(2),
            modified: word(10),
            expire_at: (expire_at != 0).then_some(expire_at),
            lease: (header_len == HEADER_LEN_V2)
                .then(|| word(26))
                .filter(|lease| *lease != 0),
            body: Bytes::copy_from_slice(&data[header_len..]),
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
            lease: None,
            body: Bytes::from_static(b"token"),
        };
        let data = record.encode();
        assert_eq!(Record::decode(&data).unwrap(), record);
        for cut in 0..HEADER_LEN {
            assert!(Record::decode(&data[..cut]).is_err());
        }
        let leased = Record {
            lease: Some(99),
            ..record
        };
        let data = leased.encode();
        assert_eq!(data[0], RECORD_FORMAT_V2);
        assert_eq!(Record::decode(&data).unwrap(), leased);
        for cut in 0..HEADER_LEN_V2 {
            assert!(Record::decode(&data[..cut]).is_err());
        }
    }
}
