//! Functions the sandbox gets from the host: deterministic `math.random`,
//! `redis.sha1hex`, `cjson` and `bit`.

use std::rc::Rc;

use mlua::{Lua, LuaSerdeExt, MultiValue, Table, Value, Variadic};

use super::vm::{Abort, RunState};

/// drand48's constants: every run starts from the same seed, as Redis's
/// scripts did, so `math.random` gives the same numbers on every node.
pub const RANDOM_SEED: u64 = 0x330E;
const RANDOM_A: u64 = 0x5_DEEC_E66D;
const RANDOM_C: u64 = 0xB;
const RANDOM_MASK: u64 = (1 << 48) - 1;

pub fn table(lua: &Lua, state: Rc<RunState>) -> mlua::Result<Table> {
    let host = lua.create_table()?;

    let random_state = state.clone();
    host.set(
        "random",
        lua.create_function(move |_, args: Variadic<f64>| {
            let next = (RANDOM_A
                .wrapping_mul(random_state.random.get())
                .wrapping_add(RANDOM_C))
                & RANDOM_MASK;
            random_state.random.set(next);
            let unit = next as f64 / (1u64 << 48) as f64;
            match args.as_slice() {
                [] => Ok(unit),
                [upper] if *upper >= 1.0 => Ok((unit * upper.floor()).floor() + 1.0),
                [lower, upper] if lower <= upper => {
                    Ok((unit * (upper - lower + 1.0).floor()).floor() + lower)
                }
                _ => Err(mlua::Error::runtime(
                    "bad argument to 'random' (interval is empty)",
                )),
            }
        })?,
    )?;
    let seed_state = state.clone();
    host.set(
        "randomseed",
        lua.create_function(move |_, seed: f64| {
            seed_state
                .random
                .set((((seed as i64 as u64) << 16) | RANDOM_SEED) & RANDOM_MASK);
            Ok(())
        })?,
    )?;

    host.set(
        "sha1hex",
        lua.create_function(|_, text: mlua::LuaString| Ok(sha1_hex(&text.as_bytes())))?,
    )?;

    let abort_state = state;
    host.set(
        "aborted",
        lua.create_function(move |lua, ()| {
            if abort_state.abort.get().is_none()
                && abort_state.memory_limit.get() > 0
                && lua.used_memory() + MEMORY_SLACK >= abort_state.memory_limit.get()
            {
                abort_state.abort.set(Some(Abort::Memory));
            }
            Ok(abort_state.abort.get().is_some())
        })?,
    )?;

    host.set("cjson", cjson(lua)?)?;
    host.set("bit", bit(lua)?)?;
    Ok(host)
}

/// Headroom under the memory limit within which a caught error counts as
/// the limit being hit.
const MEMORY_SLACK: usize = 64 << 10;

pub fn sha1_hex(data: &[u8]) -> String {
    sha1_smol::Sha1::from(data).digest().to_string()
}

fn cjson(lua: &Lua) -> mlua::Result<Table> {
    let cjson = lua.create_table()?;
    cjson.set(
        "encode",
        lua.create_function(|lua, value: Value| {
            let json: serde_json::Value = lua
                .from_value(value)
                .map_err(|err| mlua::Error::runtime(format!("Cannot serialise: {err}")))?;
            lua.create_string(json.to_string())
        })?,
    )?;
    cjson.set(
        "decode",
        lua.create_function(|lua, text: mlua::LuaString| {
            let json: serde_json::Value =
                serde_json::from_slice(&text.as_bytes()).map_err(|err| {
                    mlua::Error::runtime(format!("Expected value but found invalid token: {err}"))
                })?;
            lua.to_value(&json)
        })?,
    )?;
    cjson.set("null", lua.null())?;
    Ok(cjson)
}

/// LuaBitOp's argument normalisation: the number modulo 2^32, as a signed
/// 32-bit integer.
fn to_bit(number: f64) -> i32 {
    (number.round() as i128).rem_euclid(1 << 32) as u32 as i32
}

fn bit(lua: &Lua) -> mlua::Result<Table> {
    let bit = lua.create_table()?;
    let fold = |lua: &Lua, op: fn(i32, i32) -> i32| {
        lua.create_function(move |_, args: Variadic<f64>| {
            let mut values = args.iter().map(|n| to_bit(*n));
            let first = values
                .next()
                .ok_or_else(|| mlua::Error::runtime("bad argument #1 (number expected)"))?;
            Ok(values.fold(first, op))
        })
    };
    bit.set("band", fold(lua, |a, b| a & b)?)?;
    bit.set("bor", fold(lua, |a, b| a | b)?)?;
    bit.set("bxor", fold(lua, |a, b| a ^ b)?)?;
    bit.set("tobit", lua.create_function(|_, n: f64| Ok(to_bit(n)))?)?;
    bit.set("bnot", lua.create_function(|_, n: f64| Ok(!to_bit(n)))?)?;
    bit.set(
        "bswap",
        lua.create_function(|_, n: f64| Ok(to_bit(n).swap_bytes()))?,
    )?;
    let shift = |lua: &Lua, op: fn(i32, u32) -> i32| {
        lua.create_function(move |_, (n, by): (f64, f64)| {
            Ok(op(to_bit(n), (to_bit(by) & 31) as u32))
        })
    };
    bit.set("lshift", shift(lua, |a, by| ((a as u32) << by) as i32)?)?;
    bit.set("rshift", shift(lua, |a, by| ((a as u32) >> by) as i32)?)?;
    bit.set("arshift", shift(lua, |a, by| a >> by)?)?;
    bit.set(
        "rol",
        shift(lua, |a, by| (a as u32).rotate_left(by) as i32)?,
    )?;
    bit.set(
        "ror",
        shift(lua, |a, by| (a as u32).rotate_right(by) as i32)?,
    )?;
    bit.set(
        "tohex",
        lua.create_function(|_, args: MultiValue| {
            let mut args = args.into_iter();
            let number = match args.next() {
                Some(Value::Integer(n)) => n as f64,
                Some(Value::Number(n)) => n,
                _ => {
                    return Err(mlua::Error::runtime(
                        "bad argument #1 to 'tohex' (number expected)",
                    ))
                }
            };
            let digits = match args.next() {
                Some(Value::Integer(n)) => n,
                Some(Value::Number(n)) => n as i64,
                _ => 8,
            };
            let upper = digits < 0;
            let width = digits.unsigned_abs().clamp(1, 8) as usize;
            let value = to_bit(number) as u32;
            let masked = if width == 8 {
                value
            } else {
                value & ((1u32 << (4 * width)) - 1)
            };
            Ok(if upper {
                format!("{masked:0width$X}")
            } else {
                format!("{masked:0width$x}")
            })
        })?,
    )?;
    Ok(bit)
}
