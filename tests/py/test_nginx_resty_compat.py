"""lua-resty-logger-socket's own test suite (t/sanity.t), ported where its checks are visible
from Lua, run against the drop-in `require "resty.logger.socket"` in real nginx; plus the binding's
config-text generation, library lookup and error-log levels."""

from __future__ import annotations

import pytest

from nginx_helpers import Nginx, nginx_missing
from test_nginx_delivery import lua_table



@pytest.fixture(autouse=True)
def _nginx_installed():
    """These tests need Debian's nginx and libnginx-mod-http-lua: missing is a failure, not a skip."""
    why = nginx_missing()
    if why:
        pytest.fail(why)

REQUIRE = 'local logger = require "resty.logger.socket" '


@pytest.fixture
def nginx(tmp_path, librlog):
    started: list[Nginx] = []

    def make(locations: str, before_server: str = "", lib: str | None = None, **kw) -> Nginx:
        ng = Nginx(tmp_path / f"ng{len(started)}", librlog if lib is None else lib,
                   before_server + Nginx.server(locations), **kw)
        started.append(ng)
        return ng.start()

    yield make
    for ng in started:
        ng.stop()


def content(lua: str) -> str:
    return "location /t { content_by_lua_block { " + lua + " } }"


def init_lua(cfg: dict) -> str:
    return ("if not logger.initted() then local ok, err = logger.init(" + lua_table(cfg) + ") "
            "if not ok then ngx.say('init failed: ', err) return end end ")


def test_small_flush_limit_flushes_at_once(nginx, tcp_collector):
    # sanity.t TEST 1: flush_limit = 1, the request URI arrives without waiting for exit.
    loc = ("location /t { content_by_lua_block { ngx.say('foo') } log_by_lua_block { " + REQUIRE
           + init_lua({"host": "127.0.0.1", "port": tcp_collector.port, "flush_limit": 1})
           + "logger.log(ngx.var.request_uri) } }")
    ng = nginx(loc)
    assert ng.get("/t?a=1&b=2") == (200, "foo\n")
    assert tcp_collector.wait_for(n_bytes=10, timeout=10)
    assert tcp_collector.data() == b"/t?a=1&b=2"
    ng.quit()
    assert tcp_collector.data() == b"/t?a=1&b=2"


def test_log_a_number(nginx, tcp_collector):
    # sanity.t TEST 3: a non-string message goes through tostring.
    lua = (REQUIRE + init_lua({"host": "127.0.0.1", "port": tcp_collector.port, "flush_limit": 1})
           + "local bytes, err = logger.log(10) ngx.say(bytes, ' ', tostring(err))")
    ng = nginx(content(lua))
    assert ng.get("/t") == (200, "2 nil\n")
    assert tcp_collector.wait_for(n_bytes=2, timeout=10)
    assert tcp_collector.data() == b"10"


def test_buffered_below_flush_limit_sends_nothing_then_flush_returns_bytes(nginx, tcp_collector):
    # sanity.t TEST 4 (nothing sent below flush_limit) and TEST 13/14 (flush() returns bytes).
    lua = (REQUIRE + init_lua({"host": "127.0.0.1", "port": tcp_collector.port, "flush_limit": 500})
           + "local a = logger.log('/t?a=1&b=2') ngx.sleep(0.3) "
           "ngx.say('logged ', a) ngx.flush(true) "
           "if ngx.var.arg_flush then ngx.say('flushed ', logger.flush()) ngx.say('again ', logger.flush()) end")
    ng = nginx(content(lua))
    assert ng.get("/t") == (200, "logged 10\n")
    assert tcp_collector.data() == b"", "nothing may be sent below flush_limit"
    status, body = ng.get("/t?flush=1")
    assert body == "logged 10\nflushed 20\nagain 0\n"
    assert tcp_collector.wait_for(n_bytes=20, timeout=10)
    assert tcp_collector.data() == b"/t?a=1&b=2/t?a=1&b=2"


def test_not_initialized(nginx):
    # sanity.t TEST 5.
    lua = (REQUIRE + "ngx.say(tostring(logger.initted())) local b, e = logger.log('x') "
           "ngx.say(tostring(b), ' ', e) local f, fe = logger.flush() ngx.say(tostring(f), ' ', fe)")
    ng = nginx(content(lua))
    assert ng.get("/t")[1] == "false\nnil not initialized\nnil not initialized\n"


