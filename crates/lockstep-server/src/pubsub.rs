//! This node's subscribers. Every node applies every PUBLISH (it is a log
//! entry), so each delivers to its own subscribers and a message reaches
//! every subscriber in the cluster once, in log order.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lockstep_engine::{glob_match, Event, Reply};
use tokio::sync::mpsc;

/// Messages a subscriber may have waiting; one that falls further behind
/// is disconnected, as Redis does with its pub/sub output buffer limit.
pub const SUBSCRIBER_QUEUE: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

impl Kind {
    pub fn verbs(self) -> (&'static str, &'static str) {
        match self {
            Kind::Channel => ("subscribe", "unsubscribe"),
            Kind::Pattern => ("psubscribe", "punsubscribe"),
            Kind::Shard => ("ssubscribe", "sunsubscribe"),
        }
    }
}

/// A message for one connection: published messages, invalidations,
/// watch events. `index` is the entry that caused it: the connection
/// writes it before any reply computed at or after that index.
#[derive(Clone, Debug)]
pub struct Push {
    pub index: u64,
    pub message: Reply,
    /// An invalidation for this tracking client (NOLOOP may drop it).
    pub invalidation: Option<u64>,
}

impl Push {
    pub fn new(index: u64, message: Reply) -> Self {
        Push {
            index,
            message,
            invalidation: None,
        }
    }
}

/// One connection's way to receive messages.
#[derive(Clone)]
pub struct Mailbox {
    sender: mpsc::Sender<Push>,
    overflowed: Arc<AtomicBool>,
}

impl Mailbox {
    pub fn new() -> (Mailbox, mpsc::Receiver<Push>, Arc<AtomicBool>) {
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_QUEUE);
        let overflowed = Arc::new(AtomicBool::new(false));
        (
            Mailbox {
                sender,
                overflowed: overflowed.clone(),
            },
            receiver,
            overflowed,
        )
    }

    /// Queues `message` once there is room (a change-feed subscription
    /// goes at its reader's pace); false once the connection is gone.
    pub async fn post_waiting(&self, message: Push) -> bool {
        self.sender.send(message).await.is_ok()
    }

    /// Queues `message`; a connection too far behind is marked to close.
    pub fn post(&self, message: Push) -> bool {
        match self.sender.try_send(message) {
            Ok(()) => true,
            Err(_) => {
                self.overflowed.store(true, Ordering::Relaxed);
                false
            }
        }
    }
}

/// Subscriber mailboxes by kind, then channel or pattern, then client id.
type Table = HashMap<Kind, HashMap<Bytes, HashMap<u64, Mailbox>>>;

#[derive(Default)]
pub struct PubSub {
    subscriptions: Mutex<Table>,
}

fn bulk(data: &Bytes) -> Reply {
    Reply::Bulk(data.clone())
}

impl PubSub {
    fn with<R>(
        &self,
        f: impl FnOnce(&mut HashMap<Kind, HashMap<Bytes, HashMap<u64, Mailbox>>>) -> R,
    ) -> R {
        f(&mut self.subscriptions.lock().expect("pubsub lock"))
    }

    /// Delivers the event of the entry at `index`; returns how many
    /// received it.
    pub fn deliver(&self, index: u64, event: &Event) -> usize {
        let Event::Publish {
            channel,
            message,
            sharded,
        } = event
        else {
            return 0;
        };
        self.with(|subs| {
            let mut delivered = 0;
            let kind = if *sharded { Kind::Shard } else { Kind::Channel };
            let verb = if *sharded { "smessage" } else { "message" };
            if let Some(boxes) = subs.get(&kind).and_then(|by| by.get(channel)) {
                for mailbox in boxes.values() {
                    let push = Reply::Push(vec![Reply::bulk(verb), bulk(channel), bulk(message)]);
                    delivered += mailbox.post(Push::new(index, push)) as usize;
                }
            }
            if !sharded {
                for (pattern, boxes) in subs.get(&Kind::Pattern).into_iter().flatten() {
                    if !glob_match(pattern, channel) {
                        continue;
                    }
                    for mailbox in boxes.values() {
                        let push = Reply::Push(vec![
                            Reply::bulk("pmessage"),
                            bulk(pattern),
                            bulk(channel),
                            bulk(message),
                        ]);
                        delivered += mailbox.post(Push::new(index, push)) as usize;
                    }
                }
            }
            delivered
        })
    }

    pub fn subscribe(&self, kind: Kind, name: &Bytes, client: u64, mailbox: &Mailbox) {
        self.with(|subs| {
            subs.entry(kind)
                .or_default()
                .entry(name.clone())
                .or_default()
                .insert(client, mailbox.clone());
        });
    }

    pub fn unsubscribe(&self, kind: Kind, name: &Bytes, client: u64) {
        self.with(|subs| {
            if let Some(by_name) = subs.get_mut(&kind) {
                if let Some(boxes) = by_name.get_mut(name) {
                    boxes.remove(&client);
                    if boxes.is_empty() {
                        by_name.remove(name);
                    }
                }
            }
        });
    }

    /// Names with at least one subscriber, optionally matching a pattern.
    pub fn names(&self, kind: Kind, pattern: Option<&Bytes>) -> Vec<Reply> {
        self.with(|subs| {
            let names: BTreeSet<Bytes> = subs
                .get(&kind)
                .into_iter()
                .flat_map(|by_name| by_name.keys())
                .filter(|name| pattern.is_none_or(|p| glob_match(p, name)))
                .cloned()
                .collect();
            names.iter().map(bulk).collect()
        })
    }

    pub fn count(&self, kind: Kind, name: &Bytes) -> usize {
        self.with(|subs| {
            subs.get(&kind)
                .and_then(|by_name| by_name.get(name))
                .map_or(0, HashMap::len)
        })
    }

    pub fn pattern_count(&self) -> usize {
        self.with(|subs| subs.get(&Kind::Pattern).map_or(0, |by_name| by_name.len()))
    }
}
