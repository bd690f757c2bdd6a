"""The Python binding's `rlog.Logger`, default-logger functions, config mapping and library
lookup, against real loopback collectors (pyhelpers)."""

import os
import re
import signal
import socket
import shutil
import subprocess
import sys
import textwrap
import threading

import pytest

import pyhelpers
from pyhelpers import TcpCollector, UdpCollector, closed_port

import rlog  # noqa: E402  (pyhelpers put bindings/python on sys.path)

CHILD_DEADLINE = 15  # seconds


def tcp_config(port, **extra):
    cfg = {"host": "127.0.0.1", "port": port, "flush_limit": 1 << 20, "drop_limit": 4 << 20}
    cfg.update(extra)
    return cfg


def test_bytes_and_str_delivered_exactly_with_stats():
    msgs = [b"plain ascii\n", "h\u00e9llo \u2713 \u65e5\u672c\n", b"\xff\xfe\x00raw nul\n", "x" * 5000 + "\n"]
    with TcpCollector() as col, rlog.Logger(tcp_config(col.port)) as lg:
        sizes = [lg.log(m) for m in msgs]
        want = b"".join(m if isinstance(m, bytes) else m.encode() for m in msgs)
        assert sizes == [len(m if isinstance(m, bytes) else m.encode()) for m in msgs]
        assert lg.flush() == len(want)
        assert col.wait_bytes(len(want)) == want
        st = lg.stats()
        assert isinstance(st, rlog.Stats)
        assert (st.logged, st.logged_bytes, st.sent, st.sent_bytes) == (4, len(want), 4, len(want))
        assert st.buffered == 0 and st.dropped == 0 and st.lost == 0
        assert st.balanced()
        assert lg.flush() == 0  # nothing left to send
        assert lg.last_error() is None


def test_surrogateescape_roundtrips_raw_bytes_and_lone_surrogates_do_not_raise():
    raw = b"caf\xe9 \xff\n"
    text = raw.decode("utf-8", "surrogateescape")
    with TcpCollector() as col, rlog.Logger(tcp_config(col.port)) as lg:
        lg.log(text)
        lg.log("lone \ud800 surrogate\n")
        lg.flush()
        data = col.wait_bytes(len(raw) + 1)
    assert data.startswith(raw)
    assert data[len(raw):] == b"lone \\ud800 surrogate\n"


def test_udp_one_datagram_per_message():
    with UdpCollector() as col, rlog.Logger({"host": "127.0.0.1", "port": col.port, "sock_type": "udp"}) as lg:
        for i in range(20):
            assert lg.log(f"dgram {i}") == len(f"dgram {i}")
        lg.flush()
        grams = col.wait_datagrams(20)
        assert sorted(grams) == sorted(f"dgram {i}".encode() for i in range(20))
        assert lg.stats().sent == 20


def test_many_threads_nothing_lost_nothing_torn():
    threads, per = 8, 400
    with TcpCollector() as col:
        lg = rlog.Logger({"host": "127.0.0.1", "port": col.port, "flush_limit": 8192})

        def work(t):
            for i in range(per):
                assert lg.log(f"t{t} m{i} " + "p" * (i % 50) + "\n") > 0

        ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        lg.flush()
        lines = col.wait_lines(threads * per)
        st = lg.stats()
        assert lg.close()
    assert len(lines) == threads * per
    pat = re.compile(rb"^t(\d) m(\d+) p*$")
    seen = set()
    for line in lines:
        m = pat.match(line)
        assert m, line
        seen.add((int(m.group(1)), int(m.group(2))))
    assert len(seen) == threads * per
    assert st.logged == st.sent == threads * per and st.balanced()


