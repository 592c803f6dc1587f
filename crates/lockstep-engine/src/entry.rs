//! The log entry: what one raft entry carries, in a versioned binary format.
//!
//! Layout (integers big-endian):
//! `version:u8 kind:u8 origin:u64 seq:u64 settled_below:u64 ct:u64 body`
//! (version 1 had no `settled_below`), where body is
//! - `Command`: `argc:u32 (len:u32 bytes)*`
//! - `Expire`: `n:u32 (len:u32 key modified:u64)*` (no longer proposed;
//!   kept so old logs replay)
//! - `Sweep`: empty
//!
//! A new kind or field gets a new version; old versions stay decodable so an
//! old log replays after an upgrade.

use bytes::Bytes;
use thiserror::Error;

const ENTRY_FORMAT_V1: u8 = 1;
const ENTRY_FORMAT_V2: u8 = 2;
const KIND_COMMAND: u8 = 1;
const KIND_EXPIRE: u8 = 2;
const KIND_SWEEP: u8 = 3;

/// Who proposed an entry, so its reply reaches the waiting client exactly
/// once and a retried proposal is applied at most once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    /// Node that took the client's command; 0 for entries the leader makes itself.
    pub origin: u64,
    /// Per-origin sequence number.
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpireCandidate {
    pub key: Bytes,
    /// The key's modification index when it was found expired; the expiry
    /// applies only if the key was not modified since.
    pub modified: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A client command, as its argument vector.
    Command(Vec<Bytes>),
    /// Leader-made, older logs only: delete the listed keys found expired;
    /// also advances cluster time.
    Expire(Vec<ExpireCandidate>),
    /// Leader-made: advances cluster time and ends what is due by then
    /// (expired keys, lock holders and waits), in deadline order, a
    /// bounded number per entry. Every replica finds the same due items in
    /// its own expiry index, so the entry names none.
    Sweep,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub request: RequestId,
    /// The origin will never propose again any sequence number below this:
    /// each was answered, abandoned at its deadline, or is parked. Such a
    /// request arriving again is a duplicate or abandoned, and is dropped;
    /// so the engine remembers applied requests only from here up.
    pub settled_below: u64,
    /// Cluster time in milliseconds, stamped by the leader.
    pub ct: u64,
    pub payload: Payload,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("entry truncated")]
    Truncated,
    #[error("unknown entry format version {0}")]
    Version(u8),
    #[error("unknown entry kind {0}")]
    Kind(u8),
    #[error("trailing bytes after entry")]
    Trailing,
}

/// Encodes the body of a command proposal (everything but the header the
/// leader stamps), so a follower can forward it unchanged.
pub fn encode_command(argv: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + argv.iter().map(|a| a.len() + 4).sum::<usize>());
    out.extend_from_slice(&(argv.len() as u32).to_be_bytes());
    for arg in argv {
        out.extend_from_slice(&(arg.len() as u32).to_be_bytes());
        out.extend_from_slice(arg);
    }
    out
}

/// The header of a command entry (`kind_is_command`) or a leader-made
/// sweep.
pub fn encode_header(
    kind_is_command: bool,
    request: RequestId,
    settled_below: u64,
    ct: u64,
) -> Vec<u8> {
    encode_header_of_kind(
        if kind_is_command {
            KIND_COMMAND
        } else {
            KIND_SWEEP
        },
        request,
        settled_below,
        ct,
    )
}

fn encode_header_of_kind(kind: u8, request: RequestId, settled_below: u64, ct: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(34);
    out.push(ENTRY_FORMAT_V2);
    out.push(kind);
    out.extend_from_slice(&request.origin.to_be_bytes());
    out.extend_from_slice(&request.seq.to_be_bytes());
    out.extend_from_slice(&settled_below.to_be_bytes());
    out.extend_from_slice(&ct.to_be_bytes());
    out
}

