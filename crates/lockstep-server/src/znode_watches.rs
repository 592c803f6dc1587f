//! ZooKeeper-style watches on znodes, kept by this node for its
//! connections: one-shot data, exists and child watches set by a read, and
//! persistent (optionally recursive) watches. They fire from the `Znode`
//! events of applied entries, so a change made through any node fires the
//! watches on every node.
//!
//! A one-shot watch is registered before its read runs and armed with the
//! index the read was computed at: events up to that index are already in
//! the read's answer and are dropped, later ones fire (once). So no change
//! between the read and the watch is missed, and none is reported twice.
//! Like every push, a watch event carries its entry's index and goes out
//! before any reply computed at or after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use lockstep_engine::Reply;

use crate::pubsub::{Mailbox, Push};

/// Watches one connection may hold.
pub const MAX_WATCHES_PER_CONNECTION: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// ZNODE.GET ... WATCH: data changed, node deleted.
    Data,
    /// ZNODE.EXISTS ... WATCH: created, data changed, deleted.
    Exists,
    /// ZNODE.CHILDREN ... WATCH: children changed, node deleted.
    Child,
    /// ZNODE.WATCH path: every event of the node; stays.
    Persistent,
    /// ZNODE.WATCH path RECURSIVE: created, changed, deleted for the node
    /// and every descendant; stays.
    Recursive,
}

impl Kind {
    fn fires_on(self, event: &str) -> bool {
        use lockstep_engine::watch_events::{CHILDREN_CHANGED, DATA_CHANGED, DELETED};
        match self {
            Kind::Data => event == DATA_CHANGED || event == DELETED,
            Kind::Exists => event != CHILDREN_CHANGED,
            Kind::Child => event == CHILDREN_CHANGED || event == DELETED,
            Kind::Persistent => true,
            Kind::Recursive => event != CHILDREN_CHANGED,
        }
    }

    fn one_shot(self) -> bool {
        !matches!(self, Kind::Persistent | Kind::Recursive)
    }
}

enum State {
    /// Registered before its read: events wait for the read's index.
    Pending(Vec<(u64, &'static str, Bytes)>),
    /// Fires for events after this index.
    Armed(u64),
}

struct Watch {
    client: u64,
    path: Bytes,
    kind: Kind,
    mailbox: Mailbox,
    state: State,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    watches: HashMap<u64, Watch>,
    by_path: HashMap<Bytes, Vec<u64>>,
    recursive: HashMap<Bytes, Vec<u64>>,
    per_client: HashMap<u64, usize>,
}

#[derive(Default)]
pub struct ZnodeWatches {
    inner: Mutex<Inner>,
    count: AtomicUsize,
}

fn push(index: u64, event: &str, path: &Bytes) -> Push {
    Push::new(
        index,
        Reply::Push(vec![
            Reply::bulk("znode"),
            Reply::bulk(event.to_string()),
            Reply::Bulk(path.clone()),
            Reply::Integer(index as i64),
        ]),
    )
}

/// Whether an event on `path` concerns a recursive watch on `root`.
fn under(root: &[u8], path: &[u8]) -> bool {
    root == b"/" || path == root || (path.starts_with(root) && path.get(root.len()) == Some(&b'/'))
}

impl ZnodeWatches {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().expect("znode watches lock"))
    }

    /// Registers a watch; a one-shot one waits for [`ZnodeWatches::arm`].
    /// `None` if the connection holds too many.
    pub fn register(
        &self,
        client: u64,
        mailbox: &Mailbox,
        path: Bytes,
        kind: Kind,
        armed_at: Option<u64>,
    ) -> Option<u64> {
        self.with(|inner| {
            let held = inner.per_client.entry(client).or_default();
            if *held >= MAX_WATCHES_PER_CONNECTION {
                return None;
            }
            *held += 1;
            inner.next_id += 1;
            let id = inner.next_id;
            let table = if kind == Kind::Recursive {
                &mut inner.recursive
            } else {
                &mut inner.by_path
            };
            table.entry(path.clone()).or_default().push(id);
            inner.watches.insert(
                id,
                Watch {
                    client,
                    path,
                    kind,
                    mailbox: mailbox.clone(),
                    state: match armed_at {
                        Some(index) => State::Armed(index),
                        None => State::Pending(Vec::new()),
                    },
                },
            );
            self.count.fetch_add(1, Ordering::Relaxed);
            Some(id)
        })
    }

