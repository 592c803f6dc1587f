//! Replies in a protocol-neutral shape; the server encodes them as RESP2 or RESP3.

use bytes::Bytes;

#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Status(String),
    /// The full error line, including its code (`ERR ...`, `WRONGTYPE ...`).
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    Nil,
    /// A missing aggregate: `*-1` in RESP2, `_` in RESP3.
    NilArray,
    Array(Vec<Reply>),
    /// A map in RESP3, a flat array of pairs in RESP2.
    Map(Vec<(Reply, Reply)>),
    Double(f64),
    /// Out-of-band data (pub/sub messages): a push in RESP3, an array in RESP2.
    Push(Vec<Reply>),
    /// Several replies sent one after another (SUBSCRIBE to many channels).
    Sequence(Vec<Reply>),
}

impl Reply {
    pub fn ok() -> Self {
        Reply::Status("OK".into())
    }

    pub fn bulk(data: impl Into<Bytes>) -> Self {
        Reply::Bulk(data.into())
    }

    pub fn error(message: impl Into<String>) -> Self {
        Reply::Error(message.into())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    pub fn syntax_error() -> Self {
        Reply::error("ERR syntax error")
    }

    pub fn not_integer() -> Self {
        Reply::error("ERR value is not an integer or out of range")
    }

    pub fn wrong_type() -> Self {
        Reply::error("WRONGTYPE Operation against a key holding the wrong kind of value")
    }

    pub fn wrong_arity(command: &str) -> Self {
        Reply::error(format!(
            "ERR wrong number of arguments for '{}' command",
            command.to_ascii_lowercase()
        ))
    }

    pub fn invalid_expire(command: &str) -> Self {
        Reply::error(format!(
            "ERR invalid expire time in '{}' command",
            command.to_ascii_lowercase()
        ))
    }
}
