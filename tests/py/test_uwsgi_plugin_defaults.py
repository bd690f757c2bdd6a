"""The uWSGI plugin with the README's `logger = rlog:host=...,port=...` and nothing else: lines
reach the collector while uWSGI runs, a collector that is down is reported while requests come
in, a config error is said once on stderr, and the shutdown report says why it lost lines."""

import os
import re
import subprocess
import time

import pytest

from pyhelpers import TcpCollector, wait_until
from test_uwsgi_plugin import APP, PYTHON_PLUGIN, free_port, plugin, request_lines, start  # noqa: F401


def test_readme_config_delivers_while_uwsgi_runs(plugin, tmp_path):  # noqa: F811
    # Below flush_limit (4096 bytes) nothing was sent before shutdown; the plugin's default
    # periodic_flush = 1 sends within about a second.
    with TcpCollector() as app_col, TcpCollector() as req_col:
        u = start(plugin, tmp_path, [
            "--processes", "1",
            "--logger", f"rlog:host=127.0.0.1,port={app_col.port}",
            "--req-logger", f"rlog:host=127.0.0.1,port={req_col.port}",
        ])
        try:
            u.wait_ready()
            u.get("/early")
            assert wait_until(lambda: b"/early" in request_lines(req_col.data()), timeout=10), u.output()
            assert wait_until(lambda: b"app-line /early" in app_col.data(), timeout=10), u.output()
            assert u.proc.poll() is None
            rc = u.stop()
        finally:
            u.kill()
    assert rc == 0, u.output()


def test_periodic_flush_zero_is_respected(plugin, tmp_path):  # noqa: F811
    # periodic_flush set by the user (0: off) is left alone: below flush_limit, only the
    # shutdown delivers.
    with TcpCollector() as req_col:
        conf = tmp_path / "req.conf"
        conf.write_text(f"host = 127.0.0.1\nport = {req_col.port}\nperiodic-flush = 0\n")
        u = start(plugin, tmp_path, ["--processes", "1", "--req-logger", f"rlog:@{conf}"])
        try:
            u.wait_ready()
            u.get("/held")
            u.get("/sync")
            time.sleep(2.5)  # more than two periods of the default
            assert req_col.data() == b""
            rc = u.stop()
        finally:
            u.kill()
        assert rc == 0, u.output()
        assert b"/held" in request_lines(req_col.data())


def test_kong_s_max_coalescing_delay_is_taken_for_periodic_flush(plugin, tmp_path):  # noqa: F811
    # Kong's name for periodic_flush (docs/HTTP.md): the plugin's default must not be added
    # beside it (both set is a config error that would stop uWSGI).
    with TcpCollector() as req_col:
        u = start(plugin, tmp_path, [
            "--processes", "1",
            "--req-logger", f"rlog:host=127.0.0.1,port={req_col.port},max_coalescing_delay=0.5",
        ])
        try:
            u.wait_ready()
            u.get("/coalesced")
            assert wait_until(lambda: b"/coalesced" in request_lines(req_col.data()), timeout=10), u.output()
            rc = u.stop()
        finally:
            u.kill()
    assert rc == 0, u.output()


def test_dead_collector_is_reported_while_requests_come(plugin, tmp_path):  # noqa: F811
    dead = free_port()  # nothing listens there
    arg = f"rlog:host=127.0.0.1,port={dead}"
    u = start(plugin, tmp_path, ["--processes", "1", "--logger", arg])
    try:
        u.wait_ready()
        want = f'[rlog] logger "{arg}": try to send log messages to the log server failed'
        # Eight requests, one a second (well below flush_limit together), then wait. Defaults: a
        # periodic flush after ~1 s, then 16 refused connects with backoff (~3.5 s).
        deadline = time.monotonic() + 20
        n = 0
        while want not in u.output() and time.monotonic() < deadline:
            if n < 8:
                u.get(f"/still-serving/{n}")
                n += 1
            time.sleep(1)
        assert want in u.output(), u.output()
        rc = u.stop()
    finally:
        u.kill()
    out = u.output()
    assert rc == 0, out
    # The shutdown report says why the lines it held are lost.
    m = re.search(r'\[rlog\] logger "[^"]*": held (\d+) messages \(\d+ bytes\) at shutdown and could '
                  r'not deliver them all within its timeout \(1000 ms\), so they are lost: the last '
                  r'error rlog reported was: try to send log messages to the log server failed after '
                  r'3 retries: try to connect to the log server failed after 3 retries: connect '
                  r'tcp://127\.0\.0\.1:\d+: connection refused '
                  r'\(logged \d+, sent 0, lost 0, dropped 0 before\)\n', out)
    assert m and int(m.group(1)) > 0, out


def test_config_error_is_said_once_on_stderr(plugin, tmp_path):  # noqa: F811
    (tmp_path / "app.py").write_text(APP)
    p = subprocess.run(
        ["uwsgi", "--plugin", "python3", "--plugin", plugin, "--http-socket", f"127.0.0.1:{free_port()}",
         "--wsgi-file", "app.py", "--master", "--logger", "rlog:host=127.0.0.1,port=99999"],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    msg = '[rlog] bad config for logger "rlog:host=127.0.0.1,port=99999": "port" out of range 0~65535 at line 2\n'
    assert p.stderr == msg, (p.stdout, p.stderr)
    assert "[rlog]" not in p.stdout
    # What uWSGI had logged before it stopped is not lost either (its own log output, stdout).
    assert "*** Starting uWSGI" in p.stdout
