//! Lease renewals, coalesced: every LEASE.KEEPALIVE this node receives,
//! and every lease a connection here has bound (LEASE.BIND), goes into one
//! `LEASE.KEEPALIVE id ...` entry per window, so many clients renewing
//! many leases cost a few entries a second, not one each.
//!
//! A bound lease is renewed every third of its TTL while its connection
//! lives. Renewals are log entries: a node that has lost the leader renews
//! nothing, so a partitioned client's leases run out on the majority side.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lockstep_engine::Reply;
use lockstep_raft::{NodeHandle, ProposeError};
use slog::{debug, Logger};
use tokio::sync::{mpsc, oneshot};

/// Shortest time between two renewal entries from this node.
pub const KEEPALIVE_WINDOW: Duration = Duration::from_millis(100);
/// Renewal requests waiting for the next entry, at most.
const QUEUE_LEN: usize = 65_536;

type Renewed = Result<Vec<i64>, ProposeError>;

struct Request {
    ids: Vec<u64>,
    reply: oneshot::Sender<Renewed>,
}

struct Bound {
    ttl: Duration,
    /// Connections that bound it.
    holders: usize,
    next_renewal: Instant,
}

/// The node's renewal service; cheap to clone.
#[derive(Clone)]
pub struct Keepalives {
    requests: mpsc::Sender<Request>,
    bound: Arc<Mutex<HashMap<u64, Bound>>>,
}

impl Keepalives {
    /// Starts the service on the current runtime.
    pub fn start(node: NodeHandle, log: Logger) -> Self {
        let (requests, inbox) = mpsc::channel(QUEUE_LEN);
        let bound = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(run(node, inbox, bound.clone(), log));
        Keepalives { requests, bound }
    }

    /// Renews `ids` in the next coalesced entry; the remaining TTL of each
    /// (-2 for a lease that does not exist).
    pub async fn renew(&self, ids: Vec<u64>) -> Renewed {
        let (reply, answer) = oneshot::channel();
        self.requests
            .try_send(Request { ids, reply })
            .map_err(|_| ProposeError::Busy)?;
        answer.await.map_err(|_| ProposeError::Stopped)?
    }

    /// A connection keeps lease `id` (granted with `ttl`) alive.
    pub fn bind(&self, id: u64, ttl: Duration) {
        let mut bound = self.bound.lock().expect("keepalive lock");
        let entry = bound.entry(id).or_insert(Bound {
            ttl,
            holders: 0,
            next_renewal: Instant::now() + ttl / 3,
        });
        entry.holders += 1;
        entry.ttl = ttl;
    }

    /// A connection no longer keeps lease `id` alive.
    pub fn unbind(&self, id: u64) {
        let mut bound = self.bound.lock().expect("keepalive lock");
        if let Some(entry) = bound.get_mut(&id) {
            entry.holders = entry.holders.saturating_sub(1);
            if entry.holders == 0 {
                bound.remove(&id);
            }
        }
    }

    /// Leases kept alive by connections on this node.
    pub fn bound_leases(&self) -> usize {
        self.bound.lock().expect("keepalive lock").len()
    }
}

async fn run(
    node: NodeHandle,
    mut inbox: mpsc::Receiver<Request>,
    bound: Arc<Mutex<HashMap<u64, Bound>>>,
    log: Logger,
) {
    let mut last_entry = Instant::now() - KEEPALIVE_WINDOW;
    loop {
        // Wait for a request or the next bound renewal, whichever first.
        let next_due = bound
            .lock()
            .expect("keepalive lock")
            .values()
            .map(|b| b.next_renewal)
            .min();
        let first = match next_due {
            Some(at) => tokio::select! {
                request = inbox.recv() => match request {
                    Some(request) => Some(request),
                    None => return,
                },
                _ = tokio::time::sleep_until(at.into()) => None,
            },
            None => match inbox.recv().await {
                Some(request) => Some(request),
                None => return,
            },
        };
        // One entry per window at most: what arrives meanwhile joins it.
        let earliest = last_entry + KEEPALIVE_WINDOW;
        if Instant::now() < earliest {
            tokio::time::sleep_until(earliest.into()).await;
        }
        let mut waiting: Vec<Request> = first.into_iter().collect();
        while let Ok(request) = inbox.try_recv() {
            waiting.push(request);
        }
        let now = Instant::now();
        let due: Vec<u64> = bound
            .lock()
            .expect("keepalive lock")
            .iter()
            .filter(|(_, b)| b.next_renewal <= now + KEEPALIVE_WINDOW)
            .map(|(id, _)| *id)
            .collect();
        let mut ids: Vec<u64> = waiting.iter().flat_map(|r| r.ids.iter().copied()).collect();
        ids.extend(&due);
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            continue;
        }
        last_entry = Instant::now();
        let mut argv = Vec::with_capacity(ids.len() + 1);
        argv.push(Bytes::from_static(b"LEASE.KEEPALIVE"));
        argv.extend(ids.iter().map(|id| Bytes::from(id.to_string())));
        let result = node.propose(&argv).await;
        let remaining: Result<BTreeMap<u64, i64>, ProposeError> = match result {
            Ok(answered) => match answered.reply {
                Reply::Array(items) => Ok(ids
                    .iter()
                    .zip(items)
                    .map(|(id, item)| match item {
                        Reply::Integer(ttl) => (*id, ttl),
                        _ => (*id, -2),
                    })
                    .collect()),
                other => {
                    debug!(log, "unexpected keepalive reply"; "reply" => ?other);
                    Err(ProposeError::Indeterminate)
                }
            },
            Err(err) => Err(err),
        };
        {
            let mut bound = bound.lock().expect("keepalive lock");
            for id in &due {
                let Some(entry) = bound.get_mut(id) else {
                    continue;
                };
                match remaining.as_ref().map(|r| r.get(id).copied()) {
                    Ok(Some(-2)) => {
                        // The lease ended: nothing left to keep alive.
                        bound.remove(id);
                    }
                    Ok(_) => entry.next_renewal = Instant::now() + entry.ttl / 3,
                    // No leader: try again soon (the lease keeps running
                    // out meanwhile, as it must).
                    Err(_) => entry.next_renewal = Instant::now() + KEEPALIVE_WINDOW,
                }
            }
        }
        for request in waiting {
            let reply = match &remaining {
                Ok(map) => Ok(request
                    .ids
                    .iter()
                    .map(|id| map.get(id).copied().unwrap_or(-2))
                    .collect()),
                Err(err) => Err(err.clone()),
            };
            let _ = request.reply.send(reply);
        }
    }
}
