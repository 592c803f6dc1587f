//! Client-side caching (CLIENT TRACKING) on this node: which clients may
//! cache which keys, and the invalidation messages applied entries send
//! them.
//!
//! Invalidations are sent from the events of applied entries, so a write
//! made through any node invalidates the caches of clients on every node.
//! Each message carries the index of the entry that changed the key: the
//! connection writes it before any reply computed at or after that index
//! (see `connection`), so a client never reads a new value before the
//! invalidation of its old one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lockstep_engine::Reply;

use crate::pubsub::{Mailbox, Push};

/// Keys remembered for default-mode tracking on this node, at most: past
/// it, the oldest-looking key is invalidated to make room (Redis's
/// tracking-table-max-keys).
pub const MAX_TRACKED_KEYS: usize = 1_000_000;

/// The channel RESP2 redirect targets receive invalidations on.
pub const INVALIDATE_CHANNEL: &str = "__redis__:invalidate";

/// One connection, as a possible target of invalidations.
#[derive(Clone)]
pub struct Target {
    pub mailbox: Mailbox,
    /// Whether it speaks RESP3 (pushes) or RESP2 (pub/sub messages).
    pub resp3: Arc<AtomicBool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub redirect: Option<u64>,
    pub bcast: bool,
    pub prefixes: Vec<Bytes>,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
}

#[derive(Default)]
struct Inner {
    connections: HashMap<u64, Target>,
    trackers: HashMap<u64, Options>,
    /// Default mode: key -> clients that read it since its last change.
    keys: HashMap<Bytes, HashSet<u64>>,
    /// BCAST mode: prefix -> clients.
    prefixes: HashMap<Bytes, HashSet<u64>>,
}

#[derive(Default)]
pub struct Tracking {
    inner: Mutex<Inner>,
    /// Clients tracking: when 0, changes skip the table entirely.
    active: AtomicUsize,
}

impl Tracking {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().expect("tracking lock"))
    }

    /// A connection opened: it may be tracked or redirected to.
    pub fn connect(&self, client: u64, target: Target) {
        self.with(|inner| inner.connections.insert(client, target));
    }

    /// A connection closed.
    pub fn disconnect(&self, client: u64) {
        self.stop(client);
        self.with(|inner| inner.connections.remove(&client));
    }

    pub fn exists(&self, client: u64) -> bool {
        self.with(|inner| inner.connections.contains_key(&client))
    }

    /// CLIENT TRACKING ON: replaces the client's options (prefixes add up,
    /// as in Redis).
    pub fn start(&self, client: u64, mut options: Options) {
        self.with(|inner| {
            if let Some(old) = inner.trackers.remove(&client) {
                for prefix in &old.prefixes {
                    if !options.prefixes.contains(prefix) {
                        options.prefixes.push(prefix.clone());
                    }
                }
            } else {
                self.active.fetch_add(1, Ordering::Relaxed);
            }
            if options.bcast && options.prefixes.is_empty() {
                options.prefixes.push(Bytes::new());
            }
            if options.bcast {
                for prefix in &options.prefixes {
                    inner
                        .prefixes
                        .entry(prefix.clone())
                        .or_default()
                        .insert(client);
                }
            }
            inner.trackers.insert(client, options);
        });
    }

    /// CLIENT TRACKING OFF (or the connection closed).
    pub fn stop(&self, client: u64) {
        self.with(|inner| {
            let Some(options) = inner.trackers.remove(&client) else {
                return;
            };
            self.active.fetch_sub(1, Ordering::Relaxed);
            for prefix in &options.prefixes {
                if let Some(clients) = inner.prefixes.get_mut(prefix) {
                    clients.remove(&client);
                    if clients.is_empty() {
                        inner.prefixes.remove(prefix);
                    }
                }
            }
            // Keys it read are forgotten lazily: a change finds it gone.
        });
    }

    pub fn options(&self, client: u64) -> Option<Options> {
        self.with(|inner| inner.trackers.get(&client).cloned())
    }

    /// A tracked read of `keys` by `client` is about to run: they are
    /// remembered first, so a change between this and the read is not
    /// missed (it costs at most one early invalidation).
    pub fn remember(&self, client: u64, keys: &[Bytes], index: u64) {
        self.with(|inner| {
            for key in keys {
                if !inner.keys.contains_key(key) && inner.keys.len() >= MAX_TRACKED_KEYS {
                    if let Some(victim) = inner.keys.keys().next().cloned() {
                        let clients = inner.keys.remove(&victim).unwrap_or_default();
                        for other in clients {
                            send(inner, other, std::slice::from_ref(&victim), index);
                        }
                    }
                }
                inner.keys.entry(key.clone()).or_default().insert(client);
            }
        });
    }

    /// `key` changed at `index`: invalidate it for the clients that may
    /// cache it.
    pub fn changed(&self, index: u64, key: &Bytes) {
        if self.active.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.with(|inner| {
            let mut targets: Vec<u64> = inner
                .keys
                .remove(key)
                .map(|clients| {
                    clients
                        .into_iter()
                        .filter(|c| inner.trackers.get(c).is_some_and(|o| !o.bcast))
                        .collect()
                })
                .unwrap_or_default();
            for (prefix, clients) in &inner.prefixes {
                if key.starts_with(prefix) {
                    targets.extend(clients.iter().copied());
                }
            }
            targets.sort_unstable();
            targets.dedup();
            for client in targets {
                send(inner, client, std::slice::from_ref(key), index);
            }
        });
    }

    /// Keys remembered for default-mode tracking (for INFO).
    pub fn tracked_keys(&self) -> usize {
        self.with(|inner| inner.keys.len())
    }

    pub fn tracking_clients(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// Posts an invalidation of `keys` for `client` (or its redirect target).
fn send(inner: &Inner, client: u64, keys: &[Bytes], index: u64) {
    let Some(options) = inner.trackers.get(&client) else {
        return;
    };
    let keys = Reply::Array(keys.iter().cloned().map(Reply::Bulk).collect());
    let (target, redirected) = match options.redirect {
        Some(redirect) => match inner.connections.get(&redirect) {
            Some(target) => (target, true),
            None => {
                // The target left: a RESP3 client is told its redirect broke.
                if let Some(own) = inner.connections.get(&client) {
                    if own.resp3.load(Ordering::Relaxed) {
                        own.mailbox.post(Push::new(
                            index,
                            Reply::Push(vec![
                                Reply::bulk("tracking-redir-broken"),
                                Reply::Integer(redirect as i64),
                            ]),
                        ));
                    }
                }
                return;
            }
        },
        None => match inner.connections.get(&client) {
            Some(target) => (target, false),
            None => return,
        },
    };
    let message = if target.resp3.load(Ordering::Relaxed) {
        Reply::Push(vec![Reply::bulk("invalidate"), keys])
    } else if redirected {
        Reply::Push(vec![
            Reply::bulk("message"),
            Reply::bulk(INVALIDATE_CHANNEL),
            keys,
        ])
    } else {
        // RESP2 without a redirect has no way to receive them (as Redis).
        return;
    };
    let mut push = Push::new(index, message);
    push.invalidation = Some(client);
    target.mailbox.post(push);
}