RESTY_ARGUMENT_ERRORS = [
    # sanity.t TEST 9, 10, 11, 20: (Lua argument, resty's error).
    ('"hello"', 'user_config must be a table'),
    ('{ flush_limit = 1, drop_limit = 2 }',
     'no logging server configured. "host"/"port" or "path" is required.'),
    ('{ path = "/test.sock", flush_limit = 2, drop_limit = 1 }', '"flush_limit" should be < "drop_limit"'),
    ('{ host = 128, port = 29999 }', '"host" must be a string'),
    ('{ host = "google.com", port = "foo" }', '"port" must be a number'),
    ('{ host = "google.com", port = 1234567 }', '"port" out of range 0~65535'),
    ('{ sock_type = true }', '"sock_type" must be a string'),
    ('{ sock_type = "upd" }', '"sock_type" must be "tcp" or "udp"'),
    ('{ path = 123 }', '"path" must be a string'),
    ('{ path = "/test.sock", flush_limit = "a" }', 'invalid "flush_limit"'),
    ('{ path = "/test.sock", drop_limit = -2.5 }', 'invalid "drop_limit"'),
    ('{ path = "/test.sock", timeout = "bar" }', 'invalid "timeout"'),
    ('{ path = "/test.sock", max_retry_times = "bar" }', 'invalid "max_retry_times"'),
    ('{ path = "/test.sock", retry_interval = "bar" }', 'invalid "retry_interval"'),
    ('{ path = "/test.sock", pool_size = "bar" }', 'invalid "pool_size"'),
    ('{ path = "/test.sock", max_buffer_reuse = "bar" }', 'invalid "max_buffer_reuse"'),
    ('{ path = "/test.sock", periodic_flush = "bar" }', 'invalid "periodic_flush"'),
    ('{ path = "/test.sock", ssl = "1" }', '"ssl" must be a boolean value'),
    ('{ path = "/test.sock", ssl_verify = 2 }', '"ssl_verify" must be a boolean value'),
    ('{ path = "/test.sock", sni_host = true }', '"sni_host" must be a string'),
]


def test_every_config_error_string(nginx):
    calls = " ".join(f"do local ok, err = logger.init({arg}) ngx.say(tostring(ok), '|', err) end"
                     for arg, _ in RESTY_ARGUMENT_ERRORS)
    ng = nginx(content(REQUIRE + calls + " ngx.say(tostring(logger.initted()))"))
    lines = ng.get("/t")[1].splitlines()
    assert lines[-1] == "false", "no failed init may leave the logger initialised"
    got = [ln.split("|", 1) for ln in lines[:-1]]
    assert [ok for ok, _ in got] == ["nil"] * len(RESTY_ARGUMENT_ERRORS)
    # The library may add a detail after resty's words ("...: expected a number"), nothing before.
    for (_, err), (arg, want) in zip(got, RESTY_ARGUMENT_ERRORS):
        assert err == want or err.startswith(want + ":"), f"init({arg}) -> {err!r}, want {want!r}"


def test_init_error_in_init_worker_reaches_the_error_log(nginx):
    worker = ("init_worker_by_lua_block { " + REQUIRE
              + "local ok, err = logger.init{ path = '/x.sock', flush_limit = 2, drop_limit = 1 } "
              "if not ok then ngx.log(ngx.ERR, 'failed to initialize the logger: ', err) end } ")
    ng = nginx(content(REQUIRE + "ngx.say(tostring(logger.initted()))"), before_server=worker)
    assert ng.get("/t")[1] == "false\n"
    assert 'failed to initialize the logger: "flush_limit" should be < "drop_limit"' in ng.error_log()


def test_drop_when_full_delivers_000bbb(nginx, unix_collector):
    # sanity.t TEST 12: flush_limit 4, drop_limit 6; "aaaaa" does not fit and is dropped.
    lua = (REQUIRE + init_lua({"path": unix_collector.path, "flush_limit": 4, "drop_limit": 6})
           + "for _, m in ipairs({'000', 'aaaaa', 'bbb'}) do local b, e = logger.log(m) "
           "ngx.say(m, ' ', b, ' ', tostring(e)) end")
    ng = nginx(content(lua), error_level="debug")
    body = ng.get("/t")[1]
    assert body == ("000 3 nil\n"
                    "aaaaa 0 logger buffer is full, this log message will be dropped\n"
                    "bbb 3 nil\n")
    # Whether "bbb" crosses flush_limit depends on whether rlog's thread already took "000" (resty's
    # timer cannot run in between); either way exit delivers everything that was accepted.
    ng.quit()
    assert unix_collector.wait_for(n_bytes=6, timeout=10)
    assert unix_collector.data() == b"000bbb"
    # resty writes this at debug level; so does the binding, and nothing at warn or above.
    assert "[debug]" in next(ln for ln in ng.error_log().splitlines()
                             if "logger buffer is full, this log message will be dropped" in ln)
    assert ng.problems() == []


