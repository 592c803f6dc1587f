//! Uncommitted writes layered over a [`StateRead`]: reads see the writes,
//! and the writes become one [`StateBatch`].

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use crate::{StateBatch, StateOp, StateRead, StoreError};

#[derive(Clone)]
pub struct Overlay<'a> {
    base: &'a dyn StateRead,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Values read from `base`, when caching: commands read a key and then
    /// write it, and a base read (a RocksDB lookup) is dear.
    base_reads: Option<RefCell<BaseReads>>,
}

/// Values read from the base, absent ones included.
type BaseReads = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// Base reads one caching overlay keeps at most.
const BASE_READS_MAX: usize = 16 * 1024;

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn StateRead) -> Self {
        Overlay {
            base,
            writes: BTreeMap::new(),
            base_reads: None,
        }
    }

    /// An overlay that also remembers what it read from `base`, which must
    /// not change while the overlay lives.
    pub fn caching(base: &'a dyn StateRead) -> Self {
        Overlay {
            base_reads: Some(RefCell::new(HashMap::new())),
            ..Overlay::new(base)
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Layers a batch's writes on top of the ones already here.
    pub fn extend(&mut self, batch: StateBatch) {
        for op in batch.ops {
            match op {
                StateOp::Put(key, value) => self.put(key, value),
                StateOp::Delete(key) => self.delete(key),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The writes, in key order, as one batch.
    pub fn into_batch(self) -> StateBatch {
        let mut batch = StateBatch::default();
        for (key, value) in self.writes {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            }
        }
        batch
    }
}

impl StateRead for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(value) = self.writes.get(key) {
            return Ok(value.clone());
        }
        let Some(cache) = &self.base_reads else {
            return self.base.get(key);
        };
        if let Some(value) = cache.borrow().get(key) {
            return Ok(value.clone());
        }
        let value = self.base.get(key)?;
        let mut cache = cache.borrow_mut();
        if cache.len() < BASE_READS_MAX {
            cache.insert(key.to_vec(), value.clone());
        }
        Ok(value)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        if self.writes.is_empty() {
            return self.base.scan(start, end, visit);
        }
        // Merge the (small) overlay into the base scan as it streams, so an
        // early stop stays cheap.
        let pending: Vec<(&Vec<u8>, &Option<Vec<u8>>)> =
            self.writes.range(start.to_vec()..end.to_vec()).collect();
        let mut next = 0;
        let mut stopped = false;
        self.base.scan(start, end, &mut |key, value| {
            while next < pending.len() && pending[next].0.as_slice() < key {
                let (own_key, own_value) = pending[next];
                next += 1;
                if let Some(own_value) = own_value {
                    if !visit(own_key, own_value) {
                        stopped = true;
                        return false;
                    }
                }
            }
            if next < pending.len() && pending[next].0.as_slice() == key {
                let (own_key, own_value) = pending[next];
                next += 1;
                return match own_value {
                    Some(own_value) => {
                        let more = visit(own_key, own_value);
                        stopped = !more;
                        more
                    }
                    None => true,
                };
            }
            let more = visit(key, value);
            stopped = !more;
            more
        })?;
        if !stopped {
            for (own_key, own_value) in &pending[next..] {
                if let Some(own_value) = own_value {
                    if !visit(own_key, own_value) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A base that counts its reads.
    #[derive(Default)]
    struct Counting {
        reads: Cell<usize>,
    }

    impl StateRead for Counting {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.reads.set(self.reads.get() + 1);
            Ok((key == b"present").then(|| b"base".to_vec()))
        }

        fn scan(
            &self,
            _start: &[u8],
            _end: &[u8],
            _visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[test]
    fn a_caching_overlay_reads_the_base_once_and_its_writes_win() {
        let base = Counting::default();
        let mut overlay = Overlay::caching(&base);
        for _ in 0..3 {
            assert_eq!(overlay.get(b"present").unwrap(), Some(b"base".to_vec()));
            assert_eq!(overlay.get(b"absent").unwrap(), None);
        }
        assert_eq!(base.reads.get(), 2);
        overlay.delete(b"present".to_vec());
        overlay.put(b"absent".to_vec(), b"own".to_vec());
        assert_eq!(overlay.get(b"present").unwrap(), None);
        assert_eq!(overlay.get(b"absent").unwrap(), Some(b"own".to_vec()));
    }

    #[test]
    fn a_plain_overlay_always_asks_the_base() {
        let base = Counting::default();
        let overlay = Overlay::new(&base);
        overlay.get(b"present").unwrap();
        overlay.get(b"present").unwrap();
        assert_eq!(base.reads.get(), 2);
    }
}