def test_config_errors_raise_with_the_library_message():
    cases = [
        ("host = 127.0.0.1\nport = 70000\n", '"port" out of range 0~65535'),
        ("host = 127.0.0.1\nport = 1\nsock_type = sctp\n", '"sock_type" must be "tcp" or "udp"'),
        ("flush_limit = 10\n", 'no logging server configured. "host"/"port" or "path" is required.'),
        ("host = 127.0.0.1\nport = 1\nflush_limit = 10\ndrop_limit = 5\n", '"flush_limit" should be < "drop_limit"'),
        ("host = 127.0.0.1\nport = 1\nbogus = 1\n", 'unknown key "bogus"'),
        ({"host": "127.0.0.1", "port": 1, "ssl": "maybe"}, '"ssl" must be a boolean value'),
        ({"host": "127.0.0.1", "port": 1, "flush_limit": -1}, 'invalid "flush_limit"'),
    ]
    for config, want in cases:
        with pytest.raises(rlog.ConfigError) as ei:
            rlog.Logger(config)
        assert want in str(ei.value), (config, str(ei.value))
        assert isinstance(ei.value, ValueError) and isinstance(ei.value, rlog.RlogError)


def test_config_mapping_to_text():
    text = rlog.config_text(
        {
            "host": "127.0.0.1",
            "port": 5140,
            "ssl": False,
            "periodic_flush": 0.5,
            "sni_host": None,
            "log_encoder": ["gzip", "prefix [A] ", 'say "hi"\t\\ok\n'],
        }
    )
    assert text == (
        "host = 127.0.0.1\nport = 5140\nssl = false\nperiodic_flush = 0.5\n"
        "log_encoder = gzip\n"
        'log_encoder = "prefix [A] "\n'
        'log_encoder = "say \\"hi\\"\\t\\\\ok\\n"\n'
    )
    # A "#" that would read as a comment after the value is quoted; one inside a word is not.
    assert rlog.config_text({"log_encoder": ["prefix [A] #1", "#x", "a#b"]}) == (
        'log_encoder = "prefix [A] #1"\nlog_encoder = "#x"\nlog_encoder = a#b\n'
    )
    assert rlog.config_text("as = is") == "as = is"
    # A path-like value is its path (ssl_ca, token_file, path).
    import pathlib
    assert rlog.config_text({"path": pathlib.Path("/run/rlog dir/s")}) == "path = /run/rlog dir/s\n"

    with pytest.raises(TypeError):
        rlog.config_text({"host": ["a", "b"]})  # not a repeatable key
    with pytest.raises(TypeError):
        rlog.config_text({"port": object()})
    with pytest.raises(ValueError):
        rlog.config_text({"bad key": 1})
    with pytest.raises(ValueError):
        rlog.config_text("host = a\0b")


def test_mapping_with_quoted_values_is_accepted_by_the_library():
    # Quoted values (edge spaces, inner spaces) are valid config text for the library: the
    # logger is created, and fails only at delivery (the socket path does not exist).
    with rlog.Logger({"path": " /nonexistent dir/sock", "max_retry_times": 0, "timeout": 200}) as lg:
        lg.log("x")
        with pytest.raises(rlog.RlogError) as ei:
            lg.flush()
        assert "try to connect to the log server failed after 0 retries" in str(ei.value)


def test_flush_failure_raises_keeps_messages_and_identity_holds():
    port = closed_port()
    lg = rlog.Logger(tcp_config(port, max_retry_times=1, retry_interval=10, timeout=300))
    for i in range(5):
        lg.log(f"kept {i}\n")
    with pytest.raises(rlog.RlogError) as ei:
        lg.flush()
    assert "failed after 1 retries" in str(ei.value)
    st = lg.stats()
    assert st.logged == 5 and st.sent == 0 and st.balanced()
    assert st.buffered + st.lost == 5
    assert st.retries >= 1
    # Once a collector listens on that port, what was kept is delivered.
    if st.buffered == 5:
        import socket

        srv = socket.socket()
        try:
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind(("127.0.0.1", port))
        except OSError:
            srv.close()
            lg.close(0)
            pytest.skip("the freed port was taken by another process")
        srv.listen(1)
        srv.settimeout(10)
        t = threading.Thread(target=lambda: lg.flush())
        t.start()
        conn, _ = srv.accept()
        conn.settimeout(10)
        got = b""
        want = b"".join(f"kept {i}\n".encode() for i in range(5))
        while len(got) < len(want):
            chunk = conn.recv(4096)
            if not chunk:
                break
            got += chunk
        t.join(10)
        assert got == want
        conn.close()
        srv.close()
    lg.close(0)


