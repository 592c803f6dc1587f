//! The byte layout helpers every stored record uses: big-endian integers
//! and length-prefixed byte strings, read back with bounds checks (a
//! truncated or corrupt record is an error, never a panic).

use bytes::Bytes;
use lockstep_store::StoreError;

/// Reads one record's fields in order.
pub struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// `what` names the record in corruption errors.
    pub fn new(data: &'a [u8], what: &'static str) -> Self {
        Reader { data, at: 0, what }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.data.len())
            .ok_or_else(|| StoreError::corrupt(self.what, "truncated"))?;
        let slice = &self.data[self.at..end];
        self.at = end;
        Ok(slice)
    }

    pub fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub fn i64(&mut self) -> Result<i64, StoreError> {
        Ok(self.u64()? as i64)
    }

    /// A u64 where 0 means none.
    pub fn optional(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.u64()?).filter(|value| *value != 0))
    }

    pub fn bytes(&mut self) -> Result<Bytes, StoreError> {
        let len = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }

    /// A count of items that follow, each at least `min_item_bytes` long:
    /// a corrupt count larger than the record could hold is refused before
    /// anything is allocated for it.
    pub fn count(&mut self, min_item_bytes: usize) -> Result<usize, StoreError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(min_item_bytes.max(1)) > self.data.len() - self.at {
            return Err(StoreError::corrupt(self.what, "count beyond the record"));
        }
        Ok(count)
    }

    pub fn is_done(&self) -> bool {
        self.at == self.data.len()
    }

    /// The record must end here.
    pub fn finish(&self) -> Result<(), StoreError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(StoreError::corrupt(self.what, "trailing bytes"))
        }
    }
}

/// Appends fields in the order a [`Reader`] reads them.
pub trait Writer {
    fn put_u8(&mut self, value: u8);
    fn put_u32(&mut self, value: u32);
    fn put_u64(&mut self, value: u64);
    fn put_optional(&mut self, value: Option<u64>);
    fn put_bytes(&mut self, value: &[u8]);
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, value: u8) {
        self.push(value);
    }
    fn put_u32(&mut self, value: u32) {
        self.extend_from_slice(&value.to_be_bytes());
    }
    fn put_u64(&mut self, value: u64) {
        self.extend_from_slice(&value.to_be_bytes());
    }
    fn put_optional(&mut self, value: Option<u64>) {
        self.put_u64(value.unwrap_or(0));
    }
    fn put_bytes(&mut self, value: &[u8]) {
        self.put_u32(value.len() as u32);
        self.extend_from_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_truncation_is_an_error() {
        let mut out = Vec::new();
        out.put_u8(7);
        out.put_u64(42);
        out.put_optional(None);
        out.put_bytes(b"abc");
        out.put_u32(2);
        let mut r = Reader::new(&out, "test record");
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u64().unwrap(), 42);
        assert_eq!(r.optional().unwrap(), None);
        assert_eq!(r.bytes().unwrap(), Bytes::from_static(b"abc"));
        assert!(r.count(100).is_err(), "2 items of 100 bytes cannot follow");
        for cut in 0..out.len() {
            let mut r = Reader::new(&out[..cut], "test record");
            let whole = r.u8().and_then(|_| r.u64()).and_then(|_| r.optional());
            let whole = whole.and_then(|_| r.bytes()).and_then(|_| r.u32());
            assert!(whole.is_err(), "cut {cut}");
        }
    }
}