def test_periodic_flush(nginx, tcp_collector):
    # sanity.t TEST 16: nothing reaches flush_limit; the periodic flush sends "foo", then "bar".
    cfg = {"host": "127.0.0.1", "port": tcp_collector.port, "flush_limit": 1000,
           "drop_limit": 10000, "periodic_flush": 0.03}
    lua = (REQUIRE + init_lua(cfg) + "local b = logger.log('foo') ngx.say('wrote bytes: ', b) "
           "ngx.sleep(0.05) b = logger.log('bar') ngx.say('wrote bytes: ', b) ngx.sleep(0.05)")
    ng = nginx(content(lua))
    assert ng.get("/t")[1] == "wrote bytes: 3\nwrote bytes: 3\n"
    assert tcp_collector.wait_for(n_bytes=6, timeout=10), "the periodic flush sent nothing"
    assert tcp_collector.data() == b"foobar"


def test_previous_error_is_returned_by_the_next_log_call(nginx, free_port):
    port = free_port()  # nobody listens there
    cfg = {"host": "127.0.0.1", "port": port, "flush_limit": 1, "max_retry_times": 0,
           "retry_interval": 1, "timeout": 200}
    lua = (REQUIRE + init_lua(cfg)
           + "local b, e = logger.log('first') ngx.say('first ', b, ' ', tostring(e)) "
           "for i = 1, 200 do ngx.sleep(0.02) b, e = logger.log('next') "
           "if e then ngx.say('next ', b, ' ', e) return end end ngx.say('no error came back')")
    ng = nginx(content(lua), error_level="debug")
    lines = ng.get("/t")[1].splitlines()
    reason = ("try to send log messages to the log server failed after 0 retries: "
              "try to connect to the log server failed after 0 retries: ")
    # rlog's thread tries at once (flush_limit = 1), and a refused connect is immediate: the
    # error can already be pending when the binding asks right after the first log().
    if lines[0] == "first 5 nil":
        assert lines[1].startswith("next 4 " + reason), lines
    else:
        assert lines[0].startswith("first 5 " + reason), lines
    # Learned of by the binding, written to the error log at debug level only.
    assert any("[debug]" in ln and "rlog: try to send log messages" in ln
               for ln in ng.error_log().splitlines())
    assert ng.problems() == []


CONFIG_TEXT_CASES = [
    # (Lua table, expected config text or "ERR: message")
    ('{ host = "127.0.0.1", port = 5140 }', "host = 127.0.0.1\nport = 5140"),
    ('{ path = "/s", flush_limit = 1e6, periodic_flush = 0.25, ssl = false }',
     "flush_limit = 1000000\npath = /s\nperiodic_flush = 0.25\nssl = false"),
    ('{ path = "/s", log_encoder = { "prefix [A] ", "gzip", "json {\\"m\\":\\"${msg}\\"}" } }',
     'log_encoder = "prefix [A] "\nlog_encoder = gzip\nlog_encoder = "json {\\"m\\":\\"${msg}\\"}"\npath = /s'),
    ('{ logger = { "socket:127.0.0.1:1717", "errors tcp://127.0.0.1:1" }, '
     '["log-route"] = { "errors ERROR|CRIT" } }',
     'log-route = errors ERROR|CRIT\nlogger = socket:127.0.0.1:1717\nlogger = errors tcp://127.0.0.1:1'),
    ('{ path = " a\\\\b\\t\\n" , sni_host = "" }', 'path = " a\\\\b\\t\\n"\nsni_host = ""'),
    ('{ path = "/s", timeout = { 1, 2 } }', 'ERR: invalid "timeout"'),
    ('{ path = "/s", retry_interval = 0/0 }', 'ERR: invalid "retry_interval"'),
    ('{ ["flush-limit"] = "9" }', 'ERR: invalid "flush_limit"'),
    ('{ path = "/s", logger = { x = 1 } }', 'ERR: "logger" must be an array of values'),
    ('{ path = "a\\0b" }', 'ERR: "path" must not contain NUL characters'),
    # A carriage return is kept raw inside quotes (a CRLF suffix).
    ('{ path = "/s", log_encoder = { "suffix \\r\\n" } }', 'log_encoder = "suffix \r\\n"\npath = /s'),
    ('{ [1] = "x" }', 'ERR: bad key "1" in user_config'),
    # A "#" first or after a blank is quoted (unquoted, it would read as a trailing comment).
    ('{ path = "/s", log_encoder = { "prefix [A] #1", "#x", "a#b" } }',
     'log_encoder = "prefix [A] #1"\nlog_encoder = "#x"\nlog_encoder = a#b\npath = /s'),
    # A named logger's own keys (NAME.key), checked as the key itself.
    ('{ logger = { "web tcp://127.0.0.1:1" }, ["log-route"] = { "web ." }, ["web.timeout"] = 100 }',
     'log-route = web .\nlogger = web tcp://127.0.0.1:1\nweb.timeout = 100'),
    ('{ logger = { "web rlogd://127.0.0.1:1" }, ["web.token"] = 12345 }', 'ERR: "token" must be a string'),
    ('{ ["web.x.y"] = 1 }', 'ERR: bad key "web.x.y" in user_config'),
    ('{ host = "h", port = 1.5 }', 'ERR: "port" must be a whole number'),
    ('{ host = "h", port = 1, token = 12345678901234567890 }', 'ERR: "token" must be a string'),
    ('{ ["a b"] = 1 }', 'ERR: bad key "a b" in user_config'),
]


