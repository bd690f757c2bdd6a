#!/usr/bin/env python3
"""make demo: rlogd on 127.0.0.1, logs sent to it through librlog from C, Python and LuaJIT in a
real nginx, then read back from rlogd's store with `rlogd cat`.

Every sender uses the acknowledged `rlogd://` transport (`sock_type = rlogd`) with its own record
type (1 = C, 2 = Python, 3 = nginx/LuaJIT, 4 = the spool step), so the store shows who sent what.
The demo fails (exit 1) unless every line each sender logged is in the store exactly once.

The spool step shows logs surviving a restart (SPEC §6): before rlogd is up, a Python process
logs with `spool = DIR` and exits; what it could not deliver waits in DIR (`rlogd spool DIR`
shows it); once rlogd is up, a second run with the same config adopts and delivers it.

The http step does Kong http-log's job: nginx's workers log a JSON line per request from
`log_by_lua` through the `http://` output to an HTTP receiver (a small Python server standing in
for a log API), which refuses the first batch with a 503: rlog resends it, with the same
`X-Rlog-Batch` id, and every line arrives once.

The last two steps ship to the engines users already run, started here on 127.0.0.1 (each is
skipped, and says so, where it is not installed): rsyslog, over RELP with an RFC 5424 header
(`log-encoder = syslog`), and ClickHouse, each line one row of a table (`log-encoder = json`).
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
RLOGD = ROOT / "target" / "release" / "rlogd"
LIB = ROOT / "target" / "release" / "librlog.so"
EXAMPLE = ROOT / "build" / "example"
sys.path.insert(0, str(ROOT / "bindings" / "python"))
sys.path.insert(0, str(ROOT / "tests" / "py"))


def start_rlogd(store: pathlib.Path, port: int = 0) -> tuple[subprocess.Popen, int, pathlib.Path]:
    err = store.parent / "rlogd.log"
    proc = subprocess.Popen([str(RLOGD), "serve", "--data", str(store), "--listen", f"rlogd://127.0.0.1:{port}"],
                            stderr=open(err, "w"), stdout=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        m = re.search(r"listening on rlogd://127\.0\.0\.1:\d+ \(127\.0\.0\.1:(\d+)\)", err.read_text())
        if m:
            return proc, int(m.group(1)), err
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    sys.exit(f"rlogd did not start:\n{err.read_text()}")


def send_from_c(port: int, n: int) -> int:
    config = f"host = 127.0.0.1\\nport = {port}\\nsock_type = rlogd\\ntype = 1"
    res = subprocess.run([str(EXAMPLE), config, str(n)], capture_output=True, text=True, timeout=60)
    print("  " + (res.stdout.strip() or res.stderr.strip()))
    return n if res.returncode == 0 else 0


def send_from_python(port: int, n: int) -> int:
    os.environ["RLOG_LIB"] = str(LIB)
    import logging
    import rlog

    handler = rlog.RlogHandler({"host": "127.0.0.1", "port": port, "sock_type": "rlogd", "type": 2})
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    log = logging.getLogger("demo.python")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for i in range(1, n + 1):
        log.info("hello from Python (ctypes), line %d of %d", i, n)
    stats = handler.logger.stats()
    handler.close()
    print(f"  Python RlogHandler: logged {stats.logged}")
    return n


def send_from_nginx(port: int, n: int, tmp: pathlib.Path) -> int:
    from nginx_helpers import Nginx, nginx_missing

    why = nginx_missing()
    if why:
        print(f"  nginx skipped: {why}")
        return -1
    init = (f'local logger = require "resty.rlog" '
            f'if not logger.initted() then '
            f'  local ok, err = logger.init{{ host = "127.0.0.1", port = {port}, sock_type = "rlogd", type = 3 }} '
            f'  if not ok then ngx.log(ngx.ERR, "rlog init: ", err) return end '
            f'end '
            f'local bytes, err = logger.log("hello from LuaJIT in nginx, request " .. ngx.var.arg_i '
            f'  .. " of {n}, " .. ngx.var.request_method .. " " .. ngx.var.uri) '
            f'if err then ngx.log(ngx.ERR, "rlog: ", err) end')
    block = Nginx.server("location /hello { content_by_lua_block { ngx.say(\"hi\") } "
                         f"log_by_lua_block {{ {init} }} }}")
    ng = Nginx(tmp / "nginx", str(LIB), block, workers=2)
    ng.start()
    try:
        for i in range(1, n + 1):
            urllib.request.urlopen(f"http://127.0.0.1:{ng.port}/hello?i={i}", timeout=10).read()
        ng.quit()  # the workers deliver what they hold as they exit
    finally:
        ng.stop()
    print(f"  nginx: {n} requests served by 2 workers, logged from log_by_lua_block")
    return n


def send_over_http(n: int, tmp: pathlib.Path) -> bool:
    """nginx logs `n` requests as JSON lines to an HTTP receiver that answers 503 once."""
    import gzip
    import http.server
    import threading

    from nginx_helpers import Nginx, nginx_missing

    why = nginx_missing()
    if why:
        print(f"  http step skipped: {why}")
        return True
    got: dict = {"lines": [], "posts": []}

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            first = not got["posts"]
            got["posts"].append((503 if first else 204, self.headers.get("X-Rlog-Batch")))
            if first:
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            got["lines"] += [l for l in body.decode().splitlines() if l]
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/ingest"
    init = (f'local logger = require "resty.rlog" '
            f'if not logger.initted() then '
            f'  local ok, err = logger.init{{ logger = "{url}", compression = "gzip", '
            f'    max_batch_size = 1000, retry_interval = 50 }} '
            f'  if not ok then ngx.log(ngx.ERR, "rlog init: ", err) return end '
            f'end '
            f'local bytes, err = logger.log(string.format('
            f'  \'{{"request":%d,"method":"%s","uri":"%s","status":%d}}\', '
            f'  tonumber(ngx.var.arg_i), ngx.var.request_method, ngx.var.uri, ngx.status)) '
            f'if err then ngx.log(ngx.ERR, "rlog: ", err) end')
    block = Nginx.server("location /hello { content_by_lua_block { ngx.say(\"hi\") } "
                         f"log_by_lua_block {{ {init} }} }}")
    ng = Nginx(tmp / "nginx-http", str(LIB), block, workers=2)
    ng.start()
    try:
        for i in range(1, n + 1):
            urllib.request.urlopen(f"http://127.0.0.1:{ng.port}/hello?i={i}", timeout=10).read()
        ng.quit()  # the workers deliver what they hold as they exit
    finally:
        ng.stop()
    deadline = time.time() + 10
    while len(got["lines"]) < n and time.time() < deadline:
        time.sleep(0.05)
    srv.shutdown()
    ids = sorted({int(json.loads(l)["request"]) for l in got["lines"]})
    refused = [b for s, b in got["posts"] if s == 503]
    resent = [b for s, b in got["posts"] if s == 204 and b in refused]
    print(f"  nginx: {n} requests served by 2 workers, each logged as a JSON line to {url}")
    print(f"  receiver: {len(got['posts'])} POSTs; the first answered 503 (X-Rlog-Batch {refused[0] if refused else '-'}), "
          f"resent with the same id: {'yes' if resent else 'no'}")
    for line in got["lines"][:3]:
        print(f"    {line}")
    ok = len(got["lines"]) == n and ids == list(range(1, n + 1)) and bool(resent)
    print(f"http: logged {n}, received {len(got['lines'])} ({len(ids)} distinct): {'ok' if ok else 'FAILED'}")
    return ok


def send_to_rsyslog(n: int) -> bool:
    """Python -> librlog -> relp:// -> rsyslogd (imrelp) -> a file, one line per message."""
    import peers
    import rlog

    if not peers.have_rsyslog_relp():
        print("  rsyslog step skipped: rsyslogd with imrelp is not installed (.ci/deps installs it)")
        return True
    rs = peers.Rsyslog(tls=False, template="%app-name%[%procid%]: %msg%\\n")
    try:
        lg = rlog.Logger({"logger": f"relp://127.0.0.1:{rs.port}", "log_encoder": "syslog app=demo"})
        for i in range(1, n + 1):
            lg.log(f"id={i} hello rsyslog over RELP, line {i} of {n}")
        delivered = lg.close(5000)
        ids = rs.wait_ids(n, deadline=30)
        print(f"  Python: logger = relp://127.0.0.1:{rs.port}, log-encoder = syslog; rsyslog wrote:")
        for line in rs.lines():
            print(f"    {line}")
    finally:
        rs.stop()
    ok = delivered and sorted(ids) == list(range(1, n + 1))
    print(f"rsyslog: logged {n}, written {len(ids)}: {'ok' if ok else 'FAILED'}")
    return ok


