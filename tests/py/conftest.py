"""Shared pytest fixtures for rlog's Python-driven tests: real loopback collectors and paths.

Fixtures (all peers listen on 127.0.0.1 or in a per-test temp dir, and are closed at test end):

- ``librlog``        path (str) of the built ``target/release/librlog.so`` (or ``$RLOG_LIB``).
                     Builds nothing; fails the test clearly when the library is missing.
- ``repo_root``      the repository root (pathlib.Path).
- ``free_port``      function ``free_port(kind="tcp"|"udp") -> int``: a port that was free a moment ago.
- ``tcp_collector``  a started TCP line collector (``Collector``).
- ``udp_collector``  a started UDP collector: one record per datagram.
- ``unix_collector`` a started unix stream-socket collector (``.path``).
- ``make_collector`` factory ``make_collector(kind, **kw) -> Collector`` for more collectors, or other
                     kinds: ``"tcp"``, ``"udp"``, ``"unix"`` (stream), ``"unix_dgram"``, ``"tls"``
                     (``make_collector("tls", cert=..., key=...)``). Each is started and closed for you.
- ``tls_cert``       ``(cert, key, ca)`` paths: a server cert for ``localhost``/``127.0.0.1`` signed by a
                     throwaway CA (``ca``), for ``make_collector("tls", cert=cert, key=key)``.

A ``Collector`` records every byte it receives, per connection (stream kinds) or per datagram:

    c.start()                 start listening (again on the same port/path after ``close()``)
    c.host, c.port, c.path    where it listens (``c.address`` is (host, port) or the path)
    c.data()                  all bytes received so far, connections in order of acceptance
    c.lines()                 complete newline-terminated lines (without the newline), per connection
                              (or datagram), in arrival order; a trailing unterminated part is left out
    c.records()               stream kinds: one bytes object per connection; datagram kinds: per datagram
    c.connections             number of connections accepted (stream kinds)
    c.wait_for(n_lines=None, n_bytes=None, n_records=None, timeout=10.0) -> bool
                              True once that many lines/bytes/records arrived, False after ``timeout``
    c.close()                 stop listening and drop live connections (the data is kept)
    c.clear()                 forget what was received
"""

from __future__ import annotations

import os
import pathlib
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _lib_path() -> pathlib.Path:
    env = os.environ.get("RLOG_LIB")
    return pathlib.Path(env) if env else REPO_ROOT / "target" / "release" / "librlog.so"


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def librlog() -> str:
    """Path of librlog.so; fails (not skips) when it has not been built."""
    path = _lib_path()
    if not path.is_file():
        pytest.fail(f"{path} not found: run `cargo build --release` (or set RLOG_LIB) first")
    return str(path)


def get_free_port(kind: str = "tcp") -> int:
    """A loopback port the OS just handed out for ``kind`` ("tcp" or "udp")."""
    stype = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, stype) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    return get_free_port


