"""The Lua binding in real nginx: flush() yields instead of blocking the worker, relative paths
resolve against nginx's prefix (and errors show it), `env RLOG_LIB=/path;` is enough to find the
library, and the LuaRocks / OPM metadata install the modules that nginx then loads."""

from __future__ import annotations

import configparser
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from nginx_helpers import LUA_DIR, Nginx, nginx_missing
from test_nginx_delivery import lua_table


@pytest.fixture(autouse=True)
def _nginx_installed():
    why = nginx_missing()
    if why:
        pytest.fail(why)


@pytest.fixture
def nginx(tmp_path, librlog):
    started: list[Nginx] = []

    def make(locations: str, before_server: str = "", start: bool = True, **kw) -> Nginx:
        ng = Nginx(tmp_path / f"ng{len(started)}", librlog, before_server + Nginx.server(locations), **kw)
        started.append(ng)
        return ng.start() if start else ng

    yield make
    for ng in started:
        ng.stop()


@pytest.fixture
def dead_port():
    """A loopback port bound and never listening: connects are refused while the test runs."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


def timed_get(ng: Nginx, path: str, out: dict, key: str, timeout: float = 60) -> None:
    t0 = time.monotonic()
    out[key] = ng.get(path, timeout=timeout)
    out[key + "_at"] = time.monotonic()
    out[key + "_took"] = out[key + "_at"] - t0


def flush_locations(cfg: dict) -> str:
    init = ("local logger = require 'resty.rlog' "
            "if not logger.initted() then assert(logger.init(" + lua_table(cfg) + ")) end ")
    return (
        "location /flush { content_by_lua_block { " + init +
        "  logger.log('held\\n') "
        "  local n, err = logger.flush(tonumber(ngx.var.arg_timeout)) "
        "  ngx.say(tostring(n), '|', tostring(err), '|', tostring(logger.flush_yields)) } } "
        "location /fast { content_by_lua_block { ngx.say('fast') } } "
    )


def test_flush_against_a_dead_collector_does_not_block_other_requests(nginx, dead_port):
    # retry_interval 200: the flush's retries (connects refused at once, backoff doubling) take
    # several seconds. One worker: before, /fast waited until /flush's flush gave up.
    cfg = {"host": "127.0.0.1", "port": dead_port, "retry_interval": 200, "flush_limit": 100000}
    ng = nginx(flush_locations(cfg), workers=1)
    res: dict = {}
    slow = threading.Thread(target=timed_get, args=(ng, "/flush", res, "flush"))
    slow.start()
    time.sleep(0.5)  # /flush is in its flush by now
    timed_get(ng, "/fast", res, "fast")
    flush_running = slow.is_alive()
    slow.join(60)
    assert res["fast"] == (200, "fast\n")
    # The other request was answered while the flush was still waiting for its retries ...
    assert flush_running, f"/flush was over before /fast was answered: {res}"
    assert res["fast_at"] < res["flush_at"]
    assert res["fast_took"] < 2.0, res  # generous: it takes milliseconds
    # ... and the flush itself reports the failure as before (the message stays buffered).
    status, body = res["flush"]
    n, err, yields = body.rstrip("\n").split("|")
    assert (status, n, yields) == (200, "nil", "true"), body
    assert err.startswith("try to send log messages to the log server failed after 3 retries: "
                          f"try to connect to the log server failed after 3 retries: connect tcp://127.0.0.1:{dead_port}: "
                          "connection refused"), body
    assert ng.problems() == []


def test_flush_with_a_timeout_returns_and_the_flush_goes_on(nginx, dead_port):
    cfg = {"host": "127.0.0.1", "port": dead_port, "retry_interval": 200, "flush_limit": 100000}
    ng = nginx(flush_locations(cfg), workers=1)
    t0 = time.monotonic()
    assert ng.get("/flush?timeout=0.3") == (200, "nil|timeout|true\n")
    assert time.monotonic() - t0 < 3.0  # generous: 0.3 s
    assert ng.get("/fast") == (200, "fast\n")
    assert ng.quit() == 0  # a flush thread still running does not hold or crash the exit


def test_flush_delivers_in_every_phase(nginx, tcp_collector):
    # Content (yields) and log_by_lua (cannot yield: blocks, as before) both deliver and count.
    cfg = {"host": "127.0.0.1", "port": tcp_collector.port, "flush_limit": 100000}
    init = ("local logger = require 'resty.rlog' "
            "if not logger.initted() then assert(logger.init(" + lua_table(cfg) + ")) end ")
    loc = ("location /t { content_by_lua_block { " + init +
           " logger.log('content\\n') ngx.say(logger.flush()) } "
           " log_by_lua_block { " + init +
           " logger.log('log phase\\n') local n, err = logger.flush() "
           " ngx.log(ngx.WARN, 'log-phase flush: ', n, ' ', tostring(err)) } }")
    ng = nginx(loc, workers=1)
    assert ng.get("/t") == (200, "8\n")
    assert tcp_collector.wait_for(n_bytes=18, timeout=10)
    assert tcp_collector.data() == b"content\nlog phase\n"
    deadline = time.monotonic() + 10
    while "log-phase flush: " not in ng.error_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert re.search(r"log-phase flush: 10 nil", ng.error_log()), ng.error_log()


def test_relative_paths_resolve_against_the_nginx_prefix(nginx, make_collector, tls_cert, tmp_path):
    cert, key, ca = tls_cert
    tls = make_collector("tls", cert=cert, key=key)
    ng = nginx("", start=False)  # to know its prefix; the config is written below
    (ng.prefix / "conf" / "ca.pem").write_bytes(open(ca, "rb").read())
    cfg = {"host": "127.0.0.1", "port": tls.port, "ssl": True, "sni_host": "localhost",
           "ssl_ca": "conf/ca.pem", "flush_limit": 1}
    bad = dict(cfg, ssl_ca="conf/missing.pem")
    loc = ("location /t { content_by_lua_block { local logger = require 'resty.rlog' "
           "local ok, err = logger.init(" + lua_table(cfg) + ") ngx.say(tostring(ok), ' ', tostring(err)) "
           "ngx.say(logger.log('over tls\\n')) } } "
           "location /bad { content_by_lua_block { local logger = require 'resty.rlog' "
           "local ok, err = logger.init(" + lua_table(bad) + ") ngx.say(tostring(ok), ' ', tostring(err)) } }")
    ng.write_conf(Nginx.server(loc))
    ng.start()
    # nginx runs with the test's working directory (the repository root), not its prefix.
    assert ng.get("/t") == (200, "true nil\n9\n")
    assert tls.wait_for(n_bytes=9, timeout=10)
    assert tls.data() == b"over tls\n"
    status, body = ng.get("/bad")
    prefix = str(ng.prefix) + "/"
    assert body.startswith("nil "), body
    # The error names the file with the directory it was looked for in.
    assert f"{prefix}conf/missing.pem" in body, body


def test_env_directive_with_a_value_finds_the_library(nginx, librlog, tcp_collector):
    # A systemd-managed nginx does not see the shell's RLOG_LIB: `env RLOG_LIB=/path;` sets it.
    cfg = {"host": "127.0.0.1", "port": tcp_collector.port, "flush_limit": 1}
    loc = ("location /t { content_by_lua_block { local logger = require 'resty.logger.socket' "
           "if not logger.initted() then assert(logger.init(" + lua_table(cfg) + ")) end "
           "ngx.say(logger.log('via env\\n'), ' ', require('resty.rlog').library_path) } }")
    ng = nginx(loc, start=False, main_extra=f"env RLOG_LIB={librlog};")
    del ng.env["RLOG_LIB"]
    ng.start()
    assert ng.get("/t") == (200, f"8 {librlog}\n")
    assert tcp_collector.wait_for(n_bytes=8, timeout=10)
    assert tcp_collector.data() == b"via env\n"


ROCKSPEC = LUA_DIR / "lua-resty-rlog-0.1.0-1.rockspec"


def test_luarocks_installs_the_modules_nginx_loads(nginx, tcp_collector, tmp_path):
    luarocks = shutil.which("luarocks")
    if not luarocks:
        pytest.fail("luarocks is not installed (.ci/deps installs it)")
    tree = tmp_path / "rocks"
    p = subprocess.run([luarocks, "--lua-version", "5.1", "make", "--tree", str(tree), str(ROCKSPEC)],
                       cwd=str(LUA_DIR), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    share = tree / "share" / "lua" / "5.1"
    for mod in ("resty/rlog.lua", "resty/logger/socket.lua"):
        assert (share / mod).read_bytes() == (LUA_DIR / mod).read_bytes()
    cfg = {"host": "127.0.0.1", "port": tcp_collector.port, "flush_limit": 1}
    loc = ("location /t { content_by_lua_block { local logger = require 'resty.logger.socket' "
           "if not logger.initted() then assert(logger.init(" + lua_table(cfg) + ")) end "
           "ngx.say(logger.log('from the rock\\n')) } }")
    # Only the rocks tree on the Lua path: the modules come from there, not from bindings/lua.
    ng = nginx(loc, lua_path=f"{share}/?.lua;;")
    assert ng.get("/t") == (200, "14\n")
    assert tcp_collector.wait_for(n_bytes=14, timeout=10)


def test_opm_dist_ini_describes_the_modules():
    # opm is not packaged for Debian: check dist.ini the way `opm build` reads it.
    ini = configparser.ConfigParser()
    text = (LUA_DIR / "dist.ini").read_text()
    ini.read_string("[default]\n" + text)
    d = dict(ini["default"])
    for key in ("name", "abstract", "author", "is_original", "license", "repo_link"):
        assert d.get(key), f"dist.ini: {key} is mandatory"
    known = {"name", "abstract", "author", "is_original", "license", "repo_link", "version",
             "requires", "lib_dir", "doc_dir", "main_module", "exclude_files"}
    assert set(d) <= known, set(d) - known
    assert d["is_original"] in ("yes", "no")
    assert set(re.split(r"\s*,\s*", d["license"])) <= {"mit", "apache2"}
    lib_dir = LUA_DIR / d.get("lib_dir", "lib")
    for mod in ("resty/rlog.lua", "resty/logger/socket.lua"):
        assert (lib_dir / mod).is_file()
    main = (LUA_DIR / d["main_module"]).read_text()
    m = re.search(r"_VERSION\s*=\s*\"([^\"]+)\"", main)
    assert m and m.group(1) == d["version"]
    assert (LUA_DIR / d.get("doc_dir", "lib") / "README.md").is_file()
