//! Lua scripting with Redis's semantics: EVAL, EVALSHA, their read-only
//! forms and SCRIPT.
//!
//! Scripts travel through the log as their text and arguments and run at
//! apply on every node, so everything a script sees is deterministic: time
//! is the entry's cluster time, `math.random` starts from a fixed seed,
//! there is no os, io or module loading, and both of its limits
//! (instructions and memory) are counted the same way everywhere. The
//! script cache is part of the replicated keyspace, so EVALSHA works on
//! every node and after a failover.

mod convert;
mod host;
mod vm;

use bytes::Bytes;
use lockstep_store::StoreError;
use mlua::{Lua, MultiValue, Value};

use crate::args::{integer, is};
use crate::commands::{self, Command};
use crate::context::Context;
use crate::layout::{self, prefix_end, SCRIPT};
use crate::spec::Access;
use crate::Reply;

pub use host::sha1_hex;
use vm::{Abort, Outcome, Vm};
pub use vm::{INSTRUCTION_BUDGET, MEMORY_CAP};

#[derive(Clone, Debug, PartialEq)]
pub enum ScriptCommand {
    Eval {
        body: Bytes,
        keys: Vec<Bytes>,
        argv: Vec<Bytes>,
        read_only: bool,
    },
    EvalSha {
        sha: String,
        keys: Vec<Bytes>,
        argv: Vec<Bytes>,
        read_only: bool,
    },
    Load(Bytes),
    Exists(Vec<Bytes>),
    Flush,
    Kill,
    Help,
}

impl ScriptCommand {
    pub fn access(&self) -> Access {
        match self {
            ScriptCommand::Eval { read_only, .. } | ScriptCommand::EvalSha { read_only, .. } => {
                if *read_only {
                    Access::Read
                } else {
                    Access::Write
                }
            }
            ScriptCommand::Exists(_) | ScriptCommand::Kill | ScriptCommand::Help => Access::Read,
            ScriptCommand::Load(_) | ScriptCommand::Flush => Access::Write,
        }
    }
}

pub fn parse(name: &str, args: &[Bytes]) -> Result<ScriptCommand, Reply> {
    match name {
        "eval" | "eval_ro" | "evalsha" | "evalsha_ro" => {
            let numkeys = integer(&args[1])?;
            if numkeys < 0 {
                return Err(Reply::error("ERR Number of keys can't be negative"));
            }
            let rest = &args[2..];
            if numkeys as u64 > rest.len() as u64 {
                return Err(Reply::error(
                    "ERR Number of keys can't be greater than number of args",
                ));
            }
            let (keys, argv) = rest.split_at(numkeys as usize);
            let (keys, argv) = (keys.to_vec(), argv.to_vec());
            let read_only = name.ends_with("_ro");
            Ok(if name.starts_with("evalsha") {
                ScriptCommand::EvalSha {
                    sha: String::from_utf8_lossy(&args[0]).to_ascii_lowercase(),
                    keys,
                    argv,
                    read_only,
                }
            } else {
                ScriptCommand::Eval {
                    body: args[0].clone(),
                    keys,
                    argv,
                    read_only,
                }
            })
        }
        "script" => {
            let sub = &args[0];
            let rest = &args[1..];
            if is(sub, "load") && rest.len() == 1 {
                Ok(ScriptCommand::Load(rest[0].clone()))
            } else if is(sub, "exists") && !rest.is_empty() {
                Ok(ScriptCommand::Exists(rest.to_vec()))
            } else if is(sub, "flush") && rest.len() <= 1 {
                match rest.first() {
                    Some(mode) if !is(mode, "sync") && !is(mode, "async") => Err(Reply::error(
                        "ERR SCRIPT FLUSH only support SYNC|ASYNC option",
                    )),
                    _ => Ok(ScriptCommand::Flush),
                }
            } else if is(sub, "kill") && rest.is_empty() {
                Ok(ScriptCommand::Kill)
            } else if is(sub, "help") && rest.is_empty() {
                Ok(ScriptCommand::Help)
            } else if ["load", "exists", "flush", "kill", "help"]
                .iter()
                .any(|known| is(sub, known))
            {
                Err(Reply::error(format!(
                    "ERR wrong number of arguments for 'script|{}' command",
                    String::from_utf8_lossy(sub).to_ascii_lowercase()
                )))
            } else {
                Err(Reply::error(format!(
                    "ERR unknown subcommand '{}'. Try SCRIPT HELP.",
                    String::from_utf8_lossy(sub)
                )))
            }
        }
        other => unreachable!("{other} is not a scripting command"),
    }
}

