#!/usr/bin/env python3
"""nginx benchmark for the rlog Lua binding (run by hand; numbers go to BENCHMARKS.md).

Two parts:

1. HTTP (`wrk` against one nginx worker on 127.0.0.1), four variants of log_by_lua:
     none   no log_by_lua at all
     build  builds the ~200 B access-log line from ngx.var fields and throws it away
     rlog   builds it and hands it to rlog (`require "resty.rlog"`, init in init_worker)
     resty  builds it and hands it to lua-resty-logger-socket (only when RESTY_DIR is given)
     rlog-http  as rlog, with rlog's http output instead of TCP: `logger = http://.../ok`, to a
            second nginx (one worker, on the collector's CPU) that answers 204 and counts the
            records of each request's `X-Rlog-Batch`; NDJSON, the http output's defaults
            (--variants ...,rlog-http; not run by default)
     rlog-b as rlog, with another build of librlog.so (--compare-lib: before/after a change;
            rlog-b-timed likewise)
     rlog-timed  as rlog, with the log() call timed in place (see TIMED_CALL)
     ffi-call  builds it and hands it to a Lua function of log()'s shape around a trivial FFI
            call (libc `strnlen(line, 0)`), fetched the same way: what calling any FFI logger from
            the handler costs, without a logger (--variants ...,ffi-call)
   All loggers send to the same loopback TCP collector (this script, counting lines). Rounds
   alternate the variants, each round in fresh nginx instances; for each variant the medians of
   requests/s, p99 latency and nginx worker CPU per request (every thread of the worker, so
   rlog's own threads are charged; their share is also shown alone: the `rlog-worker` thread's
   CPU per request, and `rlog-output`'s where an http output has a thread of its own), and the total of lines delivered vs requests served across all rounds,
   shutdown (`nginx -s quit`) included.

2. Per-call cost inside nginx (`content_by_lua`, 1e6 calls, a 200 B message, LuaJIT compiled):
   a trivial FFI call, rlog's `log()` (and its two C calls alone), and resty's `logger.log()`
   (when RESTY_DIR is given); in chunks of 1000 calls with a flush between chunks (not timed);
   the median of the chunks' per-call times, and their mean (which also carries the chunks in
   which the machine's other threads — the collector, rlog's worker — took the core away).

CPU layout (`--layout`): by default (`pinned`) the nginx worker — every thread of it, rlog's
included — and wrk share CPU 0, and the collector has CPU 1. On a 2-vCPU VM with both ends on
loopback, the default scheduler layout (`--layout shared`) puts wrk on the other vCPU, and every
response nginx writes then wakes wrk there through an inter-processor interrupt. How many of those
wake-ups share one IPI depends on what else runs on wrk's vCPU (a collector being woken, a logger
thread), and the IPIs are paid in the nginx worker's system time: measured 17.5 k IPIs in 4 s for a
handler making a trivial FFI call and 44.8 k for one logging through rlog, with ~0.5-1 µs more
system time per request in the nginx worker (`perf record -a -e ipi:ipi_send_cpu`: 99 % sent from
nginx's `writev` of the response). That difference belongs to the load generator's placement, not
to the logger; with nginx and wrk on one CPU the wake-ups are local and the IPIs go. rlog's thread
stays on nginx's CPU, so it competes with nginx for the same core as resty's timers do.

Usage:
    bench/nginx/bench.py [--rounds 3] [--duration 5] [--connections 32] [--layout pinned]
                         [--handler inline|module] [RESTY_DIR]

RESTY_DIR is a directory holding lua-resty-logger-socket (its `lib/resty/logger/socket.lua`,
or `resty/logger/socket.lua`), fetched by you — it is never part of this repository, e.g.:
    git clone https://github.com/cloudflare/lua-resty-logger-socket /tmp/resty-ls
    bench/nginx/bench.py /tmp/resty-ls
Needs: nginx, libnginx-mod-http-lua, wrk (Debian packages) and target/release/librlog.so.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "py"))
from nginx_helpers import LUA_DIR, Nginx, nginx_missing  # noqa: E402

# The access-log line: ~200 B of ngx.var fields (wrk sends the headers below).
BUILD_LINE = r"""
    local var = ngx.var
    local line = var.remote_addr .. " - " .. (var.remote_user or "-") .. " [" .. var.time_local
        .. "] \"" .. var.request .. "\" " .. var.status .. " " .. var.body_bytes_sent .. " \""
        .. (var.http_referer or "-") .. "\" \"" .. (var.http_user_agent or "-") .. "\" "
        .. var.request_time .. " " .. var.connection .. " " .. var.connection_requests .. "\n"
