"""A TCP (or unix-socket) proxy in front of a real peer, for the faults the peer cannot produce by
itself:

- ``slow``: reads from the logger at most ``rate`` bytes/s per connection (small buffers), so
  the logger meets a slow reader with the real peer behind it;
- ``cut``: the first ``cuts`` connections are reset (RST, both sides) once ``after`` bytes from
  the logger have been forwarded: a connection reset in the middle of a batch.

Everything else is forwarded as it comes, both ways.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from typing import Tuple, Union

Addr = Union[Tuple[str, int], str]


def _family(addr: Addr) -> int:
    return socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET


def _reset(s: socket.socket) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


class Proxy:
    def __init__(self, listen: Addr, upstream: Addr, mode: str = "pass", rate: int = 0,
                 after: int = 0, cuts: int = 0):
        self.upstream = upstream
        self.mode, self.rate, self.after, self.cuts_left = mode, rate, after, cuts
        self.cut_done = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(_family(listen), socket.SOCK_STREAM)
        if isinstance(listen, str):
            if os.path.exists(listen):
                os.unlink(listen)
        else:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if mode == "slow":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind(listen)
        self.listen = self.sock.getsockname() if not isinstance(listen, str) else listen
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.running = True
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            try:
                u = socket.socket(_family(self.upstream), socket.SOCK_STREAM)
                u.connect(self.upstream)
            except OSError:
                _reset(c)
                continue
            cut = False
            with self.lock:
                if self.mode == "cut" and self.cuts_left > 0:
                    self.cuts_left -= 1
                    cut = True
                self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u, cut, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, cut: bool, from_logger: bool) -> None:
        moved = 0
        slow = self.mode == "slow" and from_logger
        while True:
            try:
                data = src.recv(512 if slow else 65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if cut and moved + len(data) >= self.after:
                try:
                    dst.sendall(data[: self.after - moved])
                except OSError:
                    pass
                _reset(src)
                _reset(dst)
                with self.lock:
                    self.cut_done += 1
                return
            try:
                dst.sendall(data)
            except OSError:
                _reset(src)
                return
            moved += len(data)
            if slow:
                time.sleep(len(data) / self.rate)

    def close(self) -> None:
        self.running = False
        self.sock.close()
        with self.lock:
            for s in self.conns:
                _reset(s)
