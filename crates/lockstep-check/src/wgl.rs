//! Wing & Gong's linearizability search with Lowe's memoization.
//!
//! Calls and returns are laid out in time order in a linked list. The
//! search walks it, linearizing the first call it can (the model accepts
//! it) and backtracking when it meets the return of an operation it has not
//! linearized. A (set of linearized operations, model states) pair is
//! explored once: reaching it again by another order cannot do better.
//! Model states are kept as a set, which makes a nondeterministic model
//! deterministic. Unknown outcomes return at infinity, so they never bound
//! another operation and need not be linearized at all.

use std::collections::{BTreeSet, HashSet};

use crate::history::{Model, Operation};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order works; `key` names the failing part of a partitioned check.
    Violation {
        key: String,
        operations: usize,
    },
    /// The search gave up after its step budget.
    Inconclusive {
        key: String,
        steps: u64,
    },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// One node of the doubly linked event list; index 0 is the head.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

const END: usize = usize::MAX;

struct Events {
    nodes: Vec<Event>,
    /// For each operation, its call node and return node.
    of_op: Vec<(usize, usize)>,
}

impl Events {
    fn new<I, O>(ops: &[Operation<I, O>]) -> Events {
        // (time, returns after calls at the same instant, op, is_call):
        // operations that touch at an instant count as concurrent.
        let mut order: Vec<(u64, bool, usize, bool)> = Vec::with_capacity(ops.len() * 2);
        for (index, op) in ops.iter().enumerate() {
            order.push((op.call, false, index, true));
            order.push((op.ret(), true, index, false));
        }
        order.sort();
        let mut nodes = vec![Event {
            op: usize::MAX,
            is_call: false,
            prev: END,
            next: END,
        }];
        let mut of_op = vec![(0, 0); ops.len()];
        for (position, &(_, _, op, is_call)) in order.iter().enumerate() {
            let node = position + 1;
            nodes.push(Event {
                op,
                is_call,
                prev: node - 1,
                next: if node == order.len() { END } else { node + 1 },
            });
            if is_call {
                of_op[op].0 = node;
            } else {
                of_op[op].1 = node;
            }
        }
        nodes[0].next = if order.is_empty() { END } else { 1 };
        Events { nodes, of_op }
    }

    fn unlink(&mut self, node: usize) {
        let Event { prev, next, .. } = self.nodes[node];
        self.nodes[prev].next = next;
        if next != END {
            self.nodes[next].prev = prev;
        }
    }

    /// Undoes `unlink`; valid in reverse order of the unlinks.
    fn relink(&mut self, node: usize) {
        let Event { prev, next, .. } = self.nodes[node];
        self.nodes[prev].next = node;
        if next != END {
            self.nodes[next].prev = node;
        }
    }

    fn lift(&mut self, op: usize) {
        let (call, ret) = self.of_op[op];
        self.unlink(call);
        self.unlink(ret);
    }

    fn unlift(&mut self, op: usize) {
        let (call, ret) = self.of_op[op];
        self.relink(ret);
        self.relink(call);
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Bits {
        Bits(vec![0; len.div_ceil(64)])
    }
    fn set(&mut self, at: usize) {
        self.0[at / 64] |= 1 << (at % 64);
    }
    fn clear(&mut self, at: usize) {
        self.0[at / 64] &= !(1 << (at % 64));
    }
}

/// Whether `ops` (one object's history) is linearizable under `model`.
/// `max_steps` bounds the search; past it the verdict is inconclusive.
pub fn linearizable<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    max_steps: u64,
) -> Verdict {
    search(model, ops, max_steps, "")
}

/// Checks each key's history on its own (linearizability is
/// compositional). A violation on any key decides the verdict; otherwise a
/// key the search gave up on makes it inconclusive.
pub fn linearizable_per_key<M, K>(
    model: &M,
    parts: impl IntoIterator<Item = (K, Vec<Operation<M::Input, M::Output>>)>,
    max_steps_per_key: u64,
) -> Verdict
where
    M: Model,
    K: std::fmt::Display,
{
    let mut verdict = Verdict::Linearizable;
    for (key, part) in parts {
        match search(model, &part, max_steps_per_key, &key.to_string()) {
            Verdict::Linearizable => {}
            violation @ Verdict::Violation { .. } => return violation,
            inconclusive => {
                if verdict.is_linearizable() {
                    verdict = inconclusive;
                }
            }
        }
    }
    verdict
}

fn search<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    max_steps: u64,
    key: &str,
) -> Verdict {
    let mut events = Events::new(ops);
    let mut required_left = ops.iter().filter(|op| !op.is_unknown()).count();
    let mut states: BTreeSet<M::State> = BTreeSet::from([model.init()]);
    let mut linearized = Bits::new(ops.len());
    let mut seen: HashSet<(Bits, BTreeSet<M::State>)> = HashSet::new();
    let mut stack: Vec<(usize, BTreeSet<M::State>)> = Vec::new();
    let mut node = events.nodes[0].next;
    let mut steps = 0u64;
    while required_left > 0 {
        steps += 1;
        if steps > max_steps {
            return Verdict::Inconclusive {
                key: key.to_string(),
                steps,
            };
        }
        let event = events.nodes[node];
        if event.is_call {
            let op = &ops[event.op];
            let next: BTreeSet<M::State> = states
                .iter()
                .flat_map(|state| model.step(state, op))
                .collect();
            if !next.is_empty() {
                let mut with_op = linearized.clone();
                with_op.set(event.op);
                if seen.insert((with_op.clone(), next.clone())) {
                    stack.push((event.op, std::mem::replace(&mut states, next)));
                    linearized = with_op;
                    events.lift(event.op);
                    if !op.is_unknown() {
                        required_left -= 1;
                    }
                    node = events.nodes[0].next;
                    continue;
                }
            }
            node = event.next;
        } else {
            // The return of an operation not yet linearized: every order
            // from here leaves it out, so undo the last choice.
            let Some((op, previous)) = stack.pop() else {
                return Verdict::Violation {
                    key: key.to_string(),
                    operations: ops.len(),
                };
            };
            events.unlift(op);
            linearized.clear(op);
            states = previous;
            if !ops[op].is_unknown() {
                required_left += 1;
            }
            node = events.nodes[events.of_op[op].0].next;
        }
    }
    Verdict::Linearizable
}
