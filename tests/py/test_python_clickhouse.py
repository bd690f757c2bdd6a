"""The Python binding with a clickhouse logger, against Debian's real clickhouse-server (18.16):
started here as a daemon on 127.0.0.1 with its own temp dir, free ports and pid file, stopped
by that pid. Every row logged from Python is stored once; a row ClickHouse cannot parse is
dead-lettered and the others are stored; the stats balance."""

import json

import pytest

import pyhelpers  # noqa: F401  (puts bindings/python on sys.path)
import rlog  # noqa: E402
from peers import ClickHouse, have_clickhouse


@pytest.fixture
def clickhouse():
    if not have_clickhouse():
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
