"""The rlog Lua binding inside real nginx (Debian's nginx + libnginx-mod-http-lua): requests are
logged from log_by_lua_block and what the loopback collector receives must be exactly what the
requests logged — over TCP, UDP, a unix socket and TLS, with init in init_worker or lazily, two
workers, `nginx -s reload` and `-s quit` with data still buffered (0 lost, 0 duplicated)."""

from __future__ import annotations

import collections
import json
import re
import subprocess
import time

import pytest

from nginx_helpers import LUA_DIR, Nginx, nginx_missing


@pytest.fixture(autouse=True)
def _nginx_installed():
    """These tests need Debian's nginx and libnginx-mod-http-lua: missing is a failure, not a skip."""
    why = nginx_missing()
    if why:
        pytest.fail(why)


def lua_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(lua_value(x) for x in v) + "}"
    return json.dumps(v)  # a JSON string literal is a valid Lua string literal for our texts


def lua_table(d: dict) -> str:
    return "{" + ", ".join(f"{k} = {lua_value(v)}" for k, v in d.items()) + "}"


INIT = """
    local logger = require "resty.logger.socket"
    if not logger.initted() then
        local ok, err = logger.init(CFG)
        if not ok then
            ngx.log(ngx.ERR, "rlog init failed: ", err)
            return
        end
    end
"""

LOG_BY_LUA = """
    log_by_lua_block {
        INIT
        local bytes, err = logger.log("id=" .. ngx.var.arg_id .. " pid=" .. ngx.worker.pid() .. "\\n")
        if err then
            ngx.log(ngx.ERR, "rlog log failed: ", err)
        end
    }
"""


def http_block(cfg: dict, lazy: bool = True, extra_locations: str = "") -> str:
    init = INIT.replace("CFG", lua_table(cfg))
    log = LOG_BY_LUA.replace("INIT", init if lazy else 'local logger = require "resty.logger.socket"')
    worker = "" if lazy else "init_worker_by_lua_block { " + init + " }"
    loc = ("location /t { content_by_lua_block { ngx.say(\"ok\") } " + log + " } "
           + STATS + extra_locations)
    return worker + Nginx.server(loc)


@pytest.fixture
def nginx(tmp_path, librlog):
    started: list[Nginx] = []

    def make(block: str, workers: int = 1, **kw) -> Nginx:
        ng = Nginx(tmp_path / f"ng{len(started)}", librlog, block, workers=workers, **kw)
        started.append(ng)
        return ng.start()

    yield make
    for ng in started:
        ng.stop()


STATS = ("location /stats { content_by_lua_block { local s = require('resty.rlog').stats() "
         "ngx.say(s.logged, ' ', s.sent, ' ', s.lost, ' ', s.spooled, ' ', s.buffered, ' ', s.dropped) } }")


def assert_stats(ng: Nginx, n: int) -> None:
    """One worker: its counters say n logged and n sent, and the accounting identity holds."""
    deadline = time.monotonic() + 10  # the collector may see the bytes before `sent` is counted
    while True:
        logged, sent, lost, spooled, buffered, dropped = map(int, ng.get("/stats")[1].split())
        if sent == n or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert (logged, sent, lost, dropped) == (n, n, 0, 0)
    assert logged == sent + lost + spooled + buffered


def drive(ng: Nginx, ids) -> None:
    for i in ids:
        status, body = ng.get(f"/t?id={i}")
        assert status == 200 and body == "ok\n"


def ids_received(lines: list[bytes]) -> collections.Counter:
    return collections.Counter(int(ln.split(b" ")[0].removeprefix(b"id=")) for ln in lines)


def assert_exactly_once(lines: list[bytes], n: int) -> None:
    got = ids_received(lines)
    lost = [i for i in range(n) if got[i] == 0]
    dup = {i: c for i, c in got.items() if c > 1}
    extra = [i for i in got if not 0 <= i < n]
    assert (len(lost), dup, extra) == (0, {}, []), f"lost {lost[:20]}..., duplicated {dup}, unexpected {extra}"


# Buffered until exit: nothing crosses flush_limit, no periodic flush.
HOLD = {"flush_limit": 1048575, "drop_limit": 1048576}


