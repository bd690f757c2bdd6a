#!/usr/bin/env python3
"""Captures the seed inputs of the http_response, nats and relp fuzz targets from the real
peers (nginx, nats-server -js, rsyslogd with imrelp), each started on a free 127.0.0.1 port in
its own temporary directory and stopped by pid. Writes fuzz/corpus/{http_response,nats,relp}/.

    python3 fuzz/capture_corpus.py

The bytes are what each server sent, as received; each file starts with the target's mode
byte (see the target's doc comment).
"""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The process helpers shared with the bench scripts live in bench/faultmatrix/procs.py.
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bench"))
from faultmatrix.procs import free_port, nats_server_cmd, rsyslogd_cmd, stop, wait_port  # noqa: E402


@contextlib.contextmanager
def peer(what, kind, command):
    """Starts the peer `command(tmp, port)` returns, given a new temporary directory (where it may
    write its config) and a free 127.0.0.1 port, with its output discarded; yields (tmp, port)
    once it listens (at most 30 s, less if it exits); then stops it by pid (SIGTERM, SIGKILL after
    10 s) and removes tmp."""
    tmp = tempfile.mkdtemp(prefix=f"rlog-corpus-{kind}.")
    port = free_port()
    proc = subprocess.Popen(command(tmp, port), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=30, proc=proc, what=what)
        yield tmp, port
    finally:
        stop(proc, timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def read_all(sock, quiet=0.5):
    """What the peer sends until it closes or stays quiet for `quiet` seconds."""
    sock.settimeout(quiet)
    out = b""
    while True:
        try:
            b = sock.recv(65536)
        except socket.timeout:
            return out
        if not b:
            return out
        out += b


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    print(f"{target}/{name}: {len(data)} bytes")


def nginx_cmd(tmp, port):
    big = "x" * 3000 + "\n"
    with open(os.path.join(tmp, "big.txt"), "w") as f:
        f.write(big * 4)
    conf = f"""
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {tmp};
        client_max_body_size 16;
        gzip on; gzip_min_length 10; gzip_types text/plain;
        location = /ok {{ return 200 "ok\\n"; }}
        location = /busy {{ add_header Retry-After 7 always; return 503; }}
        location = /moved {{ return 301 http://example.org/; }}
        location = /empty {{ return 204; }}
        location = /bulk {{ default_type application/json; return 200 '{{"took":3,"errors":false,"items":[{{"create":{{"_index":"logs","_id":"1","status":201}}}}]}}'; }}
    }}
}}
"""
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(conf)
    return ["nginx", "-c", os.path.join(tmp, "nginx.conf"), "-p", tmp]


def nginx():
    with peer("nginx", "nginx", nginx_cmd) as (tmp, port):
        def ask(req):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(req)
            out = read_all(s)
            s.close()
            return out

        h = f"Host: 127.0.0.1:{port}\r\n"
        cases = {
            # mode byte: even = raw bytes; (mode >> 1) % 17 = piece size
            "nginx_200_length": b"GET /ok HTTP/1.1\r\n" + h.encode() + b"Connection: close\r\n\r\n",
            "nginx_404_html": b"GET /nope HTTP/1.1\r\n" + h.encode() + b"Connection: close\r\n\r\n",
            "nginx_503_retry_after": b"POST /busy HTTP/1.1\r\n" + h.encode() + b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
            "nginx_301": b"GET /moved HTTP/1.1\r\n" + h.encode() + b"Connection: close\r\n\r\n",
            "nginx_204": b"GET /empty HTTP/1.1\r\n" + h.encode() + b"Connection: close\r\n\r\n",
            "nginx_gzip_chunked": b"GET /big.txt HTTP/1.1\r\n" + h.encode() + b"Accept-Encoding: gzip\r\nConnection: close\r\n\r\n",
            "nginx_http10_close": b"GET /ok HTTP/1.0\r\n\r\n",
            "nginx_413": b"POST /ok HTTP/1.1\r\n" + h.encode() + b"Content-Length: 100\r\nConnection: close\r\n\r\n" + b"y" * 100,
            "nginx_100_continue": b"POST /bulk HTTP/1.1\r\n" + h.encode() + b"Content-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            # Two requests on one connection: two responses back to back.
            "nginx_keepalive_two": b"GET /ok HTTP/1.1\r\n" + h.encode() + b"\r\nGET /bulk HTTP/1.1\r\n" + h.encode() + b"Connection: close\r\n\r\n",
        }
        for i, (name, req) in enumerate(cases.items()):
            if name == "nginx_100_continue":
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(req)
                first = read_all(s)
                s.sendall(b"{}")
                resp = first + read_all(s)
                s.close()
            else:
                resp = ask(req)
            write("http_response", name, bytes([(i % 9) * 2]) + resp)


def nats_auth_cmd(tmp, port):
    return ["nats-server", "-a", "127.0.0.1", "-p", str(port), "--user", "u", "--pass", "p",
            "-P", os.path.join(tmp, "nats.pid")]


def nats():
    with peer("nats-server", "nats", nats_server_cmd) as (tmp, port):
        s = socket.create_connection(("127.0.0.1", port))
        info = read_all(s)
        line = info.split(b"\r\n")[0]
        write("nats", "info_json", b"\x01" + line[len(b"INFO "):])
        s.sendall(b'CONNECT {"verbose":true,"pedantic":false,"headers":true,"no_responders":true,"echo":false}\r\nPING\r\n')
        s.sendall(b"SUB _INBOX.c.> 1\r\n")
        cfg = json.dumps({"name": "L", "subjects": ["logs"], "max_msg_size": 64}).encode()
        s.sendall(b"PUB $JS.API.STREAM.CREATE.L _INBOX.c.1 %d\r\n%s\r\n" % (len(cfg), cfg))
        time.sleep(0.5)
        # Stored, stored again (a duplicate by its id), too large for the stream (10054).
        for n, seq, payload in [(2, 1, b"hello"), (3, 1, b"hello"), (4, 2, b"z" * 100)]:
            hdr = b"NATS/1.0\r\nNats-Msg-Id: 00000000000000ab-%d\r\n\r\n" % seq
            s.sendall(b"HPUB logs _INBOX.c.%d %d %d\r\n%s%s\r\n"
                      % (n, len(hdr), len(hdr) + len(payload), hdr, payload))
        # Nobody listens on this subject: a 503 status message.
        hdr = b"NATS/1.0\r\nNats-Msg-Id: 00000000000000ab-3\r\n\r\n"
        s.sendall(b"HPUB nowhere _INBOX.c.5 %d %d\r\n%shi\r\n" % (len(hdr), len(hdr) + 2, hdr))
        s.sendall(b"PING\r\n")
        session = info + read_all(s, 1.0)
        s.sendall(b"BOGUS\r\n")
        session += read_all(s, 1.0)
        s.close()
        write("nats", "session", b"\x00" + session)
        # Each JSON reply alone (mode 1).
        for i, part in enumerate(session.split(b"\r\n")):
            if part.startswith(b"{") and b"seq" in part or b'"error"' in part:
                write("nats", f"reply_{i}", b"\x01" + part)
    # A server that requires a user: its -ERR.
    with peer("nats-server", "nats", nats_auth_cmd) as (tmp, port):
        s = socket.create_connection(("127.0.0.1", port))
        info = read_all(s)
        s.sendall(b'CONNECT {"verbose":false,"user":"u","pass":"wrong"}\r\nPING\r\n')
        write("nats", "auth_error", b"\x03" + info + read_all(s, 1.0))
        s.close()


def relp_cmd(tmp, port):
    conf = f"""global(workDirectory="{tmp}")
module(load="imrelp")
ruleset(name="out") {{ action(type="omfile" file="{tmp}/out.log") }}
input(type="imrelp" port="{port}" address="127.0.0.1" ruleset="out" maxDataSize="200")
"""
    with open(os.path.join(tmp, "rsyslog.conf"), "w") as f:
        f.write(conf)
    return rsyslogd_cmd(tmp)


def relp():
    with peer("rsyslogd", "relp", relp_cmd) as (tmp, port):
        def frame(txnr, cmd, data):
            return b"%d %s %d%s\n" % (txnr, cmd, len(data), b" " + data if data else b"")

        offers = b"relp_version=0\nrelp_software=rlog\ncommands=syslog"
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(frame(1, b"open", offers))
        got = read_all(s)
        s.sendall(frame(2, b"syslog", b"<14>1 - h app - - - hello"))
        s.sendall(frame(3, b"syslog", b"<14>1 - h app - - - " + b"x" * 300))
        got += read_all(s)
        s.sendall(frame(4, b"close", b""))
        got += read_all(s)
        s.close()
        write("relp", "session", b"\x08" + got)
        # Garbage: what imrelp answers a frame it cannot read.
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"1 nonsense 0\n")
        write("relp", "bad_command", b"\x02" + read_all(s))
        s.close()


if __name__ == "__main__":
    for what in sys.argv[1:] or ["nginx", "nats", "relp"]:
        globals()[what]()
