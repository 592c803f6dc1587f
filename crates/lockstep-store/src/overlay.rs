//! Uncommitted writes layered over a [`StateRead`]: reads see the writes,
//! and the writes become one [`StateBatch`].

use std::collections::BTreeMap;

use crate::{StateBatch, StateOp, StateRead, StoreError};

#[derive(Clone)]
pub struct Overlay<'a> {
    base: &'a dyn StateRead,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn StateRead) -> Self {
        Overlay {
            base,
            writes: BTreeMap::new(),
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
        match self.writes.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(key),
        }
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