def test_tcp_lazy_init_two_workers_quit_delivers_buffered(nginx, tcp_collector):
    ng = nginx(http_block({"host": "127.0.0.1", "port": tcp_collector.port, **HOLD}), workers=2)
    drive(ng, range(200))
    assert tcp_collector.lines() == [], "below flush_limit nothing is sent before exit"
    assert ng.quit() == 0
    assert tcp_collector.wait_for(n_lines=200, timeout=10), ng.error_log()[-2000:]
    lines = tcp_collector.lines()
    assert_exactly_once(lines, 200)
    assert len(lines) == 200
    assert ng.problems() == []


def test_init_worker_periodic_flush_two_workers(nginx, tcp_collector):
    cfg = {"host": "127.0.0.1", "port": tcp_collector.port, "periodic_flush": 0.1, **HOLD}
    ng = nginx(http_block(cfg, lazy=False), workers=2)
    drive(ng, range(100))
    # Delivered by the periodic flush, while nginx keeps running.
    assert tcp_collector.wait_for(n_lines=100, timeout=10), ng.error_log()[-2000:]
    pids = {ln.split(b"pid=")[1] for ln in tcp_collector.lines()}
    assert pids <= {str(p).encode() for p in ng.worker_pids()}
    assert ng.quit() == 0
    assert_exactly_once(tcp_collector.lines(), 100)
    assert len(tcp_collector.lines()) == 100
    assert ng.problems() == []


def test_reload_then_quit_loses_and_duplicates_nothing(nginx, tcp_collector):
    block = http_block({"host": "127.0.0.1", "port": tcp_collector.port, **HOLD})
    ng = nginx(block, workers=2)
    drive(ng, range(0, 150))
    old = set(ng.worker_pids())
    ng.reload(block)
    assert not (set(ng.worker_pids()) & old)
    # The old workers delivered what they held when they exited.
    assert tcp_collector.wait_for(n_lines=150, timeout=10), ng.error_log()[-2000:]
    drive(ng, range(150, 300))
    assert ng.quit() == 0
    assert tcp_collector.wait_for(n_lines=300, timeout=10)
    assert_exactly_once(tcp_collector.lines(), 300)
    assert len(tcp_collector.lines()) == 300
    assert ng.problems() == []


def test_udp_one_datagram_per_message(nginx, udp_collector):
    cfg = {"host": "127.0.0.1", "port": udp_collector.port, "sock_type": "udp", "flush_limit": 1}
    ng = nginx(http_block(cfg))
    drive(ng, range(50))
    assert udp_collector.wait_for(n_records=50, timeout=10), ng.error_log()[-2000:]
    recs = udp_collector.records()
    assert all(r.endswith(b"\n") and r.count(b"\n") == 1 for r in recs)
    assert_stats(ng, 50)
    assert ng.quit() == 0
    assert_exactly_once(udp_collector.lines(), 50)
    assert ng.problems() == []


def test_unix_socket(nginx, unix_collector):
    ng = nginx(http_block({"path": unix_collector.path, "flush_limit": 1}))
    drive(ng, range(40))
    assert unix_collector.wait_for(n_lines=40, timeout=10), ng.error_log()[-2000:]
    assert_stats(ng, 40)
    assert ng.quit() == 0
    assert_exactly_once(unix_collector.lines(), 40)
    assert ng.problems() == []


def test_tls_with_verification(nginx, make_collector, tls_cert):
    cert, key, ca = tls_cert
    col = make_collector("tls", cert=cert, key=key)
    cfg = {"host": "127.0.0.1", "port": col.port, "ssl": True, "ssl_verify": True,
           "sni_host": "localhost", "ssl_ca": ca, "flush_limit": 1}
    ng = nginx(http_block(cfg))
    drive(ng, range(30))
    assert col.wait_for(n_lines=30, timeout=10), ng.error_log()[-2000:]
    assert_stats(ng, 30)
    assert ng.quit() == 0
    assert_exactly_once(col.lines(), 30)
    assert ng.problems() == []


