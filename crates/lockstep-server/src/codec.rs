//! Request framing: RESP multibulk arrays (what clients send) and inline
//! commands (what `telnet` and `nc` send).
//!
//! Declared lengths are checked against [`Limits`] as soon as their header
//! arrives, before any of the body is buffered, so a hostile length cannot
//! make the server allocate. A complete frame is then decoded by
//! `redis_protocol`.

use bytes::{Buf, Bytes, BytesMut};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;
use tokio_util::codec::Decoder;

use crate::Limits;

/// A framing error; the connection gets `-ERR Protocol error: ...` and is closed.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("Protocol error: {0}")]
    Invalid(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

fn invalid(message: impl Into<String>) -> ProtocolError {
    ProtocolError::Invalid(message.into())
}

pub struct RequestDecoder {
    limits: Limits,
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        RequestDecoder { limits }
    }
}

/// Reads `<digits>\r\n` starting at `at`; `None` if the line is incomplete.
fn read_length(buf: &[u8], at: usize, what: &str) -> Result<Option<(i64, usize)>, ProtocolError> {
    let Some(line_end) = buf[at..].iter().position(|&b| b == b'\r') else {
        if buf.len() - at > 32 {
            return Err(invalid(format!("invalid {what} length")));
        }
        return Ok(None);
    };
    let line_end = at + line_end;
    if line_end + 1 >= buf.len() {
        return Ok(None);
    }
    if buf[line_end + 1] != b'\n' {
        return Err(invalid(format!("invalid {what} length")));
    }
    let text = std::str::from_utf8(&buf[at..line_end])
        .map_err(|_| invalid(format!("invalid {what} length")))?;
    let value: i64 = text
        .parse()
        .map_err(|_| invalid(format!("invalid {what} length")))?;
    Ok(Some((value, line_end + 2)))
}

impl RequestDecoder {
    /// Checks every header present in `buf`. Returns `Ok(true)` if the whole
    /// frame is buffered, `Ok(false)` if more bytes are needed.
    fn check_multibulk(&self, buf: &[u8]) -> Result<bool, ProtocolError> {
        let Some((count, mut at)) = read_length(buf, 1, "multibulk")? else {
            return Ok(false);
        };
        if count > self.limits.max_args as i64 {
            return Err(invalid("invalid multibulk length"));
        }
        for _ in 0..count.max(0) {
            if at >= buf.len() {
                return Ok(false);
            }
            if buf[at] != b'$' {
                return Err(invalid(format!(
                    "expected '$', got '{}'",
                    (buf[at] as char).escape_default()
                )));
            }
            let Some((len, body)) = read_length(buf, at + 1, "bulk")? else {
                return Ok(false);
            };
            if len < 0 || len > self.limits.max_bulk_bytes as i64 {
                return Err(invalid("invalid bulk length"));
            }
            at = body + len as usize + 2;
            if at > buf.len() {
                return Ok(false);
            }
            if &buf[at - 2..at] != b"\r\n" {
                return Err(invalid("bulk string not terminated by CRLF"));
            }
        }
        Ok(true)
    }

    fn decode_inline(&self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(newline) = src.iter().position(|&b| b == b'\n') else {
            if src.len() > self.limits.max_inline_bytes {
                return Err(invalid("too big inline request"));
            }
            return Ok(None);
        };
        // A whole line that arrived at once is held to the same bounds as
        // one still arriving, and to the argument limit of multibulk.
        if newline > self.limits.max_inline_bytes {
            return Err(invalid("too big inline request"));
        }
        let line = src.split_to(newline + 1);
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let argv = split_inline(line)?;
        if argv.len() > self.limits.max_args {
            return Err(invalid("too many arguments in inline request"));
        }
        Ok(Some(argv))
    }
}

impl Decoder for RequestDecoder {
    type Item = Vec<Bytes>;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if src.is_empty() {
                return Ok(None);
            }
            if src[0] != b'*' {
                match self.decode_inline(src)? {
                    // Empty lines are ignored, as Redis does.
                    Some(argv) if argv.is_empty() => continue,
                    other => return Ok(other),
                }
            }
            if !self.check_multibulk(src)? {
                if src.len() > self.limits.max_query_buffer_bytes {
                    return Err(invalid("query buffer limit exceeded"));
                }
                return Ok(None);
            }
            if src.starts_with(b"*0\r\n") || src.starts_with(b"*-") {
                // Redis ignores empty and null arrays.
                let end = src.iter().position(|&b| b == b'\n').expect("checked") + 1;
                src.advance(end);
                continue;
            }
            let decoded =
                decode_bytes_mut(src).map_err(|err| invalid(err.details().to_string()))?;
            let Some((frame, _, _)) = decoded else {
                return Ok(None);
            };
            let BytesFrame::Array(items) = frame else {
                return Err(invalid("expected an array of bulk strings"));
            };
            let mut argv = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    BytesFrame::BulkString(bytes) => argv.push(bytes),
                    _ => return Err(invalid("expected '$'")),
                }
            }
            return Ok(Some(argv));
        }
    }
}

