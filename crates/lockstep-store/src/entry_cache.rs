//! The newest raft log entries, kept in memory as well as on disk.
//!
//! Every entry is read back soon after it is appended: to apply it and, on a
//! leader, to send it to followers. Serving those reads from memory keeps
//! them off RocksDB's memtable, which is the hottest path of a write.

use std::collections::VecDeque;

use protobuf::Message as _;
use raft::eraftpb::Entry;

/// Entries kept at most; enough for followers a few rounds behind.
const MAX_ENTRIES: usize = 16 * 1024;
/// Payload bytes kept at most, so a burst of large values stays bounded.
const MAX_BYTES: usize = 64 << 20;

#[derive(Debug, Default)]
pub(crate) struct EntryCache {
    entries: VecDeque<Entry>,
    bytes: usize,
}

fn size_of(entry: &Entry) -> usize {
    entry.data.len() + entry.context.len() + 32
}

impl EntryCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|entry| entry.index)
    }

    /// Records entries just written to the log, replacing any cached suffix
    /// they overwrite. Entries that do not continue the cache restart it.
    pub fn append(&mut self, appended: &[Entry]) {
        let Some(first) = appended.first() else {
            return;
        };
        match self.first_index() {
            Some(cached_first) if first.index > cached_first => {
                let keep = (first.index - cached_first) as usize;
                if keep > self.entries.len() {
                    self.clear();
                } else {
                    for dropped in self.entries.drain(keep..) {
                        self.bytes -= size_of(&dropped);
                    }
                }
            }
            _ => self.clear(),
        }
        for entry in appended {
            self.bytes += size_of(entry);
            self.entries.push_back(entry.clone());
        }
        while self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES {
            self.pop_front();
        }
    }

    /// Forgets entries up to and including `index`.
    pub fn compact(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            self.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    pub fn get(&self, index: u64) -> Option<&Entry> {
        let first = self.first_index()?;
        let offset = usize::try_from(index.checked_sub(first)?).ok()?;
        self.entries.get(offset)
    }

    /// Entries `[low, high)` if all are cached, cut at `max_size` bytes
    /// (but never to nothing), as raft-rs's storage contract asks.
    pub fn range(&self, low: u64, high: u64, max_size: Option<u64>) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        if low < first || high > first + self.entries.len() as u64 || low >= high {
            return None;
        }
        let mut taken = Vec::new();
        let mut size = 0u64;
        for entry in self
            .entries
            .range((low - first) as usize..(high - first) as usize)
        {
            size += u64::from(entry.compute_size());
            if !taken.is_empty() && max_size.is_some_and(|max| size > max) {
                break;
            }
            taken.push(entry.clone());
        }
        Some(taken)
    }

    fn pop_front(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            self.bytes -= size_of(&entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 10].into(),
            ..Default::default()
        }
    }

    fn indexes(entries: &[Entry]) -> Vec<(u64, u64)> {
        entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn overwrite_replaces_the_suffix() {
        let mut cache = EntryCache::default();
        cache.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        cache.append(&[entry(2, 2)]);
        assert_eq!(
            indexes(&cache.range(1, 3, None).unwrap()),
            vec![(1, 1), (2, 2)]
        );
        assert!(cache.get(3).is_none());
        assert!(cache.range(1, 4, None).is_none());
    }

    #[test]
    fn a_gap_restarts_the_cache() {
        let mut cache = EntryCache::default();
        cache.append(&[entry(1, 1), entry(2, 1)]);
        cache.append(&[entry(10, 2)]);
        assert!(cache.get(1).is_none());
        assert_eq!(cache.get(10).map(|e| e.term), Some(2));
    }

    #[test]
    fn compaction_and_size_limit() {
        let mut cache = EntryCache::default();
        cache.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>());
        cache.compact(2);
        assert!(cache.get(2).is_none());
        assert_eq!(cache.get(3).map(|e| e.index), Some(3));
        let one = u64::from(entry(3, 1).compute_size());
        let cut = cache.range(3, 6, Some(one + 1)).unwrap();
        assert_eq!(indexes(&cut), vec![(3, 1)]);
        let at_least_one = cache.range(3, 6, Some(0)).unwrap();
        assert_eq!(at_least_one.len(), 1);
    }

    #[test]
    fn bounded_by_count() {
        let mut cache = EntryCache::default();
        let many: Vec<Entry> = (1..=(MAX_ENTRIES as u64 + 10))
            .map(|i| entry(i, 1))
            .collect();
        cache.append(&many);
        assert!(cache.get(10).is_none());
        assert!(cache.get(MAX_ENTRIES as u64 + 10).is_some());
    }
}
