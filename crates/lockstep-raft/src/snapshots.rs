//! Snapshots streamed to followers, in bounded memory on both sides.
//!
//! A leader does not put the keyspace in the raft snapshot message. The
//! message carries the snapshot's metadata and a ticket
//! (`2 id:u64`, see [`lockstep_store::SNAPSHOT_STREAMED`]); a thread of the
//! leader holds one consistent view of its store for that ticket. The
//! follower, before it lets raft see the message, dials the leader's peer
//! port on a connection of its own (authenticated like every peer link),
//! asks for the ticket, and writes the stream into its store's staging
//! file, checking its length and XXH3-128 at the end; only then is the
//! message stepped (with the data `3`: staged), and the store installs the
//! staged file in batches. Heartbeats go on meanwhile on the normal link.
//!
//! Stream frames (length-delimited, after the fetch frame `4 id:u64`):
//! `1 bytes` a piece of the payload, `2 length:u64 xxh3:u128` the end,
//! `3 message` the leader cannot serve the ticket.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use lockstep_store::{NodeStore, SnapshotSource, SnapshotWriter, SNAPSHOT_STREAMED};
use raft::eraftpb::Snapshot;
use tokio::sync::mpsc;

/// A prepared snapshot is handed out for this long after it was taken,
/// and its view held until no follower asked for it for as long.
pub(crate) const PREPARED_SNAPSHOT_KEPT: Duration = Duration::from_secs(30);
/// Payload bytes per stream frame.
pub(crate) const STREAM_CHUNK_BYTES: usize = 1 << 20;
/// Stream frames buffered between the view's scan and the socket.
pub(crate) const STREAM_FRAMES_BUFFERED: usize = 4;

pub(crate) const FRAME_DATA: u8 = 1;
pub(crate) const FRAME_END: u8 = 2;
pub(crate) const FRAME_FAILED: u8 = 3;

/// The ticket a streamed snapshot's message carries.
pub(crate) fn ticket(id: u64) -> Bytes {
    let mut data = BytesMut::with_capacity(9);
    data.put_u8(SNAPSHOT_STREAMED);
    data.put_u64(id);
    data.freeze()
}

/// The id in a ticket, if `data` is one.
pub(crate) fn ticket_id(data: &[u8]) -> Option<u64> {
    match data {
        [SNAPSHOT_STREAMED, id @ ..] if id.len() == 8 => {
            Some(u64::from_be_bytes(id.try_into().expect("8 bytes")))
        }
        _ => None,
    }
}

/// One follower's request for the prepared payload: its frames go to `out`.
pub(crate) struct StreamRequest {
    pub out: mpsc::Sender<Bytes>,
    /// Counts the payload bytes sent.
    pub sent: prometheus::IntCounter,
}

/// The leader's prepared snapshot: the message data raft hands out and
/// the line to the thread that holds its view.
struct Prepared {
    id: u64,
    snapshot: Snapshot,
    taken: Instant,
    requests: std_mpsc::Sender<StreamRequest>,
}

#[derive(Default)]
struct ServerState {
    next_id: u64,
    ready: Option<Prepared>,
    building: bool,
}

/// Prepares snapshots for followers and streams them on request.
#[derive(Default)]
pub(crate) struct SnapshotServer {
    state: Mutex<ServerState>,
}

impl SnapshotServer {
    fn state(&self) -> std::sync::MutexGuard<'_, ServerState> {
        self.state.lock().expect("snapshot server")
    }

    /// A snapshot at `request_index` and at least `compacted` (a follower
    /// needs to reach the log's start): the prepared one if it will do,
    /// else one is being prepared (raft-rs asks again on the follower's
    /// next reply). Taking the view is cheap; scanning it happens only
    /// when a follower asks, on the holding thread.
    pub fn snapshot<S: NodeStore>(
        self: &Arc<Self>,
        store: &Arc<S>,
        request_index: u64,
        compacted: u64,
    ) -> raft::Result<Snapshot> {
        let mut state = self.state();
        if let Some(prepared) = &state.ready {
            let index = prepared.snapshot.get_metadata().index;
            if prepared.taken.elapsed() < PREPARED_SNAPSHOT_KEPT
                && index >= request_index
                && index >= compacted
            {
                return Ok(prepared.snapshot.clone());
            }
            // Dropping the request line lets its holder go.
            state.ready = None;
        }
        if !state.building {
            state.building = true;
            let (server, store) = (self.clone(), store.clone());
            let spawned = std::thread::Builder::new()
                .name("snapshot".into())
                .spawn(move || server.hold(&*store));
            if let Err(err) = spawned {
                state.building = false;
                return Err(raft::Error::Io(err));
            }
        }
        Err(raft::Error::Store(
            raft::StorageError::SnapshotTemporarilyUnavailable,
        ))
    }

    /// Takes a view, publishes its ticket, and serves requests for it
    /// until none came for [`PREPARED_SNAPSHOT_KEPT`] or it was replaced.
    fn hold<S: NodeStore>(&self, store: &S) {
        let mut held = None;
        let _ = store.with_snapshot_source(&mut |source: &dyn SnapshotSource| {
            let (requests, incoming) = std_mpsc::channel();
            let id = {
                let mut state = self.state();
                state.building = false;
                state.next_id += 1;
                let id = state.next_id;
                let mut snapshot = Snapshot {
                    data: ticket(id),
                    ..Default::default()
                };
                snapshot.set_metadata(source.metadata().clone());
                state.ready = Some(Prepared {
                    id,
                    snapshot,
                    taken: Instant::now(),
                    requests,
                });
                id
            };
            held = Some(id);
            while let Ok(request) = incoming.recv_timeout(PREPARED_SNAPSHOT_KEPT) {
                stream(source, &request);
            }
        });
        let mut state = self.state();
        if held.is_none() {
            // The view could not be taken; the next request tries again.
            state.building = false;
        }
        if state.ready.as_ref().map(|prepared| prepared.id) == held {
            state.ready = None;
        }
    }

    /// Queues a request for ticket `id`; false if that ticket is gone.
    pub fn request(&self, id: u64, request: StreamRequest) -> bool {
        let state = self.state();
        match &state.ready {
            Some(prepared) if prepared.id == id => prepared.requests.send(request).is_ok(),
            _ => false,
        }
    }
}

