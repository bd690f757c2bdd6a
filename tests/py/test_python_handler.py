"""`rlog.RlogHandler`: standard logging through rlog to a real loopback collector."""

import logging
import logging.config
import os
import re
import signal
import sys
import threading

import pytest

from pyhelpers import TcpCollector, closed_port

import rlog

CHILD_DEADLINE = 15  # seconds


def cfg(port, **extra):
    c = {"host": "127.0.0.1", "port": port, "flush_limit": 1 << 20, "drop_limit": 4 << 20}
    c.update(extra)
    return c


@pytest.fixture
def pylogger(request):
    """A fresh, non-propagating logging.Logger; its handlers are closed and removed after."""
    lg = logging.getLogger(f"rlogtest.{request.node.name}")
    lg.setLevel(logging.DEBUG)
    lg.propagate = False
    yield lg
    for h in list(lg.handlers):
        lg.removeHandler(h)
        h.close()


def test_formatter_terminator_and_levels(pylogger):
    with TcpCollector() as col:
        h = rlog.RlogHandler(cfg(col.port), level=logging.INFO)
        h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        pylogger.addHandler(h)
        pylogger.debug("not shipped: below the handler's level")
        pylogger.info("hello %s", "world")
        pylogger.warning("already terminated\n")
        pylogger.error("multi\nline")
        h.flush()
        want = (
            f"INFO {pylogger.name}: hello world\n"
            f"WARNING {pylogger.name}: already terminated\n"
            f"ERROR {pylogger.name}: multi\nline\n"
        ).encode()
        assert col.wait_bytes(len(want)) == want
        st = h.logger.stats()
        assert st.logged == st.sent == 3 and st.balanced()


def test_custom_terminator(pylogger):
    with TcpCollector() as col:
        h = rlog.RlogHandler(cfg(col.port), terminator="\r\n")
        pylogger.addHandler(h)
        pylogger.info("crlf")
        pylogger.info("kept\r\n")
        h2 = rlog.RlogHandler(h.logger, terminator="")
        pylogger.addHandler(h2)
        pylogger.removeHandler(h)
        pylogger.info("bare")
        h.flush()
        assert col.wait_bytes(16) == b"crlf\r\nkept\r\nbare"


def test_unicode_and_bytes(pylogger):
    with TcpCollector() as col:
        h = rlog.RlogHandler(cfg(col.port))
        pylogger.addHandler(h)
        pylogger.info("h\u00e9llo \u2713 \u65e5\u672c \U0001f600")
        # A str decoded with surrogateescape goes out as the original bytes.
        pylogger.info(b"raw \xff\xfe".decode("utf-8", "surrogateescape"))
        # A lone surrogate cannot be encoded: it is escaped, not an error.
        pylogger.info("lone \ud800")
        # bytes messages are formatted by the standard Formatter, as str(bytes).
        pylogger.info(b"bytes msg")
        h.flush()
        want = "h\u00e9llo \u2713 \u65e5\u672c \U0001f600\n".encode() + b"raw \xff\xfe\nlone \\ud800\nb'bytes msg'\n"
        assert col.wait_bytes(len(want)) == want


