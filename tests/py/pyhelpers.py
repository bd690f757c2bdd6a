"""Helpers for the Python-binding and uWSGI-plugin tests: paths, and small threaded loopback
collectors (TCP and UDP on 127.0.0.1, port chosen by the kernel) that record what they receive.

Importing this module puts ``bindings/python`` first on ``sys.path`` and points ``RLOG_LIB`` at
``target/release/librlog.so`` (unless ``RLOG_LIB`` is already set), so ``import rlog`` loads
the library built in this tree.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Callable, List

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PYBIND = os.path.join(ROOT, "bindings", "python")
LIB = os.path.join(ROOT, "target", "release", "librlog.so")
HEADER = os.path.join(ROOT, "include", "rlog.h")

if PYBIND not in sys.path:
    sys.path.insert(0, PYBIND)
os.environ.setdefault("RLOG_LIB", LIB)


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> bool:
    """Polls ``pred`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class TcpCollector:
    """Accepts any number of connections on 127.0.0.1 (or on the unix stream socket ``path``
    when given) and keeps every byte received.

    ``data()`` is everything so far (connections in the order they were accepted),
    ``lines()`` splits it on ``\\n``. A context manager: closes the listener and all
    connections on exit.
    """

    def __init__(self, path: str = None):
        self.path = path
        if path is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
            self.port = None
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self._chunks: List[bytearray] = []
        self._conns: List[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = False
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(0.2)
            buf = bytearray()
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
                self._chunks.append(buf)
            threading.Thread(target=self._read, args=(conn, buf), daemon=True).start()

    def _read(self, conn: socket.socket, buf: bytearray) -> None:
        while not self._stop:
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            with self._lock:
                buf.extend(data)

    def data(self) -> bytes:
        with self._lock:
            return b"".join(bytes(c) for c in self._chunks)

    def lines(self) -> List[bytes]:
        data = self.data()
        out = data.split(b"\n")
        if out and out[-1] == b"":
            out.pop()
        return out

    def wait_lines(self, n: int, timeout: float = 10.0) -> List[bytes]:
        """Waits until at least ``n`` complete lines arrived; returns all lines."""
        wait_until(lambda: self.data().count(b"\n") >= n, timeout)
        return self.lines()

    def wait_bytes(self, n: int, timeout: float = 10.0) -> bytes:
        wait_until(lambda: len(self.data()) >= n, timeout)
        return self.data()

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass

    def __enter__(self) -> "TcpCollector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class UdpCollector:
    """Receives datagrams on 127.0.0.1 and keeps each one (``datagrams()``)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._grams: List[bytes] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._grams.append(data)

    def datagrams(self) -> List[bytes]:
        with self._lock:
            return list(self._grams)

    def wait_datagrams(self, n: int, timeout: float = 10.0) -> List[bytes]:
        wait_until(lambda: len(self.datagrams()) >= n, timeout)
        return self.datagrams()

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "UdpCollector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def closed_port() -> int:
    """A loopback TCP port with nothing listening (bound then released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
