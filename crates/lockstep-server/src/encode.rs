//! Reply encoding for the protocol version a connection negotiated.

use bytes::{Bytes, BytesMut};
use bytes_utils::Str;
use lockstep_engine::Reply;
use redis_protocol::resp2::types::BytesFrame as Frame2;
use redis_protocol::resp3::types::{BytesFrame as Frame3, FrameMap};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

fn error_text(message: &str) -> Str {
    // Error lines cannot carry line breaks.
    let clean: String = message
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    Str::from(clean)
}

fn to_resp2(reply: &Reply) -> Frame2 {
    match reply {
        Reply::Status(text) => Frame2::SimpleString(Bytes::from(text.clone())),
        Reply::Error(text) => Frame2::Error(error_text(text)),
        Reply::Integer(value) => Frame2::Integer(*value),
        Reply::Bulk(data) => Frame2::BulkString(data.clone()),
        Reply::Nil => Frame2::Null,
        Reply::NilArray => Frame2::Null,
        Reply::Array(items) => Frame2::Array(items.iter().map(to_resp2).collect()),
        Reply::Map(pairs) => Frame2::Array(
            pairs
                .iter()
                .flat_map(|(key, value)| [to_resp2(key), to_resp2(value)])
                .collect(),
        ),
        Reply::Double(value) => {
            Frame2::BulkString(Bytes::from(lockstep_engine::format_double(*value)))
        }
        Reply::Push(items) | Reply::Sequence(items) => {
            Frame2::Array(items.iter().map(to_resp2).collect())
        }
    }
}

fn to_resp3(reply: &Reply) -> Frame3 {
    match reply {
        Reply::Status(text) => Frame3::SimpleString {
            data: Bytes::from(text.clone()),
            attributes: None,
        },
        Reply::Error(text) => Frame3::SimpleError {
            data: error_text(text),
            attributes: None,
        },
        Reply::Integer(value) => Frame3::Number {
            data: *value,
            attributes: None,
        },
        Reply::Bulk(data) => Frame3::BlobString {
            data: data.clone(),
            attributes: None,
        },
        Reply::Nil | Reply::NilArray => Frame3::Null,
        Reply::Array(items) => Frame3::Array {
            data: items.iter().map(to_resp3).collect(),
            attributes: None,
        },
        Reply::Map(pairs) => {
            let mut map = FrameMap::default();
            for (key, value) in pairs {
                map.insert(to_resp3(key), to_resp3(value));
            }
            Frame3::Map {
                data: map,
                attributes: None,
            }
        }
        Reply::Double(value) => Frame3::Double {
            data: *value,
            attributes: None,
        },
        Reply::Push(items) => Frame3::Push {
            data: items.iter().map(to_resp3).collect(),
            attributes: None,
        },
        Reply::Sequence(items) => Frame3::Array {
            data: items.iter().map(to_resp3).collect(),
            attributes: None,
        },
    }
}

/// RESP2 with Redis's null array (`*-1`, which the frame type cannot
/// express) wherever a missing aggregate is the answer: BLPOP's timeout,
/// an EXEC whose WATCH failed, LPOP with a count on a missing key.
fn encode_resp2(
    reply: &Reply,
    out: &mut BytesMut,
) -> Result<(), redis_protocol::error::RedisProtocolError> {
    match reply {
        Reply::NilArray => out.extend_from_slice(b"*-1\r\n"),
        Reply::Array(items) | Reply::Push(items) | Reply::Sequence(items)
            if items
                .iter()
                .any(|item| matches!(item, Reply::NilArray | Reply::Array(_))) =>
        {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for item in items {
                encode_resp2(item, out)?;
            }
        }
        other => {
            redis_protocol::resp2::encode::extend_encode(out, &to_resp2(other), false)?;
        }
    }
    Ok(())
}

/// Appends `reply` to `out` in the connection's protocol; a sequence is
/// several frames one after another.
pub fn encode(protocol: Protocol, reply: &Reply, out: &mut BytesMut) {
    if let Reply::Sequence(replies) = reply {
        for reply in replies {
            encode(protocol, reply, out);
        }
        return;
    }
    let result = match protocol {
        Protocol::Resp2 => encode_resp2(reply, out),
        Protocol::Resp3 => {
            redis_protocol::resp3::encode::complete::extend_encode(out, &to_resp3(reply), false)
                .map(|_| ())
        }
    };
    if let Err(err) = result {
        // Only malformed frames fail to encode; ours are built above.
        let fallback = Frame2::Error(error_text(&format!("ERR reply encoding failed: {err}")));
        let _ = redis_protocol::resp2::encode::extend_encode(out, &fallback, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(protocol: Protocol, reply: Reply) -> String {
        let mut out = BytesMut::new();
        encode(protocol, &reply, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn encodes_redis_shapes() {
        assert_eq!(wire(Protocol::Resp2, Reply::ok()), "+OK\r\n");
        assert_eq!(wire(Protocol::Resp2, Reply::Nil), "$-1\r\n");
        assert_eq!(wire(Protocol::Resp3, Reply::Nil), "_\r\n");
        assert_eq!(wire(Protocol::Resp2, Reply::NilArray), "*-1\r\n");
        assert_eq!(
            wire(
                Protocol::Resp2,
                Reply::Array(vec![Reply::NilArray, Reply::Integer(1)])
            ),
            "*2\r\n*-1\r\n:1\r\n"
        );
        assert_eq!(wire(Protocol::Resp2, Reply::Integer(-2)), ":-2\r\n");
        assert_eq!(
            wire(Protocol::Resp2, Reply::error("ERR bad\r\nthing")),
            "-ERR bad  thing\r\n"
        );
        assert_eq!(
            wire(
                Protocol::Resp3,
                Reply::Map(vec![(Reply::bulk("a"), Reply::Integer(1))])
            ),
            "%1\r\n$1\r\na\r\n:1\r\n"
        );
        assert_eq!(
            wire(
                Protocol::Resp2,
                Reply::Map(vec![(Reply::bulk("a"), Reply::Integer(1))])
            ),
            "*2\r\n$1\r\na\r\n:1\r\n"
        );
    }
}
