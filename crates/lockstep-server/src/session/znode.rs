//! The namespace commands that need this node: reads that leave a watch
//! (ZNODE.GET / EXISTS / CHILDREN ... WATCH) and persistent watches
//! (ZNODE.WATCH / ZNODE.UNWATCH). The reads themselves are the engine's.

use bytes::Bytes;
use lockstep_engine::Reply;

use super::{is, Session};
use crate::znode_watches::Kind;

/// Whether `argv` is a namespace read with WATCH.
pub fn watches(argv: &[Bytes]) -> bool {
    let name = &argv[0];
    (is(name, "znode.get") || is(name, "znode.exists") || is(name, "znode.children"))
        && argv.iter().skip(2).any(|arg| is(arg, "watch"))
}

fn too_many() -> Reply {
    Reply::error(format!(
        "ERR at most {} watches per connection",
        crate::znode_watches::MAX_WATCHES_PER_CONNECTION
    ))
}

impl Session {
    /// A read that leaves a one-shot watch: registered before the read,
    /// armed with the read's index, dropped if the read failed (as
    /// ZooKeeper sets no watch on a failed getData).
    pub(super) async fn watched_read(&mut self, argv: &[Bytes]) -> Reply {
        if let Err(reply) = lockstep_engine::parse(argv) {
            return reply;
        }
        let kind = if is(&argv[0], "znode.get") {
            Kind::Data
        } else if is(&argv[0], "znode.exists") {
            Kind::Exists
        } else {
            Kind::Child
        };
        let watches = self.context.znode_watches.clone();
        let mailbox = self.subscriptions.mailbox().clone();
        let Some(id) = watches.register(self.id, &mailbox, argv[1].clone(), kind, None) else {
            return too_many();
        };
        let reply = self.engine_command(argv).await;
        let (index, _) = self.reply_position();
        if reply.is_error() || index == 0 {
            watches.cancel(id);
        } else {
            watches.arm(id, index);
        }
        reply
    }

    /// ZNODE.WATCH path [RECURSIVE]: a persistent watch from now on.
    pub(super) fn persistent_watch(&mut self, argv: &[Bytes]) -> Reply {
        let kind = match argv {
            [_, _] => Kind::Persistent,
            [_, _, recursive] if is(recursive, "recursive") => Kind::Recursive,
            [_, _, _] => return Reply::syntax_error(),
            _ => return Reply::wrong_arity("znode.watch"),
        };
        if let Err(err) = lockstep_engine::validate_znode_path(&argv[1]) {
            return err;
        }
        let from = self.context.node.delivered_index();
        let mailbox = self.subscriptions.mailbox().clone();
        match self.context.znode_watches.register(
            self.id,
            &mailbox,
            argv[1].clone(),
            kind,
            Some(from),
        ) {
            Some(_) => Reply::ok(),
            None => too_many(),
        }
    }

    /// ZNODE.UNWATCH path [RECURSIVE]: ends this connection's persistent
    /// watches there; the number ended.
    pub(super) fn unwatch(&mut self, argv: &[Bytes]) -> Reply {
        let kind = match argv {
            [_, _] => Kind::Persistent,
            [_, _, recursive] if is(recursive, "recursive") => Kind::Recursive,
            [_, _, _] => return Reply::syntax_error(),
            _ => return Reply::wrong_arity("znode.unwatch"),
        };
        let ended = self.context.znode_watches.unwatch(self.id, &argv[1], kind);
        Reply::Integer(ended as i64)
    }
}
