"""The real peers, one class per output: each starts its peer in a directory of its own on a free
127.0.0.1 port, stops it by the id of the process it started (SIGTERM, SIGKILL, SIGSTOP/SIGCONT),
restarts it on the same port and store, and reads back what the peer stored.

A peer's ``stored()`` is the bytes it holds (files, `rlogd cat`, the JetStream stream's
messages, ClickHouse rows); the matrix finds its records in them by their tag.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from typing import List, Optional

from .procs import Proc, accepts, free_port, nats_server_cmd, rsyslogd_cmd, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RLOGD = os.path.join(ROOT, "target", "release", "rlogd")


class Peer:
    name = "?"
    acked = True  # the output counts a record sent only once the peer acknowledged it
    newline = False  # records end with "\n" (the stream outputs frame nothing themselves)
    storm: Optional[str] = None  # the error storm this peer can produce, or None
    proxied = True  # faults "slow" and "reset" go through a Proxy (else the peer does them)

    def __init__(self, d: str):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.port = free_port()
        self.proc: Optional[Proc] = None

    # the address the logger (or the proxy) connects to
    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def command(self) -> List[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.proc = Proc(self.command(), os.path.join(self.dir, "peer.log"), cwd=self.dir)
        if not wait_until(self.ready, 60):
            raise RuntimeError(f"{self.name} did not start: {self.log_tail()}")

    def ready(self) -> bool:
        return accepts(self.port)

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "peer.log"), errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def kill9(self) -> None:
        self.proc.kill9()

    def stop(self) -> None:
        self.proc.term()

    def freeze(self) -> None:
        self.proc.signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.signal_group(signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None and self.proc.alive():
            self.thaw()
            self.proc.kill9()

    def prepare(self, tag: str) -> None:
        """Makes the peer ready for records tagged `tag` (a table, a stream)."""

    def end_storm(self, tag: str) -> None:
        """Ends the error storm started by target(..., storm=True)."""

    def target(self, tag: str, addr, storm: bool = False) -> str:
        raise NotImplementedError

    def stored(self, tag: str) -> bytes:
        raise NotImplementedError


def _read_dir(d: str) -> bytes:
    out = []
    if os.path.isdir(d):
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                out.append(f.read())
    return b"\n".join(out)


class StreamCollector(Peer):
    """tcp://, tls://, unix://, udp://: a plain collector process (collector.py)."""

    kind = "tcp"
    acked = False
    newline = True
    rate = 0

    def __init__(self, d: str, cert=None, key=None, ca=None):
        super().__init__(d)
        self.cert, self.key, self.ca = cert, key, ca
        self.sock = os.path.join(d, "c.sock")

    @property
    def addr(self):
        return self.sock if self.kind == "unix" else ("127.0.0.1", self.port)

    def command(self):
        a = self.sock if self.kind == "unix" else str(self.port)
        cmd = [sys.executable, os.path.join(HERE, "collector.py"), self.kind, a,
               os.path.join(self.dir, "got")]
        if self.rate:
            cmd += ["--rate", str(self.rate)]
        if self.kind == "tls":
            cmd += ["--cert", self.cert, "--key", self.key]
        return cmd

    def ready(self):
        if self.kind == "udp":
            return wait_until(lambda: os.path.isdir(os.path.join(self.dir, "got")), 0.2)
        if self.kind == "unix":
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(self.sock)
                return True
            except OSError:
                return False
            finally:
                s.close()
        return accepts(self.port)

    def target(self, tag, addr, storm=False):
        if self.kind == "unix":
            return f"logger = unix://{addr}\n"
        t = f"logger = {self.kind}://127.0.0.1:{addr[1]}\n"
        if self.kind == "tls":
            t += f"ssl_ca = {self.ca}\nsni_host = localhost\n"
        return t

    def stored(self, tag):
        return _read_dir(os.path.join(self.dir, "got"))


class Tcp(StreamCollector):
    name, kind = "tcp", "tcp"


class Tls(StreamCollector):
    name, kind = "tls", "tls"


class Unix(StreamCollector):
    name, kind, proxied = "unix", "unix", True


class Udp(StreamCollector):
    name, kind, proxied = "udp", "udp", False


class Rlogd(Peer):
    name = "rlogd"

    def command(self):
        return [RLOGD, "serve", "--data", os.path.join(self.dir, "data"),
                "--listen", f"rlogd://127.0.0.1:{self.port}"]

    def target(self, tag, addr, storm=False):
        return f"logger = rlogd://127.0.0.1:{addr[1]}\n"

    def stored(self, tag):
        r = subprocess.run([RLOGD, "cat", "--data", os.path.join(self.dir, "data")],
                           capture_output=True)
        return r.stdout


