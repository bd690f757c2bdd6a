"""Real peers for the Python tests and `make demo`, started on 127.0.0.1 with their own temp
dir, free ports and pid file, and stopped by that pid:

- ``Rsyslog(tls)``: Debian's rsyslogd with imrelp (``tls=True``: GnuTLS, ``certvalid``), writing
  each message's text to a file;
- ``ClickHouse()``: Debian's clickhouse-server (18.16) as a daemon, queried over HTTP.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pyhelpers

RSYSLOGD = "/usr/sbin/rsyslogd"
IMRELP = "/usr/lib/x86_64-linux-gnu/rsyslog/imrelp.so"
CLICKHOUSE_SERVER = "/usr/sbin/clickhouse-server"


def have_rsyslog_relp():
    return os.path.exists(RSYSLOGD) and os.path.exists(IMRELP)


def have_clickhouse():
    return os.path.exists(CLICKHOUSE_SERVER)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pki(d):
    """A CA, a server certificate for localhost and a client certificate for client.test, both
    signed by it (openssl CLI), as {name: path}."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    p = {k: os.path.join(d, k + ".pem") for k in
         ("ca", "ca_key", "server", "server_key", "client", "client_key")}

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", *ec, "-days", "2", "-subj", "/CN=rlog relp test CA",
        "-keyout", p["ca_key"], "-out", p["ca"])
    for who, cn, eku in (("server", "localhost", "serverAuth"), ("client", "client.test", "clientAuth")):
        csr, ext = os.path.join(d, who + ".csr"), os.path.join(d, who + ".ext")
        run("req", "-new", *ec, "-subj", "/CN=" + cn, "-keyout", p[who + "_key"], "-out", csr)
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s\nbasicConstraints=critical,CA:FALSE\n"
                    "extendedKeyUsage=%s\n" % (cn, eku))
        run("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"], "-CAcreateserial",
            "-days", "2", "-extfile", ext, "-out", p[who])
    return p


class Rsyslog:
    """rsyslogd with imrelp, writing each message as `template` says (default: its text)."""

    def __init__(self, tls, template="%msg%\\n"):
        self.dir = tempfile.mkdtemp(prefix="rlog-py-relp-")
        self.port = free_port()
        self.out = os.path.join(self.dir, "out.log")
        self.files = pki(self.dir) if tls else None
        extra = ""
        if tls:
            f = self.files
            extra = (' tls="on" tls.caCert="%s" tls.myCert="%s" tls.myPrivKey="%s"'
                     ' tls.authMode="certvalid"' % (f["ca"], f["server"], f["server_key"]))
        conf = os.path.join(self.dir, "rsyslog.conf")
        with open(conf, "w") as fh:
            fh.write('global(workDirectory="%s")\n'
                     'module(load="imrelp")\n'
                     'template(name="raw" type="string" string="%s")\n'
                     'input(type="imrelp" port="%d" address="127.0.0.1" ruleset="out"%s)\n'
                     'ruleset(name="out") { action(type="omfile" file="%s" template="raw") }\n'
                     % (self.dir, template, self.port, extra, self.out))
        self.err = open(os.path.join(self.dir, "stderr"), "wb")
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", conf, "-i", os.path.join(self.dir, "rsyslogd.pid")],
            stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err)
        # Listening, without a bare connect (imrelp would log a session without an open).
        deadline = time.monotonic() + 30
        needle = ":%04X " % self.port
        while needle not in open("/proc/net/tcp").read():
            assert self.proc.poll() is None, open(os.path.join(self.dir, "stderr")).read()
            assert time.monotonic() < deadline, "rsyslogd did not listen"
            time.sleep(0.05)

    def ids(self):
        try:
            data = open(self.out, "rb").read()
        except FileNotFoundError:
            return []
        return [int(m) for m in re.findall(rb"id=(\d+)", data)]

    def wait_ids(self, n, deadline=60):
        t = time.monotonic() + deadline
        while len(self.ids()) < n and time.monotonic() < t:
            time.sleep(0.05)
        return self.ids()

    def lines(self):
        try:
            return open(self.out, encoding="utf-8", errors="replace").read().splitlines()
        except FileNotFoundError:
            return []

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        self.err.close()


class ClickHouse:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rlog-py-clickhouse-")
        self.http = free_port()
        tcp = free_port()
        d = self.dir
        with open(os.path.join(d, "config.xml"), "w") as f:
            f.write(f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{self.http}</http_port><tcp_port>{tcp}</tcp_port>
  <path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path><format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile><default_database>default</default_database>
  <mark_cache_size>5368709</mark_cache_size>
</yandex>
""")
        with open(os.path.join(d, "users.xml"), "w") as f:
            f.write("""<?xml version="1.0"?>
<yandex><profiles><default></default></profiles>
<users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
<quotas><default></default></quotas></yandex>
""")
        self.pidfile = os.path.join(d, "clickhouse.pid")
        subprocess.run(
            [CLICKHOUSE_SERVER, "--daemon", f"--config-file={d}/config.xml", f"--pid-file={self.pidfile}"],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert pyhelpers.wait_until(self.ping, timeout=60), "clickhouse-server did not start"

    def ping(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/ping", timeout=5) as r:
                return r.read() == b"Ok.\n"
        except OSError:
            return False

    def query(self, sql):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}/", data=sql.encode())
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read().decode()

    def stop(self):
        try:
            with open(self.pidfile) as f:
                os.kill(int(f.read().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
