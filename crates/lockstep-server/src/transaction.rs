//! A connection's MULTI queue and WATCHed key versions. The queue is
//! validated command by command and proposed as one log entry at EXEC.

use bytes::Bytes;
use lockstep_engine::Reply;

/// Commands one MULTI may queue: a bound on a connection's memory.
pub const MAX_QUEUED_COMMANDS: usize = 100_000;

#[derive(Default)]
pub struct TransactionState {
    queued: Option<Vec<Vec<Bytes>>>,
    /// A queued command was refused: EXEC must abort.
    failed: bool,
    watches: Vec<(Bytes, u64)>,
}

impl TransactionState {
    pub fn in_multi(&self) -> bool {
        self.queued.is_some()
    }

    /// Commands queued (None outside MULTI) and keys watched, for CLIENT LIST.
    pub fn sizes(&self) -> (Option<usize>, usize) {
        (self.queued.as_ref().map(Vec::len), self.watches.len())
    }

    pub fn multi(&mut self) -> Reply {
        if self.in_multi() {
            return Reply::error("ERR MULTI calls can not be nested");
        }
        self.queued = Some(Vec::new());
        self.failed = false;
        Reply::ok()
    }

    /// Queues a command inside MULTI; `invalid` is its parse error, if any.
    pub fn queue(&mut self, argv: Vec<Bytes>, invalid: Option<Reply>) -> Reply {
        let queued = self.queued.get_or_insert_with(Vec::new);
        if let Some(reply) = invalid {
            self.failed = true;
            return reply;
        }
        if queued.len() >= MAX_QUEUED_COMMANDS {
            self.failed = true;
            return Reply::error(format!(
                "ERR a transaction may queue at most {MAX_QUEUED_COMMANDS} commands"
            ));
        }
        queued.push(argv);
        Reply::Status("QUEUED".into())
    }

    pub fn discard(&mut self) -> Reply {
        if self.queued.take().is_none() {
            return Reply::error("ERR DISCARD without MULTI");
        }
        self.watches.clear();
        Reply::ok()
    }

    /// Ends MULTI: the internal EXEC command to propose, or the reply when
    /// there is nothing to propose.
    pub fn exec(&mut self) -> Result<Vec<Bytes>, Reply> {
        let Some(queued) = self.queued.take() else {
            return Err(Reply::error("ERR EXEC without MULTI"));
        };
        let watches = std::mem::take(&mut self.watches);
        if std::mem::take(&mut self.failed) {
            return Err(Reply::error(
                "EXECABORT Transaction discarded because of previous errors.",
            ));
        }
        Ok(lockstep_engine::encode_exec(&watches, &queued))
    }

    pub fn can_watch(&self) -> Result<(), Reply> {
        if self.in_multi() {
            return Err(Reply::error("ERR WATCH inside MULTI is not allowed"));
        }
        Ok(())
    }

    pub fn watch(&mut self, keys: &[Bytes], versions: &[Reply]) -> Reply {
        for (key, version) in keys.iter().zip(versions) {
            if let Reply::Integer(version) = version {
                self.watches.push((key.clone(), *version as u64));
            }
        }
        Reply::ok()
    }

    pub fn unwatch(&mut self) -> Reply {
        self.watches.clear();
        Reply::ok()
    }
}
