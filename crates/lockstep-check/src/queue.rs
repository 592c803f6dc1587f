//! A queue's deliveries: nothing acknowledged is lost, nothing is delivered
//! twice, nothing delivered was never sent.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default)]
pub struct QueueHistory {
    /// Items whose push was acknowledged.
    pub acknowledged: BTreeSet<u64>,
    /// Items whose push had an unknown outcome.
    pub unknown: BTreeSet<u64>,
    /// Items popped (acknowledged pops), in any order, plus what a final
    /// drain found.
    pub delivered: Vec<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueVerdict {
    pub lost: Vec<u64>,
    pub duplicated: Vec<u64>,
    pub unexpected: Vec<u64>,
    /// Unknown pushes that were delivered (informational).
    pub unknown_delivered: usize,
}

impl QueueVerdict {
    pub fn ok(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty() && self.unexpected.is_empty()
    }
}

pub fn check_queue(history: &QueueHistory) -> QueueVerdict {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for &item in &history.delivered {
        *counts.entry(item).or_default() += 1;
    }
    let mut verdict = QueueVerdict::default();
    for (&item, &count) in &counts {
        if count > 1 {
            verdict.duplicated.push(item);
        }
        if history.unknown.contains(&item) {
            verdict.unknown_delivered += 1;
        } else if !history.acknowledged.contains(&item) {
            verdict.unexpected.push(item);
        }
    }
    verdict.lost = history
        .acknowledged
        .iter()
        .filter(|item| !counts.contains_key(item))
        .copied()
        .collect();
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_duplicated_and_unexpected_items_are_reported() {
        let history = QueueHistory {
            acknowledged: [1, 2, 3].into(),
            unknown: [4, 5].into(),
            delivered: vec![1, 1, 3, 4, 9],
        };
        let verdict = check_queue(&history);
        assert_eq!(verdict.lost, vec![2]);
        assert_eq!(verdict.duplicated, vec![1]);
        assert_eq!(verdict.unexpected, vec![9]);
        assert_eq!(verdict.unknown_delivered, 1);
        assert!(!verdict.ok());
    }
}
