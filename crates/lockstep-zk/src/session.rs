//! ZooKeeper sessions as leases. A new session is `LEASE.GRANT timeout`
//! (named `zk-session`); its id is the lease id, so an ephemeral node's
//! ephemeralOwner is its session. The connection binds the lease, so
//! this node renews it (coalesced, through the log) while the connection
//! lives; a client that goes away loses its session one timeout after the
//! last renewal, decided by the leader's expiry like every lease.
//!
//! The password is derived from the session id, the cluster's identity
//! and the cluster secret (when one is configured), so every node can
//! check a reconnecting client without any state of its own.
//!
//! Read-only mode (ZooKeeper's `readonlymode.enabled`): a node that cannot
//! reach a quorum (no read barrier within a third of the requested
//! timeout, at most 2 s) gives a client that allows it (the connect
//! request's read-only flag) a read-only session:
//! a new one is local to the node (its id has [`READ_ONLY_SESSION_BIT`]
//! and no lease behind it, so another node finds it expired), an existing
//! one is taken as it is in this node's state, unrenewed. Such a session
//! reads this node's state, possibly stale, and every write is refused
//! with NOTREADONLY; the connection closes once the node has a leader
//! again, so the client reconnects for a read-write session.

use std::time::Duration;

use bytes::Bytes;
use lockstep_engine::Reply;
use lockstep_server::ServerContext;
use sha2::{Digest, Sha256};

use crate::ops::field;
use crate::proto::Connect;
use crate::ZkConfig;

/// Bytes of a session password (ZooKeeper's length).
pub const PASSWORD_LEN: usize = 16;

/// Set in the id of a session a node opened in read-only mode.
pub const READ_ONLY_SESSION_BIT: u64 = 1 << 63;

pub struct ZkSession {
    pub id: u64,
    pub timeout: Duration,
    pub password: [u8; PASSWORD_LEN],
    /// Served from this node's state alone, writes refused.
    pub read_only: bool,
}

/// Why a connect request gets no session.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// ZooKeeper's "expired" reply (timeout 0, session 0), then close.
    Expired,
    /// Close without a reply (the client tries another server).
    Close,
}

pub fn password(secret: &[u8], cluster_id: &str, id: u64) -> [u8; PASSWORD_LEN] {
    let mut hash = Sha256::new();
    hash.update(b"lockstep zookeeper session\0");
    hash.update((secret.len() as u64).to_be_bytes());
    hash.update(secret);
    hash.update(cluster_id.as_bytes());
    hash.update(id.to_be_bytes());
    let digest = hash.finalize();
    let mut out = [0; PASSWORD_LEN];
    out.copy_from_slice(&digest[..PASSWORD_LEN]);
    out
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session a reconnecting client names, with its password, if the
/// password it sent is that session's (else: expired, as ZooKeeper says
/// of a wrong password).
fn checked_password(
    config: &ZkConfig,
    cluster_id: &str,
    connect: &Connect,
) -> Result<(u64, [u8; PASSWORD_LEN]), Refusal> {
    let id = connect.session_id as u64;
    let expected = password(&config.secret, cluster_id, id);
    if !same(&expected, &connect.password) {
        return Err(Refusal::Expired);
    }
    Ok((id, expected))
}

/// The timeout a client asking for `requested` ms gets.
pub fn negotiate(config: &ZkConfig, requested: i32) -> Duration {
    let ms = (requested.max(0) as u64).clamp(config.min_session_ms, config.max_session_ms);
    Duration::from_millis(ms)
}

/// Opens a new session or resumes the one the client names.
pub async fn open(
    ctx: &ServerContext,
    config: &ZkConfig,
    connect: &Connect,
) -> Result<ZkSession, Refusal> {
    let node = &ctx.node;
    // A client that has seen a later state than this node's waits for it
    // (one barrier), else goes elsewhere.
    if connect.last_zxid_seen > node.delivered_index() as i64 {
        node.read_barrier().await.map_err(|_| Refusal::Close)?;
        if connect.last_zxid_seen > node.delivered_index() as i64 {
            return Err(Refusal::Close);
        }
    }
    let cluster_id = node.status().cluster_id.clone();
    if connect.read_only && !quorum_within(ctx, negotiate(config, connect.timeout_ms)).await {
        return open_read_only(ctx, config, connect, &cluster_id);
    }
    if connect.session_id == 0 {
        let timeout = negotiate(config, connect.timeout_ms);
        let argv = [
            Bytes::from_static(b"LEASE.GRANT"),
            Bytes::from(timeout.as_millis().to_string()),
            Bytes::from_static(b"NAME"),
            Bytes::from_static(b"zk-session"),
        ];
        let answered = node.propose(&argv).await.map_err(|_| Refusal::Close)?;
        let Reply::Integer(id) = answered.reply else {
            return Err(Refusal::Close);
        };
        let id = id as u64;
        ctx.keepalives.bind(id, timeout);
        return Ok(ZkSession {
            id,
            timeout,
            password: password(&config.secret, &cluster_id, id),
            read_only: false,
        });
    }
    let (id, expected) = checked_password(config, &cluster_id, connect)?;
    let argv = [
        Bytes::from_static(b"LEASE.TTL"),
        Bytes::from(id.to_string()),
    ];
    let reply = node.read(&argv).await.map_err(|_| Refusal::Close)?;
    let Some(Reply::Integer(granted)) = field(&reply, "granted-ttl") else {
        return Err(Refusal::Expired);
    };
    // Moving to this node renews the session at once, as ZooKeeper's
    // reconnect touches it.
    match ctx.keepalives.renew(vec![id]).await {
        Ok(left) if left.first().is_some_and(|ttl| *ttl > 0) => {}
        Ok(_) => return Err(Refusal::Expired),
        Err(_) => return Err(Refusal::Close),
    }
    let timeout = Duration::from_millis(*granted as u64);
    ctx.keepalives.bind(id, timeout);
    Ok(ZkSession {
        id,
        timeout,
        password: expected,
        read_only: false,
    })
}

/// Whether this node reaches a quorum: a read barrier (the leader
/// confirms its leadership with a majority) answered within a third of
/// the session timeout, at most two seconds, so that the client's connect
/// attempt is still waiting. A node that merely still believes in a
/// leader that is gone does not pass.
async fn quorum_within(ctx: &ServerContext, timeout: Duration) -> bool {
    let probe = (timeout / 3).min(Duration::from_secs(2));
    matches!(
        tokio::time::timeout(probe, ctx.node.read_barrier()).await,
        Ok(Ok(()))
    )
}

/// A new id for a read-only session: the bit, this node's id, and the
/// clock's nanoseconds with a counter (unique on this node).
fn read_only_id(node_id: u64) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff;
    let low = ((nanos << 16) | count) & ((1 << 48) - 1);
    READ_ONLY_SESSION_BIT | ((node_id & 0x7fff) << 48) | low
}