NGINX_CONF = r"""
load_module /usr/share/nginx/modules/ndk_http_module.so;
load_module /usr/share/nginx/modules/ngx_http_lua_module.so;
USER
worker_processes 1;
daemon off;
master_process on;
pid DIR/nginx.pid;
error_log DIR/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path DIR/tmp/body;
    proxy_temp_path DIR/tmp/proxy;
    fastcgi_temp_path DIR/tmp/fastcgi;
    uwsgi_temp_path DIR/tmp/uwsgi;
    scgi_temp_path DIR/tmp/scgi;
    lua_shared_dict st 1m;
    client_max_body_size 64m;
    client_body_buffer_size 4m;
    keepalive_requests 100000;
    init_by_lua_block {
        function store()
            ngx.req.read_body()
            local body = ngx.req.get_body_data()
            if not body then
                local f = ngx.req.get_body_file()
                if f then local h = io.open(f, "rb"); body = h:read("*a"); h:close() end
            end
            local n = ngx.shared.st:incr("req", 1, 0)
            local f = io.open("DIR/bodies/" .. ngx.now() .. "-" .. ngx.worker.pid() .. "-" .. n, "wb")
            f:write(body or "")
            f:close()
        end
    }
    server {
        listen 127.0.0.1:PORT;
        location /ok { content_by_lua_block { store(); ngx.exit(204) } }
        location /flaky { content_by_lua_block {
            if ngx.shared.st:incr("flaky", 1, 0) <= tonumber(ngx.var.arg_fail) then ngx.exit(503) end
            store(); ngx.exit(204) } }
    }
}
"""