def test_config_text_generation(nginx):
    # Pure Lua: what the binding hands to rlog_init for a given table (no library call).
    # Each result is printed followed by an ASCII record separator (results span lines).
    calls = " ".join(
        "do local t, e = rlog.config_text(" + arg + ") ngx.print(t or ('ERR: ' .. e), '\\30') end"
        for arg, _ in CONFIG_TEXT_CASES)
    ng = nginx(content("local rlog = require 'resty.rlog' " + calls))
    got = ng.get("/t")[1].split("\x1e")
    assert got[-1] == ""
    assert len(got) - 1 == len(CONFIG_TEXT_CASES)
    for (arg, want), g in zip(CONFIG_TEXT_CASES, got):
        assert g == want, f"config_text({arg})"


def test_library_found_on_package_cpath(nginx, librlog, tmp_path):
    d = tmp_path / "cpath"
    d.mkdir()
    (d / "librlog.so").symlink_to(librlog)
    block = 'lua_package_cpath "' + str(d) + '/?.so;;"; '
    ng = nginx(content("local r = require 'resty.rlog' ngx.say(r.library_path, ' ', r.version())"),
               before_server=block, lib="")
    assert ng.get("/t")[1] == f"{d}/librlog.so {_version()}\n"


def test_library_found_by_the_system_loader(nginx, librlog, tmp_path):
    d = tmp_path / "ldpath"
    d.mkdir()
    (d / "librlog.so").symlink_to(librlog)
    ng = nginx(content("local r = require 'resty.rlog' ngx.say(r.library_path, ' ', r.version())"),
               lib="", extra_env={"LD_LIBRARY_PATH": str(d)})
    assert ng.get("/t")[1] == f"rlog {_version()}\n"


def test_library_missing_is_a_clear_error(nginx, tmp_path):
    import ctypes.util
    if ctypes.util.find_library("rlog"):
        pytest.skip("a librlog is installed system-wide: the system loader would find it")
    lua = ("local ok, err = pcall(require, 'resty.rlog') ngx.say(tostring(ok)) ngx.say(err)")
    ng = nginx(content(lua), lib=str(tmp_path / "nope" / "librlog.so"))
    body = ng.get("/t")[1]
    assert body.startswith("false\n")
    assert "cannot load librlog (set RLOG_LIB" in body
    assert str(tmp_path / "nope" / "librlog.so") in body


def _version() -> str:
    from nginx_helpers import REPO_ROOT
    for ln in (REPO_ROOT / "Cargo.toml").read_text().splitlines():
        if ln.startswith("version"):
            return ln.split('"')[1]
    raise AssertionError("no version in Cargo.toml")


def test_nothing_at_warn_or_error_when_nothing_is_wrong(nginx, tcp_collector):
    loc = ("location /t { content_by_lua_block { ngx.say('ok') } log_by_lua_block { " + REQUIRE
           + init_lua({"host": "127.0.0.1", "port": tcp_collector.port, "flush_limit": 64})
           + "local b, e = logger.log(ngx.var.request_uri .. '\\n') if e then ngx.log(ngx.ERR, e) end } }")
    ng = nginx(loc, error_level="debug")
    for i in range(20):
        ng.get(f"/t?i={i}")
    ng.quit()
    assert tcp_collector.wait_for(n_lines=20, timeout=10)
    assert ng.problems() == []
    assert not any("rlog:" in ln for ln in ng.error_log().splitlines())
