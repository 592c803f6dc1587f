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

/// A double as Redis (7.2 and later) prints it in replies: the shortest
/// digits that read back as the same value, as a plain integer or decimal
/// when that is short, otherwise in scientific notation (`1e+20`).
pub fn format_double(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // `{:e}` gives the shortest round-trip digits: d.ddde<exponent>.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let ndigits = digits.len() as i32;
    // value = digits * 10^k
    let k = exponent - (ndigits - 1);
    let magnitude = exponent.abs();
    let sign = if value < 0.0 { "-" } else { "" };
    if k >= 0 && magnitude < ndigits + 7 {
        return format!("{sign}{digits}{}", "0".repeat(k as usize));
    }
    if k < 0 && (k > -7 || magnitude < 4) {
        let point = ndigits + k;
        return if point <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
        } else {
            let (whole, fraction) = digits.split_at(point as usize);
            format!("{sign}{whole}.{fraction}")
        };
    }
    let (first, rest) = digits.split_at(1);
    let rest = if rest.is_empty() {
        String::new()
    } else {
        format!(".{rest}")
    };
    let exponent_sign = if exponent < 0 { '-' } else { '+' };
    format!("{sign}{first}{rest}e{exponent_sign}{magnitude}")
}

#[cfg(test)]
mod tests {
    use super::format_double;

    #[test]
    fn doubles_print_as_redis_does() {
        for (value, text) in [
            (0.0, "0"),
            (1.0, "1"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (100.0, "100"),
            (1e20, "1e+20"),
            (123456789.0, "123456789"),
            (1.5e-7, "1.5e-7"),
            (0.000123, "0.000123"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (0.30000000000000004, "0.30000000000000004"),
        ] {
            assert_eq!(format_double(value), text, "{value}");
        }
    }
}