class Collector:
    """A loopback peer that records what it receives. See the module docstring for the API."""

    STREAM_KINDS = ("tcp", "unix", "tls")

    def __init__(self, kind: str = "tcp", port: int = 0, path: str | None = None,
                 cert: str | None = None, key: str | None = None):
        if kind not in ("tcp", "udp", "unix", "unix_dgram", "tls"):
            raise ValueError(f"unknown collector kind {kind!r}")
        if kind in ("unix", "unix_dgram") and not path:
            raise ValueError("unix collectors need a path")
        if kind == "tls" and not (cert and key):
            raise ValueError("a tls collector needs cert= and key=")
        self.kind = kind
        self.host = "127.0.0.1"
        self.port = port
        self.path = path
        self._ssl = None
        if kind == "tls":
            self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ssl.load_cert_chain(cert, key)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._records: list[bytearray] = []  # per connection, or per datagram
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._running = False
        self.connections = 0

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def address(self):
        return self.path if self.kind.startswith("unix") else (self.host, self.port)

    def start(self) -> "Collector":
        if self._running:
            return self
        if self.kind.startswith("unix"):
            stype = socket.SOCK_STREAM if self.kind == "unix" else socket.SOCK_DGRAM
            s = socket.socket(socket.AF_UNIX, stype)
            if os.path.exists(self.path):
                os.unlink(self.path)
            s.bind(self.path)
        else:
            stype = socket.SOCK_DGRAM if self.kind == "udp" else socket.SOCK_STREAM
            s = socket.socket(socket.AF_INET, stype)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if stype == socket.SOCK_DGRAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((self.host, self.port))
            self.port = s.getsockname()[1]
        if self.kind in self.STREAM_KINDS:
            s.listen(128)
            target = self._accept_loop
        else:
            target = self._dgram_loop
        s.settimeout(0.1)
        self._sock = s
        self._running = True
        self._spawn(target, s)
        return self

    def close(self) -> None:
        with self._lock:
            self._running = False
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []
        for c in conns:
            c.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.kind.startswith("unix") and self.path and os.path.exists(self.path):
            os.unlink(self.path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- reading results -------------------------------------------------------------------------
    def records(self) -> list[bytes]:
        with self._lock:
            return [bytes(r) for r in self._records]

    def data(self) -> bytes:
        with self._lock:
            return b"".join(self._records)

    def lines(self) -> list[bytes]:
        out: list[bytes] = []
        for rec in self.records():
            parts = rec.split(b"\n")
            out.extend(parts[:-1])  # the last part is "" or an unterminated remainder
        return out

    def clear(self) -> None:
        with self._lock:
            self._records = [bytearray() for _ in self._records] if self.kind in self.STREAM_KINDS else []

    def _counts(self):
        with self._lock:
            return (sum(r.count(b"\n") for r in self._records),
                    sum(len(r) for r in self._records),
                    len(self._records))

    def wait_for(self, n_lines: int | None = None, n_bytes: int | None = None,
                 n_records: int | None = None, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            lines, nbytes, nrec = self._counts()
            if ((n_lines is None or lines >= n_lines) and (n_bytes is None or nbytes >= n_bytes)
                    and (n_records is None or nrec >= n_records)):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._cond:
                self._cond.wait(min(left, 0.05))

    # -- internals -------------------------------------------------------------------------------
    def _spawn(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept_loop(self, s: socket.socket):
        while self._running:
            try:
                conn, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self._ssl is not None:
                conn.settimeout(5)
                try:
                    conn = self._ssl.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    conn.close()
                    continue
            conn.settimeout(0.1)
            with self._lock:
                if not self._running:
                    conn.close()
                    return
                self.connections += 1
                rec = bytearray()
                self._records.append(rec)
                self._conns.append(conn)
            self._spawn(self._read_loop, conn, rec)

    def _read_loop(self, conn: socket.socket, rec: bytearray):
        while self._running:
            try:
                chunk = conn.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except OSError:
                return
            if not chunk:
                return
            with self._cond:
                rec += chunk
                self._cond.notify_all()

    def _dgram_loop(self, s: socket.socket):
        while self._running:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._cond:
                self._records.append(bytearray(chunk))
                self._cond.notify_all()


@pytest.fixture
def make_collector(tmp_path):
    made: list[Collector] = []
    counter = iter(range(1_000_000))

    def make(kind: str = "tcp", **kw) -> Collector:
        if kind.startswith("unix") and "path" not in kw:
            # AF_UNIX paths are limited to ~108 bytes: use a short temp dir, not tmp_path.
            d = tempfile.mkdtemp(prefix="rlogc")
            kw["path"] = os.path.join(d, f"c{next(counter)}.sock")
        c = Collector(kind, **kw).start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def tcp_collector(make_collector) -> Collector:
    return make_collector("tcp")


@pytest.fixture
def udp_collector(make_collector) -> Collector:
    return make_collector("udp")


@pytest.fixture
def unix_collector(make_collector) -> Collector:
    return make_collector("unix")


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """(cert, key, ca) paths: a throwaway CA and a server certificate it signed for ``localhost``
    and ``127.0.0.1`` (made with the openssl CLI). Serve cert+key; clients trust ``ca``."""
    d = tmp_path_factory.mktemp("tls")
    ca, ca_key = d / "ca.pem", d / "ca.key"
    cert, key, csr, ext = d / "cert.pem", d / "key.pem", d / "req.csr", d / "ext.cnf"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", *ec, "-days", "2", "-subj", "/CN=rlog test CA",
        "-keyout", str(ca_key), "-out", str(ca))
    run("req", "-new", *ec, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                   "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return str(cert), str(key), str(ca)
