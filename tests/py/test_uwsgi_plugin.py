"""The uWSGI logger plugin (bindings/uwsgi): a real uWSGI (Debian's uwsgi-core and
uwsgi-plugin-python3) serves a tiny WSGI app and ships its logs through rlog to loopback
collectors. Every test counts what the collectors received against what was logged.

Needs: uwsgi-core, uwsgi-plugin-python3, and the plugin build headers (libpcre3-dev,
libssl-dev, uuid-dev, libcap-dev: uWSGI's uwsgi.h includes them). Without a `uwsgi` binary
the tests are skipped locally and fail under CI (CI=true), so a missing install step shows.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import urllib.request

import pytest

import pyhelpers
from pyhelpers import TcpCollector, wait_until

APP = '''
import sys
def application(env, start_response):
    path = env.get("PATH_INFO", "")
    print("app-line " + path, file=sys.stderr, flush=True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok " + path.encode()]
'''

PYTHON_PLUGIN = "/usr/lib/uwsgi/plugins/python3_plugin.so"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """Builds rlog_plugin.so with `uwsgi --build-plugin` (bindings/uwsgi/build.sh)."""
    if not shutil.which("uwsgi") or not os.path.exists(PYTHON_PLUGIN):
        msg = "uwsgi-core and uwsgi-plugin-python3 are not installed"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    out = tmp_path_factory.mktemp("uwsgi-plugin")
    build = subprocess.run(
        ["sh", os.path.join(pyhelpers.ROOT, "bindings", "uwsgi", "build.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    so = out / "rlog_plugin.so"
    assert so.exists()
    return str(so)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Uwsgi:
    """A uWSGI started in its own session; stop() sends SIGINT (uWSGI's graceful shutdown)
    and kills the whole session if it does not end."""

    def __init__(self, args, cwd, port):
        self.port = port
        self.out_path = os.path.join(cwd, "uwsgi.out")
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            ["uwsgi", *args], cwd=cwd, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return r.read()

    def wait_ready(self):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"uWSGI exited with {self.proc.returncode}:\n{self.output()}")
            try:
                return self.get("/ready") == b"ok /ready"
            except OSError:
                return False

        assert wait_until(ready, timeout=30, step=0.1), self.output()

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.proc.returncode

    def kill(self):
        # The session (process group) holds only what this test started: uWSGI and its workers.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        self.out.close()


def start(plugin, tmp_path, extra, ini=None):
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    base = ["--plugin", "python3", "--plugin", plugin]
    if ini is not None:
        ini_path = tmp_path / "uwsgi.ini"
        ini_path.write_text(ini.format(port=port, plugin=plugin))
        args = ["--ini", str(ini_path), *extra]
    else:
        args = [*base, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "app.py", "--master", *extra]
    return Uwsgi(args, str(tmp_path), port)


def request_lines(data):
    """The paths of uWSGI's request log lines, without the final /sync request's: a worker
    writes a request's log line after sending the response, so the line of the last request
    before SIGINT may never be written (uWSGI kills its workers). With one worker, /sync
    returning proves every earlier request's line is in uWSGI's log pipe."""
    return [p for p in re.findall(rb"GET (/\S*) => generated", data) if p != b"/sync"]


def app_lines(data):
    return [p for p in re.findall(rb"^app-line (\S+)$", data, re.M) if p != b"/sync"]


def test_command_line_logger_and_req_logger(plugin, tmp_path):
    n = 25
    with TcpCollector() as app_col, TcpCollector() as req_col:
        u = start(
            plugin,
            tmp_path,
            [
                "--processes", "2",
                "--logger", f"rlog:host=127.0.0.1,port={app_col.port},flush_limit=0",
                "--req-logger", f"rlog:host=127.0.0.1,port={req_col.port},flush_limit=0",
            ],
        )
        try:
            u.wait_ready()
            for i in range(n):
                assert u.get(f"/hit/{i}") == f"ok /hit/{i}".encode()
            want = [b"/ready"] + [f"/hit/{i}".encode() for i in range(n)]
            # flush_limit=0: each line is sent as it comes, before uWSGI stops.
            assert wait_until(lambda: len(request_lines(req_col.data())) >= n + 1)
            assert wait_until(lambda: app_col.data().count(b"app-line /hit/") >= n)
            rc = u.stop()
        finally:
            u.kill()
        app = app_col.data()
        req = req_col.data()
    assert rc == 0, u.output()
    assert sorted(request_lines(req)) == sorted(want)  # every request once, nothing else
    assert sorted(app_lines(app)) == sorted(want)
    assert b"spawned uWSGI worker 2" in app
    # The master's last line is drained from uWSGI's log pipe and delivered at exit.
    assert app.rstrip().endswith(b"goodbye to uWSGI.")
    assert b"[rlog]" not in u.output().encode()
    assert b"GET /" not in app and b"app-line" not in req


INI = """
[uwsgi]
plugin = python3
plugin = {plugin}
http-socket = 127.0.0.1:{port}
wsgi-file = app.py
master = true
processes = 1
threaded-logger = true
logger = rlog:@rest.conf
logger = apps rlog:@apps.conf
log-route = apps ^app-line
req-logger = rlog:@req.conf
"""


def test_ini_config_files_named_logger_routes_and_exit_flush(plugin, tmp_path):
    n = 15
    with TcpCollector() as rest_col, TcpCollector() as apps_col, TcpCollector() as req_col:
        # Default flush_limit (4096): lines stay buffered until enough arrive or uWSGI exits.
        (tmp_path / "rest.conf").write_text(f"host = 127.0.0.1\nport = {rest_col.port}\n")
        (tmp_path / "apps.conf").write_text(f"# app lines\nhost = 127.0.0.1\nport = {apps_col.port}\n")
        (tmp_path / "req.conf").write_text(f"host = 127.0.0.1\nport = {req_col.port}\ntimeout = 3000\n")
        u = start(plugin, tmp_path, [], ini=INI)
        try:
            u.wait_ready()
            for i in range(n):
                assert u.get(f"/r/{i}") == f"ok /r/{i}".encode()
            u.get("/sync")
            rc = u.stop()
        finally:
            u.kill()
        # The exit flush delivered everything before the process ended: no waiting needed.
        rest, apps, req = rest_col.data(), apps_col.data(), req_col.data()
    assert rc == 0, u.output()
    want = [b"/ready"] + [f"/r/{i}".encode() for i in range(n)]
    assert sorted(request_lines(req)) == sorted(want)
    assert sorted(app_lines(apps)) == sorted(want)
    assert apps.count(b"\n") == len(want) + 1  # the named logger receives only its route (and /sync)
    assert b"app-line" not in rest
    assert b"spawned uWSGI worker 1" in rest and rest.rstrip().endswith(b"goodbye to uWSGI.")
    assert "[rlog]" not in u.output()


def test_comma_in_a_value_unix_socket(plugin, tmp_path):
    sock_dir = tmp_path / "a,b"
    sock_dir.mkdir()
    with TcpCollector(path=str(sock_dir / "s1")) as c1, TcpCollector(path=str(sock_dir / "s2")) as c2:
        escaped = str(sock_dir / "s1").replace(",", "\\,")
        quoted = '"' + str(sock_dir / "s2") + '"'
        u = start(
            plugin,
            tmp_path,
            [
                "--logger", f"rlog:path={escaped},flush_limit=0",
                "--req-logger", f"rlog:flush_limit=0,path={quoted}",
            ],
        )
        try:
            u.wait_ready()
            u.get("/comma")
            assert wait_until(lambda: b"app-line /comma" in c1.data())
            assert wait_until(lambda: request_lines(c2.data()) == [b"/ready", b"/comma"])
        finally:
            u.stop()


@pytest.mark.parametrize(
    "arg, want",
    [
        ("rlog:host=127.0.0.1,port=99999", '"port" out of range 0~65535'),
        ("rlog:host=127.0.0.1,port=1,nonsense=1", 'unknown key "nonsense"'),
        ("rlog:flush_limit=10", 'no logging server configured. "host"/"port" or "path" is required.'),
        ("rlog:@/nonexistent/rlog.conf", "cannot read the config"),
        ("rlog", "the rlog logger needs a config"),
        # A NUL byte would end the text there and hide the bad lines after it.
        ("rlog:@NULFILE", "the file contains a NUL byte"),
    ],
)
def test_bad_config_stops_uwsgi_before_it_serves(plugin, tmp_path, arg, want):
    if arg == "rlog:@NULFILE":
        f = tmp_path / "nul.conf"
        f.write_bytes(b"host = 127.0.0.1\nport = 1\n\0nonsense = 1\nport = 99999\n")
        arg = f"rlog:@{f}"
    u = start(plugin, tmp_path, ["--logger", arg])
    try:
        rc = u.proc.wait(30)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        u.kill()
    out = u.output()
    assert rc not in (None, 0), out
    assert '[rlog] ' in out and want in out, out
    assert "spawned uWSGI worker" not in out


def test_undeliverable_logs_are_reported_on_stderr_not_silently_lost(plugin, tmp_path):
    dead = free_port()  # nothing listens there
    arg = f"rlog:host=127.0.0.1,port={dead},flush_limit=0,max_retry_times=0,timeout=200,retry_interval=10"
    u = start(plugin, tmp_path, ["--logger", arg])
    try:
        u.wait_ready()
        u.get("/lost")
        assert wait_until(lambda: "try to connect to the log server failed after 0 retries" in u.output())
        rc = u.stop()
    finally:
        u.kill()
    out = u.output()
    assert rc == 0, out
    assert f'[rlog] logger "{arg}": ' in out
    # At shutdown the plugin says how much it still held instead of dropping it quietly.
    m = re.search(r"held (\d+) messages \(\d+ bytes\) at shutdown", out)
    assert m and int(m.group(1)) > 0, out


def test_graceful_reload_delivers_before_exec_and_logs_after(plugin, tmp_path):
    with TcpCollector() as app_col, TcpCollector() as req_col:
        # Default flush_limit: before the reload the lines are still buffered in rlog, so only
        # the plugin's master_cleanup (drain, deliver, free before exec) can bring them over.
        u = start(
            plugin,
            tmp_path,
            [
                "--processes", "1",
                "--logger", f"rlog:host=127.0.0.1,port={app_col.port}",
                "--req-logger", f"rlog:host=127.0.0.1,port={req_col.port}",
            ],
        )
        try:
            u.wait_ready()
            for i in range(5):
                u.get(f"/before/{i}")
            u.get("/sync")
            u.proc.send_signal(signal.SIGHUP)  # graceful reload: master_cleanup, then exec
            assert wait_until(lambda: request_lines(req_col.data()).count(b"/ready") >= 1, timeout=30)
            assert wait_until(lambda: b"app-line /before/4" in app_col.data(), timeout=30), u.output()

            def served_after_reload():
                try:
                    return u.get("/after/0") == b"ok /after/0"
                except OSError:
                    return False

            assert wait_until(served_after_reload, timeout=30, step=0.2), u.output()
            for i in range(1, 5):
                u.get(f"/after/{i}")
            u.get("/sync")
            assert u.proc.poll() is None  # the same master pid, exec'd in place
            rc = u.stop()
        finally:
            u.kill()
        app, req = app_col.data(), req_col.data()
    assert rc == 0, u.output()
    want_before = [f"/before/{i}".encode() for i in range(5)]
    want_after = [f"/after/{i}".encode() for i in range(5)]
    got_req = request_lines(req)
    got_app = app_lines(app)
    for got in (got_req, got_app):
        # Each request logged exactly once; /after/0 may have been retried while workers came up.
        assert [p for p in got if p.startswith(b"/before/")] == want_before
        assert sorted(set(p for p in got if p.startswith(b"/after/"))) == want_after
        assert len([p for p in got if p.startswith(b"/after/") and p != b"/after/0"]) == 4
    assert app.count(b"goodbye to uWSGI.") == 1