def send_to_clickhouse(n: int) -> bool:
    """Python -> librlog -> clickhouse:// -> a ClickHouse table, one row per message."""
    import peers
    import rlog

    if not peers.have_clickhouse():
        print("  ClickHouse step skipped: clickhouse-server is not installed (.ci/deps installs it)")
        return True
    ch = peers.ClickHouse()
    try:
        ch.query("CREATE DATABASE logs")
        ch.query("CREATE TABLE logs.demo (ts_us UInt64, level String, msg String) "
                 "ENGINE = MergeTree ORDER BY ts_us")
        lg = rlog.Logger({"logger": f"clickhouse://127.0.0.1:{ch.http}/logs.demo",
                          "log_encoder": 'json {"ts_us":${micros},"level":"info","msg":"${msg}"}'})
        for i in range(1, n + 1):
            lg.log(f"hello ClickHouse, row {i} of {n}")
        delivered = lg.close(10000)
        rows = ch.query("SELECT ts_us, level, msg FROM logs.demo ORDER BY ts_us FORMAT TSV").splitlines()
        print(f"  Python: logger = clickhouse://127.0.0.1:{ch.http}/logs.demo, log-encoder = json; "
              f"SELECT from logs.demo:")
        for row in rows:
            print(f"    {row}")
    finally:
        ch.stop()
    ok = delivered and len(rows) == n
    print(f"ClickHouse: logged {n}, stored {len(rows)}: {'ok' if ok else 'FAILED'}")
    return ok


