//! One Redis key holding a string, with the writes lock clients use.
//!
//! Expiry follows lockstep's promise: a value set with a TTL of `t` is
//! never gone before `t` has passed since the SET was sent (cluster time
//! starts no earlier than the call and never runs faster than real time),
//! but it may stay longer (cluster time stands still during elections, and
//! an expired key is removed only by a later entry). So a value with a TTL
//! may be seen present at any later time, and absent by an operation that
//! returned after `call + ttl`.

use crate::history::{Model, Operation};

/// Values are numbers: workloads write unique ones, so a read names the
/// write it saw.
pub type Value = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// GET
    Read,
    /// SET k v [PX ttl]
    Write { value: Value, ttl_ms: Option<u64> },
    /// SET k v NX [PX ttl]
    SetIfAbsent { value: Value, ttl_ms: Option<u64> },
    /// SET k v IFEQ expected (drops any TTL, as SET does)
    CompareAndSet { expected: Value, value: Value },
    /// The compare-and-delete release (Lua or DELIFEQ)
    CompareAndDelete { expected: Value },
    /// DEL
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// GET's reply.
    Value(Option<Value>),
    /// Whether a conditional command acted (OK vs nil, 1 vs 0); plain SET
    /// always replies `Done(true)`.
    Done(bool),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct State {
    pub value: Option<Value>,
    /// The earliest instant (ns) at which the value may have expired.
    pub may_expire_from: Option<u64>,
}

/// The register model. `clock_slack_ns` widens the expiry bound for clock
/// granularity between the history's clock and cluster time.
#[derive(Clone, Debug)]
pub struct Register {
    pub clock_slack_ns: u64,
}

impl Default for Register {
    fn default() -> Self {
        Register {
            clock_slack_ns: 2_000_000,
        }
    }
}

impl Register {
    fn expiry_from(&self, call: u64, ttl_ms: Option<u64>) -> Option<u64> {
        ttl_ms.map(|ttl| {
            call.saturating_add(ttl.saturating_mul(1_000_000))
                .saturating_sub(self.clock_slack_ns)
        })
    }

    fn set(&self, value: Value, call: u64, ttl_ms: Option<u64>) -> State {
        State {
            value: Some(value),
            may_expire_from: self.expiry_from(call, ttl_ms),
        }
    }
}

impl Model for Register {
    type State = State;
    type Input = Command;
    type Output = Reply;

    fn init(&self) -> State {
        State::default()
    }

    fn step(&self, state: &State, op: &Operation<Command, Reply>) -> Vec<State> {
        // The key as the operation may find it: as stored, or expired.
        let mut views = vec![state.clone()];
        if state.value.is_some() && state.may_expire_from.is_some_and(|from| op.ret() >= from) {
            views.push(State::default());
        }
        let mut after = Vec::new();
        for view in views {
            let (reply, next) = match &op.input {
                Command::Read => (Reply::Value(view.value), view),
                Command::Write { value, ttl_ms } => {
                    (Reply::Done(true), self.set(*value, op.call, *ttl_ms))
                }
                Command::SetIfAbsent { value, ttl_ms } => match view.value {
                    None => (Reply::Done(true), self.set(*value, op.call, *ttl_ms)),
                    Some(_) => (Reply::Done(false), view),
                },
                Command::CompareAndSet { expected, value } => {
                    if view.value == Some(*expected) {
                        (Reply::Done(true), self.set(*value, op.call, None))
                    } else {
                        (Reply::Done(false), view)
                    }
                }
                Command::CompareAndDelete { expected } => {
                    if view.value == Some(*expected) {
                        (Reply::Done(true), State::default())
                    } else {
                        (Reply::Done(false), view)
                    }
                }
                Command::Delete => (Reply::Done(view.value.is_some()), State::default()),
            };
            if op.output().is_none_or(|seen| *seen == reply) && !after.contains(&next) {
                after.push(next);
            }
        }
        after
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linearizable;

    const MS: u64 = 1_000_000;

    fn op(call: u64, ret: u64, input: Command, output: Reply) -> Operation<Command, Reply> {
        Operation::returned(0, call, ret, input, output)
    }

    #[test]
    fn a_value_with_a_ttl_is_never_gone_early() {
        let model = Register { clock_slack_ns: 0 };
        let set = op(
            0,
            MS,
            Command::SetIfAbsent {
                value: 1,
                ttl_ms: Some(100),
            },
            Reply::Done(true),
        );
        let early = op(50 * MS, 60 * MS, Command::Read, Reply::Value(None));
        assert!(!linearizable(&model, &[set.clone(), early], 1000).is_linearizable());
        let late = op(150 * MS, 160 * MS, Command::Read, Reply::Value(None));
        assert!(linearizable(&model, &[set.clone(), late.clone()], 1000).is_linearizable());
        // Gone once gone.
        let present = op(900 * MS, 910 * MS, Command::Read, Reply::Value(Some(1)));
        let history = [set.clone(), late, present.clone()];
        assert!(!linearizable(&model, &history, 1000).is_linearizable());
        // Present long after the TTL is allowed (no leader, no expiry entry).
        assert!(linearizable(&model, &[set, present], 1000).is_linearizable());
    }
}
