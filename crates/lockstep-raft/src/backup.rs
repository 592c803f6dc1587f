//! Backup files: the keyspace at one applied index, with what is needed to
//! start a new cluster from it.
//!
//! Layout: the magic line `LOCKSTEP BACKUP v1\n`, a header length (u32,
//! big-endian) and the header (`key=value` lines: lockstep version, index,
//! term, cluster time, voters, learners, members, creation time, payload
//! length), the payload (the keyspace as snapshot pairs, the membership
//! record included) and an XXH3-128 checksum of everything before it. A
//! file is checked whole before anything is written from it.

use std::collections::BTreeMap;

use lockstep_engine::Engine;
use lockstep_store::{
    decode_snapshot_data, encode_snapshot_data, NodeStore, Pairs, SnapshotWriter, StoreError,
};

use crate::members::{Members, MEMBERS_KEY};

const MAGIC: &[u8] = b"LOCKSTEP BACKUP v1\n";
const CHECKSUM_BYTES: usize = 16;
/// A header is a few lines; anything larger is not a backup.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// What a backup says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    pub lockstep_version: String,
    /// The applied index and term the keyspace is at.
    pub index: u64,
    pub term: u64,
    /// Cluster time of the last entry applied (TTLs and leases go on from
    /// it after a restore).
    pub cluster_time_ms: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// `id=peer/client` of each member at the time.
    pub members: Vec<String>,
    pub created_unix_ms: u64,
    pub payload_bytes: u64,
}

/// A decoded, checked backup.
#[derive(Debug)]
pub struct Backup {
    pub info: BackupInfo,
    pub pairs: Pairs,
}

fn ids(list: &[u64]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Takes a backup of `store`'s applied state (one consistent view) and
/// encodes it as a backup file.
pub fn take_backup<S: NodeStore>(store: &S, created_unix_ms: u64) -> Result<Vec<u8>, StoreError> {
    let conf = store.conf_state();
    let (payload, members, applied, cluster_time_ms) = store.read_view(|state, applied| {
        let mut writer = SnapshotWriter::default();
        let mut members = None;
        state.scan(&[], &[0xff, 0xff], &mut |key, value| {
            writer.push(key, value);
            if key == MEMBERS_KEY {
                members = Members::decode(value).ok();
            }
            true
        })?;
        let ct = Engine::cluster_time(state)?;
        Ok::<_, StoreError>((writer.finish(), members.unwrap_or_default(), applied, ct))
    })?;
    let info = BackupInfo {
        lockstep_version: env!("CARGO_PKG_VERSION").to_string(),
        index: applied.index,
        term: applied.term,
        cluster_time_ms,
        voters: conf.voters,
        learners: conf.learners,
        members: members
            .addrs
            .iter()
            .map(|(id, addrs)| format!("{id}={}/{}", addrs.peer, addrs.client))
            .collect(),
        created_unix_ms,
        payload_bytes: payload.len() as u64,
    };
    Ok(encode(&info, &payload))
}

fn encode(info: &BackupInfo, payload: &[u8]) -> Vec<u8> {
    let header = format!(
        "lockstep_version={}\nindex={}\nterm={}\ncluster_time_ms={}\nvoters={}\nlearners={}\nmembers={}\ncreated_unix_ms={}\npayload_bytes={}\n",
        info.lockstep_version,
        info.index,
        info.term,
        info.cluster_time_ms,
        ids(&info.voters),
        ids(&info.learners),
        info.members.join(","),
        info.created_unix_ms,
        info.payload_bytes,
    );
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + payload.len() + 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    let checksum = xxhash_rust::xxh3::xxh3_128(&out);
    out.extend_from_slice(&checksum.to_be_bytes());
    out
}

/// Checks and decodes a backup file; the error says what is wrong.
pub fn decode_backup(bytes: &[u8]) -> Result<Backup, String> {
    if !bytes.starts_with(MAGIC) {
        return Err("not a lockstep backup (bad magic)".into());
    }
    if bytes.len() < MAGIC.len() + 4 + CHECKSUM_BYTES {
        return Err("truncated backup (shorter than its fixed parts)".into());
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    let header_len = u32::from_be_bytes(
        body[MAGIC.len()..MAGIC.len() + 4]
            .try_into()
            .expect("4 bytes"),
    ) as usize;
    let header_start = MAGIC.len() + 4;
    if header_len > MAX_HEADER_BYTES || header_start + header_len > body.len() {
        return Err(format!(
            "truncated or corrupt backup: header of {header_len} bytes does not fit"
        ));
    }
    let header = std::str::from_utf8(&body[header_start..header_start + header_len])
        .map_err(|_| "corrupt backup: header is not UTF-8")?;
    let fields: BTreeMap<&str, &str> = header
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    let field = |name: &str| -> Result<&str, String> {
        fields
            .get(name)
            .copied()
            .ok_or_else(|| format!("corrupt backup: header has no {name}"))
    };
    let number = |name: &str| -> Result<u64, String> {
        field(name)?
            .parse()
            .map_err(|_| format!("corrupt backup: {name} is not a number"))
    };
    let list = |name: &str| -> Result<Vec<u64>, String> {
        field(name)?
            .split(',')
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse()
                    .map_err(|_| format!("corrupt backup: bad id in {name}"))
            })
            .collect()
    };
    let info = BackupInfo {
        lockstep_version: field("lockstep_version")?.to_string(),
        index: number("index")?,
        term: number("term")?,
        cluster_time_ms: number("cluster_time_ms")?,
        voters: list("voters")?,
        learners: list("learners")?,
        members: field("members")?
            .split(',')
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect(),
        created_unix_ms: number("created_unix_ms")?,
        payload_bytes: number("payload_bytes")?,
    };
    let payload = &body[header_start + header_len..];
    if payload.len() as u64 != info.payload_bytes {
        return Err(format!(
            "truncated backup: {} payload bytes, the header says {}",
            payload.len(),
            info.payload_bytes
        ));
    }
    let expected = xxhash_rust::xxh3::xxh3_128(body).to_be_bytes();
    if checksum != expected {
        return Err("corrupt backup: checksum mismatch".into());
    }
    let pairs = decode_snapshot_data(payload).map_err(|err| format!("corrupt backup: {err}"))?;
    Ok(Backup { info, pairs })
}

