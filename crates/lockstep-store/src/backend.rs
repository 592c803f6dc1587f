//! The few primitive operations [`crate::Store`] needs from a key-value engine.

use crate::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Log,
    Raft,
    State,
    Meta,
}

#[derive(Clone, Debug)]
pub enum WriteOp {
    Put(Family, Vec<u8>, Vec<u8>),
    Delete(Family, Vec<u8>),
    /// Deletes keys in `[start, end)`.
    DeleteRange(Family, Vec<u8>, Vec<u8>),
}

pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> bool + 'a;

/// A consistent read-only view of a backend.
pub trait View {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn scan(
        &self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), StoreError>;
}

pub trait Backend: Send + Sync + 'static {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn scan(
        &self,
        family: Family,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), StoreError>;
    /// Applies all ops atomically; with `sync`, durably before returning.
    fn write(&self, ops: Vec<WriteOp>, sync: bool) -> Result<(), StoreError>;
    fn with_view(&self, read: &mut dyn FnMut(&dyn View));
}
