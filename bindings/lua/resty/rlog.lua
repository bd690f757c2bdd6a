-- resty.rlog: lua-resty-logger-socket's API (init / initted / log / flush) over librlog, through
-- the LuaJIT FFI. The nginx worker only appends to rlog's in-memory buffer; rlog's own thread does
-- the network I/O, so `log` never yields, never blocks and works in every phase (log_by_lua*,
-- init_worker_by_lua*, timers, plain LuaJIT).
--
-- Return conventions are lua-resty-logger-socket's:
--   init(cfg)  -> true | nil, err          (type errors use resty's wording, checked here first)
--   initted()  -> true | false
--   log(msg)   -> bytes[, err]             (0 when dropped; err is a pending error from earlier,
--                                           returned once; nil, "not initialized" before init)
--   flush([timeout]) -> bytes | nil, err   (waits until delivered or failed; 0: nothing to
--                                           send. With the collector unreachable that is up to
--                                           (max_retry_times + 1)^2 attempts of up to `timeout`
--                                           each, plus backoff: resty's retry nesting. Where
--                                           ngx.sleep may yield (rewrite, access, content,
--                                           timers, ssl_*, stream preread) only the calling
--                                           request waits, as with resty's flush; elsewhere
--                                           (init*, set, header/body filter, log, balancer,
--                                           exit_worker) the worker blocks. `timeout` (seconds)
--                                           bounds the wait: nil, "timeout" and the flush goes on.
--                                           Do not call it per request; rlog sends by itself)
-- Errors rlog reports are also written to the nginx error log at debug level (in nginx builds
-- --with-debug, like Debian's), as resty does.
--
-- The library is found through $RLOG_LIB (nginx: `env RLOG_LIB=/path/to/librlog.so;`, or
-- `env RLOG_LIB;` to pass on the master's), then package.cpath, then the system loader
-- ("librlog.so"); requiring this module raises a clear error otherwise.
--
-- In nginx, init() resolves relative file paths in the config (`path`, `ssl_ca`, `spool`,
-- `token_file`, and NAME.key forms) against nginx's prefix (ngx.config.prefix(), `-p`), as
-- nginx does for its own files, instead of the worker's working directory.

local ffi = require "ffi"

local ffi_new = ffi.new
local ffi_string = ffi.string
local type = type
local tostring = tostring
local tonumber = tonumber
local pairs = pairs
local ipairs = ipairs
local error = error
local concat = table.concat
local sort = table.sort
local floor = math.floor
local str_find = string.find
local str_gsub = string.gsub
local str_match = string.match
local str_byte = string.byte
local str_sub = string.sub
local tremove = table.remove
local str_format = string.format
local getenv = os.getenv

local ngx = ngx
-- As lua-resty-logger-socket: its messages go to the error log at debug level, in debug builds.
local ngx_log = ngx and ngx.config and ngx.config.debug and ngx.log
local DEBUG = ngx and ngx.DEBUG

local _M = { _VERSION = "0.1.0" }

if not pcall(ffi.typeof, "struct rlog_stats") then
    ffi.cdef [[
    struct rlog_stats {
        uint64_t logged, logged_bytes, dropped, dropped_bytes, sent, sent_bytes, lost, lost_bytes,
                 spooled, spooled_bytes, buffered, buffered_bytes, retries, connects,
                 adopted, adopted_bytes, rejected, rejected_bytes;
    };
    int      rlog_init(const char *config, char *err, size_t err_len);
    int      rlog_initted(void);
    int      rlog_log(const char *msg, size_t len);
    int64_t  rlog_flush(void);
    size_t   rlog_last_error(char *buf, size_t buf_len);
    int      rlog_stats(struct rlog_stats *out, size_t out_size);
    int      rlog_shutdown(int timeout_ms);
    const char *rlog_version(void);
    ]]
end
-- rlog_last_error returns a size_t; a 64-bit result would be boxed into a fresh cdata on every
-- call when the code runs interpreted (log_by_lua handlers often do). The same symbol declared
-- with an int result reads the low 32 bits of the same return register (x86-64, arm64): the
-- length of an error message, well below 2^31. Used only for the per-call "anything pending?"
-- check.
pcall(ffi.cdef, 'int rlog_pending_error_len(char *buf, size_t buf_len) __asm__("rlog_last_error");')
-- rlog_log that also says whether an error is pending (one FFI call per log instead of two);
-- a librlog older than this binding lacks it, and log() then makes the two calls.
pcall(ffi.cdef, 'int rlog_log_pending(const char *msg, size_t len);')

-- Finds and loads librlog; returns the clib or raises an error naming every place tried.
local function load_library()
    local tried = {}
    local candidates = {}
    local env = getenv("RLOG_LIB")
    if env and env ~= "" then
        candidates[#candidates + 1] = env
    end
    for _, name in ipairs({ "librlog", "rlog" }) do
        local found = package.searchpath and package.searchpath(name, package.cpath)
        if found then
            candidates[#candidates + 1] = found
        end
    end
    candidates[#candidates + 1] = "rlog" -- the system loader: librlog.so on the library path
    for _, path in ipairs(candidates) do
        local ok, lib = pcall(ffi.load, path)
        if ok then
            -- librlog pins itself (RTLD_NODELETE) once a logger starts, so closing this Lua VM
            -- (nginx does before a worker exits) leaves its exit handler to deliver what is held.
            return lib, path
        end
        tried[#tried + 1] = path .. ": " .. tostring(lib)
    end
    error("resty.rlog: cannot load librlog (set RLOG_LIB to the path of librlog.so -- in nginx "
          .. "`env RLOG_LIB=/path/to/librlog.so;` -- or put it on package.cpath or the system "
          .. "library path); "
          .. "tried " .. concat(tried, "; "), 2)
end

local lib, lib_path = load_library()
_M.library_path = lib_path

local rlog_log = lib.rlog_log
local has_log_pending, rlog_log_pending = pcall(function() return lib.rlog_log_pending end)
local rlog_last_error = lib.rlog_last_error
local rlog_pending = lib.rlog_pending_error_len
local rlog_flush = lib.rlog_flush

-- One reusable buffer for every error message the library hands back.
local ERR_LEN = 1024
local errbuf = ffi_new("char[?]", ERR_LEN)
local stats_buf = ffi_new("struct rlog_stats")
local STATS_SIZE = ffi.sizeof("struct rlog_stats")

-- The pending error, taken (returned once), or nil.
local function take_error()
    local n = tonumber(rlog_last_error(errbuf, ERR_LEN))
    if n == 0 then
        return nil
    end
    if n >= ERR_LEN then
        n = ERR_LEN - 1
    end
    local err = ffi_string(errbuf, n)
    if ngx_log then
        ngx_log(DEBUG, "rlog: ", err)
    end
    return err
end

---------------------------------------------------------------------------------------------------
-- Config table -> config text (SPEC §3)
---------------------------------------------------------------------------------------------------

-- Keys whose Lua type resty checks, with resty's wording.
local STRING_KEYS = {
    host = true, path = true, sock_type = true, sni_host = true, ssl_ca = true,
    -- rlog's own: a token given as a Lua number would already have lost digits past 2^53.
    token = true, token_file = true,
}
local NUMBER_KEYS = {
    flush_limit = true, drop_limit = true, timeout = true, max_retry_times = true,
    retry_interval = true, pool_size = true, max_buffer_reuse = true, periodic_flush = true,
}
local BOOLEAN_KEYS = { ssl = true, ssl_verify = true }
-- Keys that may be given several times: their value may be an array.
local REPEATABLE = { log_encoder = true, logger = true, log_route = true }

local function format_number(key, v)
    if v ~= v or v == math.huge or v == -math.huge then
        return nil, 'invalid "' .. key .. '"'
    end
    if v == floor(v) and v >= -2^53 and v <= 2^53 then
        return str_format("%d", v)
    end
    return str_format("%.17g", v)
end

local function format_string(key, v)
    if str_find(v, "\0", 1, true) then
        return nil, '"' .. key .. '" must not contain NUL characters'
    end
    -- Quoted when it must be; a carriage return stays raw inside the quotes (the parser splits
    -- lines on "\n" only, and a quoted value never ends a line with it: CRLF suffixes work).
    -- A "#" first or after a blank would read as a comment after the value (an init error).
    if v == "" or str_find(v, '^%s') or str_find(v, '%s$') or str_find(v, '["\\\n\t\r]')
        or str_find(v, '^#') or str_find(v, '%s#') then
        v = str_gsub(v, '[\\"\n\t]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n", ["\t"] = "\\t" })
        return '"' .. v .. '"'
    end
    return v
end

local function format_value(key, v)
    local t = type(v)
    if t == "string" then
        return format_string(key, v)
    elseif t == "number" then
        return format_number(key, v)
    elseif t == "boolean" then
        return v and "true" or "false"
    end
    return nil, '"' .. key .. '" must be a string, number or boolean (got ' .. t .. ')'
end

-- Resty's checks of a value's Lua type, before anything reaches the library.
local function check_type(key, v)
    local t = type(v)
    if key == "port" then
        if t ~= "number" then
            return '"port" must be a number'
        end
        if v < 0 or v > 65535 then
            return '"port" out of range 0~65535'
        end
        if v ~= floor(v) then
            return '"port" must be a whole number'
        end
    elseif STRING_KEYS[key] then
        if t ~= "string" then
            return '"' .. key .. '" must be a string'
        end
    elseif NUMBER_KEYS[key] then
        if t ~= "number" or v < 0 then
            return 'invalid "' .. key .. '"'
        end
    elseif BOOLEAN_KEYS[key] then
        if t ~= "boolean" then
            return '"' .. key .. '" must be a boolean value'
        end
    end
    return nil
end

--- Builds rlog's config text from a lua-resty-logger-socket style table.
-- Keys are sorted (the text is deterministic); an array value becomes one line per element,
-- allowed for `log_encoder`, `logger` and `log_route` only. Returns text, or nil and an error.
function _M.config_text(cfg)
    if type(cfg) ~= "table" then
        return nil, "user_config must be a table"
    end
    local keys = {}
    for k in pairs(cfg) do
        -- NAME.key sets a key for one named logger (ENCODERS.md).
        if type(k) ~= "string" or not str_find(k, "^[%a_][%w_%-]*$")
                and not str_find(k, "^%w+%.[%a_][%w_%-]*$") then
            return nil, "bad key " .. str_format("%q", tostring(k)) .. " in user_config"
        end
        keys[#keys + 1] = k
    end
    sort(keys)
    local lines = {}
    for _, k in ipairs(keys) do
        local v = cfg[k]
        local norm = str_gsub(k, "-", "_")
        -- A named logger's key is checked as the key itself.
        local err = check_type(str_match(norm, "^%w+%.(.+)$") or norm, v)
        if err then
            return nil, err
        end
        if type(v) == "table" then
            if not REPEATABLE[norm] then
                return nil, '"' .. k .. '" may be given only once (an array is allowed for '
                            .. 'log_encoder, logger and log_route)'
            end
            local n = #v
            for i in pairs(v) do
                if type(i) ~= "number" or i < 1 or i > n or i ~= floor(i) then
                    return nil, '"' .. k .. '" must be an array of values'
                end
            end
            for i = 1, n do
                local text, verr = format_value(k, v[i])
                if not text then
                    return nil, verr
                end
                lines[#lines + 1] = k .. " = " .. text
            end
        else
            local text, verr = format_value(k, v)
            if not text then
                return nil, verr
            end
            lines[#lines + 1] = k .. " = " .. text
        end
    end
    return concat(lines, "\n")
end

---------------------------------------------------------------------------------------------------
-- The API
---------------------------------------------------------------------------------------------------

-- Whether init succeeded in this Lua VM. resty keeps `initted` in its module, so a new VM (nginx
-- re-runs init_by_lua in a fresh one on every reload) starts uninitialised and the usual
-- `if not logger.initted() then logger.init(cfg) end` applies the reloaded config. librlog's own
-- state outlives the VM in the master process; an init with an unchanged config keeps its
-- running logger, so this costs nothing.
local initted_here = false

-- Keys whose value is a file or socket path (also as NAME.key).
local PATH_KEYS = { path = true, ssl_ca = true, spool = true, token_file = true }

-- user_config with its relative paths made absolute against nginx's prefix, and the prefix used
-- (nil when nothing was changed: absolute paths, or not in nginx).
local function resolve_paths(cfg)
    local config = ngx and ngx.config
    local prefix = config and config.prefix and config.prefix()
    if type(cfg) ~= "table" or type(prefix) ~= "string" or prefix == "" then
        return cfg
    end
    if str_sub(prefix, -1) ~= "/" then
        prefix = prefix .. "/"
    end
    local out
    for k, v in pairs(cfg) do
        if type(k) == "string" and type(v) == "string" and v ~= "" and str_byte(v, 1) ~= 47 then
            local key = str_gsub(str_match(k, "^%w+%.(.+)$") or k, "-", "_")
            if PATH_KEYS[key] then
                if not out then
                    out = {}
                    for k2, v2 in pairs(cfg) do
                        out[k2] = v2
                    end
                end
                out[k] = prefix .. v
            end
        end
    end
    return out or cfg, out and prefix
end

--- Initialises (or re-initialises) this process's logger. Returns true, or nil and an error in
-- resty's wording.
function _M.init(user_config)
    local cfg, prefix = resolve_paths(user_config)
    local text, err = _M.config_text(cfg)
    if not text then
        return nil, err
    end
    if lib.rlog_init(text, errbuf, ERR_LEN) ~= 0 then
        -- The generated text's line numbers mean nothing to the caller: the key is named.
        local msg = str_gsub(ffi_string(errbuf), " at line %d+", "")
        if prefix and not str_find(msg, prefix, 1, true) then
            msg = msg .. " (relative paths are resolved against nginx's prefix " .. prefix .. ")"
        end
        return nil, msg
    end
    initted_here = true
    return true
end

--- True once init succeeded in this Lua VM (and the logger has not been shut down since).
function _M.initted()
    return initted_here and lib.rlog_initted() == 1
end

--- Buffers one message (a non-string goes through tostring). Returns the bytes buffered (0 when
-- dropped because the buffer is full) and, as second value, an error that happened since the
-- previous call, once; or nil, "not initialized".
function _M.log(msg)
    if type(msg) ~= "string" then
        msg = tostring(msg)
    end
    if has_log_pending then
        local n = rlog_log_pending(msg, #msg)
        if n >= 0 then
            return n
        end
        if n == -1 then
            if lib.rlog_initted() == 0 then
                return nil, "not initialized"
            end
            return nil, take_error() or "rlog refused the message"
        end
        -- -2 - n: buffered (or 0: dropped), and an error is pending.
        return -2 - n, take_error()
    end
    local n = rlog_log(msg, #msg)
    if n < 0 then
        if lib.rlog_initted() == 0 then
            return nil, "not initialized"
        end
        return nil, take_error() or "rlog refused the message"
    end
    if rlog_pending(nil, 0) ~= 0 then
        return n, take_error()
    end
    return n
end

-- rlog_flush() blocks its caller until what is held is delivered or given up on, and the C ABI
-- has no "start a flush" call. Where the request may yield, it runs on a POSIX thread of its own
-- (librlog is thread-safe; rlog_flush takes no argument and returns a 64-bit integer, so on the
-- 64-bit ABIs below it can be the thread's start routine, its result read back as the thread's
-- exit value) and the request polls for its end with ngx.sleep: only that request waits. The
-- thread has every signal blocked, as rlog's own threads, so nginx's signals go to the worker's
-- main thread. Elsewhere, or when a thread cannot be started, flush() calls rlog_flush directly.
local YIELDABLE = {
    rewrite = true, access = true, content = true, timer = true, preread = true,
    ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}
local MAX_FLUSH_THREADS = 8
local SIG_SETMASK = 2 -- Linux

local C = ffi.C
local threads = ngx and ngx.sleep and ngx.get_phase and ffi.os == "Linux"
    and (ffi.arch == "x64" or ffi.arch == "arm64")
if threads and not pcall(ffi.typeof, "rlog_sigset_t") then
    threads = pcall(ffi.cdef, [[
    typedef struct { unsigned long bits[16]; } rlog_sigset_t;
    int rlog_pthread_create(unsigned long *thread, const void *attr, void *(*start)(void *),
                            void *arg) __asm__("pthread_create");
    int rlog_pthread_tryjoin_np(unsigned long thread, void **retval) __asm__("pthread_tryjoin_np");
    int rlog_sigfillset(rlog_sigset_t *set) __asm__("sigfillset");
    int rlog_pthread_sigmask(int how, const rlog_sigset_t *set, rlog_sigset_t *old)
        __asm__("pthread_sigmask");
    ]])
end
threads = threads and pcall(function()
    return C.rlog_pthread_create, C.rlog_pthread_tryjoin_np, C.rlog_sigfillset, C.rlog_pthread_sigmask
end)
local flush_entry, all_signals, old_signals, tid_buf, ret_buf
if threads then
    flush_entry = ffi.cast("void *(*)(void *)", rlog_flush)
    all_signals = ffi_new("rlog_sigset_t")
    old_signals = ffi_new("rlog_sigset_t")
    C.rlog_sigfillset(all_signals)
    tid_buf = ffi_new("unsigned long[1]")
    ret_buf = ffi_new("void *[1]")
end
_M.flush_yields = threads and true or false

-- Flush threads not joined yet, oldest first: { tid, logged (the `logged` counter when it
-- started), done, result, err }. Shared by the requests of this worker that wait for them.
local flushes = {}

local function start_flush_thread()
    C.rlog_pthread_sigmask(SIG_SETMASK, all_signals, old_signals)
    local rc = C.rlog_pthread_create(tid_buf, nil, flush_entry, nil)
    C.rlog_pthread_sigmask(SIG_SETMASK, old_signals, nil)
    if rc ~= 0 then
        return nil
    end
    return tid_buf[0]
end

-- True once f's thread has ended (joined: its result is in f.result).
local function flush_over(f)
    if f.done then
        return true
    end
    if C.rlog_pthread_tryjoin_np(f.tid, ret_buf) ~= 0 then
        return false
    end
    f.done = true
    f.result = tonumber(ffi.cast("intptr_t", ret_buf[0]))
    for i = #flushes, 1, -1 do
        if flushes[i] == f then
            tremove(flushes, i)
        end
    end
    return true
end

local function flush_result(n, f)
    if n < 0 then
        if lib.rlog_initted() == 0 then
            return nil, "not initialized"
        end
        if f then
            -- Every request that waited for this flush gets its error.
            f.err = f.err or take_error() or "flush failed"
            return nil, f.err
        end
        return nil, take_error() or "flush failed"
    end
    return tonumber(n)
end

--- Sends what is buffered and waits for the result: the bytes delivered (0 when there was
-- nothing to send), or nil and the error. Where the request can yield, the worker keeps serving
-- other requests meanwhile (see above); `timeout` (seconds, optional) bounds that wait: nil,
-- "timeout", and the flush goes on by itself.
function _M.flush(timeout)
    if not (threads and YIELDABLE[ngx.get_phase()]) or lib.rlog_stats(stats_buf, STATS_SIZE) ~= 0 then
        return flush_result(rlog_flush())
    end
    local logged = tonumber(stats_buf.logged)
    for i = #flushes, 1, -1 do -- reap the threads that ended (their waiters may be gone)
        flush_over(flushes[i])
    end
    -- A flush started since the last message was logged covers everything held now.
    local f = flushes[#flushes]
    if not (f and (f.logged == logged or #flushes >= MAX_FLUSH_THREADS)) then
        local tid = start_flush_thread()
        if not tid then
            return flush_result(rlog_flush())
        end
        f = { tid = tid, logged = logged }
        flushes[#flushes + 1] = f
    end
    local deadline = timeout and ngx.now() + timeout
    local pause = 0.001
    while not flush_over(f) do
        if deadline and ngx.now() >= deadline then
            return nil, "timeout"
        end
        ngx.sleep(pause)
        if pause < 0.02 then
            pause = pause * 2
        end
    end
    return flush_result(f.result, f)
end

--- rlog's counters as a table (logged, sent, lost, dropped, buffered, ... and their _bytes), or
-- nil, "not initialized".
function _M.stats()
    if lib.rlog_stats(stats_buf, STATS_SIZE) ~= 0 then
        return nil, "not initialized"
    end
    local s = stats_buf
    return {
        logged = tonumber(s.logged), logged_bytes = tonumber(s.logged_bytes),
        dropped = tonumber(s.dropped), dropped_bytes = tonumber(s.dropped_bytes),
        sent = tonumber(s.sent), sent_bytes = tonumber(s.sent_bytes),
        lost = tonumber(s.lost), lost_bytes = tonumber(s.lost_bytes),
        spooled = tonumber(s.spooled), spooled_bytes = tonumber(s.spooled_bytes),
        buffered = tonumber(s.buffered), buffered_bytes = tonumber(s.buffered_bytes),
        retries = tonumber(s.retries), connects = tonumber(s.connects),
        adopted = tonumber(s.adopted), adopted_bytes = tonumber(s.adopted_bytes),
        rejected = tonumber(s.rejected), rejected_bytes = tonumber(s.rejected_bytes),
    }
end

--- Delivers what is buffered within timeout_ms (default: the configured timeout) and stops the
-- logger; returns true if everything was delivered, else nil and a reason.
function _M.shutdown(timeout_ms)
    local r = lib.rlog_shutdown(timeout_ms or -1)
    initted_here = false
    if r == 0 then
        return true
    elseif r < 0 then
        return nil, "not initialized"
    end
    return nil, "some messages were not delivered"
end

--- The library's version string.
function _M.version()
    return ffi_string(lib.rlog_version())
end

return _M
