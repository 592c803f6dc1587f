//! The embedded Lua 5.1 VM scripts run in, and the limits that make every
//! run end the same way on every node.
//!
//! A VM is kept per thread and reused; its sandbox (see `prelude.lua`)
//! gives each run fresh globals, so runs cannot see each other. Two limits
//! bound a run, both counted the same way on every node:
//! - an instruction budget, counted by a hook every [`HOOK_EVERY`]
//!   instructions, reset at the start of each run;
//! - a memory cap on what the run allocates. A reused VM's allocation
//!   figures depend a little on what earlier runs left behind (interned
//!   strings), so a run that comes anywhere near the cap is thrown away and
//!   run again in a brand-new VM, whose figures are identical everywhere.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use mlua::{
    chunk::ChunkMode, Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value,
    VmState,
};

use super::host;

/// Instructions one script may execute: a few tenths of a second of work,
/// so a runaway script cannot stall the log for long.
pub const INSTRUCTION_BUDGET: u64 = 20_000_000;
/// Bytes one script may allocate in all (garbage is not collected while a
/// script runs, which keeps the figure the same on every node).
pub const MEMORY_CAP: usize = 64 << 20;
const HOOK_EVERY: u32 = 1000;
/// A reused VM is trusted with runs that allocate less than this; anything
/// more is decided by a fresh VM.
const TRUSTED_ALLOCATION: usize = MEMORY_CAP / 2;
/// Garbage the VM may gather before a full collection, at least: the
/// collector never runs by itself (see `collect_if_due`).
const GARBAGE_ALLOWANCE: usize = 256 << 10;

pub const BUDGET_EXCEEDED: &str = "ERR Script exceeded the instruction limit of every node";
pub const MEMORY_EXCEEDED: &str = "ERR Script exceeded the memory limit of every node";

/// The backend of `redis.call` (raise = true) and `redis.pcall`: returns
/// whether the command succeeded and its reply as a Lua value.
pub type Dispatch<'a> = dyn FnMut(&Lua, bool, MultiValue) -> mlua::Result<(bool, Value)> + 'a;

/// Why a run stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abort {
    Budget,
    Memory,
}

pub struct Vm {
    lua: Lua,
    new_env: Function,
    state: Rc<RunState>,
    /// Heap in use after the last full collection.
    live_after_collect: Cell<usize>,
    compiled: RefCell<Compiled>,
}

/// Compiled scripts by sha, bounded so what it keeps alive stays far below
/// the allocation a reused VM is trusted with.
#[derive(Default)]
struct Compiled {
    functions: std::collections::HashMap<String, Function>,
    body_bytes: usize,
}

const COMPILED_MAX_SCRIPTS: usize = 1024;
const COMPILED_MAX_BYTES: usize = 4 << 20;

/// Per-run state the host functions share with the VM.
#[derive(Default)]
pub struct RunState {
    pub abort: Cell<Option<Abort>>,
    pub random: Cell<u64>,
    pub instructions: Cell<u64>,
    /// The VM's memory limit during the run (0 outside runs).
    pub memory_limit: Cell<usize>,
    /// Memory in use when the script started (0 if it never started).
    pub memory_start: Cell<usize>,
}

impl RunState {
    fn reset(&self) {
        self.abort.set(None);
        self.random.set(host::RANDOM_SEED);
        self.instructions.set(0);
        self.memory_limit.set(0);
        self.memory_start.set(0);
    }
}

/// What a run produced.
pub enum Outcome {
    /// The script's return value, or the error it raised.
    Finished(Result<Value, Value>),
    /// The script failed to compile.
    Compile(String),
    Aborted(Abort),
}

thread_local! {
    static SHARED: RefCell<Option<Vm>> = const { RefCell::new(None) };
}

