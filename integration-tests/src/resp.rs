//! A raw RESP2 client for tests that compare servers' replies exactly:
//! error texts as sent, and a null bulk string told apart from a null
//! array (client libraries fold both into one "nil").

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum Resp {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    NullBulk,
    Array(Vec<Resp>),
    NullArray,
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resp::Status(text) => write!(f, "+{text}"),
            Resp::Error(text) => write!(f, "-{text}"),
            Resp::Integer(n) => write!(f, "(integer) {n}"),
            Resp::Bulk(data) => write!(f, "{:?}", String::from_utf8_lossy(data)),
            Resp::NullBulk => write!(f, "(nil)"),
            Resp::NullArray => write!(f, "(nil array)"),
            Resp::Array(items) => {
                write!(f, "[")?;
                for (at, item) in items.iter().enumerate() {
                    if at > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
        }
    }
}

pub struct RawClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[impl AsRef<[u8]>]) -> Result<Resp> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            let arg = arg.as_ref();
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&out)?;
        self.read()
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        if !line.ends_with("\r\n") {
            bail!("connection closed mid-reply");
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    pub fn read(&mut self) -> Result<Resp> {
        let line = self.line()?;
        let (kind, rest) = line.split_at(1);
        Ok(match kind {
            "+" => Resp::Status(rest.to_string()),
            "-" => Resp::Error(rest.to_string()),
            ":" => Resp::Integer(rest.parse()?),
            "$" => {
                let len: i64 = rest.parse()?;
                if len < 0 {
                    return Ok(Resp::NullBulk);
                }
                let mut data = vec![0; len as usize + 2];
                self.reader.read_exact(&mut data)?;
                data.truncate(len as usize);
                Resp::Bulk(data)
            }
            "*" => {
                let len: i64 = rest.parse()?;
                if len < 0 {
                    return Ok(Resp::NullArray);
                }
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.read()?);
                }
                Resp::Array(items)
            }
            other => bail!("unexpected reply type {other:?} in {line:?}"),
        })
    }
}
