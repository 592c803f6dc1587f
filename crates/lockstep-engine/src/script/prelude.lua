-- Builds the sandbox every script runs in. Executed once per VM with the
-- host functions as arguments; returns the function that makes one run's
-- environment. Nothing a script can reach is shared between runs except
-- read-only tables, so one script cannot influence the next.
local host = ...
local raw_pcall, raw_xpcall, raw_tostring = pcall, xpcall, tostring
local error, type, select, setmetatable, getmetatable, rawget =
  error, type, select, setmetatable, getmetatable, rawget

local function refuse_write() error("Attempt to modify a readonly table", 2) end

-- A protected metatable making an empty table a read-only view of `t`.
local function readonly_view_of(t)
  return { __index = t, __newindex = refuse_write, __metatable = false }
end

-- Addresses differ between nodes; a script must not see them.
local function safe_tostring(v)
  local kind = type(v)
  if kind == "table" or kind == "function" or kind == "userdata" or kind == "thread" then
    local mt = getmetatable(v)
    if type(mt) == "table" and rawget(mt, "__tostring") then
      return raw_tostring(v)
    end
    return kind
  end
  return raw_tostring(v)
end

-- An aborted script (instruction or memory limit) must not be able to
-- catch its own abort and go on.
local function rethrow_abort(ok, ...)
  if not ok and host.aborted() then
    error((...), 0)
  end
  return ok, ...
end

string.dump = nil
math.random = host.random
math.randomseed = host.randomseed

local libraries = {
  string = string, table = table, math = math,
  cjson = host.cjson, bit = host.bit,
}
local base = {
  assert = assert, error = error, ipairs = ipairs, next = next,
  pairs = pairs, rawequal = rawequal, rawget = rawget, rawset = rawset,
  select = select, setmetatable = setmetatable, getmetatable = getmetatable,
  tonumber = tonumber, tostring = safe_tostring, type = type,
  unpack = unpack, _VERSION = _VERSION,
  pcall = function(...) return rethrow_abort(raw_pcall(...)) end,
  xpcall = function(f, handler) return rethrow_abort(raw_xpcall(f, handler)) end,
}
setmetatable(base, { __metatable = false })

local string_mt = getmetatable("")
string_mt.__metatable = false

local env_mt = {
  __index = function(_, name)
    local value = base[name]
    if value == nil then
      error("Script attempted to access nonexistent global variable '" .. raw_tostring(name) .. "'", 2)
    end
    return value
  end,
  __newindex = refuse_write,
  __metatable = false,
}

-- The backend of redis.call for the run in progress; set per run.
local dispatch = nil

local redis = {
  call = function(...)
    local ok, result = dispatch(true, ...)
    if not ok then error(result, 0) end
    return result
  end,
  pcall = function(...)
    local _, result = dispatch(false, ...)
    return result
  end,
  error_reply = function(message) return { err = message } end,
  status_reply = function(message) return { ok = message } end,
  sha1hex = host.sha1hex,
  log = function() end,
  setresp = function() end,
  set_repl = function() end,
  replicate_commands = function() return true end,
  breakpoint = function() return false end,
  debug = function() end,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REPL_NONE = 0, REPL_SLAVE = 1, REPL_REPLICA = 1, REPL_AOF = 2, REPL_ALL = 3,
}
libraries.redis = redis
local views = {}
for name, library in pairs(libraries) do
  views[name] = readonly_view_of(library)
end

-- One run's globals: fresh read-only views of the libraries (so rawset on
-- them cannot leak into later runs), KEYS and ARGV. One constructor, so the
-- table is allocated at its final size.
return function(run_dispatch, keys, argv)
  dispatch = run_dispatch
  local env = {
    string = setmetatable({}, views.string),
    table = setmetatable({}, views.table),
    math = setmetatable({}, views.math),
    cjson = setmetatable({}, views.cjson),
    bit = setmetatable({}, views.bit),
    redis = setmetatable({}, views.redis),
    KEYS = keys,
    ARGV = argv,
    _G = false,
  }
  env._G = env
  return setmetatable(env, env_mt)
end