# One run of the spool step, in a process of its own. Run 1 logs `n` lines while nothing listens:
# the flush fails, and what could not be sent goes to the spool. Run 2 logs nothing: it adopts
# what run 1 left and delivers it. Each prints its counters as JSON, then closes and exits.
SPOOL_RUN = r"""
import json, sys, time
import rlog
port, spool, run, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lg = rlog.Logger({"host": "127.0.0.1", "port": port, "sock_type": "rlogd", "type": 4,
                  "spool": spool, "max_retry_times": 0, "timeout": 300})
for i in range(1, n + 1):
    lg.log(f"kept in the spool while rlogd was down, line {i} of {n}")
if run == 1:
    try:
        lg.flush()
    except rlog.RlogError:
        pass  # expected: nothing listens yet
deadline = time.time() + 20
while time.time() < deadline:
    s = lg.stats()
    if s.spooled == n if run == 1 else (s.adopted > 0 and s.sent == s.adopted):
        break
    time.sleep(0.05)
s = lg.stats()
print(json.dumps({k: getattr(s, k) for k in ("logged", "adopted", "sent", "lost", "spooled", "buffered")}))
lg.close()
"""


def spool_run(port: int, spool: pathlib.Path, run: int, n: int) -> dict:
    env = dict(os.environ, RLOG_LIB=str(LIB),
               PYTHONPATH=os.pathsep.join([str(ROOT / "bindings" / "python"), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-c", SPOOL_RUN, str(port), str(spool), str(run), str(n)],
                         capture_output=True, text=True, timeout=60, env=env)
    if res.returncode != 0:
        print(f"  spool run {run} failed: {res.stderr.strip()}")
        return {}
    return json.loads(res.stdout.strip().splitlines()[-1])


def spool_before_rlogd(port: int, spool: pathlib.Path, n: int) -> int:
    """Run 1, with nothing listening on `port`: returns how many lines it left in the spool."""
    s = spool_run(port, spool, 1, n)
    print(f"  run 1 (Python, rlogd down): logged {s.get('logged')}, sent {s.get('sent')}, "
          f"left in the spool {s.get('spooled')}; exited")
    inspect = subprocess.run([str(RLOGD), "spool", str(spool)], capture_output=True, text=True, timeout=30)
    for line in inspect.stdout.splitlines():
        if "records" in line or "dead" in line:
            print(f"    rlogd spool: {line.strip()}")
    return s.get("spooled", 0) if s.get("logged") == n else 0


def spool_after_rlogd(port: int, spool: pathlib.Path) -> int:
    """Run 2, with rlogd up: returns how many records it adopted and delivered."""
    s = spool_run(port, spool, 2, 0)
    print(f"  run 2 (same config, rlogd up): adopted {s.get('adopted')}, sent {s.get('sent')}, "
          f"lost {s.get('lost')}, left in the spool {s.get('spooled')}")
    return s.get("adopted", 0) if s.get("sent") == s.get("adopted") else -1


def main() -> int:
    if not (RLOGD.exists() and LIB.exists() and EXAMPLE.exists()):
        sys.exit("run `make demo` (it builds librlog, rlogd and the C example first)")
    with tempfile.TemporaryDirectory(prefix="rlog-demo-") as d:
        tmp = pathlib.Path(d)
        store = tmp / "store"
        spool = tmp / "spool"
        # The port rlogd will listen on, held (bound, not listening) so that nothing answers
        # there before it does.
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        spool_port = held.getsockname()[1]
        print(f"spool: logging to rlogd://127.0.0.1:{spool_port} before rlogd is up, with spool = {spool}")
        spooled = spool_before_rlogd(spool_port, spool, 5)
        held.close()
        proc, port, _ = start_rlogd(store, spool_port)
        print(f"rlogd listening on rlogd://127.0.0.1:{port}, storing in {store}")
        expected = {}
        try:
            print("sending:")
            expected[1] = send_from_c(port, 5)
            expected[2] = send_from_python(port, 5)
            sent_nginx = send_from_nginx(port, 5, tmp)
            if sent_nginx >= 0:
                expected[3] = sent_nginx
            print("spool: the next process with the same config, now that rlogd is up:")
            adopted = spool_after_rlogd(port, spool)
            expected[4] = 5
            if spooled != 5 or adopted != 5:
                print(f"spool: left 5 expected, {spooled} left; 5 adopted expected, {adopted} adopted: FAILED")
                expected[4] = -1
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        out = subprocess.run([str(RLOGD), "cat", "--data", str(store), "--json"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        records = [json.loads(line) for line in out.splitlines() if line.strip()]
        names = {1: "C", 2: "Python", 3: "nginx/LuaJIT", 4: "spool (Python, 2 runs)"}
        print(f"--- `rlogd cat` read {len(records)} records back from the store:")
        for r in records:
            print(f"  [{names.get(r.get('type'), r.get('type'))}] {r.get('msg', r)}".rstrip())
        ok = True
        for t, n in expected.items():
            got = sum(1 for r in records if r.get("type") == t)
            status = "ok" if got == n else "MISSING"
            ok &= got == n
            print(f"{names[t]}: sent {n}, stored {got}: {status}")
        verify = subprocess.run([str(RLOGD), "verify", "--data", str(store)], capture_output=True, text=True)
        print(f"rlogd verify: {'ok' if verify.returncode == 0 else 'DAMAGED'}")
        ok &= verify.returncode == 0
        print("http (Kong http-log's job): nginx -> librlog -> an HTTP receiver")
        ok &= send_over_http(20, tmp)
        print("syslog (rsyslog's job): Python -> librlog -> RELP -> rsyslogd")
        ok &= send_to_rsyslog(5)
        print("ClickHouse: Python -> librlog -> ClickHouse's HTTP interface -> a table")
        ok &= send_to_clickhouse(5)
    print("demo OK: every line sent through librlog arrived, once" if ok else "demo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