pub fn execute(ctx: &mut Context<'_>, command: ScriptCommand) -> Result<Reply, StoreError> {
    match command {
        ScriptCommand::Eval {
            body,
            keys,
            argv,
            read_only,
        } => {
            let sha = sha1_hex(&body);
            if !read_only && ctx.index != 0 {
                remember_script(ctx, &sha, &body)?;
            }
            run(ctx, &sha, &body, &keys, &argv, read_only)
        }
        ScriptCommand::EvalSha {
            sha,
            keys,
            argv,
            read_only,
        } => match ctx.raw_get(&layout::script_key(&sha))? {
            Some(body) => run(ctx, &sha, &body, &keys, &argv, read_only),
            None => Ok(Reply::error("NOSCRIPT No matching script. Please use EVAL.")),
        },
        ScriptCommand::Load(body) => {
            let compiled = Vm::with_shared(|vm| vm.compile(&body));
            if let Err(message) = compiled {
                return Ok(Reply::Error(message));
            }
            let sha = sha1_hex(&body);
            remember_script(ctx, &sha, &body)?;
            Ok(Reply::Bulk(Bytes::from(sha)))
        }
        ScriptCommand::Exists(shas) => {
            let mut found = Vec::with_capacity(shas.len());
            for sha in shas {
                let sha = String::from_utf8_lossy(&sha).to_ascii_lowercase();
                let known = ctx.raw_get(&layout::script_key(&sha))?.is_some();
                found.push(Reply::Integer(known as i64));
            }
            Ok(Reply::Array(found))
        }
        ScriptCommand::Flush => {
            let mut doomed = Vec::new();
            ctx.raw_scan(&[SCRIPT], &prefix_end(&[SCRIPT]), &mut |key, _| {
                doomed.push(key.to_vec());
                true
            })?;
            for key in doomed {
                ctx.raw_delete(key);
            }
            Ok(Reply::ok())
        }
        ScriptCommand::Kill => Ok(Reply::error(
            "NOTBUSY No scripts in execution right now.",
        )),
        ScriptCommand::Help => Ok(Reply::Array(
            [
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "EXISTS <sha1> [<sha1> ...]",
                "    Return information about the existence of the scripts in the script cache.",
                "FLUSH [ASYNC|SYNC]",
                "    Flush the Lua scripts cache.",
                "KILL",
                "    Scripts run at apply with a deterministic instruction limit; there is nothing to kill.",
                "LOAD <script>",
                "    Load a script into the scripts cache without executing it.",
            ]
            .iter()
            .map(|line| Reply::Status(line.to_string()))
            .collect(),
        )),
    }
}

fn remember_script(ctx: &mut Context<'_>, sha: &str, body: &[u8]) -> Result<(), StoreError> {
    let key = layout::script_key(sha);
    if ctx.raw_get(&key)?.is_none() {
        ctx.raw_put(key, body.to_vec());
    }
    Ok(())
}

/// Runs a script; a run that a reused VM cannot vouch for (see `vm`) is
/// undone and run again in a fresh VM.
fn run(
    ctx: &mut Context<'_>,
    sha: &str,
    body: &[u8],
    keys: &[Bytes],
    argv: &[Bytes],
    read_only: bool,
) -> Result<Reply, StoreError> {
    ctx.forbid_parking();
    let checkpoint = ctx.checkpoint();
    let (reply, trusted) = Vm::with_shared(|vm| run_in(vm, ctx, sha, body, keys, argv, read_only))?;
    if trusted {
        return Ok(reply);
    }
    ctx.restore(checkpoint.clone());
    let fresh = match Vm::new() {
        Ok(vm) => vm,
        Err(_) => return Ok(Reply::error(vm::MEMORY_EXCEEDED)),
    };
    let (reply, _) = run_in(&fresh, ctx, sha, body, keys, argv, read_only)?;
    if reply == Reply::error(vm::MEMORY_EXCEEDED) {
        ctx.restore(checkpoint);
    }
    Ok(reply)
}