fn open_read_only(
    ctx: &ServerContext,
    config: &ZkConfig,
    connect: &Connect,
    cluster_id: &str,
) -> Result<ZkSession, Refusal> {
    if connect.session_id == 0 {
        let id = read_only_id(ctx.node.status().id);
        return Ok(ZkSession {
            id,
            timeout: negotiate(config, connect.timeout_ms),
            password: password(&config.secret, cluster_id, id),
            read_only: true,
        });
    }
    let (id, expected) = checked_password(config, cluster_id, connect)?;
    let timeout = if id & READ_ONLY_SESSION_BIT != 0 {
        negotiate(config, connect.timeout_ms)
    } else {
        let argv = [
            Bytes::from_static(b"LEASE.TTL"),
            Bytes::from(id.to_string()),
        ];
        let reply = ctx.node.read_local(&argv);
        let Some(Reply::Integer(granted)) = field(&reply, "granted-ttl") else {
            return Err(Refusal::Expired);
        };
        Duration::from_millis(*granted as u64)
    };
    Ok(ZkSession {
        id,
        timeout,
        password: expected,
        read_only: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_depend_on_id_cluster_and_secret() {
        let a = password(b"", "c1", 7);
        assert_eq!(a, password(b"", "c1", 7));
        assert_ne!(a, password(b"", "c1", 8));
        assert_ne!(a, password(b"", "c2", 7));
        assert_ne!(a, password(b"secret-of-16-bytes", "c1", 7));
        assert!(same(&a, &a));
        assert!(!same(&a, &a[..15]));
    }

    #[test]
    fn read_only_ids_are_marked_and_distinct() {
        let ids: std::collections::BTreeSet<u64> = (0..1000).map(|_| read_only_id(3)).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids {
            assert_ne!(id & READ_ONLY_SESSION_BIT, 0);
            assert_eq!((id >> 48) & 0x7fff, 3);
        }
    }

    #[test]
    fn timeouts_are_clamped_to_the_configured_bounds() {
        let config = ZkConfig::default();
        assert_eq!(negotiate(&config, 1), Duration::from_millis(4_000));
        assert_eq!(negotiate(&config, 10_000), Duration::from_millis(10_000));
        assert_eq!(negotiate(&config, i32::MAX), Duration::from_millis(40_000));
        assert_eq!(negotiate(&config, -5), Duration::from_millis(4_000));
    }
}
