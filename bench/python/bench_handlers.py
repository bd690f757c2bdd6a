#!/usr/bin/env python3
"""Compares rlog.RlogHandler with the standard library's network handlers over loopback.

For each handler: N records of SIZE bytes through a `logging.Logger` in one thread; reports
the caller's cost per record (the time spent in `logger.info`), the time until the collector
had everything, and how many records the collector received. The collector runs in its own
process so it does not compete for this process's GIL.

    cargo build --release
    python3 bench/python/bench_handlers.py [-n 100000] [--size 100]

Handlers: RlogHandler over TCP and UDP (default flush_limit 4096, so lines are batched),
logging.handlers.SocketHandler (TCP, one pickled frame per record, written in the caller's
thread), logging.handlers.SysLogHandler (UDP, one datagram per record, in the caller's
thread), and a StreamHandler on /dev/null as the floor of the logging module itself.
"""

import argparse
import logging
import logging.handlers
import multiprocessing as mp
import os
import select
import socket
import struct
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
os.environ.setdefault("RLOG_LIB", os.path.join(ROOT, "target", "release", "librlog.so"))

import rlog  # noqa: E402


def collector(kind, conn):
    """Counts records: 'lines' (TCP, \\n-terminated), 'frames' (TCP, SocketHandler's 4-byte
    length prefix), 'dgrams' (UDP). Sends its port, then the count whenever asked."""
    if kind == "dgrams":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind(("127.0.0.1", 0))
    else:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
    conn.send(s.getsockname()[1])
    count = 0
    peers = []
    pending = b""
    while True:
        ready, _, _ = select.select([s, conn, *peers], [], [], 0.5)
        for r in ready:
            if r is conn:
                if conn.recv() == "stop":
                    return
                conn.send(count)
            elif r is s and kind == "dgrams":
                s.recv(65536)
                count += 1
            elif r is s:
                peers.append(s.accept()[0])
            else:
                data = r.recv(1 << 20)
                if not data:
                    peers.remove(r)
                elif kind == "lines":
                    count += data.count(b"\n")
                else:
                    pending += data
                    while len(pending) >= 4:
                        (n,) = struct.unpack(">L", pending[:4])
                        if len(pending) < 4 + n:
                            break
                        pending = pending[4 + n:]
                        count += 1


def run(name, kind, make_handler, n, size):
    parent, child = mp.Pipe()
    proc = None
    if kind:
        proc = mp.Process(target=collector, args=(kind, child), daemon=True)
        proc.start()
        port = parent.recv()
    else:
        port = None
    handler = make_handler(port)
    handler.setFormatter(logging.Formatter("%(message)s"))
    lg = logging.getLogger(f"bench.{name}")
    lg.propagate = False
    lg.handlers = [handler]
    lg.setLevel(logging.INFO)
    msg = "x" * size
    t0 = time.perf_counter()
    for _ in range(n):
        lg.info(msg)
    t1 = time.perf_counter()
    handler.flush()
    got = n
    if proc:
        deadline = time.time() + 30
        while True:
            parent.send("count")
            got = parent.recv()
            if got >= n or time.time() > deadline:
                break
            time.sleep(0.02)
            # UDP may lose: stop waiting once the count stops moving.
            if kind == "dgrams":
                parent.send("count")
                again = parent.recv()
                if again == got:
                    time.sleep(0.2)
                    parent.send("count")
                    if parent.recv() == got:
                        break
    t2 = time.perf_counter()
    handler.close()
    if proc:
        parent.send("stop")
        proc.join(5)
    print(f"{name:28s} {1e6 * (t1 - t0) / n:8.2f} us/record (caller)  {t2 - t0:7.3f} s to collector  "
          f"received {got}/{n}")


def run_direct(n, size):
    """rlog.Logger.log called directly: the binding's own cost without the logging module."""
    parent, child = mp.Pipe()
    proc = mp.Process(target=collector, args=("lines", child), daemon=True)
    proc.start()
    port = parent.recv()
    data = b"x" * size + b"\n"
    with rlog.Logger({"host": "127.0.0.1", "port": port, "drop_limit": 64 << 20}) as lg:
        log = lg.log
        t0 = time.perf_counter()
        for _ in range(n):
            log(data)
        t1 = time.perf_counter()
        lg.flush()
        st = lg.stats()
    parent.send("count")
    got = parent.recv()
    parent.send("stop")
    proc.join(5)
    print(f"{'Logger.log (no logging)':28s} {1e6 * (t1 - t0) / n:8.2f} us/record (caller)  "
          f"sent {st.sent}/{n}, dropped {st.dropped}, collector counted {got} so far")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("--size", type=int, default=100)
    a = ap.parse_args()
    print(f"rlog {rlog.version()}, Python {sys.version.split()[0]}, {a.n} records of {a.size} bytes")
    run("RlogHandler tcp", "lines",
        lambda p: rlog.RlogHandler({"host": "127.0.0.1", "port": p, "drop_limit": 64 << 20}), a.n, a.size)
    run("RlogHandler udp", "dgrams",
        lambda p: rlog.RlogHandler({"host": "127.0.0.1", "port": p, "sock_type": "udp",
                                    "drop_limit": 64 << 20}), a.n, a.size)
    run("SocketHandler (tcp)", "frames", lambda p: logging.handlers.SocketHandler("127.0.0.1", p), a.n, a.size)
    run("SysLogHandler (udp)", "dgrams", lambda p: logging.handlers.SysLogHandler(("127.0.0.1", p)), a.n, a.size)
    run_direct(a.n, a.size)
    run("StreamHandler /dev/null", None, lambda p: logging.StreamHandler(open(os.devnull, "w")), a.n, a.size)


if __name__ == "__main__":
    main()