def test_drop_when_buffer_full_returns_zero_counts_and_reports():
    lg = rlog.Logger(tcp_config(closed_port(), flush_limit=100, drop_limit=200, max_retry_times=0, timeout=100))
    try:
        results = [lg.log(b"y" * 60) for _ in range(10)]
        assert 0 in results
        assert results[0] == 60
        st = lg.stats()
        assert st.dropped == results.count(0) and st.dropped_bytes == 60 * st.dropped
        assert st.logged == 10 - st.dropped
        errors = [lg.last_error() for _ in range(3)]
        assert any(e and ("logger buffer is full" in e or "failed after 0 retries" in e) for e in errors), errors
        assert errors[-1] is None  # each error is returned once
    finally:
        lg.close(0)


def test_close_delivers_context_manager_and_closed_errors():
    with TcpCollector() as col:
        with rlog.Logger(tcp_config(col.port)) as lg:
            lg.log("on close\n")
        assert lg.closed
        assert col.wait_bytes(9) == b"on close\n"
        assert lg.close() is True  # idempotent
        with pytest.raises(rlog.RlogError, match="closed"):
            lg.log("late")
        with pytest.raises(rlog.RlogError, match="closed"):
            lg.flush()
        with pytest.raises(rlog.RlogError, match="closed"):
            lg.stats()
        assert lg.last_error() is None
    lg2 = rlog.Logger(tcp_config(closed_port(), max_retry_times=0, timeout=100))
    lg2.log("undeliverable")
    assert lg2.close(50) is False


def test_garbage_collected_logger_delivers():
    with TcpCollector() as col:
        lg = rlog.Logger(tcp_config(col.port))
        lg.log("from __del__\n")
        del lg
        assert col.wait_bytes(13) == b"from __del__\n"


def test_log_rejects_non_text():
    with rlog.Logger(tcp_config(closed_port())) as lg:
        with pytest.raises(TypeError):
            lg.log(12)
        lg.close(0)


def test_default_logger_functions():
    with TcpCollector() as col:
        if not rlog.initted():
            with pytest.raises(rlog.RlogError, match="not initialized"):
                rlog.log("early")
            with pytest.raises(rlog.ConfigError, match="out of range"):
                rlog.init({"host": "127.0.0.1", "port": -1})
            assert not rlog.initted()
        rlog.init(tcp_config(col.port))
        try:
            assert rlog.initted()
            assert re.match(r"^\d+\.\d+\.\d+", rlog.version())
            assert rlog.log("default one\n") == 12
            assert rlog.log(b"default two\n") == 12
            assert rlog.flush() == 24
            assert col.wait_bytes(24) == b"default one\ndefault two\n"
            st = rlog.stats()
            assert st.logged == st.sent == 2 and st.balanced()
            assert rlog.last_error() is None
        finally:
            assert rlog.shutdown() is True
        assert not rlog.initted()
        with pytest.raises(rlog.RlogError, match="not initialized"):
            rlog.flush()


def test_stats_fields_match_the_c_header():
    header = open(pyhelpers.HEADER).read()
    body = re.search(r"struct rlog_stats \{(.*?)\}", header, re.S).group(1)
    fields = re.findall(r"uint64_t (\w+);", body)
    # The header may grow (append-only); the binding must know every field, in order.
    assert list(rlog.Stats.__dataclass_fields__) == fields


