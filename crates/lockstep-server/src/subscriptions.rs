//! One connection's SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE state and the
//! PUBSUB introspection command.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use lockstep_engine::Reply;
use tokio::sync::mpsc;

use crate::pubsub::{Kind, Mailbox, PubSub, Push};

pub struct Subscriptions {
    client: u64,
    pubsub: Arc<PubSub>,
    mailbox: Mailbox,
    /// Taken by the connection, which writes what arrives in it.
    receiver: Option<mpsc::Receiver<Push>>,
    overflowed: Arc<AtomicBool>,
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    shard_channels: BTreeSet<Bytes>,
}

impl Subscriptions {
    pub fn new(client: u64, pubsub: Arc<PubSub>) -> Self {
        let (mailbox, receiver, overflowed) = Mailbox::new();
        Subscriptions {
            client,
            pubsub,
            mailbox,
            receiver: Some(receiver),
            overflowed,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            shard_channels: BTreeSet::new(),
        }
    }

    pub fn take_receiver(&mut self) -> Option<mpsc::Receiver<Push>> {
        self.receiver.take()
    }

    /// Where this connection's messages go.
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    pub fn overflowed(&self) -> Arc<AtomicBool> {
        self.overflowed.clone()
    }

    /// Whether the connection is in subscribed mode (RESP2 then only
    /// accepts subscription commands, PING and QUIT).
    pub fn active(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard_channels.is_empty())
    }

    /// (channels, patterns, shard channels) subscribed, for CLIENT LIST.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.channels.len(),
            self.patterns.len(),
            self.shard_channels.len(),
        )
    }

    fn set(&mut self, kind: Kind) -> &mut BTreeSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard_channels,
        }
    }

    /// Redis counts channels and patterns together, shard channels apart.
    fn count(&self, kind: Kind) -> i64 {
        match kind {
            Kind::Shard => self.shard_channels.len() as i64,
            _ => (self.channels.len() + self.patterns.len()) as i64,
        }
    }

    pub fn subscribe(&mut self, kind: Kind, names: &[Bytes]) -> Reply {
        let (verb, _) = kind.verbs();
        let mut replies = Vec::with_capacity(names.len());
        for name in names {
            if self.set(kind).insert(name.clone()) {
                self.pubsub
                    .subscribe(kind, name, self.client, &self.mailbox);
            }
            replies.push(Reply::Push(vec![
                Reply::bulk(verb),
                Reply::Bulk(name.clone()),
                Reply::Integer(self.count(kind)),
            ]));
        }
        Reply::Sequence(replies)
    }

    /// Unsubscribes from `names`, or from every name of that kind if none.
    pub fn unsubscribe(&mut self, kind: Kind, names: &[Bytes]) -> Reply {
        let (_, verb) = kind.verbs();
        let names: Vec<Bytes> = if names.is_empty() {
            self.set(kind).iter().cloned().collect()
        } else {
            names.to_vec()
        };
        if names.is_empty() {
            return Reply::Push(vec![
                Reply::bulk(verb),
                Reply::Nil,
                Reply::Integer(self.count(kind)),
            ]);
        }
        let mut replies = Vec::with_capacity(names.len());
        for name in names {
            if self.set(kind).remove(&name) {
                self.pubsub.unsubscribe(kind, &name, self.client);
            }
            replies.push(Reply::Push(vec![
                Reply::bulk(verb),
                Reply::Bulk(name),
                Reply::Integer(self.count(kind)),
            ]));
        }
        Reply::Sequence(replies)
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            let names: Vec<Bytes> = self.set(kind).iter().cloned().collect();
            for name in names {
                self.pubsub.unsubscribe(kind, &name, self.client);
            }
        }
    }
}

/// PUBSUB CHANNELS / NUMSUB / NUMPAT / SHARDCHANNELS / SHARDNUMSUB, as this
/// node sees them (as in Redis Cluster).
pub fn pubsub_command(pubsub: &PubSub, args: &[Bytes]) -> Reply {
    let Some(sub) = args.first() else {
        return Reply::wrong_arity("pubsub");
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let rest = &args[1..];
    match sub.as_str() {
        "channels" | "shardchannels" if rest.len() <= 1 => {
            let kind = if sub == "channels" {
                Kind::Channel
            } else {
                Kind::Shard
            };
            Reply::Array(pubsub.names(kind, rest.first()))
        }
        "numsub" | "shardnumsub" => {
            let kind = if sub == "numsub" {
                Kind::Channel
            } else {
                Kind::Shard
            };
            Reply::Array(
                rest.iter()
                    .flat_map(|name| {
                        [
                            Reply::Bulk(name.clone()),
                            Reply::Integer(pubsub.count(kind, name) as i64),
                        ]
                    })
                    .collect(),
            )
        }
        "numpat" if rest.is_empty() => Reply::Integer(pubsub.pattern_count() as i64),
        "channels" | "shardchannels" | "numpat" => Reply::error(format!(
            "ERR wrong number of arguments for 'pubsub|{sub}' command"
        )),
        _ => Reply::error(format!("ERR unknown subcommand '{sub}'. Try PUBSUB HELP.")),
    }
}