fn run_in(
    vm: &Vm,
    ctx: &mut Context<'_>,
    sha: &str,
    body: &[u8],
    keys: &[Bytes],
    argv: &[Bytes],
    read_only: bool,
) -> Result<(Reply, bool), StoreError> {
    let checkpoint = ctx.checkpoint();
    let mut storage_failure = None;
    let mut failed_at_line = 0;
    let mut dispatch = |lua: &Lua, raise: bool, args: MultiValue| {
        let reply = match convert::to_argv(args) {
            None => Reply::error("ERR Lua redis lib command arguments must be strings or integers"),
            Some(argv) if argv.is_empty() => {
                Reply::error("ERR Please specify at least one argument for this redis lib call")
            }
            Some(argv) => match call(ctx, &argv, read_only) {
                Ok(reply) => reply,
                Err(err) => {
                    storage_failure = Some(err);
                    return Err(mlua::Error::runtime("storage failure"));
                }
            },
        };
        if let Reply::Error(message) = &reply {
            if raise {
                failed_at_line = script_line(lua);
            }
            return Ok((false, Value::Table(convert::error_table(lua, message)?)));
        }
        Ok((true, convert::to_lua(lua, reply)?))
    };
    let (outcome, trusted) = vm.run(sha, body, keys, argv, &mut dispatch);
    if let Some(err) = storage_failure {
        return Err(err);
    }
    let reply = match outcome {
        Outcome::Finished(Ok(value)) => convert::to_reply(&value),
        Outcome::Finished(Err(value)) => script_error(&value, sha, failed_at_line),
        Outcome::Compile(message) => Reply::Error(message),
        Outcome::Aborted(abort) => {
            // A script stopped by a limit has no effect at all.
            ctx.restore(checkpoint);
            Reply::error(match abort {
                Abort::Budget => vm::BUDGET_EXCEEDED,
                Abort::Memory => vm::MEMORY_EXCEEDED,
            })
        }
    };
    Ok((reply, trusted))
}

/// The line of the user script that is running (the innermost frame of
/// the script's own chunk).
fn script_line(lua: &Lua) -> usize {
    (0..16)
        .find_map(|level| {
            lua.inspect_stack(level, |debug| {
                (debug.source().source.as_deref() == Some("@user_script"))
                    .then(|| debug.current_line())
                    .flatten()
            })
            .flatten()
        })
        .unwrap_or(0)
}

/// A script's uncaught error as Redis shows it: the message, then which
/// script and line.
fn script_error(value: &Value, sha: &str, call_line: usize) -> Reply {
    let (message, line) = match value {
        Value::Table(table) => match table.raw_get::<Value>("err") {
            Ok(Value::String(message)) => (message.to_string_lossy(), call_line),
            _ => ("ERR unknown error".to_string(), 0),
        },
        Value::String(message) => {
            let message = message.to_string_lossy();
            let line = message
                .strip_prefix("user_script:")
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if message.starts_with("ERR ") {
                (message, line)
            } else {
                (format!("ERR {message}"), line)
            }
        }
        _ => ("ERR unknown error".to_string(), 0),
    };
    Reply::Error(vm::one_line(&format!(
        "{message} script: {sha}, on @user_script:{line}."
    )))
}

/// One `redis.call` from a script.
fn call(ctx: &mut Context<'_>, argv: &[Bytes], read_only: bool) -> Result<Reply, StoreError> {
    let (command, spec) = match commands::parse(argv) {
        Ok(parsed) => parsed,
        Err(reply) => {
            let text = match &reply {
                Reply::Error(text) => text.as_str(),
                _ => "",
            };
            return Ok(if text.starts_with("ERR unknown command") {
                Reply::error("ERR Unknown Redis command called from script")
            } else if text.starts_with("ERR wrong number of arguments") {
                Reply::error("ERR Wrong number of args calling Redis command from script")
            } else {
                reply
            });
        }
    };
    if matches!(
        command,
        Command::Script(_) | Command::Exec(_) | Command::Watch(_)
    ) {
        return Ok(Reply::error(
            "ERR This Redis command is not allowed from script",
        ));
    }
    if read_only && commands::access(&command, spec) == Access::Write {
        return Ok(Reply::error(
            "ERR Write commands are not allowed from read-only scripts.",
        ));
    }
    if spec.name.starts_with("acl.") {
        return Ok(Reply::error(
            "ERR This Redis command is not allowed from script",
        ));
    }
    if let Some(user) = ctx.acl_user.as_ref() {
        if let Some(denied) = crate::acl::check_call(user, argv) {
            return Ok(denied);
        }
    }
    commands::execute(ctx, command)
}
