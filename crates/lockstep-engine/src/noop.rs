//! Conditional writes that change nothing, answered without the log.
//!
//! A failed `SET ... NX` on a live key (a contended lock's retry), a failed
//! `SET ... XX` / `IFEQ` / `IFNE`, or a `DELIFEQ` / `DELEX` whose condition
//! does not hold changes no state and emits nothing. [`noop_reply`] runs
//! such a command against a state, with no entry, and gives its reply
//! only if it wrote, notified, parked and scheduled nothing; the node
//! then answers it from a linearizable read (after a ReadIndex barrier)
//! instead of appending an entry.
//!
//! Why that is linearizable: the read state is at an applied index `a` at
//! or after the commit index the leader confirmed once the request had
//! arrived, so every write that completed before the request began is in
//! it; and entry `a + 1` was not committed before the request began (it
//! would then be at or below that commit index). So the state after `a`
//! was the current state at some instant inside the request's interval,
//! and the command, run at that state with its cluster time, gives the
//! reply the log would have given at that instant. A command that would
//! write is never answered here: it goes through the log as before.
//! Only listed commands qualify, so a command whose reply depends on the
//! entry's own index (a fencing token) can never be answered without one.

use bytes::Bytes;
use lockstep_store::{StateRead, StoreError};

use crate::commands::strings::StringCommand;
use crate::commands::{self, Command};
use crate::context::Context;
use crate::Reply;

/// Whether `command` is one whose failure may be answered by a read.
fn qualifies(command: &Command) -> bool {
    match command {
        Command::Str(StringCommand::Set {
            condition, lease, ..
        }) => lease.is_none() && *condition != commands::strings::SetCondition::Always,
        Command::Str(StringCommand::DelIf(..)) => true,
        _ => false,
    }
}

/// Whether parsed `command` is one that may change nothing (a listed
/// conditional write), so that trying [`noop_reply`] is worth it.
pub fn may_be_noop(command: &Command) -> bool {
    qualifies(command)
}

/// The key of `command` if it is a listed conditional write of which, among
/// attempts that overlap in time, at most one can act (`SET ... NX`: once
/// one has set the key, the others find it present). A node lets one such
/// attempt per key go to the log at a time; the others wait for it and are
/// then, most often, answered by a read (see the server's `flights`).
pub fn exclusive_key(command: &Command) -> Option<&Bytes> {
    match command {
        Command::Str(StringCommand::Set { key, condition, .. })
            if *condition == commands::strings::SetCondition::IfAbsent && qualifies(command) =>
        {
            Some(key)
        }
        _ => None,
    }
}

/// The reply of `argv` at `state` (after index `applied`, at cluster
/// time `ct`) if it is a listed conditional write that would change
/// nothing there; None if it would act (or does not qualify).
pub fn noop_reply(
    state: &dyn StateRead,
    applied: u64,
    ct: u64,
    argv: &[Bytes],
) -> Result<Option<Reply>, StoreError> {
    let Ok((command, _)) = commands::parse(argv) else {
        return Ok(None);
    };
    if !qualifies(&command) {
        return Ok(None);
    }
    // The index such an entry would have; a no-op never records it.
    let mut ctx = Context::new(state, applied + 1, ct)?;
    ctx.applied = applied;
    let reply = commands::execute(&mut ctx, command)?;
    let finished = ctx.finish();
    let changed_nothing = finished.batch.is_empty()
        && finished.events.is_empty()
        && finished.deferred.is_empty()
        && !finished.parked
        && finished.deadlines.is_empty()
        && finished.lock_records.is_empty();
    Ok(changed_nothing.then_some(reply))
}
