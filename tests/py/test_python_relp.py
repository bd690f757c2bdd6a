"""The Python binding with `relp://` and `relps://` loggers, against Debian's real rsyslogd with
imrelp (plain, and `tls="on"` with librelp's default GnuTLS back end, `tls.authMode="certvalid"`):
started here in the foreground on 127.0.0.1 with its own temp dir, free port and pid file,
stopped by that pid. Every message logged from Python is in rsyslog's file once; the stats
balance."""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest

import pyhelpers  # noqa: F401  (puts bindings/python on sys.path)
import rlog  # noqa: E402

RSYSLOGD = "/usr/sbin/rsyslogd"
IMRELP = "/usr/lib/x86_64-linux-gnu/rsyslog/imrelp.so"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(RSYSLOGD) and os.path.exists(IMRELP)), reason="rsyslog-relp not installed"
)


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
    def __init__(self, tls):
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
                     'template(name="raw" type="string" string="%%msg%%\\n")\n'
                     'input(type="imrelp" port="%d" address="127.0.0.1" ruleset="out"%s)\n'
                     'ruleset(name="out") { action(type="omfile" file="%s" template="raw") }\n'
                     % (self.dir, self.port, extra, self.out))
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

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        self.err.close()


@pytest.fixture(params=["relp", "relps"])
def setup(request):
    rs = Rsyslog(tls=request.param == "relps")
    yield request.param, rs
    rs.stop()


def test_python_relp_and_relps_deliver_every_message_once(setup, librlog):
    scheme, rs = setup
    cfg = {"logger": "%s://127.0.0.1:%d" % (scheme, rs.port), "log_encoder": "syslog app=pytest"}
    if scheme == "relps":
        f = rs.files
        cfg.update(ssl_ca=f["ca"], sni_host="localhost", ssl_cert=f["client"], ssl_key=f["client_key"])
    lg = rlog.Logger(cfg, lib=librlog)
    n = 500
    for i in range(n):
        assert lg.log(b"id=%06d from python" % i) > 0  # bytes buffered
    deadline = time.monotonic() + 60
    while lg.stats().buffered and time.monotonic() < deadline:
        lg.flush()
        time.sleep(0.05)
    st = lg.stats()
    assert (st.logged, st.sent, st.lost, st.buffered) == (n, n, 0, 0), (st, lg.last_error())
    assert st.logged + st.adopted == st.sent + st.lost + st.spooled + st.buffered
    assert lg.close(5000)
    ids = rs.wait_ids(n)
    assert sorted(ids) == list(range(n)), "each message once"