def test_many_threads(pylogger):
    threads, per = 8, 250
    with TcpCollector() as col:
        h = rlog.RlogHandler(cfg(col.port, flush_limit=16384))
        h.setFormatter(logging.Formatter("%(threadName)s %(message)s"))
        pylogger.addHandler(h)

        def work(t):
            for i in range(per):
                pylogger.info("t%d m%d", t, i)

        ts = [threading.Thread(target=work, args=(t,), name=f"w{t}") for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        h.flush()
        lines = col.wait_lines(threads * per)
        st = h.logger.stats()
    assert len(lines) == threads * per
    got = set()
    for line in lines:
        m = re.match(rb"^w(\d) t(\d) m(\d+)$", line)
        assert m and m.group(1) == m.group(2), line
        got.add((int(m.group(2)), int(m.group(3))))
    assert len(got) == threads * per
    assert st.logged == st.sent == threads * per and st.balanced()


def test_fork_child_logs_through_inherited_handler(pylogger):
    with TcpCollector() as col:
        h = rlog.RlogHandler(cfg(col.port))
        pylogger.addHandler(h)
        pylogger.info("parent buffered before fork")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.alarm(CHILD_DEADLINE)  # a hung child dies of SIGALRM: the test fails, never hangs
                for i in range(3):
                    pylogger.info("child %d", i)
                h.flush()
                st = h.logger.stats()
                code = 0 if (st.logged == 3 and st.sent == 3) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert not os.WIFSIGNALED(status), f"the child hung in rlog after fork (killed by signal {os.WTERMSIG(status)})"
        assert os.WEXITSTATUS(status) == 0
        h.flush()
        lines = col.wait_lines(4)
    assert sorted(lines) == sorted([b"parent buffered before fork", b"child 0", b"child 1", b"child 2"])


class Exploding(logging.Formatter):
    def format(self, record):
        raise RuntimeError("formatter failed")


def test_failures_go_to_handle_error(pylogger):
    errors = []

    class Recording(rlog.RlogHandler):
        def handleError(self, record):
            errors.append((record.msg, str(sys.exc_info()[1])))

    lg = rlog.Logger(cfg(closed_port()))
    h = Recording(lg)
    pylogger.addHandler(h)
    lg.close(0)
    pylogger.info("after close")  # must not raise
    assert errors == [("after close", "logger is closed")]
    # A formatter that fails is a failure of the handler too.
    h.setFormatter(Exploding())
    lg3 = rlog.Logger(cfg(closed_port()))
    h.logger = lg3
    pylogger.info("boom")
    assert errors[1] == ("boom", "formatter failed")
    assert lg3.stats().logged == 0
    lg3.close(0)
    # The handler does not own a logger it was given: closing it leaves the logger alone.
    lg2 = rlog.Logger(cfg(closed_port()))
    h2 = rlog.RlogHandler(lg2)
    h2.close()
    assert not lg2.closed
    lg2.close(0)


def test_config_error_raises_from_the_constructor():
    with pytest.raises(rlog.ConfigError, match=r'"port" out of range 0~65535'):
        rlog.RlogHandler({"host": "127.0.0.1", "port": 65536})


def test_flush_failure_is_not_raised_and_messages_are_kept(pylogger):
    h = rlog.RlogHandler(cfg(closed_port(), max_retry_times=0, timeout=200))
    pylogger.addHandler(h)
    pylogger.error("undeliverable")
    h.flush()  # does not raise
    st = h.logger.stats()
    assert st.logged == 1 and st.sent == 0 and st.buffered == 1 and st.balanced()
    h.logger.close(0)


def test_dict_config_and_close_delivers():
    with TcpCollector() as col:
        logging.config.dictConfig(
            {
                "version": 1,
                "formatters": {"plain": {"format": "%(levelname)s|%(message)s"}},
                "handlers": {
                    "rlog": {"class": "rlog.RlogHandler", "formatter": "plain", "config": cfg(col.port)}
                },
                "loggers": {"rlogdict": {"handlers": ["rlog"], "level": "INFO", "propagate": False}},
                "disable_existing_loggers": False,
            }
        )
        lg = logging.getLogger("rlogdict")
        (h,) = lg.handlers
        lg.info("via dictConfig")
        assert col.data() == b""  # still buffered (flush_limit is high)
        lg.removeHandler(h)
        h.close()  # the handler owns its logger: close delivers
        assert h.logger.closed
        assert col.wait_bytes(20) == b"INFO|via dictConfig\n"


def test_close_with_undelivered_records_says_so_on_stderr(capsys):
    # A port bound and never listening refuses connections while the test holds it: the
    # handler's logger cannot deliver within its timeout.
    import socket
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    h = rlog.RlogHandler({"host": "127.0.0.1", "port": held.getsockname()[1], "timeout": 100,
                          "flush_limit": 100000, "retry_interval": 10})
    lg = logging.getLogger("rlog-test-undelivered")
    lg.propagate = False
    lg.addHandler(h)
    try:
        for i in range(3):
            lg.warning("record %d", i)
    finally:
        lg.removeHandler(h)
        h.close()
        held.close()
    err = capsys.readouterr().err
    assert err == ("rlog: RlogHandler closed its logger before every message was delivered "
                   "(3 held at close; what its timeout did not allow is lost)\n"), err
    h.close()  # closing again says nothing more
    assert capsys.readouterr().err == ""


def test_close_after_an_earlier_reported_loss_says_nothing_more(capsys):
    # An oversize UDP record is lost (and reported) long before close: close holds nothing, so
    # it has nothing to say although the logger's life was not loss-free.
    h = rlog.RlogHandler({"host": "127.0.0.1", "port": closed_port(), "sock_type": "udp",
                          "flush_limit": 200000, "drop_limit": 400000})
    assert h.logger.log(b"x" * 70000) == 70000
    assert h.logger.flush() == 0
    assert h.logger.stats().lost == 1
    h.close()
    assert capsys.readouterr().err == ""
