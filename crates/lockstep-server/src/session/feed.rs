//! CHANGES.SUBSCRIBE / CHANGES.UNSUBSCRIBE: the change feed as pushes.
//!
//! A subscription is a task of this node that reads the feed from the
//! subscriber's index on, page by page from this node's applied state
//! (every node holds the same history, so the pages have no gaps), posts
//! each change as a push at its reader's pace, and waits for the next
//! applied change when it has caught up. It ends with its connection or
//! with CHANGES.UNSUBSCRIBE.

use bytes::Bytes;
use lockstep_engine::Reply;

use super::{is, propose_error, Session};
use crate::pubsub::Push;
use crate::watchers::Watchers;

/// Feed subscriptions one connection may hold.
pub const MAX_FEED_SUBSCRIPTIONS: usize = 16;
/// Changes read per page while catching up.
const PAGE: &str = "1000";

fn field<'a>(fields: &'a [(Reply, Reply)], name: &str) -> Option<&'a Reply> {
    fields.iter().find_map(|(k, v)| match k {
        Reply::Bulk(k) if k.as_ref() == name.as_bytes() => Some(v),
        _ => None,
    })
}

/// `(next, changes)` of a CHANGES.READ answer, or the answer itself if it
/// is an error.
fn page(reply: Reply) -> Result<(u64, Vec<Reply>), Reply> {
    let Reply::Map(fields) = reply else {
        return Err(reply);
    };
    let next = match field(&fields, "next") {
        Some(Reply::Integer(next)) => *next as u64,
        _ => return Err(Reply::error("ERR malformed change feed page")),
    };
    let changes = match field(&fields, "changes") {
        Some(Reply::Array(changes)) => changes.clone(),
        _ => Vec::new(),
    };
    Ok((next, changes))
}

fn change_index(change: &Reply) -> u64 {
    match change {
        Reply::Map(fields) => match field(fields, "index") {
            Some(Reply::Integer(index)) => *index as u64,
            _ => 0,
        },
        _ => 0,
    }
}

impl Session {
    /// CHANGES.SUBSCRIBE pattern FROM index [WITHVALUES].
    pub(super) async fn feed_subscribe(&mut self, argv: &[Bytes]) -> Reply {
        let with_values = match argv.len() {
            4 => false,
            5 if is(&argv[4], "withvalues") => true,
            5 => return Reply::syntax_error(),
            _ => return Reply::wrong_arity("changes.subscribe"),
        };
        if self.feeds.len() >= MAX_FEED_SUBSCRIPTIONS {
            return Reply::error(format!(
                "ERR at most {MAX_FEED_SUBSCRIPTIONS} change feed subscriptions per connection"
            ));
        }
        let pattern = argv[1].clone();
        let mut query = vec![
            Bytes::from_static(b"CHANGES.READ"),
            pattern.clone(),
            argv[2].clone(),
            argv[3].clone(),
            Bytes::from_static(b"COUNT"),
            Bytes::from_static(PAGE.as_bytes()),
        ];
        if with_values {
            query.push(Bytes::from_static(b"WITHVALUES"));
        }
        if let Err(reply) = lockstep_engine::parse(&query) {
            return reply;
        }
        // The first page through ReadIndex: it refuses an index below the
        // floor before anything is subscribed.
        let node = self.context.node.clone();
        let first = match node.read(&query).await {
            Ok(reply) => reply,
            Err(err) => return propose_error(err, node.request_timeout().as_secs()),
        };
        let (mut next, mut changes) = match page(first) {
            Ok(page) => page,
            Err(reply) => return reply,
        };
        let mailbox = self.subscriptions.mailbox().clone();
        let mut feed = self.context.watchers.feed();
        let name = pattern.clone();
        let task = tokio::spawn(async move {
            loop {
                feed.mark_unchanged();
                let caught_up = changes.is_empty();
                for change in changes.drain(..) {
                    let index = change_index(&change);
                    let push = Reply::Push(vec![
                        Reply::bulk("changes"),
                        Reply::Bulk(name.clone()),
                        change,
                    ]);
                    if !mailbox.post_waiting(Push::new(index, push)).await {
                        return;
                    }
                }
                if caught_up && !Watchers::next_change(&mut feed, None).await {
                    return;
                }
                query[3] = Bytes::from(next.to_string());
                match page(node.read_local(&query)) {
                    Ok((n, c)) => {
                        next = n;
                        changes = c;
                    }
                    Err(error) => {
                        // The floor passed a reader that fell a window behind.
                        let push = Reply::Push(vec![
                            Reply::bulk("changes-error"),
                            Reply::Bulk(name.clone()),
                            error,
                        ]);
                        mailbox.post_waiting(Push::new(next, push)).await;
                        return;
                    }
                }
            }
        });
        if let Some(old) = self.feeds.insert(pattern.clone(), task) {
            old.abort();
        }
        Reply::Push(vec![
            Reply::bulk("changes-subscribe"),
            Reply::Bulk(pattern),
            Reply::Integer(self.feeds.len() as i64),
        ])
    }