def test_fork_child_gets_a_fresh_working_logger_and_no_duplicates():
    with TcpCollector() as col:
        lg = rlog.Logger(tcp_config(col.port))
        for i in range(3):
            lg.log(f"parent before fork {i}\n")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: report through the pipe, never return into pytest
            code = 1
            try:
                signal.alarm(CHILD_DEADLINE)  # a hung child dies of SIGALRM: the test fails, never hangs
                os.close(r)
                st0 = lg.stats()
                for i in range(4):
                    lg.log(f"child {i}\n")
                lg.flush()
                st = lg.stats()
                ok = st0.logged == 0 and st0.buffered == 0 and st.logged == 4 and st.sent == 4
                os.write(w, repr((st0, st)).encode())
                code = 0 if ok else 2
            finally:
                os._exit(code)
        os.close(w)
        report = b""
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            report += chunk
        os.close(r)
        _, status = os.waitpid(pid, 0)
        assert not os.WIFSIGNALED(status), f"the child hung in rlog after fork (killed by signal {os.WTERMSIG(status)})"
        assert os.WEXITSTATUS(status) == 0, report.decode()
        lg.log("parent after fork\n")
        lg.flush()
        lines = col.wait_lines(8)
        st = lg.stats()
        lg.close()
    assert sorted(lines) == sorted(
        [f"parent before fork {i}".encode() for i in range(3)]
        + [f"child {i}".encode() for i in range(4)]
        + [b"parent after fork"]
    )
    assert st.logged == 4 and st.sent == 4 and st.balanced()


LOOKUP_SCRIPT = textwrap.dedent(
    """
    import rlog
    try:
        lib = rlog.load_library()
        print("LOADED", lib.path)
    except rlog.LibraryNotFoundError as e:
        assert isinstance(e, ImportError)
        print("NOTFOUND", e)
    """
)


def _lookup(env_lib, pkgdir):
    env = {k: v for k, v in os.environ.items() if k != "RLOG_LIB"}
    if env_lib is not None:
        env["RLOG_LIB"] = env_lib
    env["PYTHONPATH"] = pkgdir
    env.pop("LD_LIBRARY_PATH", None)
    out = subprocess.run([sys.executable, "-c", LOOKUP_SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_library_lookup_order(tmp_path):
    pkg = tmp_path / "site"
    shutil.copytree(os.path.join(pyhelpers.PYBIND, "rlog"), pkg / "rlog", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    # RLOG_LIB wins, and a wrong RLOG_LIB is an error naming it (no silent fallback).
    assert _lookup(pyhelpers.LIB, str(pkg)).strip() == f"LOADED {pyhelpers.LIB}"
    out = _lookup(str(tmp_path / "missing.so"), str(pkg))
    assert out.startswith("NOTFOUND") and "$RLOG_LIB" in out and "missing.so: no such file" in out
    # Without RLOG_LIB and no copy anywhere: the message lists every place looked at.
    out = _lookup(None, str(pkg))
    if out.startswith("NOTFOUND"):
        assert "next to the package" in out and "the system loader" in out and "RLOG_LIB" in out
    # Next to the package.
    shutil.copy(pyhelpers.LIB, pkg / "rlog" / "librlog.so")
    assert _lookup(None, str(pkg)).strip() == f"LOADED {pkg / 'rlog' / 'librlog.so'}"


EXIT_SCRIPT = textwrap.dedent("""
    import sys, rlog
    rlog.init({"host": "127.0.0.1", "port": int(sys.argv[1]), "timeout": 200,
               "flush_limit": 100000, "retry_interval": 10})
    for i in range(3):
        rlog.log("unsent %d\\n" % i)
""")


def test_exit_with_undelivered_messages_says_so_on_stderr():
    """At exit nobody is left to read the stats: what rlog could not deliver within `timeout`
    is one line on stderr (where nginx and uWSGI point their logs), not a silent loss."""
    # A port bound and never listening refuses connections for as long as the test holds it.
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    port = held.getsockname()[1]
    try:
        env = dict(os.environ, RLOG_LIB=pyhelpers.LIB, PYTHONPATH=pyhelpers.PYBIND)
        out = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(port)], env=env,
                             capture_output=True, text=True, timeout=60)
    finally:
        held.close()
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(
        f"rlog: 3 messages to tcp://127.0.0.1:{port} could not be delivered before exit: "), lines[0]
    assert "connection refused" in lines[0], lines[0]

    # Delivered at exit: nothing is said.
    with TcpCollector() as col:
        out = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(col.port)], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stderr == "", out.stderr
        assert len(col.wait_lines(3)) == 3