def test_tls_untrusted_certificate_is_reported(nginx, make_collector, tls_cert):
    cert, key, _ca = tls_cert
    col = make_collector("tls", cert=cert, key=key)
    # No ssl_ca: the throwaway CA is not among the system roots, so the handshake must fail.
    cfg = {"host": "127.0.0.1", "port": col.port, "ssl": True, "sni_host": "localhost",
           "flush_limit": 1, "max_retry_times": 0, "timeout": 500}
    ng = nginx(http_block(cfg))
    # The failure happens on rlog's thread; the next log() call returns it.
    deadline = time.monotonic() + 10
    i = 0
    while "rlog log failed: try to" not in ng.error_log() and time.monotonic() < deadline:
        drive(ng, [i])
        i += 1
        time.sleep(0.05)
    ng.quit()
    assert col.lines() == []
    assert (f"failed after 0 retries: TLS handshake with tls://127.0.0.1:{col.port}: "
            "invalid peer certificate") in ng.error_log()


ENCODER_LOG = """
    log_by_lua_block {
        INIT
        local bytes, err = logger.log("id=" .. ngx.var.arg_id)
        if err then ngx.log(ngx.ERR, "rlog log failed: ", err) end
    }
"""


def test_encoders_from_a_lua_array(nginx, tcp_collector, librlog):
    cfg = {"host": "127.0.0.1", "port": tcp_collector.port, "flush_limit": 1,
           "log_encoder": ["prefix [A] ", "suffix  |", "nl"]}
    init = INIT.replace("CFG", lua_table(cfg))
    probe = ("location /probe { content_by_lua_block { local r = require 'resty.rlog' "
             "local ok, err = r.init(" + lua_table(cfg) + ") ngx.say(ok and 'ok' or err) } }")
    loc = ("location /t { content_by_lua_block { ngx.say(\"ok\") } "
           + ENCODER_LOG.replace("INIT", init) + " } " + probe)
    ng = nginx(Nginx.server(loc))
    status, body = ng.get("/probe")
    if "is not supported by this build of rlog yet" in body:
        pytest.skip(f"library answered: {body.strip()}")
    assert body == "ok\n"
    drive(ng, range(10))
    assert tcp_collector.wait_for(n_lines=10, timeout=10), ng.error_log()[-2000:]
    ng.quit()
    assert sorted(tcp_collector.lines()) == sorted(f"[A] id={i} |".encode() for i in range(10))


def test_init_in_master_then_fork_to_two_workers(nginx, make_collector):
    # init_by_lua runs in the master before it forks the workers: each worker must get a working
    # logger of its own (rlog's fork handling), deliver what it holds when it exits, and nothing
    # may be sent twice. The failure seen (a worker hanging in rlog's exit handler, or lines lost)
    # is intermittent, so the scenario runs several times.
    for cycle in range(6):
        col = make_collector("tcp")
        cfg = {"host": "127.0.0.1", "port": col.port, **HOLD}
        master = "init_by_lua_block { " + INIT.replace("CFG", lua_table(cfg)) + " } "
        log = LOG_BY_LUA.replace("INIT", 'local logger = require "resty.logger.socket"')
        block = master + Nginx.server("location /t { content_by_lua_block { ngx.say(\"ok\") } " + log + " }")
        ng = nginx(block, workers=2)
        drive(ng, range(120))
        try:
            ng.quit(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"cycle {cycle}: nginx workers did not exit within 10 s of `nginx -s quit` "
                        f"(stuck in rlog's exit handler?); {len(col.lines())}/120 lines delivered")
        assert col.wait_for(n_lines=120, timeout=10), f"cycle {cycle}: {len(col.lines())}/120 lines"
        assert_exactly_once(col.lines(), 120)
        assert len(col.lines()) == 120
        assert ng.problems() == []