"""
WRK_HEADERS = ["-H", "User-Agent: wrk/4.1 (rlog nginx benchmark; loopback; Debian)",
               "-H", "Referer: http://127.0.0.1/bench/referer/page.html"]


# The variants that log nothing (no lines to count).
NO_LOGGER = ("none", "build", "ffi-call")

# --layout pinned: the nginx worker and wrk on NGINX_CPU, the collector on COLLECTOR_CPU.
NGINX_CPU, COLLECTOR_CPU = 0, 1
LAYOUT = {"pinned": True}


def pin_self(cpu: int) -> None:
    """Pins the calling thread to `cpu` under --layout pinned."""
    if LAYOUT["pinned"]:
        os.sched_setaffinity(0, {cpu})


def pin_process(pid: int, cpu: int) -> None:
    """Pins every thread of `pid` (an nginx worker, rlog's thread included) to `cpu`."""
    if LAYOUT["pinned"]:
        for t in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(t), {cpu})


def wrk_cmd() -> list[str]:
    return (["taskset", "-c", str(NGINX_CPU)] if LAYOUT["pinned"] else []) + ["wrk", "-t1"]


class HttpCollector:
    """A second nginx answering 204 at /ok, counting the records of each request's
    `X-Rlog-Batch` (`PRODUCER-SEQ-COUNT`): the endpoint of the rlog-http variant."""

    def __init__(self, tmp: str, librlog: str):
        self.ng = Nginx(pathlib.Path(tmp) / "http-collector", librlog,
                        "lua_shared_dict st 1m; client_max_body_size 64m; "
                        "keepalive_requests 1000000; keepalive_timeout 300s; " + Nginx.server(
                            "location = /ok { return 204; log_by_lua_block { "
                            "local id = ngx.var.http_x_rlog_batch "
                            "local n = id and tonumber(id:match('-(%d+)$')) "
                            "if n then ngx.shared.st:incr('lines', n, 0) end } } "
                            "location = /count { content_by_lua_block { "
                            "ngx.say(ngx.shared.st:get('lines') or 0) } }"),
                        workers=1)
        self.ng.start()
        for w in self.ng.worker_pids():
            pin_process(w, COLLECTOR_CPU)
        self.url = f"http://127.0.0.1:{self.ng.port}/ok"

    def count(self) -> int:
        return int(self.ng.get("/count")[1])

    def wait_stable(self, expect: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.count() < expect:
            time.sleep(0.05)
        time.sleep(0.2)
        return self.count()

    def stop(self) -> None:
        self.ng.stop()


class CountingCollector:
    """A loopback TCP sink that counts the newline-terminated lines it receives."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lines = 0
        self.bytes = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        pin_self(COLLECTOR_CPU)
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        pin_self(COLLECTOR_CPU)
        # One buffer, reused: the collector shares the two cores with nginx, so it should cost
        # as little as it can (no 1 MiB allocation per read).
        buf = bytearray(1 << 20)
        while True:
            try:
                n = c.recv_into(buf)
            except OSError:
                return
            if not n:
                return
            with self.lock:
                self.lines += buf.count(b"\n", 0, n)
                self.bytes += n

    def count(self) -> int:
        with self.lock:
            return self.lines

    def wait_stable(self, expect: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.count() < expect:
            time.sleep(0.05)
        time.sleep(0.2)  # anything beyond `expect` (duplicates) would show up now
        return self.count()


def resty_lib_dir(d: str | None) -> str | None:
    if not d:
        return None
    for cand in (pathlib.Path(d) / "lib", pathlib.Path(d)):
        if (cand / "resty" / "logger" / "socket.lua").is_file():
            return str(cand)
    sys.exit(f"{d}: no resty/logger/socket.lua (nor lib/resty/logger/socket.lua) in it")


def lua_path(resty_dir: str | None) -> str:
    """resty's real module (when given) shadows the binding's resty.logger.socket drop-in."""
    return (f"{resty_dir}/?.lua;" if resty_dir else "") + f"{LUA_DIR}/?.lua;;"


def http_block(variant: str, port: int, resty_dir: str | None, extra_cfg: str = "",
               jit_log: str | None = None, handler_dir: str | None = None,
               http_url: str | None = None) -> str:
    """nginx config of `variant`. With `handler_dir` (--handler module), the handler's code goes
    into a function of a Lua module written there (`bench_handler.lua`, which must then be on
    lua_package_path), and log_by_lua only calls it; otherwise it is inline in log_by_lua."""
    cfg = f'{{ host = "127.0.0.1", port = {port}{", " + extra_cfg if extra_cfg else ""} }}'
    if variant == "rlog-http":
        cfg = f'{{ logger = "{http_url}"{", " + extra_cfg if extra_cfg else ""} }}'
    status = "location = /status { stub_status; } "
    if variant == "none":
        return Nginx.server(status + "location / { return 200 'ok\\n'; }")
    # LuaJIT's own trace log (jit.v), to tell which JIT outcome this instance got (jit_outcome).
    trace = f"pcall(function() require('jit.v').on('{jit_log}') end) " if jit_log else ""
    # init_worker's code, and the handler's: the line built, then (for all but build-only)
    # handed to BENCH_LOG, the function init_worker fetched.
    timed = variant.endswith("-timed")
    if variant == "build":
        init, call = "", ""
    elif variant == "ffi-call":
        init, call = FFI_CALL_INIT, "local bytes, err = BENCH_LOG(line) "
    else:
        mod = "resty.logger.socket" if variant == "resty" else "resty.rlog"
        # The module's log function is fetched once per worker (a global set in init_worker):
        # a `require` in the handler is a C function call on every request, and it changes how
        # LuaJIT compiles the handler — a cost of the handler's style, not of the logger.
        init = ("local l = require '" + mod + "' "
                "local ok, err = l.init(" + cfg + ") if not ok then ngx.log(ngx.ERR, err) end "
                "BENCH_LOG = l.log " + (TIMED_INIT if timed else ""))
        call = TIMED_CALL if timed else "local bytes, err = BENCH_LOG(line) "
    log = BUILD_LINE + (call + "if err then ngx.log(ngx.ERR, 'log: ', err) end" if call else "")
    if timed:
        status += "location = /calltime { content_by_lua_block { ngx.say(CALL_NS / CALLS) } } "
    if handler_dir:
        # The function returns the line, so build-only cannot leave it unbuilt once compiled.
        pathlib.Path(handler_dir, "bench_handler.lua").write_text(
            "local M = {}\nfunction M.run()\n" + log + "\n    return line\nend\nreturn M\n")
        init += " BENCH_HANDLER = require 'bench_handler' "
        log = "BENCH_HANDLER.run()"
    init = "init_worker_by_lua_block { " + trace + init + "} "
    return init + Nginx.server(
        status + "location / { return 200 'ok\\n'; log_by_lua_block { " + log + " } }")


# ffi-call: resty.rlog's log() minus rlog — a type check, one FFI call taking the message, the
# answer returned (`strnlen(msg, 0)` is 0 without reading it).
FFI_CALL_INIT = """
    local ffi = require 'ffi'
    pcall(ffi.cdef, 'size_t strnlen(const char *, size_t);')
    local C, type, tostring, tonumber = ffi.C, type, tostring, tonumber
    BENCH_LOG = function(msg)
        if type(msg) ~= 'string' then msg = tostring(msg) end
        local n = tonumber(C.strnlen(msg, 0))
        if n >= 0 then return n end
        return nil, 'unreachable'
    end
"""


# rlog-timed: the `log()` call timed where it runs, in the handler of every request: the time of
# `BENCH_LOG(line)` minus that of an empty Lua function called the same way, both between two
# clock_gettime calls, summed per worker and read from /calltime at the end of the round.
TIMED_INIT = """
    local ffi = require 'ffi'
    pcall(ffi.cdef, 'struct bench_ts { long sec; long nsec; }; int clock_gettime(int, struct bench_ts *);')
    local ts, C = ffi.new('struct bench_ts'), ffi.C
    function BENCH_CLOCK() C.clock_gettime(1, ts) return tonumber(ts.sec) * 1e9 + tonumber(ts.nsec) end
    function BENCH_EMPTY(line) return 0 end
    CALL_NS, CALLS = 0, 0
"""
TIMED_CALL = """
    local t0 = BENCH_CLOCK() BENCH_EMPTY(line) local t1 = BENCH_CLOCK()
    local bytes, err = BENCH_LOG(line) local t2 = BENCH_CLOCK()
    CALL_NS = CALL_NS + (t2 - t1) - (t1 - t0) CALLS = CALLS + 1
"""


# Whether LuaJIT compiled lua-resty-core's `ngx.var` lookup (a trace starting in its var.lua that
# ends in a return). Its `var_get` ends in `return ffi_str(...)`, a tail call LuaJIT cannot record
# when the trace started in `var_get` itself ("NYI: return to lower frame"); only a lookup that
# returns nil (`$remote_user` here) records to the end, and which lookup a recording starts on is
# a draw at each attempt until the function is blacklisted. An instance that loses serves the
# same handler ~3.5 µs per request slower. Every variant draws this lottery (at different rates:
# BENCHMARKS.md, nginx), so rounds are also compared among "compiled" instances.
VAR_TRACE = re.compile(r"^\[TRACE\s+\d+ var\.lua:\d+ return\]", re.M)
# --handler module: the handler's function compiled whole, its ngx.var lookups inlined (a trace
# that enters var_get from its caller records the tail call), whatever became of var_get's own.
HANDLER_TRACE = re.compile(r"^\[TRACE\s+\d+ bench_handler\.lua:\d+ return\]", re.M)


def jit_outcome(jit_log: pathlib.Path) -> bool | None:
    """True when this instance compiled the ngx.var lookup (on its own, or within the handler's
    trace under --handler module), False when not, None when unknown (no jit.v, or no log)."""
    try:
        text = jit_log.read_text()
        return bool(VAR_TRACE.search(text) or HANDLER_TRACE.search(text))
    except OSError:
        return None


def cpu_ns(pid: int) -> tuple[int, int]:
    """CPU time (ns) of every thread of `pid`, and of rlog's own threads alone (`rlog-worker`,
    and `rlog-output` where an output has a thread of its own), from
    /proc/PID/task/*/schedstat."""
    total = worker = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                ns = int(f.read().split()[0])
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        total += ns
        if name in ("rlog-worker", "rlog-output"):
            worker += ns
    return total, worker


def served(ng: Nginx) -> int:
    body = ng.get("/status")[1]
    return int(re.search(r"\n\s*\d+\s+\d+\s+(\d+)", body).group(1))


def run_wrk(port: int, duration: int, conns: int) -> tuple[float, float]:
    out = subprocess.run([*wrk_cmd(), f"-c{conns}", f"-d{duration}s", "--latency", *WRK_HEADERS,
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    return rps, p99


def http_bench(args, resty_dir, librlog, tmp):
    variants = ["none", "build", "rlog"] + (["rlog-b"] if args.compare_lib else []) + \
        (["resty"] if resty_dir else []) + ["rlog-timed"] + (["rlog-b-timed"] if args.compare_lib else [])
    if args.variants:
        variants = [v for v in variants + ["ffi-call", "rlog-http"] if v in args.variants.split(",")]
    col = CountingCollector()
    hcol = HttpCollector(tmp, librlog) if "rlog-http" in variants else None
    res = {v: {"rps": [], "p99": [], "cpu": [], "thread": [], "jit": [], "call": [], "served": 0,
               "lines": 0, "errors": 0} for v in variants}
    try:
        for rnd in range(args.rounds):
            order = variants if rnd % 2 == 0 else variants[::-1]
            for v in order:
                lib = args.compare_lib if v.startswith("rlog-b") else librlog
                jit_log = pathlib.Path(tmp) / f"jit-{v}{rnd}.log"
                handler_dir = None
                if args.handler == "module":
                    handler_dir = pathlib.Path(tmp) / f"handler-{v}{rnd}"
                    handler_dir.mkdir()
                ng = Nginx(pathlib.Path(tmp) / f"{v}{rnd}", lib,
                           http_block(v, col.port, resty_dir, args.config, str(jit_log),
                                      str(handler_dir) if handler_dir else None,
                                      hcol.url if hcol else None),
                           workers=1,
                           lua_path=(f"{handler_dir}/?.lua;" if handler_dir else "") + lua_path(resty_dir))
                ng.start()
                try:
                    (w,) = ng.worker_pids()
                    pin_process(w, NGINX_CPU)
                    sink = hcol if v == "rlog-http" else col
                    before_lines = sink.count()
                    subprocess.run([*wrk_cmd(), f"-c{args.connections}", "-d1s", *WRK_HEADERS,
                                    f"http://127.0.0.1:{ng.port}/"], capture_output=True, check=True)  # warm-up
                    n0, (c0, t0) = served(ng), cpu_ns(w)
                    rps, p99 = run_wrk(ng.port, args.duration, args.connections)
                    time.sleep(0.3)  # let the logger's thread finish what the run handed it
                    (c1, t1), n1 = cpu_ns(w), served(ng)
                    n = n1 - n0 - 1  # the second /status request itself
                    # Every request to / (warm-up and measured run) was logged; the three /status
                    # requests (this one included: stub_status counts it) were not.
                    logged_requests = served(ng) - 3
                    if v.endswith("-timed"):
                        res[v]["call"].append(float(ng.get("/calltime")[1]))
                    ng.quit()
                finally:
                    ng.stop()
                res[v]["rps"].append(rps)
                res[v]["p99"].append(p99)
                res[v]["cpu"].append((c1 - c0) / n / 1000.0)  # µs per request
                res[v]["thread"].append((t1 - t0) / n / 1000.0)  # rlog's own thread, µs per request
                res[v]["errors"] += len(ng.problems())
                res[v]["jit"].append(True if v == "none" else jit_outcome(jit_log))
                if v not in NO_LOGGER:
                    res[v]["served"] += logged_requests
                    res[v]["lines"] += sink.wait_stable(before_lines + logged_requests) - before_lines
                print(f"round {rnd} {v:6s} rps {rps:9.0f}  p99 {p99:7.3f} ms  cpu/req {res[v]['cpu'][-1]:6.2f} µs"
                      f"  rlog-worker/req {res[v]['thread'][-1]:5.2f} µs  ngx.var compiled: {res[v]['jit'][-1]}"
                      + (f"  log() in place {res[v]['call'][-1]:.0f} ns" if res[v]["call"] else ""),
                      flush=True)
    finally:
        if hcol:
            hcol.stop()
    return res


# Lua for the per-call rows: each row logs CHUNK messages, then flushes (not timed), 1e6 calls in
# all, so every row measures the steady state (buffer reused, nothing dropped) rather than buffer
# growth or the drop path. A trivial FFI call is the floor.
PERCALL_LUA = r"""
local ffi = require 'ffi'
local rlog = require 'resty.rlog'
pcall(ffi.cdef, 'struct rlog_ts { long sec; long nsec; }; int clock_gettime(int, struct rlog_ts *);')
pcall(ffi.cdef, 'int rlog_initted(void);')
local lib = ffi.load(rlog.library_path)
local ts = ffi.new('struct rlog_ts')
local function clock() ffi.C.clock_gettime(1, ts) return tonumber(ts.sec) * 1e9 + tonumber(ts.nsec) end
local msg = string.rep('x', 199) .. string.char(10)
local CHUNK, ROUNDS = 1000, 1000
local function row(name, f, flush)
    local total, per = 0, {}
    for r = 0, ROUNDS do
        local t0 = clock()
        for i = 1, CHUNK do f() end
        local t = clock() - t0
        if r > 0 then total = total + t; per[#per + 1] = t / CHUNK end  -- round 0 warms up (JIT)
        if flush then flush() end
    end
    table.sort(per)
    ngx.say(string.format('%-40s %7.1f ns  (mean %.1f)', name, per[math.floor(#per / 2) + 1],
                          total / (CHUNK * ROUNDS)))
end
local initted, clog, peek, log = lib.rlog_initted, lib.rlog_log, lib.rlog_last_error, rlog.log
row('trivial FFI call (rlog_initted)', function() initted() end)
assert(rlog.init(CFG))
row('rlog.log(msg)', function() log(msg) end, rlog.flush)
row('  C rlog_log(msg, 200) alone', function() clog(msg, 200) end, rlog.flush)
row('  C rlog_last_error(NULL, 0) alone', function() peek(nil, 0) end)
local s = rlog.stats()
ngx.say('  rlog: logged ', s.logged, ', sent ', s.sent, ', dropped ', s.dropped)
assert(rlog.init(RESTY_CFG))
row('rlog.log(msg), flush_limit 1048575', function() log(msg) end, rlog.flush)
row('  C rlog_log(msg, 200) alone, same', function() clog(msg, 200) end, rlog.flush)
if RESTY then
    local resty = require 'resty.logger.socket'
    assert(resty.init(RESTY_CFG))
    row('lua-resty-logger-socket log(msg)', function() resty.log(msg) end, resty.flush)
end
"""


def percall_bench(resty_dir, librlog, tmp):
    col = CountingCollector()
    lua = (PERCALL_LUA.replace("RESTY_CFG", f'{{ host = "127.0.0.1", port = {col.port}, '
                                            'flush_limit = 1048575, drop_limit = 1048576 }')
           .replace("CFG", f'{{ host = "127.0.0.1", port = {col.port} }}')
           .replace("RESTY", "true" if resty_dir else "false"))
    ng = Nginx(pathlib.Path(tmp) / "percall", librlog,
               Nginx.server("location /t { content_by_lua_block { " + lua + " } }"), workers=1,
               lua_path=lua_path(resty_dir))
    ng.start()
    try:
        (w,) = ng.worker_pids()
        pin_process(w, NGINX_CPU)  # rlog's thread, started by the handler, inherits it
        status, body = ng.get("/t", timeout=300)
        if status != 200:
            body = "per-call benchmark failed:\n" + "\n".join(ng.error_log().splitlines()[-5:]) + "\n"
    finally:
        ng.stop()
    return body + "  (resty: flush_limit 1048575 so its log() only buffers; rlog: default limits)\n"


def quartiles(xs: list[float], fmt: str) -> str:
    if len(xs) < 4:
        return "n/a: fewer than 4 rounds"
    q = statistics.quantiles(xs, n=4)
    return f"{q[0]:{fmt}} .. {q[2]:{fmt}}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("resty_dir", nargs="?", help="directory with lua-resty-logger-socket (not committed)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-percall", action="store_true")
    ap.add_argument("--config", default="", help='extra init() keys for rlog and resty, e.g. "flush_limit = 65536"')
    ap.add_argument("--layout", choices=("pinned", "shared"), default="pinned",
                    help="pinned: nginx (all its threads) and wrk on CPU 0, the collector on CPU 1; "
                         "shared: wherever the scheduler puts them (see above)")
    ap.add_argument("--handler", choices=("inline", "module"), default="inline",
                    help="inline: the handler's code in log_by_lua_block, run by LuaJIT's "
                         "interpreter; module: in a Lua module's function that log_by_lua calls, "
                         "which LuaJIT compiles whole (see bench/nginx/README.md)")
    ap.add_argument("--compare-lib", metavar="LIBRLOG",
                    help="another build of librlog.so, run as variant rlog-b in the same rounds "
                         "(before/after a change)")
    ap.add_argument("--variants", help="comma-separated subset of none,build,rlog,rlog-b,resty,rlog-timed,rlog-b-timed, "
                                       "plus ffi-call and rlog-http (not run by default); build is needed")
    args = ap.parse_args()
    LAYOUT["pinned"] = args.layout == "pinned"
    if LAYOUT["pinned"] and not {NGINX_CPU, COLLECTOR_CPU} <= os.sched_getaffinity(0):
        sys.exit(f"--layout pinned needs CPUs {NGINX_CPU} and {COLLECTOR_CPU}; use --layout shared")
    why = nginx_missing()
    if why:
        sys.exit(why)
    librlog = os.environ.get("RLOG_LIB") or str(ROOT / "target" / "release" / "librlog.so")
    if not os.path.isfile(librlog):
        sys.exit(f"{librlog} missing: run `cargo build --release` first")
    resty_dir = resty_lib_dir(args.resty_dir)
    with tempfile.TemporaryDirectory(prefix="rlog-nginx-bench") as tmp:
        if not args.skip_percall:
            print("== per-call cost inside nginx (ns per call, 1e6 calls, 200 B) ==")
            print(percall_bench(resty_dir, librlog, tmp), flush=True)
        if args.skip_http:
            return
        print(f"== HTTP: wrk -t1 -c{args.connections} -d{args.duration}s, 1 nginx worker, "
              f"{args.rounds} rounds, layout {args.layout} ==", flush=True)
        res = http_bench(args, resty_dir, librlog, tmp)
    summary(res, lambda r, i: True, "all rounds")
    if any(j is False for r in res.values() for j in r["jit"]):
        summary(res, lambda r, i: r["jit"][i] is not False,
                "only the nginx instances in which LuaJIT compiled the ngx.var lookup (see VAR_TRACE)")


def summary(res: dict, keep, title: str) -> None:
    """Medians per variant over the rounds `keep(r, i)` selects, and the paired differences to
    build-only over the rounds selected for both."""
    pick = {v: [i for i in range(len(r["cpu"])) if keep(r, i)] for v, r in res.items()}

    def med(v, key):
        return statistics.median(res[v][key][i] for i in pick[v]) if pick[v] else float("nan")

    def low(v):
        """The lower quartile of the rounds' CPU per request: a fresh instance's JIT luck only
        ever makes it slower (VAR_TRACE is one such draw; others leave no mark in jit.v), so the
        fast end of each variant is the steadier point of comparison."""
        xs = sorted(res[v]["cpu"][i] for i in pick[v])
        return statistics.quantiles(xs, n=4)[0] if len(xs) >= 4 else float("nan")

    print(f"\n-- {title} --")
    build, build_rps, build_low = med("build", "cpu"), med("build", "rps"), low("build")
    print("variant  rounds  median_rps  vs_build  median_p99_ms  cpu_us/req  extra_cpu_us/req_over_build  "
          "q1_cpu_us/req  extra_at_q1  rlog_worker_us/req  lines/served  warn+_log_lines")
    for v, r in res.items():
        if not pick[v]:
            print(f"{v:7s}  {0:6d}  (no round selected)")
            continue
        rps, cpu = med(v, "rps"), med(v, "cpu")
        delivered = f"{r['lines']}/{r['served']}" if v not in NO_LOGGER else "-"
        print(f"{v:7s}  {len(pick[v]):6d}  {rps:10.0f}  {100 * (rps / build_rps - 1):+7.1f}%  "
              f"{med(v, 'p99'):13.3f}  {cpu:10.2f}  {cpu - build:+27.2f}  {low(v):13.2f}  "
              f"{low(v) - build_low:+11.2f}  {med(v, 'thread'):18.2f}  "
              f"{delivered:>12s}  {r['errors']}")
    if "resty" in res and pick["resty"]:
        resty_extra = med("resty", "cpu") - build
        for v in res:
            if v.startswith("rlog") and pick[v]:
                print(f"{v}: extra cpu/req over build-only {med(v, 'cpu') - build:+.2f} µs = "
                      f"{(med(v, 'cpu') - build) / resty_extra:.2f} x resty's ({resty_extra:+.2f} µs)")
    for v, r in res.items():
        calls = [r["call"][i] for i in pick[v] if r["call"]]
        if calls:
            print(f"{v}: log() in place, minus an empty Lua call: median {statistics.median(calls):.0f} ns "
                  f"(quartiles {quartiles(calls, '.0f')}) per request over {len(calls)} rounds "
                  "(its CPU/req also carries the clock reads)")
    # Rounds run the variants back to back, so the difference within a round is less exposed to
    # the machine's swings than the difference of medians across rounds.
    print("paired per round, median over rounds (variant minus build in the same round):")
    for v, r in res.items():
        both = [i for i in pick[v] if i in pick["build"]]
        if v == "build" or not both:
            continue
        b = res["build"]
        cpu = sorted(r["cpu"][i] - b["cpu"][i] for i in both)
        rps = sorted(100 * (r["rps"][i] / b["rps"][i] - 1) for i in both)
        print(f"{v:7s}  {len(both):2d} rounds  cpu/req {statistics.median(cpu):+6.2f} µs "
              f"(quartiles {quartiles(cpu, '+.2f')})   rps {statistics.median(rps):+6.1f}% "
              f"(quartiles {quartiles(rps, '+.1f')})")


if __name__ == "__main__":
    main()
