//! The coordination commands that need this node's help besides the log:
//! lease binding and coalesced renewals, blocking reads after an index
//! (ELECT.OBSERVE, SVC.DISCOVER, BARRIER.WAIT) and SVC.PICK's turns. The
//! decisions stay the engine's: these handlers only wait, count and batch.

use std::time::{Duration, Instant};

use bytes::Bytes;
use lockstep_engine::Reply;

use super::{propose_error, Session};
use crate::watchers::Watchers;

fn is(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

/// The value after option `name` among `argv[from..]` (name, value pairs).
fn option<'a>(argv: &'a [Bytes], from: usize, name: &str) -> Option<&'a Bytes> {
    argv.get(from..)?
        .chunks(2)
        .find(|pair| is(&pair[0], name))
        .and_then(|pair| pair.get(1))
}

fn number(arg: &[u8]) -> Option<u64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// Whether `argv` is a read that may block until a record changes.
pub fn blocks(argv: &[Bytes]) -> bool {
    let Some(name) = argv.first() else {
        return false;
    };
    if is(name, "barrier.wait") {
        return true;
    }
    if is(name, "xread") {
        return argv.iter().any(|arg| is(arg, "block"));
    }
    if is(name, "changes.read") {
        // Options follow `pattern FROM index`; no option's value is a word.
        return argv.iter().skip(4).any(|arg| is(arg, "block"));
    }
    (is(name, "elect.observe") || is(name, "svc.discover")) && option(argv, 2, "after").is_some()
}

/// Remembered SVC.PICK turns per connection, at most: a connection
/// picking among more services starts their turns over.
const MAX_PICK_SERVICES: usize = 1024;

impl Session {
    /// Runs `argv` if it is one of these commands; `None` sends it on to
    /// the engine.
    pub(super) async fn coordination(&mut self, name: &str, argv: &[Bytes]) -> Option<Reply> {
        Some(match name {
            "lease.bind" => self.bind(argv).await,
            "lease.unbind" => self.unbind(argv),
            "lease.keepalive" => self.keepalive(argv).await,
            "elect.observe" | "svc.discover" | "barrier.wait" if blocks(argv) => {
                self.blocking_read(argv).await
            }
            "changes.read" if blocks(argv) => self.blocking_feed_read(argv).await,
            "svc.pick" if argv.len() >= 2 && option(argv, 2, "cursor").is_none() => {
                if self.pick_turns.len() >= MAX_PICK_SERVICES {
                    self.pick_turns.clear();
                }
                let turn = self.pick_turns.entry(argv[1].clone()).or_insert(0);
                let cursor = *turn;
                *turn += 1;
                let mut with_turn = argv.to_vec();
                with_turn.push(Bytes::from_static(b"CURSOR"));
                with_turn.push(Bytes::from(cursor.to_string()));
                self.engine_command(&with_turn).await
            }
            _ => return None,
        })
    }

    /// LEASE.BIND id: this connection keeps the lease alive until it
    /// closes or unbinds; the reply is the lease's TTL after a renewal.
    async fn bind(&mut self, argv: &[Bytes]) -> Reply {
        if argv.len() != 2 {
            return Reply::wrong_arity("lease.bind");
        }
        let Some(id) = number(&argv[1]).filter(|id| *id > 0) else {
            return Reply::error("ERR invalid lease id");
        };
        let query = [Bytes::from_static(b"LEASE.TTL"), argv[1].clone()];
        let node = self.context.node.clone();
        let info = match node.read(&query).await {
            Ok(info) => info,
            Err(err) => return propose_error(err, node.request_timeout().as_secs()),
        };
        let granted = match &info {
            Reply::Map(fields) => fields.iter().find_map(|(k, v)| match (k, v) {
                (Reply::Bulk(k), Reply::Integer(ttl)) if k.as_ref() == b"granted-ttl" => {
                    Some(*ttl as u64)
                }
                _ => None,
            }),
            _ => None,
        };
        let Some(granted) = granted else {
            return Reply::error("ERR no such lease");
        };
        if self.bound_leases.insert(id) {
            self.context
                .keepalives
                .bind(id, Duration::from_millis(granted));
        }
        match self.context.keepalives.renew(vec![id]).await {
            Ok(remaining) if remaining.first().copied().unwrap_or(-2) >= 0 => {
                Reply::Integer(remaining[0])
            }
            Ok(_) => {
                self.bound_leases.remove(&id);
                self.context.keepalives.unbind(id);
                Reply::error("ERR no such lease")
            }
            Err(err) => propose_error(err, node.request_timeout().as_secs()),
        }
    }

