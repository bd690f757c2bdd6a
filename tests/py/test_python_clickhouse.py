"""The Python binding with a clickhouse logger, against Debian's real clickhouse-server (18.16):
started here as a daemon on 127.0.0.1 with its own temp dir, free ports and pid file, stopped
by that pid. Every row logged from Python is stored once; a row ClickHouse cannot parse is
dead-lettered and the others are stored; the stats balance."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

import pyhelpers  # noqa: F401  (puts bindings/python on sys.path)
import rlog  # noqa: E402

SERVER = "/usr/sbin/clickhouse-server"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
            [SERVER, "--daemon", f"--config-file={d}/config.xml", f"--pid-file={self.pidfile}"],
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


@pytest.fixture
def clickhouse():
    if not os.path.exists(SERVER):
        pytest.skip("clickhouse-server is not installed (.ci/deps installs it)")
    ch = ClickHouse()
    try:
        yield ch
    finally:
        ch.stop()


def test_rows_from_python_are_stored_once_and_a_bad_one_is_dead_lettered(clickhouse, tmp_path):
    clickhouse.query("CREATE DATABASE logs")
    clickhouse.query("CREATE TABLE logs.py (id UInt64, msg String) ENGINE = MergeTree ORDER BY id")
    dead = tmp_path / "dead.jsonl"
    cfg = {
        "logger": f"clickhouse://127.0.0.1:{clickhouse.http}/logs.py",
        "dead_letter": str(dead),
    }
    with rlog.Logger(cfg) as lg:
        for i in range(5000):
            # The records are the rows themselves: JSON objects, logged as they are.
            lg.log(json.dumps({"id": i, "msg": f"row {i}"}) if i != 1234 else '{"id":1234,"msg":oops}')
        assert pyhelpers.wait_until(lambda: lg.stats().sent + lg.stats().lost == 5000, timeout=60)
        st = lg.stats()
        assert (st.logged, st.sent, st.lost, st.rejected) == (5000, 4999, 1, 1), st
        assert st.balanced()
    got = clickhouse.query("SELECT count(), uniqExact(id), countIf(id = 1234) FROM logs.py FORMAT TSV")
    assert got.split() == ["4999", "4999", "0"]
    lines = dead.read_text().splitlines()
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["record"] == '{"id":1234,"msg":oops}'