impl Vm {
    pub fn new() -> mlua::Result<Vm> {
        let lua = Lua::new_with(
            StdLib::STRING | StdLib::TABLE | StdLib::MATH,
            LuaOptions::default(),
        )?;
        let state = Rc::new(RunState::default());
        let globals = lua.globals();
        for name in [
            "dofile",
            "loadfile",
            "load",
            "loadstring",
            "require",
            "module",
            "collectgarbage",
            "gcinfo",
            "getfenv",
            "setfenv",
            "newproxy",
            "print",
            "coroutine",
        ] {
            globals.raw_set(name, Value::Nil)?;
        }
        let host_table = host::table(&lua, state.clone())?;
        let new_env: Function = lua
            .load(include_str!("prelude.lua"))
            .set_name("=prelude")
            .call(host_table)?;
        // Collection is manual: memory use during a run must not depend on
        // when this node's collector last ran, and a stop-the-world
        // collection now and then is cheaper than stepping after every run.
        lua.gc_stop();
        Ok(Vm {
            lua,
            new_env,
            state,
            live_after_collect: Cell::new(0),
            compiled: RefCell::new(Compiled::default()),
        })
    }

    /// Runs `f` with this thread's shared VM, creating it on first use.
    pub fn with_shared<R>(f: impl FnOnce(&Vm) -> R) -> R {
        SHARED.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(Vm::new().expect("the script VM starts"));
            }
            f(slot.as_ref().expect("created above"))
        })
    }

    /// Checks that `body` compiles, as SCRIPT LOAD must.
    pub fn compile(&self, body: &[u8]) -> Result<(), String> {
        self.collect_if_due();
        self.lua
            .load(body)
            .set_name("@user_script")
            .set_mode(ChunkMode::Text)
            .into_function()
            .map(|_| ())
            .map_err(|err| compile_message(&err))
    }

    /// Compiles and runs `body` with `dispatch` as the redis.call backend.
    /// Returns the outcome and whether it can be trusted (see module docs).
    pub fn run(
        &self,
        sha: &str,
        body: &[u8],
        keys: &[bytes::Bytes],
        argv: &[bytes::Bytes],
        dispatch: &mut Dispatch<'_>,
    ) -> (Outcome, bool) {
        let lua = &self.lua;
        self.state.reset();
        let budget_state = self.state.clone();
        // Setting the hook also restarts Lua's instruction counter, so every
        // run is counted from zero on every node.
        let hooked = lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |_, _| {
                let used = budget_state.instructions.get() + u64::from(HOOK_EVERY);
                budget_state.instructions.set(used);
                if used > INSTRUCTION_BUDGET || budget_state.abort.get().is_some() {
                    budget_state
                        .abort
                        .set(Some(budget_state.abort.get().unwrap_or(Abort::Budget)));
                    return Err(mlua::Error::runtime(BUDGET_EXCEEDED));
                }
                Ok(VmState::Continue)
            },
        );
        if hooked.is_err() {
            return (Outcome::Aborted(Abort::Memory), false);
        }
        let outcome = self.run_limited(sha, body, keys, argv, dispatch);
        // The limit is armed just before the script starts (see
        // run_limited): with a limit set, every allocation the host makes
        // through mlua goes through a protected call, which is slow.
        let start = self.state.memory_start.get();
        let allocated = if start == 0 {
            0
        } else {
            lua.used_memory().saturating_sub(start)
        };
        let _ = lua.set_memory_limit(0);
        self.state.memory_limit.set(0);
        self.state.memory_start.set(0);
        lua.remove_global_hook();
        self.collect_if_due();
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(err) if is_memory_error(&err) => Outcome::Aborted(Abort::Memory),
            Err(err) => Outcome::Finished(Err(Value::String(
                lua.create_string(format!("ERR {err}"))
                    .unwrap_or_else(|_| lua.create_string("ERR script failed").expect("tiny")),
            ))),
        };
        let outcome = match (outcome, self.state.abort.get()) {
            (_, Some(abort)) => Outcome::Aborted(abort),
            (Outcome::Finished(Err(Value::String(message))), None)
                if message.as_bytes().ends_with(b"not enough memory") =>
            {
                Outcome::Aborted(Abort::Memory)
            }
            (outcome, None) => outcome,
        };
        let trusted =
            allocated < TRUSTED_ALLOCATION && !matches!(outcome, Outcome::Aborted(Abort::Memory));
        (outcome, trusted)
    }

    fn run_limited(
        &self,
        sha: &str,
        body: &[u8],
        keys: &[bytes::Bytes],
        argv: &[bytes::Bytes],
        dispatch: &mut Dispatch<'_>,
    ) -> mlua::Result<Outcome> {
        let lua = &self.lua;
        let cached = self.compiled.borrow().functions.get(sha).cloned();
        let function = match cached {
            Some(function) => function,
            None => match lua
                .load(body)
                .set_name("@user_script")
                .set_mode(ChunkMode::Text)
                .into_function()
            {
                Ok(function) => {
                    self.remember(sha, body.len(), &function);
                    function
                }
                Err(err) if is_memory_error(&err) => return Ok(Outcome::Aborted(Abort::Memory)),
                Err(err) => return Ok(Outcome::Compile(compile_message(&err))),
            },
        };
        let keys = sequence(lua, keys)?;
        let argv = sequence(lua, argv)?;
        lua.scope(|scope| {
            let dispatch = scope.create_function_mut(move |lua, args: MultiValue| {
                let mut args = args.into_iter();
                let raise = matches!(args.next(), Some(Value::Boolean(true)));
                dispatch(lua, raise, args.collect())
            })?;
            let env: Table = self.new_env.call((dispatch, keys, argv))?;
            function.set_environment(env)?;
            let pcall: Function = lua.globals().raw_get("pcall")?;
            let start = lua.used_memory();
            self.state.memory_start.set(start);
            self.state.memory_limit.set(start + MEMORY_CAP);
            let _ = lua.set_memory_limit(start + MEMORY_CAP);
            let results: MultiValue = pcall.call(function)?;
            let mut results = results.into_iter();
            let ok = matches!(results.next(), Some(Value::Boolean(true)));
            let value = results.next().unwrap_or(Value::Nil);
            Ok(Outcome::Finished(if ok { Ok(value) } else { Err(value) }))
        })
    }
}