/// Scans `source` into `request`'s frames; stops early if the follower
/// went away.
fn stream(source: &dyn SnapshotSource, request: &StreamRequest) {
    let mut writer = SnapshotWriter::default();
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    let mut length = 0u64;
    let mut send = |piece: Vec<u8>| {
        hasher.update(&piece);
        length += piece.len() as u64;
        request.sent.inc_by(piece.len() as u64);
        // One pair may be larger than a frame.
        piece.chunks(STREAM_CHUNK_BYTES).all(|part| {
            let mut frame = BytesMut::with_capacity(part.len() + 1);
            frame.put_u8(FRAME_DATA);
            frame.extend_from_slice(part);
            request.out.blocking_send(frame.freeze()).is_ok()
        })
    };
    let mut gone = false;
    let scanned = source.pairs(&mut |key, value| {
        writer.push(key, value);
        if writer.buffered() >= STREAM_CHUNK_BYTES {
            gone = !send(writer.take());
        }
        !gone
    });
    if gone {
        return;
    }
    let end = match scanned {
        Ok(()) => {
            if !send(writer.finish()) {
                return;
            }
            let mut frame = BytesMut::with_capacity(25);
            frame.put_u8(FRAME_END);
            frame.put_u64(length);
            frame.put_u128(hasher.digest128());
            frame.freeze()
        }
        Err(err) => failed_frame(&format!("storage: {err}")),
    };
    let _ = request.out.blocking_send(end);
}

pub(crate) fn failed_frame(message: &str) -> Bytes {
    let mut frame = BytesMut::with_capacity(message.len() + 1);
    frame.put_u8(FRAME_FAILED);
    frame.extend_from_slice(message.as_bytes());
    frame.freeze()
}

/// Checks a stream's end frame against what was received.
pub(crate) fn check_end(frame: &[u8], length: u64, digest: u128) -> Result<(), String> {
    if frame.len() != 25 {
        return Err("malformed end of snapshot stream".into());
    }
    let sent_length = u64::from_be_bytes(frame[1..9].try_into().expect("8 bytes"));
    let sent_digest = u128::from_be_bytes(frame[9..25].try_into().expect("16 bytes"));
    if sent_length != length {
        return Err(format!(
            "snapshot stream of {length} bytes, the leader sent {sent_length}"
        ));
    }
    if sent_digest != digest {
        return Err("snapshot stream checksum mismatch".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_and_nothing_else_is_one() {
        assert_eq!(ticket_id(&ticket(42)), Some(42));
        for data in [
            &b""[..],
            b"\x02",
            b"\x01abcdefgh",
            b"\x02abcdefghi",
            b"\x03",
        ] {
            assert_eq!(ticket_id(data), None, "{data:?}");
        }
    }

    #[test]
    fn end_frames_check_length_and_digest() {
        let mut frame = vec![FRAME_END];
        frame.extend_from_slice(&10u64.to_be_bytes());
        frame.extend_from_slice(&7u128.to_be_bytes());
        assert!(check_end(&frame, 10, 7).is_ok());
        assert!(check_end(&frame, 11, 7).unwrap_err().contains("10"));
        assert!(check_end(&frame, 10, 8).unwrap_err().contains("checksum"));
        assert!(check_end(&frame[..20], 10, 7).is_err());
    }
}