impl LogEntry {
    pub fn encode(&self) -> Vec<u8> {
        match &self.payload {
            Payload::Command(argv) => {
                let mut out = encode_header(true, self.request, self.settled_below, self.ct);
                out.extend_from_slice(&encode_command(argv));
                out
            }
            Payload::Expire(candidates) => {
                let mut out =
                    encode_header_of_kind(KIND_EXPIRE, self.request, self.settled_below, self.ct);
                out.extend_from_slice(&(candidates.len() as u32).to_be_bytes());
                for candidate in candidates {
                    out.extend_from_slice(&(candidate.key.len() as u32).to_be_bytes());
                    out.extend_from_slice(&candidate.key);
                    out.extend_from_slice(&candidate.modified.to_be_bytes());
                }
                out
            }
            Payload::Sweep => encode_header(false, self.request, self.settled_below, self.ct),
        }
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader(data);
        let version = reader.u8()?;
        if version != ENTRY_FORMAT_V1 && version != ENTRY_FORMAT_V2 {
            return Err(DecodeError::Version(version));
        }
        let kind = reader.u8()?;
        let request = RequestId {
            origin: reader.u64()?,
            seq: reader.u64()?,
        };
        let settled_below = if version == ENTRY_FORMAT_V1 {
            0
        } else {
            reader.u64()?
        };
        let ct = reader.u64()?;
        let payload = match kind {
            KIND_COMMAND => Payload::Command(decode_argv(&mut reader)?),
            KIND_EXPIRE => {
                let count = reader.u32()? as usize;
                let mut candidates = Vec::with_capacity(count.min(4096));
                for _ in 0..count {
                    let key = reader.bytes()?;
                    let modified = reader.u64()?;
                    candidates.push(ExpireCandidate { key, modified });
                }
                Payload::Expire(candidates)
            }
            KIND_SWEEP => Payload::Sweep,
            other => return Err(DecodeError::Kind(other)),
        };
        if !reader.0.is_empty() {
            return Err(DecodeError::Trailing);
        }
        Ok(LogEntry {
            request,
            settled_below,
            ct,
            payload,
        })
    }
}

/// Decodes a command body made by [`encode_command`].
pub fn decode_command(data: &[u8]) -> Result<Vec<Bytes>, DecodeError> {
    let mut reader = Reader(data);
    let argv = decode_argv(&mut reader)?;
    if !reader.0.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok(argv)
}

fn decode_argv(reader: &mut Reader<'_>) -> Result<Vec<Bytes>, DecodeError> {
    let argc = reader.u32()? as usize;
    // Each argument takes at least 4 bytes, which bounds a hostile count.
    if argc > reader.0.len() / 4 {
        return Err(DecodeError::Truncated);
    }
    let mut argv = Vec::with_capacity(argc);
    for _ in 0..argc {
        argv.push(reader.bytes()?);
    }
    Ok(argv)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<LogEntry> {
        vec![
            LogEntry {
                request: RequestId { origin: 2, seq: 99 },
                settled_below: 97,
                ct: 1_700_000_000_123,
                payload: Payload::Command(vec![
                    Bytes::from_static(b"SET"),
                    Bytes::from_static(b"k"),
                    Bytes::new(),
                ]),
            },
            LogEntry {
                request: RequestId { origin: 0, seq: 7 },
                settled_below: 0,
                ct: 5,
                payload: Payload::Expire(vec![ExpireCandidate {
                    key: Bytes::from_static(b"lock"),
                    modified: 12,
                }]),
            },
            LogEntry {
                request: RequestId { origin: 0, seq: 8 },
                settled_below: 0,
                ct: 6,
                payload: Payload::Sweep,
            },
        ]
    }

    #[test]
    fn entries_round_trip() {
        for entry in sample() {
            assert_eq!(LogEntry::decode(&entry.encode()).unwrap(), entry);
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for entry in sample() {
            let data = entry.encode();
            for cut in 0..data.len() {
                assert!(LogEntry::decode(&data[..cut]).is_err(), "cut {cut}");
            }
        }
    }

    #[test]
    fn unknown_version_is_rejected() {
        let mut data = sample()[0].encode();
        data[0] = 9;
        assert_eq!(LogEntry::decode(&data), Err(DecodeError::Version(9)));
    }

    #[test]
    fn header_and_body_compose_into_an_entry() {
        let argv = vec![Bytes::from_static(b"GET"), Bytes::from_static(b"x")];
        let request = RequestId { origin: 3, seq: 1 };
        let mut data = encode_header(true, request, 1, 42);
        data.extend_from_slice(&encode_command(&argv));
        let entry = LogEntry::decode(&data).unwrap();
        assert_eq!(entry.payload, Payload::Command(argv));
        assert_eq!((entry.settled_below, entry.ct), (1, 42));
    }

    #[test]
    fn version_one_entries_still_decode() {
        let mut data = vec![ENTRY_FORMAT_V1, KIND_COMMAND];
        data.extend_from_slice(&3u64.to_be_bytes());
        data.extend_from_slice(&8u64.to_be_bytes());
        data.extend_from_slice(&42u64.to_be_bytes());
        data.extend_from_slice(&encode_command(&[Bytes::from_static(b"PING")]));
        let entry = LogEntry::decode(&data).unwrap();
        assert_eq!(entry.request, RequestId { origin: 3, seq: 8 });
        assert_eq!((entry.settled_below, entry.ct), (0, 42));
    }
}