/// Splits an inline command line like Redis's `sdssplitargs`: words split on
/// whitespace, "double quotes" with escapes, 'single quotes'.
fn split_inline(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let unbalanced = || invalid("unbalanced quotes in request");
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let mut word = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    let Some(&c) = line.get(i) else {
                        return Err(unbalanced());
                    };
                    match c {
                        b'\\'
                            if i + 3 < line.len()
                                && line[i + 1] == b'x'
                                && line[i + 2].is_ascii_hexdigit()
                                && line[i + 3].is_ascii_hexdigit() =>
                        {
                            let hex = std::str::from_utf8(&line[i + 2..i + 4]).expect("hex digits");
                            word.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                            i += 4;
                        }
                        b'\\' if i + 1 < line.len() => {
                            word.push(match line[i + 1] {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 8,
                                b'a' => 7,
                                other => other,
                            });
                            i += 2;
                        }
                        b'"' => {
                            i += 1;
                            if line.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                                return Err(unbalanced());
                            }
                            break;
                        }
                        other => {
                            word.push(other);
                            i += 1;
                        }
                    }
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    let Some(&c) = line.get(i) else {
                        return Err(unbalanced());
                    };
                    if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                        word.push(b'\'');
                        i += 2;
                    } else if c == b'\'' {
                        i += 1;
                        if line.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                            return Err(unbalanced());
                        }
                        break;
                    } else {
                        word.push(c);
                        i += 1;
                    }
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    word.push(line[i]);
                    i += 1;
                }
            }
        }
        args.push(Bytes::from(word));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> RequestDecoder {
        RequestDecoder::new(Limits {
            max_bulk_bytes: 1024,
            max_args: 16,
            max_inline_bytes: 64,
            max_query_buffer_bytes: 4096,
            max_connections: 1,
        })
    }

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut decoder = decoder();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(argv) = decoder.decode(&mut buf)? {
            out.push(argv);
        }
        Ok(out)
    }

    #[test]
    fn inline_requests_keep_the_argument_and_line_limits() {
        // Found by fuzzing: inline requests skipped the argument limit.
        let words = "a ".repeat(17);
        assert!(decode_all(format!("{words}\r\n").as_bytes()).is_err());
        let words = "a ".repeat(16);
        assert_eq!(
            decode_all(format!("{words}\r\n").as_bytes()).unwrap()[0].len(),
            16
        );
        // A too long line is refused also when it arrives whole.
        let long = format!("ECHO {}\r\n", "x".repeat(100));
        assert!(decode_all(long.as_bytes()).is_err());
    }

    #[test]
    fn decodes_pipelined_multibulk() {
        let out = decode_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], vec![Bytes::from("GET"), Bytes::from("k")]);
        assert_eq!(out[1], vec![Bytes::from("PING")]);
    }

    #[test]
    fn waits_for_incomplete_frames_at_every_cut() {
        let full = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
        for cut in 0..full.len() {
            let mut decoder = decoder();
            let mut buf = BytesMut::from(&full[..cut]);
            assert!(decoder.decode(&mut buf).unwrap().is_none(), "cut {cut}");
            buf.extend_from_slice(&full[cut..]);
            assert_eq!(decoder.decode(&mut buf).unwrap().unwrap().len(), 3);
        }
    }

    #[test]
    fn refuses_oversized_declarations_before_buffering() {
        let err = decode_all(b"*2\r\n$3\r\nGET\r\n$999999999\r\n").unwrap_err();
        assert!(err.to_string().contains("invalid bulk length"), "{err}");
        let err = decode_all(b"*100000\r\n").unwrap_err();
        assert!(
            err.to_string().contains("invalid multibulk length"),
            "{err}"
        );
        let err = decode_all(b"*1\r\n$-5\r\n").unwrap_err();
        assert!(err.to_string().contains("invalid bulk length"), "{err}");
    }

    #[test]
    fn refuses_malformed_frames() {
        assert!(decode_all(b"*1\r\n:5\r\n").is_err());
        assert!(decode_all(b"*x\r\n").is_err());
        assert!(decode_all(b"*1\r\n$3\r\nabcXY").is_err());
    }

    #[test]
    fn decodes_inline_commands_with_quotes() {
        let out = decode_all(b"SET k \"a b\\n\" 'c d'\r\nPING\n\r\n").unwrap();
        assert_eq!(
            out[0],
            vec![
                Bytes::from("SET"),
                Bytes::from("k"),
                Bytes::from("a b\n"),
                Bytes::from("c d")
            ]
        );
        assert_eq!(out[1], vec![Bytes::from("PING")]);
        assert!(decode_all(b"SET k \"open\r\n").is_err());
        assert!(decode_all(&[b'a'; 100]).is_err());
    }

    #[test]
    fn ignores_empty_arrays() {
        let out = decode_all(b"*0\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(out, vec![vec![Bytes::from("PING")]]);
    }
}