class Http(Peer):
    """nginx with a Lua handler that stores each 2xx request's body in a file of its own."""

    name = "http"
    storm = "nginx answers 503 to the first 15 requests"

    def command(self):
        for sub in ("tmp", "bodies"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        conf = (NGINX_CONF.replace("DIR", self.dir).replace("PORT", str(self.port))
                .replace("USER", "user root;" if os.geteuid() == 0 else ""))
        path = os.path.join(self.dir, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        return ["nginx", "-p", self.dir, "-c", path, "-e", os.path.join(self.dir, "error.log")]

    def target(self, tag, addr, storm=False):
        path = "/flaky?fail=15" if storm else "/ok"
        return f"logger = http://127.0.0.1:{addr[1]}{path}\n"

    def stored(self, tag):
        return _read_dir(os.path.join(self.dir, "bodies"))


class NatsClient:
    """A few lines of NATS protocol: requests to the JetStream API, replies read in order."""

    def __init__(self, port: int):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.s.makefile("rb")
        self.f.readline()
        self.s.sendall(b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\n'
                       b"PING\r\nSUB _INBOX.fm.* 1\r\n")
        while not self.f.readline().startswith(b"PONG"):
            pass
        self.n = 0

    def request(self, subject: str, body: bytes = b"") -> bytes:
        self.n += 1
        self.s.sendall(f"PUB {subject} _INBOX.fm.{self.n} {len(body)}\r\n".encode() + body + b"\r\n")
        while True:
            line = self.f.readline()
            if not line:
                raise OSError("nats closed")
            parts = line.split()
            if parts[0] == b"PING":
                self.s.sendall(b"PONG\r\n")
                continue
            if parts[0] not in (b"MSG", b"HMSG"):
                continue
            total = int(parts[-1])
            head = int(parts[-2]) if parts[0] == b"HMSG" else 0
            data = self.f.read(total + 2)[:total]
            if parts[1] == f"_INBOX.fm.{self.n}".encode():
                return data[head:] if not data[:head].startswith(b"NATS/1.0 503") else b"no responders"

    def close(self):
        self.s.close()


class Nats(Peer):
    name = "nats"
    storm = "no stream (no responders) for the first 1.5 s, then the stream is created"

    def command(self):
        return nats_server_cmd(self.dir, self.port)

    def ready(self):
        try:
            NatsClient(self.port).close()
            return True
        except OSError:
            return False

    def prepare(self, tag):
        body = json.dumps({"name": "FM", "subjects": ["fm.>"], "storage": "file",
                           "duplicate_window": 120_000_000_000}).encode()

        def create():
            try:
                c = NatsClient(self.port)
                try:
                    return b'"config"' in c.request("$JS.API.STREAM.CREATE.FM", body)
                finally:
                    c.close()
            except OSError:
                return False

        if not wait_until(create, 30, 0.2):
            raise RuntimeError("cannot create the JetStream stream")

    def end_storm(self, tag):
        self.prepare(tag)

    def target(self, tag, addr, storm=False):
        return f"logger = nats://127.0.0.1:{addr[1]}/fm.{tag}\n"

    def stored(self, tag):
        c = NatsClient(self.port)
        try:
            info = json.loads(c.request("$JS.API.STREAM.INFO.FM"))
            if "state" not in info:
                return b""
            out = []
            for seq in range(info["state"]["first_seq"], info["state"]["last_seq"] + 1):
                r = json.loads(c.request("$JS.API.STREAM.MSG.GET.FM", json.dumps({"seq": seq}).encode()))
                if "message" in r:
                    out.append(base64.b64decode(r["message"].get("data", "")))
            return b"\n".join(out)
        finally:
            c.close()


class Relp(Peer):
    """rsyslogd with imrelp, its ruleset queue Direct (a 200 OK means written to the file)."""

    name = "relp"

    def command(self):
        out = os.path.join(self.dir, "out.log")
        conf = (f'global(workDirectory="{self.dir}" maxMessageSize="256k")\n'
                'module(load="imrelp")\n'
                'template(name="m" type="string" string="%msg%\\n")\n'
                'ruleset(name="out" queue.type="Direct") {\n'
                f'  action(type="omfile" file="{out}" template="m")\n'
                '}\n'
                f'input(type="imrelp" port="{self.port}" address="127.0.0.1" ruleset="out")\n')
        with open(os.path.join(self.dir, "rsyslog.conf"), "w") as f:
            f.write(conf)
        return rsyslogd_cmd(self.dir)

    def target(self, tag, addr, storm=False):
        return f"logger = relp://127.0.0.1:{addr[1]}\nlog-encoder = syslog app=fm\n"

    def stored(self, tag):
        try:
            with open(os.path.join(self.dir, "out.log"), "rb") as f:
                return f.read()
        except OSError:
            return b""


CH_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>DIR/server.log</log><errorlog>DIR/server.err.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>HTTP</http_port>
  <tcp_port>TCP</tcp_port>
  <path>DIR/data/</path>
  <tmp_path>DIR/tmp/</tmp_path>
  <user_files_path>DIR/user_files/</user_files_path>
  <format_schema_path>DIR/format_schemas/</format_schema_path>
  <users_config>DIR/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709</mark_cache_size>
  <uncompressed_cache_size>8388608</uncompressed_cache_size>
  <max_concurrent_queries>32</max_concurrent_queries>
</yandex>
"""

CH_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
  <profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"""


class ClickHouse(Peer):
    name = "clickhouse"
    storm = "the table is missing for the first 1.5 s (UNKNOWN_TABLE), then created"

    def __init__(self, d):
        super().__init__(d)
        self.tcp_port = free_port()
        self.db_ready = False

    def command(self):
        with open(os.path.join(self.dir, "config.xml"), "w") as f:
            f.write(CH_CONFIG.replace("DIR", self.dir).replace("HTTP", str(self.port))
                    .replace("TCP", str(self.tcp_port)))
        with open(os.path.join(self.dir, "users.xml"), "w") as f:
            f.write(CH_USERS)
        return ["/usr/sbin/clickhouse-server", f"--config-file={self.dir}/config.xml"]

    def ready(self):
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=2).read() == b"Ok.\n"
        except OSError:
            return False

    def query(self, sql: str) -> bytes:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/", data=sql.encode())
        return urllib.request.urlopen(req, timeout=30).read()

    def prepare(self, tag, table=True):
        self.query("CREATE DATABASE IF NOT EXISTS logs")
        if table:
            self.query(f"CREATE TABLE IF NOT EXISTS logs.t_{tag} (id UInt64, msg String) "
                       "ENGINE = MergeTree ORDER BY id")

    def end_storm(self, tag):
        self.prepare(tag)

    def target(self, tag, addr, storm=False):
        return f"logger = clickhouse://127.0.0.1:{addr[1]}/logs.t_{tag}\n"

    def stored(self, tag):
        try:
            return self.query(f"SELECT msg FROM logs.t_{tag} FORMAT TabSeparated")
        except OSError:
            return b""


PEERS = {p.name: p for p in (Tcp, Udp, Unix, Tls, Rlogd, Http, Nats, Relp, ClickHouse)}