impl Vm {
    /// Collects all garbage once it outgrows the live heap (and the
    /// allowance), so collection costs stay proportional to garbage.
    fn collect_if_due(&self) {
        let live = self.live_after_collect.get();
        if self.lua.used_memory() > live + live.max(GARBAGE_ALLOWANCE) {
            let _ = self.lua.gc_collect();
            // A full collection re-arms Lua's automatic collector.
            self.lua.gc_stop();
            self.live_after_collect.set(self.lua.used_memory());
        }
    }

    fn remember(&self, sha: &str, body_len: usize, function: &Function) {
        let mut compiled = self.compiled.borrow_mut();
        if compiled.functions.len() >= COMPILED_MAX_SCRIPTS
            || compiled.body_bytes + body_len > COMPILED_MAX_BYTES
        {
            compiled.functions.clear();
            compiled.body_bytes = 0;
        }
        if body_len <= COMPILED_MAX_BYTES {
            compiled.body_bytes += body_len;
            compiled.functions.insert(sha.to_string(), function.clone());
        }
    }
}

fn sequence(lua: &Lua, items: &[bytes::Bytes]) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(items.len(), 0)?;
    for (at, item) in items.iter().enumerate() {
        table.raw_set(at + 1, lua.create_string(item)?)?;
    }
    Ok(table)
}

fn is_memory_error(err: &mlua::Error) -> bool {
    match err {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

fn compile_message(err: &mlua::Error) -> String {
    let text = match err {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    format!(
        "ERR Error compiling script (new function): {}",
        one_line(&text)
    )
}

/// Error replies are single lines.
pub fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}
