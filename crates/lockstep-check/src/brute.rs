//! Linearizability by its definition: some order of the operations that
//! happened (every one that returned, any subset of the unknown ones),
//! consistent with real time, that the model accepts. Exponential; for
//! small histories only, as the reference the search is tested against.

use std::collections::BTreeSet;

use crate::history::{Model, Operation};

pub fn brute_force<M: Model>(model: &M, ops: &[Operation<M::Input, M::Output>]) -> bool {
    let mut placed = vec![false; ops.len()];
    let states = BTreeSet::from([model.init()]);
    extend(model, ops, &mut placed, &states)
}

fn extend<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    placed: &mut [bool],
    states: &BTreeSet<M::State>,
) -> bool {
    let all_returned_placed = ops
        .iter()
        .zip(placed.iter())
        .all(|(op, &done)| done || op.is_unknown());
    if all_returned_placed {
        return true;
    }
    for candidate in 0..ops.len() {
        if placed[candidate] {
            continue;
        }
        // Real time: nothing still unplaced returned before this was called.
        let blocked = (0..ops.len()).any(|other| {
            !placed[other] && other != candidate && ops[other].ret() < ops[candidate].call
        });
        if blocked {
            continue;
        }
        let next: BTreeSet<M::State> = states
            .iter()
            .flat_map(|state| model.step(state, &ops[candidate]))
            .collect();
        if next.is_empty() {
            continue;
        }
        placed[candidate] = true;
        let found = extend(model, ops, placed, &next);
        placed[candidate] = false;
        if found {
            return true;
        }
    }
    false
}