def test_reload_applies_a_changed_config_behind_the_initted_guard(nginx, make_collector):
    # init_by_lua with resty's `if not logger.initted()` guard: nginx re-runs it on reload in a
    # fresh Lua VM of the same master process. resty's initted() is per VM, so the new config
    # applies; the binding's must be too, although librlog's state outlives the VM.
    before, after = make_collector("tcp"), make_collector("tcp")

    def block(col):
        cfg = {"host": "127.0.0.1", "port": col.port, **HOLD}
        master = "init_by_lua_block { " + INIT.replace("CFG", lua_table(cfg)) + " } "
        log = LOG_BY_LUA.replace("INIT", 'local logger = require "resty.logger.socket"')
        return master + Nginx.server("location /t { content_by_lua_block { ngx.say(\"ok\") } " + log + " }")

    ng = nginx(block(before), workers=2)
    drive(ng, range(50))
    ng.reload(block(after))
    assert before.wait_for(n_lines=50, timeout=10), f"{len(before.lines())}/50 before the reload"
    drive(ng, range(50, 100))
    assert ng.quit() == 0
    assert after.wait_for(n_lines=50, timeout=10), f"{len(after.lines())}/50 after the reload"
    assert sorted(ids_received(before.lines())) == list(range(50))
    assert sorted(ids_received(after.lines())) == list(range(50, 100))
    assert len(before.lines()) == 50 and len(after.lines()) == 50
    assert ng.problems() == []


def test_quit_with_the_collector_down_says_what_was_lost_in_the_error_log(nginx, tmp_path):
    # Nobody can ask a worker that exits for its stats: what it could not deliver within
    # `timeout` is one line on its stderr, which nginx points at the error log.
    import socket
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = held.getsockname()[1]
    try:
        ng = nginx(http_block({"host": "127.0.0.1", "port": port, "timeout": 200, **HOLD}))
        drive(ng, range(20))
        assert ng.quit() == 0
    finally:
        held.close()
    said = [ln for ln in ng.error_log().splitlines() if ln.startswith("rlog: ")]
    assert len(said) == 1, ng.error_log()[-2000:]
    assert said[0].startswith(f"rlog: 20 messages to tcp://127.0.0.1:{port} could not be delivered "
                              "before exit: "), said[0]
    assert "connection refused" in said[0], said[0]


# bindings/lua/README.md's advice: the line built in a module function, which LuaJIT compiles
# whole (an inline log_by_lua_block never is), the `log()` call inside the trace.
ACCESSLOG_MODULE = """
local logger = require "resty.logger.socket"
local log, var = logger.log, ngx.var
local _M = {}
function _M.log()
    local bytes, err = log("id=" .. var.arg_id .. " pid=" .. ngx.worker.pid() .. "\\n")
    if err then ngx.log(ngx.ERR, "failed to log message: ", err) end
end
return _M
"""


def test_module_function_handler_compiled_by_luajit(nginx, tcp_collector, tmp_path):
    (tmp_path / "accesslog.lua").write_text(ACCESSLOG_MODULE)
    jit_log = tmp_path / "jit.log"
    cfg = {"host": "127.0.0.1", "port": tcp_collector.port, **HOLD}
    block = ("init_worker_by_lua_block { require('jit.v').on('" + str(jit_log) + "') "
             "local ok, err = require('resty.logger.socket').init(" + lua_table(cfg) + ") "
             "if not ok then ngx.log(ngx.ERR, 'rlog init failed: ', err) end } "
             + Nginx.server("location /t { content_by_lua_block { ngx.say('ok') } "
                            "log_by_lua_block { require('accesslog').log() } } " + STATS))
    ng = nginx(block, lua_path=f"{tmp_path}/?.lua;{LUA_DIR}/?.lua;;")
    n = 400
    drive(ng, range(n))
    # The handler ran as a trace, so this covers the compiled path, not the interpreter's.
    assert re.search(r"^\[TRACE\s+\d+ accesslog\.lua:\d+ ", jit_log.read_text(), re.M), jit_log.read_text()
    logged, sent, lost, spooled, buffered, dropped = map(int, ng.get("/stats")[1].split())
    assert (logged, dropped) == (n, 0)
    assert logged == sent + lost + spooled + buffered
    assert ng.quit() == 0
    assert tcp_collector.wait_for(n_lines=n, timeout=10), ng.error_log()[-2000:]
    assert_exactly_once(tcp_collector.lines(), n)
    assert len(tcp_collector.lines()) == n
    assert ng.problems() == []
