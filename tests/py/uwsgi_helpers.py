"""Helpers for the uWSGI conformance tests: a real uWSGI (Debian's uwsgi-core with the python3,
logsocket and msgpack plugins) on loopback, UDP collectors, and rlog through its C ABI (ctypes).

Everything binds 127.0.0.1 on ports the kernel picks; every process started is killed at the end.
"""

import base64
import ctypes
import gzip
import http.client
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "target" / "release" / "librlog.so"

APP = r'''
import os, base64, select
def write_all(data):
    # uWSGI's log pipe is non-blocking: wait for room instead of losing the line.
    while True:
        try:
            os.write(2, data)
            return
        except BlockingIOError:
            select.select([], [2], [], 1.0)
def application(env, start_response):
    p = env.get("PATH_INFO", "/")[1:]
    data = base64.urlsafe_b64decode(p.encode() + b"=" * (-len(p) % 4))
    for _ in range(int(env.get("QUERY_STRING") or 1) if data else 0):
        write_all(data)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


def uwsgi_available():
    return shutil.which("uwsgi") is not None and Path("/usr/lib/uwsgi/plugins/python3_plugin.so").exists()


class Collector:
    """A UDP socket on 127.0.0.1 (or, with `unix=True`, a unix datagram socket in a temp dir)
    that keeps every datagram it receives. `address` is what `socket:` takes."""

    def __init__(self, unix=False):
        self.dir = None
        if unix:
            self.dir = tempfile.mkdtemp(prefix="rlog-ud-")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            path = os.path.join(self.dir, "log.sock")
            self.sock.bind(path)
            self.address = path
            self.port = None
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
            self.address = f"127.0.0.1:{self.port}"
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def recv(self, n, timeout=5.0):
        """Exactly `n` datagrams (fails the test if they do not come within `timeout`)."""
        out = []
        deadline = time.time() + timeout
        while len(out) < n:
            left = deadline - time.time()
            assert left > 0, f"got {len(out)} of {n} datagrams on port {self.port}: {out!r}"
            self.sock.settimeout(left)
            try:
                out.append(self.sock.recv(70000))
            except socket.timeout:
                pass
        return out

    def drain(self, quiet=0.3):
        """Reads until nothing came for `quiet` seconds; returns what came."""
        out = []
        self.sock.settimeout(quiet)
        while True:
            try:
                out.append(self.sock.recv(70000))
            except socket.timeout:
                return out

    def close(self):
        self.sock.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Uwsgi:
    """A real uWSGI whose WSGI app writes each request's (base64url) path bytes to its log pipe.
    The log options stay on the command line: an ini file would change `%` and trailing spaces."""

    def __init__(self, log_args, tz):
        self.dir = tempfile.mkdtemp(prefix="rlog-uwsgi-")
        app = Path(self.dir) / "app.py"
        app.write_text(APP)
        self.http_port = None
        self.proc = None
        for _ in range(5):
            port = free_port()
            cmd = [
                "uwsgi", "--plugin", "python3", "--plugin", "logsocket", "--plugin", "msgpack",
                "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                "--disable-logging", "--processes", "1", "--die-on-term",
            ] + log_args
            env = {"PATH": "/usr/bin:/bin", "TZ": tz, "LANG": "C"}
            self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT)
            if self._wait_ready(port):
                self.http_port = port
                return
            self.stop()
        raise RuntimeError("uWSGI did not start: " + self.output())

    def _wait_ready(self, port, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                self._get(port, "/")
                return True
            except OSError:
                time.sleep(0.05)
        return False

    @staticmethod
    def _get(port, path):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
        finally:
            c.close()

    def emit(self, data: bytes, times: int = 1):
        """Makes the app write `data` to its stderr (the log pipe) in one write, `times` times."""
        path = "/" + base64.urlsafe_b64encode(data).decode().rstrip("=")
        self._get(self.http_port, path + (f"?{times}" if times != 1 else ""))

    def output(self):
        if self.proc and self.proc.stdout and self.proc.poll() is not None:
            return self.proc.stdout.read().decode(errors="replace")[-3000:]
        return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Stats(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "logged", "logged_bytes", "dropped", "dropped_bytes", "sent", "sent_bytes", "lost",
        "lost_bytes", "spooled", "spooled_bytes", "buffered", "buffered_bytes", "retries", "connects",
        "adopted", "adopted_bytes", "rejected", "rejected_bytes")]


class SinkStats(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "sent", "sent_bytes", "lost", "lost_bytes", "dropped", "dropped_bytes", "encode_errors",
        "pending", "pending_bytes", "retries", "connects")]


def load_rlog():
    lib = ctypes.CDLL(str(LIB))
    lib.rlog_logger_new.restype = ctypes.c_void_p
    lib.rlog_logger_new.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rlog_logger_log.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rlog_logger_flush.argtypes = [ctypes.c_void_p]
    lib.rlog_logger_flush.restype = ctypes.c_int64
    lib.rlog_logger_stats.argtypes = [ctypes.c_void_p, ctypes.POINTER(Stats), ctypes.c_size_t]
    lib.rlog_logger_last_error.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rlog_logger_last_error.restype = ctypes.c_size_t
    lib.rlog_logger_free.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rlog_logger_sink_count.argtypes = [ctypes.c_void_p]
    lib.rlog_logger_sink_stats.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(SinkStats),
                                           ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    return lib


class Rlog:
    """One rlog logger handle (rlog_logger_new) from config text."""

    def __init__(self, lib, config: str):
        self.lib = lib
        err = ctypes.create_string_buffer(1024)
        self.h = lib.rlog_logger_new(config.encode(), err, len(err))
        if not self.h:
            raise ValueError(err.value.decode())

    def log(self, msg: bytes):
        return self.lib.rlog_logger_log(self.h, msg, len(msg))

    def flush(self):
        return self.lib.rlog_logger_flush(self.h)

    def stats(self):
        s = Stats()
        assert self.lib.rlog_logger_stats(self.h, ctypes.byref(s), ctypes.sizeof(s)) == 0
        return s

    def sinks(self):
        """[(label, SinkStats)] for every logger of the handle."""
        out = []
        for i in range(self.lib.rlog_logger_sink_count(self.h)):
            st, name = SinkStats(), ctypes.create_string_buffer(256)
            assert self.lib.rlog_logger_sink_stats(self.h, i, ctypes.byref(st), ctypes.sizeof(st), name, 256) == 0
            out.append((name.value.decode(), st))
        return out

    def last_error(self):
        buf = ctypes.create_string_buffer(2048)
        self.lib.rlog_logger_last_error(self.h, buf, len(buf))
        return buf.value.decode()

    def close(self, timeout_ms=2000):
        if self.h:
            r = self.lib.rlog_logger_free(self.h, timeout_ms)
            self.h = None
            return r


def quote(value: str) -> str:
    """A config value in double quotes (keeps spaces; `\\` and `"` escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def assert_identity(s: Stats):
    assert s.logged == s.sent + s.lost + s.spooled + s.buffered, (
        s.logged, s.sent, s.lost, s.spooled, s.buffered)


# --- comparing encoded records under the SPEC's rules -----------------------------------------

def split_encoder(line: str):
    head, _, arg = line.partition(" ")
    name, _, logger = head.partition(":")
    return name, (logger or None), arg


def chain_for(encoders, logger):
    """uWSGI's rule: encoders without a logger run for every logger; NAME:LOGGER only for it."""
    out = []
    for e in encoders:
        name, only, arg = split_encoder(e)
        if only is None or (logger is not None and only == logger):
            out.append((name, arg))
    return out


def strftime_formats(chain):
    fmts = []
    for name, arg in chain:
        if name in ("format", "json"):
            fmts += re.findall(r"\$\{strftime:([^}]*)\}", arg)
        if name == "msgpack":
            fmts += [i[len("strftime:"):] for i in arg.split("|") if i.startswith("strftime:")]
    return fmts


class Window:
    """The time span of the calls that produced a record (with a second of slack each side)."""

    def __init__(self, t0, t1):
        self.t0, self.t1 = t0, t1

    def unix(self, v):
        return int(self.t0) - 1 <= v <= int(self.t1) + 1

    def millis(self, v):
        return int(self.t0 * 1000) - 1000 <= v <= int(self.t1 * 1000) + 1000

    def micros(self, v):
        return int(self.t0 * 1e6) - 1_000_000 <= v <= int(self.t1 * 1e6) + 1_000_000

    def strftimes(self, fmt):
        return {time.strftime(fmt, time.localtime(s)) for s in range(int(self.t0) - 1, int(self.t1) + 2)}


def _norm_text(data: bytes, chain, w: Window):
    for fmt in strftime_formats(chain):
        for s in sorted(w.strftimes(fmt), key=len, reverse=True):
            if s:
                data = data.replace(s.encode(), b"<STRFTIME>")

    def num(m):
        v = int(m.group(0))
        n = len(m.group(0))
        if n == 16 and w.micros(v):
            return b"<MICROS>"
        if n == 13 and w.millis(v):
            return b"<MILLIS>"
        if n == 10 and w.unix(v):
            return b"<UNIX>"
        return m.group(0)

    return re.sub(rb"(?<![0-9])[0-9]{10,16}(?![0-9])", num, data)


def _norm_value(v, chain, w: Window):
    fmts = strftime_formats(chain)
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        if w.micros(v):
            return "<MICROS>"
        if w.unix(v):
            return "<UNIX>"
        return v
    if isinstance(v, (bytes, str)):
        s = v.decode(errors="replace") if isinstance(v, bytes) else v
        if any(s in w.strftimes(f) for f in fmts):
            return "<STRFTIME>"
        return v
    if isinstance(v, list):
        return [_norm_value(x, chain, w) for x in v]
    if isinstance(v, dict):
        return {_norm_value(k, chain, w): _norm_value(x, chain, w) for k, x in v.items()}
    return v


def canon(record: bytes, chain, w: Window):
    """What must be equal between uWSGI's and rlog's record: compressed layers are peeled (their
    header fields kept), msgpack decoded, time values checked against the window and replaced by
    placeholders."""
    import msgpack  # pip install msgpack

    layers = list(chain)
    headers = []
    data = record

    def opaque_below():
        return any(n in ("gzip", "compress", "msgpack") for n, _ in layers)

    while layers and opaque_below():
        name, arg = layers[-1]
        if name == "prefix":
            assert data.startswith(arg.encode()), (data, arg)
            data = data[len(arg.encode()):]
        elif name == "suffix":
            assert data.endswith(arg.encode()), (data, arg)
            data = data[: len(data) - len(arg.encode())]
        elif name == "nl":
            assert data.endswith(b"\n"), data
            data = data[:-1]
        elif name == "gzip":
            headers.append(("gzip", data[:10]))
            data = gzip.decompress(data)
        elif name == "compress":
            headers.append(("zlib", data[:2]))
            data = zlib.decompress(data)
        elif name == "msgpack":
            up = msgpack.Unpacker(raw=True, strict_map_key=False)
            up.feed(data)
            values = list(up)
            return headers, ("msgpack", _norm_value(values, chain, w))
        else:
            break
        layers.pop()
    return headers, ("bytes", _norm_text(data, chain, w))
