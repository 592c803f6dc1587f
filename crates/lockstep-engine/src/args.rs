//! Argument parsing shared by commands, with Redis's rules and messages.

use bytes::Bytes;

use crate::Reply;

/// Parses a signed 64-bit integer the way Redis's `string2ll` does: optional
/// `-`, digits, no `+`, no spaces, no leading zeros.
pub fn parse_i64(arg: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(arg).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
        || (text.starts_with('-') && digits == "0")
    {
        return None;
    }
    text.parse().ok()
}

pub fn integer(arg: &[u8]) -> Result<i64, Reply> {
    parse_i64(arg).ok_or_else(Reply::not_integer)
}

/// Case-insensitive comparison of an argument with an option name.
pub fn is(arg: &[u8], option: &str) -> bool {
    arg.eq_ignore_ascii_case(option.as_bytes())
}

/// A cursor over the remaining arguments of a command.
pub struct Args<'a> {
    items: &'a [Bytes],
}

impl<'a> Args<'a> {
    pub fn new(items: &'a [Bytes]) -> Self {
        Args { items }
    }

    pub fn next(&mut self) -> Option<&'a Bytes> {
        let (first, rest) = self.items.split_first()?;
        self.items = rest;
        Some(first)
    }

    /// The value after an option; a missing one is a syntax error.
    pub fn value(&mut self) -> Result<&'a Bytes, Reply> {
        self.next().ok_or_else(Reply::syntax_error)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_i64;

    #[test]
    fn integers_follow_redis_rules() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-15"), Some(-15));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"1.5",
            b"9223372036854775808",
            b"abc",
            b"-",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