    /// LEASE.UNBIND [id]: stop keeping one (or every) bound lease alive.
    fn unbind(&mut self, argv: &[Bytes]) -> Reply {
        match argv {
            [_] => {
                let ids = std::mem::take(&mut self.bound_leases);
                for id in &ids {
                    self.context.keepalives.unbind(*id);
                }
                Reply::Integer(ids.len() as i64)
            }
            [_, id] => {
                let Some(id) = number(id).filter(|id| *id > 0) else {
                    return Reply::error("ERR invalid lease id");
                };
                let was_bound = self.bound_leases.remove(&id);
                if was_bound {
                    self.context.keepalives.unbind(id);
                }
                Reply::Integer(was_bound as i64)
            }
            _ => Reply::wrong_arity("lease.unbind"),
        }
    }

    /// LEASE.KEEPALIVE id [id ...], in this node's next coalesced entry.
    async fn keepalive(&mut self, argv: &[Bytes]) -> Reply {
        if let Err(reply) = lockstep_engine::parse(argv) {
            return reply;
        }
        let ids: Vec<u64> = argv[1..].iter().filter_map(|id| number(id)).collect();
        match self.context.keepalives.renew(ids).await {
            Ok(remaining) => Reply::Array(remaining.into_iter().map(Reply::Integer).collect()),
            Err(err) => propose_error(err, self.context.node.request_timeout().as_secs()),
        }
    }

    /// CHANGES.READ ... BLOCK ms: an empty page waits until a change is
    /// applied on this node, then reads on from where the page ended; at
    /// the timeout the (empty) page is the answer, with the index reached.
    /// BLOCK 0 waits without end.
    async fn blocking_feed_read(&mut self, argv: &[Bytes]) -> Reply {
        if let Err(reply) = lockstep_engine::parse(argv) {
            return reply;
        }
        let block_at = 4 + argv[4..]
            .iter()
            .position(|arg| is(arg, "block"))
            .unwrap_or(0);
        let wait = argv
            .get(block_at + 1)
            .and_then(|ms| number(ms))
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        let deadline = wait.map(|wait| Instant::now() + wait);
        // Without BLOCK: the engine answers at once.
        let mut query: Vec<Bytes> = argv.to_vec();
        query.drain(block_at..(block_at + 2).min(query.len()));
        let mut feed = self.context.watchers.feed();
        let node = self.context.node.clone();
        let mut first = true;
        loop {
            feed.mark_unchanged();
            let reply = if first && !self.stale_reads {
                match node.read(&query).await {
                    Ok(reply) => reply,
                    Err(err) => return propose_error(err, node.request_timeout().as_secs()),
                }
            } else {
                node.read_local(&query)
            };
            first = false;
            let Reply::Map(fields) = &reply else {
                return reply;
            };
            let found = fields.iter().any(|(k, v)| {
                matches!((k, v), (Reply::Bulk(k), Reply::Array(changes)) if k.as_ref() == b"changes" && !changes.is_empty())
            });
            if found {
                return reply;
            }
            // Go on from where this page ended.
            let next = fields.iter().find_map(|(k, v)| match (k, v) {
                (Reply::Bulk(k), Reply::Integer(next)) if k.as_ref() == b"next" => Some(*next),
                _ => None,
            });
            if let Some(next) = next {
                query[3] = Bytes::from(next.to_string());
            }
            if !Watchers::next_change(&mut feed, deadline).await {
                return reply;
            }
        }
    }

    /// A read that waits until its answer changes (or WAIT passes: nil):
    /// looked at first through ReadIndex, then again each time the
    /// record's key changes on this node. No polling; a change between
    /// two looks is not missed (the wake-up is kept until the next wait).
    async fn blocking_read(&mut self, argv: &[Bytes]) -> Reply {
        if let Err(reply) = lockstep_engine::parse(argv) {
            return reply;
        }
        let discover = is(&argv[0], "svc.discover");
        let after = option(argv, 2, "after").and_then(|a| number(a));
        let wait = option(argv, 2, "wait")
            .and_then(|w| number(w))
            .map(Duration::from_millis);
        let deadline = wait.map(|wait| Instant::now() + wait);
        let watch = self.context.watchers.watch(argv[1].clone());
        let node = self.context.node.clone();
        let mut first = true;
        loop {
            let reply = if first && !self.stale_reads {
                match node.read(argv).await {
                    Ok(reply) => reply,
                    Err(err) => return propose_error(err, node.request_timeout().as_secs()),
                }
            } else {
                node.read_local(argv)
            };
            first = false;
            let ready = match &reply {
                Reply::Nil => false,
                Reply::Map(fields) if discover => {
                    // Ready once the service's index moved from AFTER.
                    let index = fields.iter().find_map(|(k, v)| match (k, v) {
                        (Reply::Bulk(k), Reply::Integer(i)) if k.as_ref() == b"index" => {
                            Some(*i as u64)
                        }
                        _ => None,
                    });
                    index != after
                }
                _ => true,
            };
            if ready {
                return reply;
            }
            match deadline {
                Some(at) => {
                    tokio::select! {
                        _ = watch.notify().notified() => {}
                        _ = tokio::time::sleep_until(at.into()) => return Reply::Nil,
                    }
                }
                None => watch.notify().notified().await,
            }
        }
    }
}
