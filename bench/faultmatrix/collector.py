"""A plain stream/datagram collector run as a process of its own (so the matrix can kill -9,
SIGSTOP and restart it): every connection's bytes go to a file of their own in OUTDIR, written
as they arrive; each datagram is appended to OUTDIR/udp.

    python3 collector.py tcp|tls|unix|udp ADDR OUTDIR [--rate BYTES_PER_S] [--cert C --key K]

ADDR is a port (127.0.0.1) or a unix socket path. With --rate the collector is a slow reader:
small receive buffers, and it reads at most BYTES_PER_S per connection.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import threading
import time


def serve_conn(conn: socket.socket, path: str, rate: int) -> None:
    with open(path, "ab", buffering=0) as f:
        while True:
            try:
                data = conn.recv(512 if rate else 65536)
            except (OSError, ssl.SSLError):
                return
            if not data:
                return
            f.write(data)
            if rate:
                time.sleep(len(data) / rate)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["tcp", "tls", "unix", "udp"])
    ap.add_argument("addr")
    ap.add_argument("outdir")
    ap.add_argument("--rate", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    if a.kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("127.0.0.1", int(a.addr)))
        with open(os.path.join(a.outdir, "udp"), "ab", buffering=0) as f:
            while True:
                data = s.recv(65536)
                f.write(data + b"\n")
    if a.kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(a.addr):
            os.unlink(a.addr)
        bind = a.addr
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bind = ("127.0.0.1", int(a.addr))
    if a.rate:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind(bind)
    s.listen(128)
    ctx = None
    if a.kind == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
    n = 0
    while True:
        conn, _ = s.accept()
        n += 1
        path = os.path.join(a.outdir, f"conn-{os.getpid()}-{n}")

        def run(conn=conn, path=path):
            if ctx is not None:
                try:
                    conn.settimeout(10)
                    conn = ctx.wrap_socket(conn, server_side=True)
                    conn.settimeout(None)
                except (OSError, ssl.SSLError):
                    conn.close()
                    return
            serve_conn(conn, path, a.rate)

        threading.Thread(target=run, daemon=True).start()


if __name__ == "__main__":
    main()
