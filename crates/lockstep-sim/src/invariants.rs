//! Safety properties checked while the simulation runs.

use std::collections::BTreeMap;

use lockstep_raft::{AppliedRecord, Role};

/// What the checks remember between steps.
#[derive(Default)]
pub struct Invariants {
    /// term -> the node that led it.
    leaders: BTreeMap<u64, u64>,
    /// index -> what was applied there (by whichever node applied first).
    applied: BTreeMap<u64, AppliedRecord>,
    /// node -> (applied index, cluster time) at its last step, this life.
    progress: BTreeMap<u64, (u64, u64)>,
    pub checks: u64,
}

impl Invariants {
    /// A node reports `role` in `term`: at most one leader per term.
    pub fn role(&mut self, node: u64, role: Role, term: u64) -> Result<(), String> {
        self.checks += 1;
        if role != Role::Leader {
            return Ok(());
        }
        match self.leaders.insert(term, node) {
            Some(other) if other != node => Err(format!(
                "two leaders in term {term}: nodes {other} and {node}"
            )),
            _ => Ok(()),
        }
    }

    /// A node applied `records`: the same entry at the same index on every
    /// node, and cluster time never decreasing along the log.
    pub fn applied(&mut self, node: u64, records: Vec<AppliedRecord>) -> Result<(), String> {
        for record in records {
            self.checks += 1;
            if let Some(seen) = self.applied.get(&record.index) {
                if (seen.term, seen.digest) != (record.term, record.digest) {
                    return Err(format!(
                        "node {node} applied {record:?} where another node applied {seen:?}"
                    ));
                }
                continue;
            }
            if let Some(time) = record.cluster_time {
                let before = self
                    .applied
                    .range(..record.index)
                    .rev()
                    .find_map(|(_, earlier)| earlier.cluster_time);
                let after = self
                    .applied
                    .range(record.index + 1..)
                    .find_map(|(_, later)| later.cluster_time);
                if before.is_some_and(|before| before > time)
                    || after.is_some_and(|after| after < time)
                {
                    return Err(format!(
                        "cluster time goes back around index {}: {before:?} / {time} / {after:?}",
                        record.index
                    ));
                }
            }
            self.applied.insert(record.index, record);
        }
        Ok(())
    }

    /// A running node's applied index and cluster time never go back.
    pub fn progress(&mut self, node: u64, applied: u64, cluster_time: u64) -> Result<(), String> {
        self.checks += 1;
        if let Some(&(was_applied, was_time)) = self.progress.get(&node) {
            if applied < was_applied {
                return Err(format!(
                    "node {node} applied index went back {was_applied} -> {applied}"
                ));
            }
            if cluster_time < was_time {
                return Err(format!(
                    "node {node} cluster time went back {was_time} -> {cluster_time}"
                ));
            }
        }
        self.progress.insert(node, (applied, cluster_time));
        Ok(())
    }

    /// A node restarted: what it had applied but not synced may be gone,
    /// and it applies those entries again.
    pub fn restarted(&mut self, node: u64) {
        self.progress.remove(&node);
    }

    pub fn highest_applied(&self) -> u64 {
        self.applied.keys().next_back().copied().unwrap_or(0)
    }
}

/// Log matching: if two logs hold an entry with the same index and term,
/// they hold the same entries up to there. `logs` maps node -> index ->
/// (term, digest).
pub fn log_matching(logs: &BTreeMap<u64, BTreeMap<u64, (u64, u64)>>) -> Result<(), String> {
    let nodes: Vec<&u64> = logs.keys().collect();
    for (at, a) in nodes.iter().enumerate() {
        for b in &nodes[at + 1..] {
            let (log_a, log_b) = (&logs[*a], &logs[*b]);
            let Some(matched) = log_a
                .iter()
                .rev()
                .find(|(index, (term, _))| log_b.get(index).is_some_and(|(other, _)| other == term))
                .map(|(index, _)| *index)
            else {
                continue;
            };
            for (index, entry) in log_a.range(..=matched) {
                if let Some(other) = log_b.get(index) {
                    if entry != other {
                        return Err(format!(
                            "log matching broken: nodes {a} and {b} agree at index {matched} \
                             but differ at {index}: {entry:?} vs {other:?}"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: u64, term: u64, digest: u64, time: u64) -> AppliedRecord {
        AppliedRecord {
            index,
            term,
            digest,
            cluster_time: Some(time),
        }
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let mut invariants = Invariants::default();
        invariants.role(1, Role::Leader, 3).unwrap();
        invariants.role(2, Role::Follower, 3).unwrap();
        invariants.role(2, Role::Leader, 4).unwrap();
        assert!(invariants.role(2, Role::Leader, 3).is_err());
    }

    #[test]
    fn different_entries_at_one_index_and_time_going_back_are_caught() {
        let mut invariants = Invariants::default();
        invariants
            .applied(1, vec![record(1, 1, 10, 100), record(2, 1, 11, 200)])
            .unwrap();
        invariants.applied(2, vec![record(1, 1, 10, 100)]).unwrap();
        assert!(invariants.applied(2, vec![record(2, 1, 99, 200)]).is_err());
        assert!(invariants.applied(3, vec![record(3, 2, 12, 150)]).is_err());
        assert!(invariants.progress(1, 5, 100).is_ok());
        assert!(invariants.progress(1, 4, 100).is_err());
    }

    #[test]
    fn logs_that_agree_on_an_entry_must_agree_before_it() {
        let log = |entries: &[(u64, u64, u64)]| {
            entries
                .iter()
                .map(|&(index, term, digest)| (index, (term, digest)))
                .collect::<BTreeMap<_, _>>()
        };
        let mut logs = BTreeMap::new();
        logs.insert(1, log(&[(1, 1, 1), (2, 1, 2), (3, 2, 3)]));
        logs.insert(2, log(&[(1, 1, 1), (2, 1, 2), (3, 3, 9)]));
        assert!(log_matching(&logs).is_ok());
        logs.insert(3, log(&[(1, 1, 7), (2, 1, 2)]));
        assert!(log_matching(&logs).is_err());
    }
}
