#!/usr/bin/env python3
"""Side-by-side encoder throughput: real uWSGI 2.0 vs rlog, same chain, same machine.

For each chain (`json {...}` + `gzip`, and `msgpack map:4|...`):
- uWSGI: a WSGI app writes N lines to its log pipe (one write each); the master encodes them and
  sends them with `--logger socket:127.0.0.1:PORT`. Timed from the request until the collector
  has decoded all N lines. (uWSGI encodes once per pipe read, so under load one record may carry
  several lines; they are counted as lines.)
- rlog: `rlog_logger_log` N times then `rlog_logger_flush`, through librlog.so (ctypes), with the
  same `logger`/`log-encoder` lines; timed until the collector has decoded all N lines.

The collector runs in this process on 127.0.0.1. Run `cargo build --release` first.
Usage: python3 bench/uwsgi_encoders.py [N]   (needs uwsgi-core, uwsgi-plugin-python3, pip msgpack)
"""

import gzip
import os
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "py"))
from uwsgi_helpers import Rlog, Uwsgi, load_rlog, quote  # noqa: E402

import msgpack  # noqa: E402

LINE = (b"[pid: 4242|app: 0|req: 17/42] 127.0.0.1 () {34 vars in 512 bytes} GET /index.html "
        b"=> generated 1234 bytes in 2 msecs (HTTP/1.1 200)\n")
JSON = 'json {"unix":${unix},"msg":"${msg}","date":"${strftime:%d/%m/%Y %H:%M:%S}"}'
MSGPACK = "msgpack map:4|str:message|msg|str:hostname|str:web-1|str:version|str:2.0|str:unix|unix"
CHAINS = {"json+gzip": [JSON, "gzip"], "msgpack map:4": [MSGPACK]}
MARK = b"GET /index.html"

def count_lines(name, d):
    if name == "json+gzip":
        return gzip.decompress(d).count(MARK)
    total = 0
    up = msgpack.Unpacker(raw=True, strict_map_key=False)
    up.feed(d)
    for obj in up:
        if isinstance(obj, dict):
            total += obj.get(b"message", b"").count(MARK)
    return total


class Counter:
    def __init__(self, name):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE (root)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.raw = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                self.raw.append((time.perf_counter(), self.sock.recv(70000)))
            except socket.timeout:
                pass

    def wait(self, n, t0, timeout=60):
        """Seconds from t0 until n lines arrived (decoded afterwards), or None."""
        deadline = time.time() + timeout
        quiet_since = time.time()
        last = 0
        while time.time() < deadline:
            time.sleep(0.05)
            if len(self.raw) != last:
                last, quiet_since = len(self.raw), time.time()
            elif time.time() - quiet_since > 1.0 and last:
                break
        self.stop = True
        self.t.join()
        got = 0
        for ts, d in self.raw:
            got += count_lines(self.name, d)
            if got >= n:
                return ts - t0, got, len(self.raw)
        return None, got, len(self.raw)


def bench_uwsgi(name, chain, n):
    c = Counter(name)
    args = ["--logger", f"socket:127.0.0.1:{c.port}"]
    for e in chain:
        args += ["--log-encoder", e]
    u = Uwsgi(args, os.environ.get("TZ", "UTC"))
    try:
        time.sleep(0.5)
        c.raw.clear()  # uWSGI's start-up lines
        t0 = time.perf_counter()
        u.emit(LINE, n)
        return c.wait(n, t0)
    finally:
        u.stop()


def bench_rlog(lib, name, chain, n):
    c = Counter(name)
    cfg = [f"logger = socket:127.0.0.1:{c.port}", "flush_limit = 65536", "drop_limit = 268435456"]
    cfg += ["log-encoder = " + quote(e) for e in chain]
    r = Rlog(lib, "\n".join(cfg))
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            r.log(LINE)
        t_calls = time.perf_counter() - t0
        r.flush()
        res = c.wait(n, t0)
        s = r.stats()
        assert s.logged == s.sent + s.lost + s.spooled + s.buffered
        return res + (t_calls,)
    finally:
        r.close()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    lib = load_rlog()
    print(f"N = {n} lines of {len(LINE)} bytes; collector: UDP on 127.0.0.1 in this process")
    for name, chain in CHAINS.items():
        secs, got, dgrams = bench_uwsgi(name, chain, n)
        ul = f"{n / secs:,.0f} lines/s" if secs else f"incomplete ({got}/{n} lines)"
        print(f"{name:14s} uWSGI {uwsgi_version()}: {ul}  ({dgrams} datagrams)")
        secs, got, dgrams, calls = bench_rlog(lib, name, chain, n)
        rl = f"{n / secs:,.0f} lines/s" if secs else f"incomplete ({got}/{n} lines)"
        print(f"{name:14s} rlog:            {rl}  ({dgrams} datagrams; the {n} log calls took "
              f"{calls * 1e3:.1f} ms incl. ctypes overhead)")


def uwsgi_version():
    import subprocess
    return subprocess.run(["uwsgi", "--version"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
