"""`logger = rlogd://HOST:PORT` through the Python binding: the real rlogd binary
(target/release/rlogd) on 127.0.0.1 in a temp dir, a config given as a dict with a named rlogd
logger and its own `type`, read back with `rlogd cat --json`."""

import json
import os
import re
import subprocess

import pytest

from pyhelpers import ROOT, wait_until

import rlog  # noqa: E402  (pyhelpers put bindings/python on sys.path)

RLOGD = os.path.join(ROOT, "target", "release", "rlogd")


@pytest.fixture
def rlogd(tmp_path):
    """A running `rlogd serve` on 127.0.0.1 (port chosen by the kernel): (address, data dir)."""
    if not os.path.exists(RLOGD):
        pytest.skip("target/release/rlogd is not built (cargo build --release)")
    data = tmp_path / "data"
    log = open(tmp_path / "rlogd.log", "wb")
    proc = subprocess.Popen(
        [RLOGD, "serve", "--data", str(data), "--listen", "rlogd://127.0.0.1:0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        text = lambda: (tmp_path / "rlogd.log").read_text()
        assert wait_until(lambda: "listening on rlogd://" in text(), timeout=20), text()
        addr = re.search(r"listening on rlogd://.*\((127\.0\.0\.1:\d+)\)", text()).group(1)
        yield addr, data
    finally:
        proc.kill()
        proc.wait()
        log.close()


def test_rlogd_loggers_from_python_store_encoded_records_with_their_types(rlogd):
    addr, data = rlogd
    cfg = {
        "logger": [f"rlogd://{addr}", f"errors rlogd://{addr}"],
        "type": 3,
        "errors.type": 9,
        "log-encoder": "prefix [py] ",
        "log-route": "errors ERROR",
    }
    with rlog.Logger(cfg) as lg:
        for m in ["hello", "an ERROR here", "bye"]:
            lg.log(m)
        assert lg.flush() > 0
        st = lg.stats()
        assert (st.logged, st.sent, st.lost, st.buffered) == (3, 3, 0, 0)
        assert st.balanced()
        assert lg.last_error() is None
    out = subprocess.run([RLOGD, "cat", "--data", str(data), "--json"],
                         capture_output=True, check=True, text=True).stdout
    got = sorted((r["type"], r["msg"]) for r in map(json.loads, out.splitlines()))
    assert got == [(3, "[py] bye"), (3, "[py] hello"), (9, "[py] an ERROR here")]
