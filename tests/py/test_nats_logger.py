"""`logger = nats://HOST:PORT/SUBJECT` through the Python binding: Debian's nats-server with
JetStream on 127.0.0.1 in a temp dir; the stream made and read back with nats-py."""

import asyncio
import os
import shutil
import socket
import subprocess

import pytest

from pyhelpers import wait_until

import rlog  # noqa: E402  (pyhelpers put bindings/python on sys.path)

nats = pytest.importorskip("nats")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nats_server(tmp_path):
    """A running `nats-server -js` on 127.0.0.1: its port."""
    if shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed")
    port = _free_port()
    log = open(tmp_path / "nats.log", "wb")
    proc = subprocess.Popen(
        ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port),
         "-sd", str(tmp_path / "store"), "-P", str(tmp_path / "nats.pid")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        def up():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                    return c.recv(4) == b"INFO"
            except OSError:
                return False
        assert wait_until(up, timeout=20), (tmp_path / "nats.log").read_text()
        yield port
    finally:
        proc.kill()
        proc.wait()
        log.close()


async def _js(port, fn):
    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


def test_a_nats_logger_from_python_stores_each_record_once(nats_server):
    port = nats_server

    async def make(js):
        await js.add_stream(name="PY", subjects=["py.>"])
    asyncio.run(_js(port, make))

    cfg = {
        "logger": f"events nats://127.0.0.1:{port}/py.events",
        "events.nats_window": 64,
        "log-route": "events .",
        "log-encoder": "prefix [py] ",
    }
    n = 500
    with rlog.Logger(cfg) as lg:
        for i in range(n):
            lg.log(f"message {i:04}")
        assert lg.flush() > 0
        st = lg.stats()
        assert (st.logged, st.sent, st.lost, st.buffered) == (n, n, 0, 0)
        assert st.balanced()
        assert lg.last_error() is None

    async def read(js):
        info = await js.stream_info("PY")
        msgs = [await js.get_msg("PY", seq) for seq in range(1, info.state.last_seq + 1)]
        return info.state.messages, msgs
    count, msgs = asyncio.run(_js(port, read))
    assert count == n
    assert sorted(m.data for m in msgs) == sorted(f"[py] message {i:04}".encode() for i in range(n))
    assert all(m.headers and "Nats-Msg-Id" in m.headers for m in msgs)


def test_a_subject_without_stream_is_reported_to_python(nats_server):
    port = nats_server
    with rlog.Logger({"logger": f"nats://127.0.0.1:{port}/nobody", "max_retry_times": 0}) as lg:
        lg.log("kept")
        with pytest.raises(rlog.RlogError, match="no responders on subject \"nobody\""):
            lg.flush()
        st = lg.stats()
        assert (st.sent, st.lost, st.buffered) == (0, 0, 1)
        assert st.balanced()