    /// CHANGES.UNSUBSCRIBE [pattern ...]: ends those subscriptions (all
    /// without a pattern); the reply counts what is left.
    pub(super) fn feed_unsubscribe(&mut self, argv: &[Bytes]) -> Reply {
        let names: Vec<Bytes> = if argv.len() > 1 {
            argv[1..].to_vec()
        } else {
            self.feeds.keys().cloned().collect()
        };
        for name in &names {
            if let Some(task) = self.feeds.remove(name) {
                task.abort();
            }
        }
        Reply::Integer(self.feeds.len() as i64)
    }
}

impl Session {
    /// XREAD [COUNT n] [BLOCK ms] STREAMS __changes__ id: `$` is resolved
    /// to this node's newest change first (then only later ones count);
    /// BLOCK waits until there is one (0: without end), else nil. The
    /// reply is a map in RESP3 and `[[stream, entries]]` in RESP2, as
    /// Redis answers.
    pub(super) async fn stream_read(&mut self, argv: &[Bytes]) -> Reply {
        let mut argv = argv.to_vec();
        let node = self.context.node.clone();
        if argv.last().is_some_and(|id| id.as_ref() == b"$") {
            let info = node.read_local(&[Bytes::from_static(b"CHANGES.INFO")]);
            let applied = match &info {
                Reply::Map(fields) => match field(fields, "applied") {
                    Some(Reply::Integer(applied)) => *applied,
                    _ => 0,
                },
                _ => 0,
            };
            *argv.last_mut().expect("an id") = Bytes::from(format!("{applied}-{}", u32::MAX));
        }
        if let Err(reply) = lockstep_engine::parse(&argv) {
            return reply;
        }
        let block_at = argv.iter().position(|arg| is(arg, "block"));
        let wait = block_at
            .and_then(|at| argv.get(at + 1))
            .and_then(|ms| std::str::from_utf8(ms).ok()?.parse::<u64>().ok());
        let deadline = wait
            .filter(|ms| *ms > 0)
            .map(|ms| std::time::Instant::now() + std::time::Duration::from_millis(ms));
        let mut feed = self.context.watchers.feed();
        let mut first = true;
        let reply = loop {
            feed.mark_unchanged();
            let reply = if first && !self.stale_reads {
                match node.read(&argv).await {
                    Ok(reply) => reply,
                    Err(err) => return propose_error(err, node.request_timeout().as_secs()),
                }
            } else {
                node.read_local(&argv)
            };
            first = false;
            if !matches!(reply, Reply::NilArray)
                || wait.is_none()
                || !Watchers::next_change(&mut feed, deadline).await
            {
                break reply;
            }
        };
        match reply {
            Reply::Map(streams) if self.protocol == crate::encode::Protocol::Resp2 => Reply::Array(
                streams
                    .into_iter()
                    .map(|(name, entries)| Reply::Array(vec![name, entries]))
                    .collect(),
            ),
            other => other,
        }
    }
}
