//! Redis's conversion rules between Lua values and replies.

use bytes::Bytes;
use mlua::{Lua, MultiValue, Table, Value};

use crate::Reply;

/// Nesting beyond this in a script's return value is refused rather than
/// risking the stack.
const MAX_DEPTH: usize = 64;

/// A script's return value as a reply: numbers are truncated to integers,
/// `false` is nil, `true` is 1, tables are arrays up to their first nil
/// unless they carry `ok` or `err`.
pub fn to_reply(value: &Value) -> Reply {
    to_reply_at(value, 0)
}

fn to_reply_at(value: &Value, depth: usize) -> Reply {
    match value {
        Value::Boolean(true) => Reply::Integer(1),
        Value::Integer(n) => Reply::Integer(*n),
        Value::Number(n) => Reply::Integer(*n as i64),
        Value::String(text) => Reply::Bulk(Bytes::copy_from_slice(&text.as_bytes())),
        Value::Table(table) => table_reply(table, depth),
        _ => Reply::Nil,
    }
}

fn table_reply(table: &Table, depth: usize) -> Reply {
    if depth >= MAX_DEPTH {
        return Reply::error("ERR reached lua stack limit");
    }
    if let Ok(Value::String(message)) = table.raw_get::<Value>("err") {
        return Reply::Error(super::vm::one_line(&message.to_string_lossy()));
    }
    if let Ok(Value::String(status)) = table.raw_get::<Value>("ok") {
        return Reply::Status(super::vm::one_line(&status.to_string_lossy()));
    }
    let mut items = Vec::new();
    for at in 1.. {
        match table.raw_get::<Value>(at) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(item) => items.push(to_reply_at(&item, depth + 1)),
        }
    }
    Reply::Array(items)
}

/// A command's reply as `redis.call` returns it to the script.
pub fn to_lua(lua: &Lua, reply: Reply) -> mlua::Result<Value> {
    Ok(match reply {
        Reply::Status(status) => {
            let table = lua.create_table()?;
            table.raw_set("ok", status)?;
            Value::Table(table)
        }
        Reply::Error(message) => Value::Table(error_table(lua, &message)?),
        Reply::Integer(n) => Value::Integer(n),
        Reply::Bulk(data) => Value::String(lua.create_string(&data)?),
        Reply::Nil | Reply::NilArray => Value::Boolean(false),
        Reply::Array(items) | Reply::Push(items) | Reply::Sequence(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (at, item) in items.into_iter().enumerate() {
                table.raw_set(at + 1, to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
        Reply::Map(pairs) => {
            let table = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
            for (at, (key, value)) in pairs.into_iter().enumerate() {
                table.raw_set(2 * at + 1, to_lua(lua, key)?)?;
                table.raw_set(2 * at + 2, to_lua(lua, value)?)?;
            }
            Value::Table(table)
        }
        Reply::Double(value) => Value::String(lua.create_string(format_number(value))?),
    })
}

pub fn error_table(lua: &Lua, message: &str) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    table.raw_set("err", message)?;
    Ok(table)
}

/// `redis.call`'s arguments as a command: strings as they are, numbers as
/// Lua prints them. `None` if an argument is of another type.
pub fn to_argv(args: MultiValue) -> Option<Vec<Bytes>> {
    args.into_iter()
        .map(|arg| match arg {
            Value::String(text) => Some(Bytes::copy_from_slice(&text.as_bytes())),
            Value::Integer(n) => Some(Bytes::from(n.to_string())),
            Value::Number(n) => Some(Bytes::from(format_number(n))),
            _ => None,
        })
        .collect()
}

/// Lua 5.1's number formatting, `%.14g`.
pub fn format_number(value: f64) -> String {
    if value.is_nan() {
        return if value.is_sign_negative() {
            "-nan"
        } else {
            "nan"
        }
        .to_string();
    }
    if value.is_infinite() {
        return if value < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let scientific = format!("{value:.13e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("formatted with e");
    let exponent: i32 = exponent.parse().expect("numeric exponent");
    if !(-4..14).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{}e{sign}{:02}",
            trim_fraction(mantissa),
            exponent.unsigned_abs()
        )
    } else {
        let decimals = (13 - exponent) as usize;
        trim_fraction(&format!("{value:.decimals$}")).to_string()
    }
}

fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::format_number;

    #[test]
    fn numbers_print_like_lua() {
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(0.1), "0.1");
        assert_eq!(format_number(1.5e20), "1.5e+20");
        assert_eq!(format_number(123456789012346.0), "1.2345678901235e+14");
        assert_eq!(format_number(0.0001), "0.0001");
        assert_eq!(format_number(0.00001), "1e-05");
        assert_eq!(format_number(-2.5), "-2.5");
        assert_eq!(format_number(1.0 / 3.0), "0.33333333333333");
    }
}
