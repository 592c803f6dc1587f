//! Jute, ZooKeeper's record encoding: big-endian integers, a boolean as
//! one byte, buffers and strings as a 4-byte length (-1 for null) and the
//! bytes, vectors as a 4-byte count and the items.

use bytes::{BufMut, Bytes, BytesMut};

/// A record ended early or held an impossible length.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed record: {0}")]
pub struct Malformed(pub &'static str);

pub struct Reader {
    data: Bytes,
    at: usize,
}

impl Reader {
    pub fn new(data: Bytes) -> Self {
        Reader { data, at: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.at
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], Malformed> {
        if self.remaining() < n {
            return Err(Malformed(what));
        }
        let slice = &self.data[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    pub fn int(&mut self) -> Result<i32, Malformed> {
        let b = self.take(4, "int")?;
        Ok(i32::from_be_bytes(b.try_into().expect("four bytes")))
    }

    pub fn long(&mut self) -> Result<i64, Malformed> {
        let b = self.take(8, "long")?;
        Ok(i64::from_be_bytes(b.try_into().expect("eight bytes")))
    }

    pub fn boolean(&mut self) -> Result<bool, Malformed> {
        Ok(self.take(1, "bool")?[0] != 0)
    }

    /// A buffer; null reads as empty.
    pub fn buffer(&mut self) -> Result<Bytes, Malformed> {
        let len = self.int()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        let len = len as usize;
        if self.remaining() < len {
            return Err(Malformed("buffer length"));
        }
        let out = self.data.slice(self.at..self.at + len);
        self.at += len;
        Ok(out)
    }

    /// A buffer that may be null (None).
    pub fn optional_buffer(&mut self) -> Result<Option<Bytes>, Malformed> {
        if self.remaining() >= 4 && self.data[self.at..self.at + 4] == [0xff; 4] {
            self.at += 4;
            return Ok(None);
        }
        self.buffer().map(Some)
    }

    /// A string; null reads as empty. Kept as bytes: paths are checked
    /// (UTF-8 among the rules) where they are used.
    pub fn string(&mut self) -> Result<Bytes, Malformed> {
        self.buffer()
    }

    /// A vector's count (null reads as 0); each item costs at least
    /// `item_size` bytes, so a count the record cannot hold is refused
    /// before anything is allocated for it.
    pub fn count(&mut self, item_size: usize) -> Result<usize, Malformed> {
        let n = self.int()?;
        if n < 0 {
            return Ok(0);
        }
        let n = n as usize;
        if n.saturating_mul(item_size) > self.remaining() {
            return Err(Malformed("vector length"));
        }
        Ok(n)
    }

    pub fn strings(&mut self) -> Result<Vec<Bytes>, Malformed> {
        let n = self.count(4)?;
        (0..n).map(|_| self.string()).collect()
    }
}

#[derive(Default)]
pub struct Writer {
    pub out: BytesMut,
}

impl Writer {
    pub fn int(&mut self, v: i32) -> &mut Self {
        self.out.put_i32(v);
        self
    }

    pub fn long(&mut self, v: i64) -> &mut Self {
        self.out.put_i64(v);
        self
    }

    pub fn boolean(&mut self, v: bool) -> &mut Self {
        self.out.put_u8(v as u8);
        self
    }

    pub fn buffer(&mut self, v: &[u8]) -> &mut Self {
        self.out.put_i32(v.len() as i32);
        self.out.put_slice(v);
        self
    }

    pub fn string(&mut self, v: &[u8]) -> &mut Self {
        self.buffer(v)
    }

    pub fn strings<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a [u8]>) -> &mut Self {
        self.out.put_i32(items.len() as i32);
        for item in items {
            self.buffer(item);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncation_is_refused() {
        let mut w = Writer::default();
        w.int(-7).long(1 << 40).boolean(true).buffer(b"data");
        w.strings([b"a".as_slice(), b"bc".as_slice()].into_iter());
        let bytes = w.out.freeze();
        let mut r = Reader::new(bytes.clone());
        assert_eq!(r.int(), Ok(-7));
        assert_eq!(r.long(), Ok(1 << 40));
        assert_eq!(r.boolean(), Ok(true));
        assert_eq!(r.buffer().unwrap(), Bytes::from_static(b"data"));
        assert_eq!(
            r.strings().unwrap(),
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]
        );
        assert_eq!(r.remaining(), 0);
        for cut in 0..bytes.len() {
            let mut r = Reader::new(bytes.slice(..cut));
            let ok = (|| -> Result<(), Malformed> {
                r.int()?;
                r.long()?;
                r.boolean()?;
                r.buffer()?;
                r.strings()?;
                Ok(())
            })();
            assert!(ok.is_err(), "cut at {cut} must not parse");
        }
    }

    #[test]
    fn a_vector_longer_than_its_record_is_refused_before_allocating() {
        let mut w = Writer::default();
        w.int(i32::MAX);
        assert_eq!(
            Reader::new(w.out.freeze()).strings(),
            Err(Malformed("vector length"))
        );
        let mut w = Writer::default();
        w.int(-1);
        assert_eq!(Reader::new(w.out.freeze()).buffer().unwrap(), Bytes::new());
    }
}
