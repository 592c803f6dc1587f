//! Frames exchanged between peers: `tag:u8 body`.
//! - `1`: a raft message (protobuf).
//! - `2`: a proposal forwarded to the leader:
//!   `origin:u64 seq:u64 settled_below:u64 command` (see the log entry).

use bytes::{BufMut, Bytes, BytesMut};
use protobuf::Message as _;
use raft::eraftpb::Message;

const TAG_RAFT: u8 = 1;
const TAG_FORWARD: u8 = 2;
const FORWARD_HEADER: usize = 25;

#[derive(Debug, PartialEq)]
pub enum PeerFrame {
    Raft(Box<Message>),
    Forward {
        origin: u64,
        seq: u64,
        settled_below: u64,
        body: Bytes,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame")]
    Empty,
    #[error("unknown frame tag {0}")]
    Tag(u8),
    #[error("truncated forward frame")]
    Truncated,
    #[error("bad raft message: {0}")]
    Raft(#[from] protobuf::ProtobufError),
}

impl PeerFrame {
    pub fn encode(&self) -> Bytes {
        match self {
            PeerFrame::Raft(message) => {
                let body = message
                    .write_to_bytes()
                    .expect("raft messages always encode");
                let mut out = BytesMut::with_capacity(body.len() + 1);
                out.put_u8(TAG_RAFT);
                out.extend_from_slice(&body);
                out.freeze()
            }
            PeerFrame::Forward {
                origin,
                seq,
                settled_below,
                body,
            } => {
                let mut out = BytesMut::with_capacity(body.len() + FORWARD_HEADER);
                out.put_u8(TAG_FORWARD);
                out.put_u64(*origin);
                out.put_u64(*seq);
                out.put_u64(*settled_below);
                out.extend_from_slice(body);
                out.freeze()
            }
        }
    }

    pub fn decode(data: Bytes) -> Result<Self, FrameError> {
        let Some(&tag) = data.first() else {
            return Err(FrameError::Empty);
        };
        match tag {
            TAG_RAFT => Ok(PeerFrame::Raft(Box::new(Message::parse_from_bytes(
                &data[1..],
            )?))),
            TAG_FORWARD => {
                if data.len() < FORWARD_HEADER {
                    return Err(FrameError::Truncated);
                }
                let word = |at: usize| u64::from_be_bytes(data[at..at + 8].try_into().expect("8"));
                Ok(PeerFrame::Forward {
                    origin: word(1),
                    seq: word(9),
                    settled_below: word(17),
                    body: data.slice(FORWARD_HEADER..),
                })
            }
            other => Err(FrameError::Tag(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_frames_round_trip() {
        let frame = PeerFrame::Forward {
            origin: 3,
            seq: 77,
            settled_below: 70,
            body: Bytes::from_static(b"body"),
        };
        assert_eq!(PeerFrame::decode(frame.encode()).unwrap(), frame);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for data in [&b""[..], b"\x02short", b"\x09", b"\x01\xff\xff\xff"] {
            assert!(PeerFrame::decode(Bytes::copy_from_slice(data)).is_err());
        }
    }
}
