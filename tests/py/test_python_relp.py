"""The Python binding with `relp://` and `relps://` loggers, against Debian's real rsyslogd with
imrelp (plain, and `tls="on"` with librelp's default GnuTLS back end, `tls.authMode="certvalid"`):
started here in the foreground on 127.0.0.1 with its own temp dir, free port and pid file,
stopped by that pid. Every message logged from Python is in rsyslog's file once; the stats
balance."""

import time

import pytest

import pyhelpers  # noqa: F401  (puts bindings/python on sys.path)
import rlog  # noqa: E402
from peers import Rsyslog, have_rsyslog_relp

pytestmark = pytest.mark.skipif(not have_rsyslog_relp(), reason="rsyslog-relp not installed")


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
