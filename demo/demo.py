#!/usr/bin/env python3
"""make demo: start a collector on 127.0.0.1, send logs to it through librlog, print what arrived.

Senders: the C example (bindings/c/example.c). Each sender's lines are printed as the collector
received them, followed by the sender's own counters.
"""
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Collector:
    """A TCP collector on 127.0.0.1 that records every byte it receives."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.data = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def take(self, expect_lines, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if self.data.count(b"\n") >= expect_lines:
                    break
            time.sleep(0.02)
        with self.lock:
            out = bytes(self.data)
            self.data.clear()
        return out


def main():
    col = Collector()
    print(f"collector listening on 127.0.0.1:{col.port}")
    config = f"host = 127.0.0.1\\nport = {col.port}\\nflush_limit = 4096"
    n = 5
    res = subprocess.run([os.path.join(ROOT, "build", "example"), config, str(n)],
                         capture_output=True, text=True, timeout=60)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    got = col.take(n)
    lines = got.count(b"\n")
    print(f"--- the collector received {lines} lines from C:")
    sys.stdout.write(got.decode("utf-8", "replace"))
    if res.returncode != 0 or got.count(b"\n") != n:
        print("demo FAILED", file=sys.stderr)
        return 1
    print("demo OK: every line sent through librlog arrived")
    return 0


if __name__ == "__main__":
    sys.exit(main())
