"""`rlog.RlogHandler` with the README's config: a lone record is delivered while the program
runs, a dead collector does not hold the exit for the retries of a flush, and a handler whose
construction failed (dictConfig with a typo, no library) never breaks `logging.shutdown`."""

import os
import socket
import subprocess
import sys
import time

import pytest

import pyhelpers
from pyhelpers import TcpCollector

import rlog
from rlog.handler import DEFAULTS, with_defaults

CHILD_ENV = dict(os.environ, PYTHONPATH=pyhelpers.PYBIND)


def test_lone_record_arrives_while_the_program_runs():
    # The README's config: host and port only. One record is far below flush_limit (4096): the
    # handler's default periodic flush sends it within about a second, not at exit.
    import logging

    with TcpCollector() as col:
        h = rlog.RlogHandler({"host": "127.0.0.1", "port": col.port})
        lg = logging.getLogger("rlog-test-lone-record")
        lg.propagate = False
        lg.addHandler(h)
        try:
            lg.warning("just one")
            assert col.wait_bytes(9, timeout=8) == b"just one\n"
        finally:
            lg.removeHandler(h)
            h.close()


@pytest.mark.parametrize(
    "config, want",
    [
        ({"host": "h", "port": 1}, {"host": "h", "port": 1, "periodic_flush": 1}),
        ({"host": "h", "port": 1, "periodic_flush": 0}, {"host": "h", "port": 1, "periodic_flush": 0}),
        ({"path": "/s", "periodic-flush": 0.25}, {"path": "/s", "periodic-flush": 0.25}),
        # None leaves a key out of the text: the default applies.
        ({"path": "/s", "periodic_flush": None}, {"path": "/s", "periodic_flush": 1}),
        ("host = h\nport = 1", "host = h\nport = 1\nperiodic_flush = 1\n"),
        ("host = h\nport = 1\n", "host = h\nport = 1\nperiodic_flush = 1\n"),
        ("host = h\n  periodic-flush= 0\nport = 1\n", "host = h\n  periodic-flush= 0\nport = 1\n"),
        # A comment is not a setting.
        ("path = /s\n# periodic_flush = 5\n", "path = /s\n# periodic_flush = 5\nperiodic_flush = 1\n"),
        # Kong's name for it sets it too (both in one config are an error).
        ("path = /s\nmax_coalescing_delay = 2\n", "path = /s\nmax_coalescing_delay = 2\n"),
        ({"path": "/s", "max-coalescing-delay": 2}, {"path": "/s", "max-coalescing-delay": 2}),
    ],
)
def test_defaults_apply_only_to_keys_the_config_leaves_out(config, want):
    assert DEFAULTS == {"periodic_flush": 1}
    assert with_defaults(config) == want


def test_a_config_with_kong_s_max_coalescing_delay_is_accepted():
    # docs/HTTP.md maps Kong's http-log keys; the handler's default must not collide with them.
    for config in (
        "logger = http://127.0.0.1:9/in\nmax_coalescing_delay = 2",
        {"logger": "http://127.0.0.1:9/in", "max_coalescing_delay": 2},
    ):
        h = rlog.RlogHandler(config)
        h.close()


def test_a_shared_logger_is_used_as_it_is(tcp_collector):
    lg = rlog.Logger({"host": "127.0.0.1", "port": tcp_collector.port})
    h = rlog.RlogHandler(lg)
    assert h.logger is lg
    lg.close(0)


EXIT_SCRIPT = r"""
import logging, sys, time
import rlog
h = rlog.RlogHandler({"host": "127.0.0.1", "port": int(sys.argv[1])})
logging.getLogger().addHandler(h)
logging.warning("nobody will read this")
print("ready", flush=True)
"""


def test_exit_with_a_dead_collector_is_bounded_by_the_timeout():
    # A port bound and never listening: every connect is refused at once, so a flush takes the
    # retries' backoff (3.5 s with the defaults). At exit the handler skips that wait and gives
    # close() the config's timeout (1 s).
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    try:
        p = subprocess.Popen([sys.executable, "-c", EXIT_SCRIPT, str(held.getsockname()[1])],
                             env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "ready\n", p.stderr.read()
        t0 = time.monotonic()
        p.wait(30)
        took = time.monotonic() - t0
        err = p.stderr.read()
    finally:
        held.close()
    assert p.returncode == 0, err
    # Generous: the exit takes about 1 s; without the bound it took 4.6 s.
    assert took < 3.0, f"exit took {took:.1f} s"
    assert "RlogHandler closed its logger before every message was delivered (1 held at close" in err, err


DICTCONFIG_SCRIPT = r"""
import logging, logging.config, sys

class Marker(logging.Handler):
    def emit(self, record):
        pass
    def flush(self):
        print("marker flushed", flush=True)
    def close(self):
        print("marker closed", flush=True)
        super().close()

logging.config.dictConfig({
    "version": 1,
    "handlers": {
        "a_marker": {"()": Marker},
        "rlog": {"class": "rlog.RlogHandler",
                 "config": {"host": "127.0.0.1", "port": 5140, CONFIG_KEY: 10}},
    },
    "root": {"handlers": ["a_marker", "rlog"]},
})
"""


@pytest.mark.parametrize("key, env, want", [
    ("flush_limt", {}, 'unknown key "flush_limt"'),
    ("flush_limit", {"RLOG_LIB": "/nonexistent/librlog.so"}, "cannot load librlog"),
])
def test_failed_dict_config_leaves_logging_shutdown_working(key, env, want):
    # The uncaught error keeps the half-built handler alive (sys.last_traceback) until exit:
    # logging.shutdown() meets it first (handlers are shut down newest first) and must go on
    # to flush and close the handlers made before it.
    script = DICTCONFIG_SCRIPT.replace("CONFIG_KEY", repr(key))
    p = subprocess.run([sys.executable, "-c", script], env=dict(CHILD_ENV, **env),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    assert "Unable to configure handler 'rlog'" in p.stderr and want in p.stderr, p.stderr
    assert "AttributeError" not in p.stderr, p.stderr
    assert p.stdout == "marker flushed\nmarker closed\n", (p.stdout, p.stderr)
