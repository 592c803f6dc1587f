//! Operations as clients saw them, and the models that judge them.

use std::fmt::Debug;
use std::hash::Hash;

/// How an operation ended, as far as its client knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<O> {
    /// A reply arrived at `at` (nanoseconds, same clock as the call).
    Returned { at: u64, output: O },
    /// No reply: the operation may have taken effect after its call, or not.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    pub client: u64,
    /// When the request was sent (nanoseconds on one clock for the history).
    pub call: u64,
    pub input: I,
    pub outcome: Outcome<O>,
}

impl<I, O> Operation<I, O> {
    pub fn returned(client: u64, call: u64, ret: u64, input: I, output: O) -> Self {
        Operation {
            client,
            call,
            input,
            outcome: Outcome::Returned { at: ret, output },
        }
    }

    pub fn unknown(client: u64, call: u64, input: I) -> Self {
        Operation {
            client,
            call,
            input,
            outcome: Outcome::Unknown,
        }
    }

    /// The return time; an unknown outcome never returns.
    pub fn ret(&self) -> u64 {
        match self.outcome {
            Outcome::Returned { at, .. } => at,
            Outcome::Unknown => u64::MAX,
        }
    }

    pub fn output(&self) -> Option<&O> {
        match &self.outcome {
            Outcome::Returned { output, .. } => Some(output),
            Outcome::Unknown => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self.outcome, Outcome::Unknown)
    }
}

/// A sequential specification. It may be nondeterministic: `step` returns
/// every state the operation can leave behind (none if it cannot happen
/// in `state` with the output it had).
pub trait Model {
    type State: Clone + Eq + Hash + Ord + Debug;
    type Input: Debug;
    type Output: Debug;

    fn init(&self) -> Self::State;

    /// The states after `op` takes effect in `state` at some instant
    /// between its call and its return, giving its recorded output (any
    /// output when the outcome is unknown).
    fn step(
        &self,
        state: &Self::State,
        op: &Operation<Self::Input, Self::Output>,
    ) -> Vec<Self::State>;
}
