#!/usr/bin/env python3
"""make demo: rlogd on 127.0.0.1, logs sent to it through librlog from C, Python and LuaJIT in a
real nginx, then read back from rlogd's store with `rlogd cat`.

Every sender uses the acknowledged `rlogd://` transport (`sock_type = rlogd`) with its own record
type (1 = C, 2 = Python, 3 = nginx/LuaJIT), so the store shows who sent what. The demo fails
(exit 1) unless every line each sender logged is in the store exactly once.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import signal
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


def start_rlogd(store: pathlib.Path) -> tuple[subprocess.Popen, int, pathlib.Path]:
    err = store.parent / "rlogd.log"
    proc = subprocess.Popen([str(RLOGD), "serve", "--data", str(store), "--listen", "rlogd://127.0.0.1:0"],
                            stderr=open(err, "w"), stdout=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        m = re.search(r"listening on rlogd://127\.0\.0\.1:0 \(127\.0\.0\.1:(\d+)\)", err.read_text())
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


def main() -> int:
    if not (RLOGD.exists() and LIB.exists() and EXAMPLE.exists()):
        sys.exit("run `make demo` (it builds librlog, rlogd and the C example first)")
    with tempfile.TemporaryDirectory(prefix="rlog-demo-") as d:
        tmp = pathlib.Path(d)
        store = tmp / "store"
        proc, port, _ = start_rlogd(store)
        print(f"rlogd listening on rlogd://127.0.0.1:{port}, storing in {store}")
        expected = {}
        try:
            print("sending:")
            expected[1] = send_from_c(port, 5)
            expected[2] = send_from_python(port, 5)
            sent_nginx = send_from_nginx(port, 5, tmp)
            if sent_nginx >= 0:
                expected[3] = sent_nginx
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        out = subprocess.run([str(RLOGD), "cat", "--data", str(store), "--json"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        records = [json.loads(line) for line in out.splitlines() if line.strip()]
        names = {1: "C", 2: "Python", 3: "nginx/LuaJIT"}
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
    print("demo OK: every line sent through librlog is in rlogd's store, once" if ok else "demo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