/// Key of the cluster identity record (text `id=<hex>`).
pub const CLUSTER_KEY: &[u8] = b"\xffcluster";

/// A cluster's identity: derived from what its nodes are started with, so
/// every node computes the same one (a new cluster from its initial
/// members; a restored one from the backup and its new members).
pub fn cluster_identity(seed: &[u8], members: &Members) -> String {
    let mut text = seed.to_vec();
    for (id, addrs) in &members.addrs {
        text.extend_from_slice(format!("{id}={};", addrs.peer).as_bytes());
    }
    format!("id={:016x}", xxhash_rust::xxh3::xxh3_64(&text))
}

/// Prepares `store` (empty) as node `own_id` of a new cluster whose
/// members are `members`, from `backup`: the keyspace at the backup's
/// index with the membership replaced, a new cluster identity, and
/// request ids that start above the old cluster's.
pub fn restore_backup<S: NodeStore>(
    backup: &Backup,
    file: &[u8],
    store: &S,
    own_id: u64,
    members: &Members,
) -> Result<(), StoreError> {
    if store.applied().index != 0 || !store.conf_state().voters.is_empty() {
        return Err(StoreError::Invalid(
            "the data dir already holds a node".into(),
        ));
    }
    let mut pairs: Pairs = backup
        .pairs
        .iter()
        .filter(|(key, _)| key.as_slice() != MEMBERS_KEY && key.as_slice() != CLUSTER_KEY)
        .cloned()
        .collect();
    pairs.push((MEMBERS_KEY.to_vec(), members.encode()));
    let seed = &file[file.len().saturating_sub(CHECKSUM_BYTES)..];
    pairs.push((
        CLUSTER_KEY.to_vec(),
        cluster_identity(seed, members).into_bytes(),
    ));
    pairs.sort();
    let mut metadata = raft::eraftpb::SnapshotMetadata {
        index: backup.info.index,
        term: backup.info.term,
        ..Default::default()
    };
    metadata.set_conf_state(raft::eraftpb::ConfState {
        voters: members.addrs.keys().copied().collect(),
        ..Default::default()
    });
    let mut snapshot = raft::eraftpb::Snapshot {
        data: encode_snapshot_data(pairs.into_iter()).into(),
        ..Default::default()
    };
    snapshot.set_metadata(metadata);
    store.install_snapshot(&snapshot)?;
    let bound = store.read_view(|state, _| lockstep_engine::request_seq_bound(state, own_id))?;
    store.raise_boot_epoch((bound >> 32) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let info = BackupInfo {
            lockstep_version: "0.1.0".into(),
            index: 42,
            term: 3,
            cluster_time_ms: 1_700_000_000_000,
            voters: vec![1, 2, 3],
            learners: vec![],
            members: vec!["1=a:1/b:2".into()],
            created_unix_ms: 5,
            payload_bytes: 0,
        };
        let payload = encode_snapshot_data(
            vec![
                (b"ka".to_vec(), b"1".to_vec()),
                (b"kb".to_vec(), vec![0; 100]),
            ]
            .into_iter(),
        );
        encode(
            &BackupInfo {
                payload_bytes: payload.len() as u64,
                ..info
            },
            &payload,
        )
    }

    #[test]
    fn a_backup_round_trips() {
        let backup = decode_backup(&sample()).unwrap();
        assert_eq!(backup.info.index, 42);
        assert_eq!(backup.info.voters, vec![1, 2, 3]);
        assert_eq!(backup.pairs.len(), 2);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let good = sample();
        for len in 0..good.len() {
            assert!(decode_backup(&good[..len]).is_err(), "truncated at {len}");
        }
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            assert!(decode_backup(&bad).is_err(), "byte {at} flipped");
        }
        assert!(decode_backup(b"garbage").unwrap_err().contains("bad magic"));
    }
}