    /// The read behind watch `id` was computed at `index`: events after it
    /// fire (the ones that came meanwhile at once).
    pub fn arm(&self, id: u64, index: u64) {
        self.with(|inner| {
            let Some(watch) = inner.watches.get_mut(&id) else {
                return;
            };
            let State::Pending(waiting) = std::mem::replace(&mut watch.state, State::Armed(index))
            else {
                return;
            };
            let mut fired = false;
            for (at, event, path) in waiting {
                if at > index && watch.kind.fires_on(event) {
                    watch.mailbox.post(push(at, event, &path));
                    fired = true;
                    if watch.kind.one_shot() {
                        break;
                    }
                }
            }
            if fired && watch.kind.one_shot() {
                remove(inner, id);
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }

    /// Drops watch `id` (its read failed, or the client asked).
    pub fn cancel(&self, id: u64) {
        self.with(|inner| {
            if remove(inner, id) {
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }

    /// Ends `client`'s persistent watches on `path` of `kind`; how many.
    pub fn unwatch(&self, client: u64, path: &Bytes, kind: Kind) -> usize {
        self.with(|inner| {
            let table = if kind == Kind::Recursive {
                &inner.recursive
            } else {
                &inner.by_path
            };
            let ids: Vec<u64> = table
                .get(path)
                .into_iter()
                .flatten()
                .copied()
                .filter(|id| {
                    inner
                        .watches
                        .get(id)
                        .is_some_and(|w| w.client == client && w.kind == kind)
                })
                .collect();
            for id in &ids {
                remove(inner, *id);
            }
            self.count.fetch_sub(ids.len(), Ordering::Relaxed);
            ids.len()
        })
    }

    /// How many watches `client` holds on `path` of `kind`.
    pub fn held(&self, client: u64, path: &Bytes, kind: Kind) -> usize {
        self.with(|inner| {
            let table = if kind == Kind::Recursive {
                &inner.recursive
            } else {
                &inner.by_path
            };
            table
                .get(path)
                .into_iter()
                .flatten()
                .filter(|id| {
                    inner
                        .watches
                        .get(id)
                        .is_some_and(|w| w.client == client && w.kind == kind)
                })
                .count()
        })
    }

    /// The connection closed: all its watches go.
    pub fn disconnect(&self, client: u64) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.with(|inner| {
            let ids: Vec<u64> = inner
                .watches
                .iter()
                .filter(|(_, w)| w.client == client)
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                remove(inner, *id);
            }
            self.count.fetch_sub(ids.len(), Ordering::Relaxed);
            inner.per_client.remove(&client);
        });
    }

    /// A znode event of the entry at `index`.
    pub fn deliver(&self, index: u64, path: &Bytes, event: &'static str) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.with(|inner| {
            let mut ids: Vec<u64> = inner.by_path.get(path).cloned().unwrap_or_default();
            for (root, watching) in &inner.recursive {
                if under(root, path) {
                    ids.extend(watching.iter().copied());
                }
            }
            let mut spent = Vec::new();
            for id in ids {
                let Some(watch) = inner.watches.get_mut(&id) else {
                    continue;
                };
                if !watch.kind.fires_on(event) {
                    continue;
                }
                match &mut watch.state {
                    State::Pending(waiting) => waiting.push((index, event, path.clone())),
                    State::Armed(after) if index > *after => {
                        watch.mailbox.post(push(index, event, path));
                        if watch.kind.one_shot() {
                            spent.push(id);
                        }
                    }
                    State::Armed(_) => {}
                }
            }
            for id in &spent {
                remove(inner, *id);
            }
            self.count.fetch_sub(spent.len(), Ordering::Relaxed);
        });
    }

    /// Watches on this node (for INFO).
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

fn remove(inner: &mut Inner, id: u64) -> bool {
    let Some(watch) = inner.watches.remove(&id) else {
        return false;
    };
    let table = if watch.kind == Kind::Recursive {
        &mut inner.recursive
    } else {
        &mut inner.by_path
    };
    if let Some(ids) = table.get_mut(&watch.path) {
        ids.retain(|other| *other != id);
        if ids.is_empty() {
            table.remove(&watch.path);
        }
    }
    if let Some(held) = inner.per_client.get_mut(&watch.client) {
        *held = held.saturating_sub(1);
    }
    true
}
