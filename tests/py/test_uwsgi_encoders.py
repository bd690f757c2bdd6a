"""Conformance of rlog's log encoders, named loggers and log routes with real uWSGI 2.0.

Each test starts Debian's uWSGI on loopback with `--logger socket:127.0.0.1:PORT` lines,
`--log-encoder` chains and `--log-route`s, makes its app write chosen lines to the log pipe,
captures the datagrams, then sends the same lines through rlog (C ABI, ctypes) configured with the
same `logger` / `log-encoder` / `log-route` lines, and compares under the SPEC's rules: identical
bytes for prefix, suffix, nl, format and json (without control characters); identical after
decompression, with identical header fields, for gzip and compress; identical decoded values for
msgpack; time values inside the window of the calls that produced them.

Needs: apt uwsgi-core uwsgi-plugin-python3; pip msgpack.
"""

import collections
import json
import os
import re
import time

import pytest

from uwsgi_helpers import (
    Collector, Rlog, Uwsgi, Window, assert_identity, canon, chain_for, load_rlog, quote,
    uwsgi_available,
)

needs_uwsgi = pytest.mark.skipif(not uwsgi_available(), reason="needs apt uwsgi-core uwsgi-plugin-python3")

# A POSIX TZ string (no tzdata needed): UTC+05:30, named XYZ. Local time must follow it.
TZ = "XYZ-05:30"


@pytest.fixture(scope="module")
def lib():
    os.environ["TZ"] = TZ
    time.tzset()
    return load_rlog()


def expected_copies(line, loggers, routes):
    """uWSGI's routing: one copy per matching route; unmatched lines go to every unnamed logger."""
    text = line[:-1] if line.endswith(b"\n") else line
    dest = collections.Counter()
    for name, rx in routes:
        if re.search(rx.encode(), text):
            dest[loggers.index(name)] += 1
    if not dest:
        for i, n in enumerate(loggers):
            if n is None:
                dest[i] += 1
    return dest


def target(name, c, texts):
    """`[NAME ]socket:ADDRESS[,TEXT]`"""
    text = texts.get(name)
    return (f"{name} " if name else "") + f"socket:{c.address}" + (f",{text}" if text else "")


def run_uwsgi(encoders, loggers, routes, lines, texts={}, unix=()):
    cols = [Collector(unix=name in unix) for name in loggers]
    args = []
    for name, c in zip(loggers, cols):
        args += ["--logger", target(name, c, texts)]
    for e in encoders:
        args += ["--log-encoder", e]
    for name, rx in routes:
        args += ["--log-route", f"{name} {rx}"]
    u = Uwsgi(args, TZ)
    got, windows = {}, {}
    try:
        cols[0].drain(0.5)  # uWSGI's own start-up lines
        for c in cols[1:]:
            c.drain(0.05)
        for i, line in enumerate(lines):
            t0 = time.time()
            u.emit(line)
            for li, n in expected_copies(line, loggers, routes).items():
                got[(i, li)] = cols[li].recv(n)
            windows[i] = Window(t0, time.time())
    finally:
        u.stop()
        for c in cols:
            c.close()
    return got, windows


def run_rlog(lib, encoders, loggers, routes, lines, texts={}, unix=()):
    cols = [Collector(unix=name in unix) for name in loggers]
    cfg = []
    for name, c in zip(loggers, cols):
        cfg.append("logger = " + quote(target(name, c, texts)))
    cfg += ["log-encoder = " + quote(e) for e in encoders]
    cfg += ["log-route = " + quote(f"{name} {rx}") for name, rx in routes]
    r = Rlog(lib, "\n".join(cfg))
    got = {}
    try:
        t0 = time.time()
        for line in lines:
            assert r.log(line) == len(line)
        assert r.flush() > 0
        w = Window(t0, time.time())
        per_logger = collections.defaultdict(list)
        for i, line in enumerate(lines):
            for li, n in sorted(expected_copies(line, loggers, routes).items()):
                per_logger[li].append((i, n))
        for li, wants in per_logger.items():
            dgrams = cols[li].recv(sum(n for _, n in wants))
            for i, n in wants:
                got[(i, li)], dgrams = dgrams[:n], dgrams[n:]
        s = r.stats()
        assert (s.logged, s.sent, s.lost, s.buffered) == (len(lines), len(lines), 0, 0)
        sinks = r.sinks()
        assert len(sinks) == len(loggers)
        for li, (label, st) in enumerate(sinks):
            want = sum(len(v) for (i, l), v in got.items() if l == li)
            assert (st.sent, st.lost, st.dropped, st.pending) == (want, 0, 0, 0), label
            assert st.sent_bytes == sum(len(d) for (i, l), v in got.items() if l == li for d in v), label
            if loggers[li]:
                assert label == f'logger "{loggers[li]}"'

        assert_identity(s)
        assert r.last_error() == ""
    finally:
        r.close()
        for c in cols:
            c.close()
    return got, w


def compare(lib, encoders, loggers, routes, lines, texts={}, unix=()):
    """Runs both and asserts every record matches; returns rlog's records for extra checks."""
    ugot, uwin = run_uwsgi(encoders, loggers, routes, lines, texts, unix)
    rgot, rwin = run_rlog(lib, encoders, loggers, routes, lines, texts, unix)
    assert set(ugot) == set(rgot)
    for (i, li), urecs in sorted(ugot.items()):
        chain = chain_for(encoders, loggers[li])
        text = texts.get(loggers[li], "").encode()
        for u, r in zip(urecs, rgot[(i, li)]):
            assert u.startswith(text) and r.startswith(text), "socket TEXT goes raw first"
            u, r = u[len(text):], r[len(text):]
            cu, cr = canon(u, chain, uwin[i]), canon(r, chain, rwin)
            assert cu == cr, f"line {lines[i]!r} logger {loggers[li]}:\n uwsgi {u!r}\n rlog  {r!r}"
    return rgot


# Named loggers, each with its own chain (`NAME:LOGGER` encoders), reached through routes.
NAMED = [None, "pfx", "gz", "gzp", "cmp", "fmt", "js", "mpi", "mpf", "mpm", "mix"]
NAMED_ROUTES = [
    ("pfx", "^@P"), ("gz", "^@G"), ("gzp", "^@Z"), ("cmp", "^@C"), ("fmt", "^@F"),
    ("js", "^@J"), ("js", "^@F"), ("mpi", "^@I"), ("mpf", "^@L"), ("mpm", "^@M"), ("mix", "^@X"),
    ("pfx", "twice$"),
]
INTS = [0, 1, 127, 128, -1, -31, -32, -127, -128, 255, 256, 32767, -32767, -32768, 65535, 65536,
        2147483647, -2147483648, 2147483648, 4294967296, 9223372036854775807, -9223372036854775808]
FLOATS = ["17.30", "0", "-126", "127", "127.5", "-126.5", "3.141592653589793", "1e300", "-2.5e-300"]
NAMED_ENCODERS = [
    "prefix:pfx [P] ", "suffix:pfx  [S]", "nl:pfx",
    "format:gz <${msg}>", "gzip:gz",
    "gzip:gzp", "prefix:gzp i am gzip encoded ",
    "compress:cmp",
    "format:fmt [FOO ${msg} BAR] ${msgnl}|u=${unix}|ms=${millis}|us=${micros}|${strftime:%Y-%m-%d %H:%M:%S %Z %z}|$x 100%",
    'json:js {"unix":${unix}, "msg":"${msg}", "nl":"${msgnl}", "date":"${strftime:%d/%m/%Y %H:%M:%S %Z}"}',
    "msgpack:mpi array:%d|%s" % (len(INTS), "|".join(f"int:{n}" for n in INTS)),
    "msgpack:mpf array:%d|%s" % (len(FLOATS), "|".join(f"float:{f}" for f in FLOATS)),
    "msgpack:mpm map:12|str:message|msg|str:bin|msgbin|str:nl|msgnl|str:binnl|msgbinnl|str:unix|unix"
    "|str:micros|micros|str:date|strftime:%Y-%m-%dT%H:%M:%S%z|str:flags|array:3|nil|true|false"
    "|str:raw|bin:a:b|str:s|str:with:colon|str:empty|str|str:long|str:" + "L" * 40,
    'json:mix {"m":"${msg}","t":${unix}}', "gzip:mix", "prefix:mix J:",
]
NAMED_LINES = [
    b"plain line to the default logger\n",
    b"@P prefix suffix nl\n",
    b"@P no trailing newline",
    b"@G format then gzip\n",
    b"@Z gzip then prefix, the docs example\n",
    b"@C compress " + b"abc" * 50 + b"\n",
    b"@F format and json, two routes \"quoted\" \\ back\\slash\ttab\n",
    b"@J json \"q\" \\ \t tab \r cr\n",
    b"@J json nl in the middle\nsecond part\n",
    b"@J utf-8 " + "é ü 中文 ✓".encode() + b" / slash\n",
    b"@I ints\n",
    b"@L floats\n",
    b"@M msgpack map " + "é ü 中文".encode() + b"\n",
    b"@M " + b"m" * 300 + b"\n",
    b"@X json gzip prefix\n",
    b"@P@ goes twice\n",
    b"@G $dollar ${msg} literal\n",
]


@needs_uwsgi
def test_every_encoder_chains_and_routes_to_named_loggers(lib):
    rgot = compare(lib, NAMED_ENCODERS, NAMED, NAMED_ROUTES, NAMED_LINES)
    # strftime honours TZ: the offset of XYZ-05:30 is +0530.
    fmt = NAMED.index("fmt")
    rec = rgot[(NAMED_LINES.index(b"@F format and json, two routes \"quoted\" \\ back\\slash\ttab\n"), fmt)][0]
    assert b"XYZ +0530" in rec
    # a line matching two routes to one logger arrives twice, as in uWSGI
    assert len(rgot[(NAMED_LINES.index(b"@P@ goes twice\n"), NAMED.index("pfx"))]) == 2


# Encoders without a logger name run for every logger (unnamed and named), in order.
SHARED_LOGGERS = [None, None, "err"]
SHARED_ROUTES = [("err", "ERROR|CRIT")]
SHARED_ENCODERS = ['json {"m":"${msg}","t":${unix}}', "nl:err", "gzip", "prefix Z:"]
SHARED_LINES = [b"hello one\n", b"an ERROR happened\n", b"CRIT and ERROR\n", b"bye"]


@needs_uwsgi
def test_two_unnamed_loggers_and_shared_encoders(lib):
    rgot = compare(lib, SHARED_ENCODERS, SHARED_LOGGERS, SHARED_ROUTES, SHARED_LINES)
    assert (0, 0) in rgot and (0, 1) in rgot and (0, 2) not in rgot
    assert (1, 2) in rgot and (1, 0) not in rgot


@needs_uwsgi
def test_json_escapes_every_control_character_where_uwsgi_does_not(lib):
    """Deliberate difference: uWSGI passes control characters raw and stops at NUL."""
    line = b"@J ctl \x01 bell \x07 nul \x00 after\n"
    ugot, _ = run_uwsgi(NAMED_ENCODERS, NAMED, NAMED_ROUTES, [line])
    rgot, _ = run_rlog(lib, NAMED_ENCODERS, NAMED, NAMED_ROUTES, [line])
    js = NAMED.index("js")
    urec, rrec = ugot[(0, js)][0], rgot[(0, js)][0]
    obj = json.loads(rrec)
    assert obj["msg"] == line[:-1].decode()
    assert obj["nl"] == line.decode()
    assert b"\\u0001" in rrec and b"\\u0000 after" in rrec
    with pytest.raises(ValueError):
        json.loads(urec)  # uWSGI: raw \x01, cut at the NUL


@needs_uwsgi
def test_template_dollars_are_plain_text_where_uwsgi_loses_them(lib):
    """Deliberate difference: after a variable, uWSGI's parser drops a `$` and the byte after it;
    a template variable uWSGI does not know it drops silently (rlog: init error)."""
    enc = ["format $ab ${msg}$xyz-tail"]
    ugot, _ = run_uwsgi(enc, [None], [], [b"M\n"])
    rgot, _ = run_rlog(lib, enc, [None], [], [b"M\n"])
    assert ugot[(0, 0)] == [b"$ab Myz-tail"]
    assert rgot[(0, 0)] == [b"$ab M$xyz-tail"]
    with pytest.raises(ValueError, match=r"unknown variable \"\$\{nope\}\""):
        Rlog(lib, "logger = socket:127.0.0.1:9\nlog-encoder = format ${nope}")


@needs_uwsgi
def test_socket_text_and_unix_datagram_loggers(lib):
    """`socket:HOST:PORT,TEXT` and `socket:/path,TEXT`: TEXT raw before each encoded record."""
    loggers = [None, "ux", "plain"]
    texts = {None: "i am gzip encoded ", "ux": "<ux> ", "plain": "T "}
    routes = [("ux", "^UX"), ("plain", "^PL")]
    encoders = ['format <${msg}>', "gzip:ux", "nl:plain"]
    lines = [b"default line\n", b"UX over a unix datagram socket\n", b"PL plain"]
    rgot = compare(lib, encoders, loggers, routes, lines, texts, unix=("ux",))
    assert rgot[(2, 2)] == [b"T <PL plain>\n"]


def test_after_fork_the_child_encodes_and_routes_with_its_own_worker(lib):
    """The child gets a working logger (its own worker, sinks and counters) and does not re-send
    what the parent had buffered; the parent still delivers its own."""
    main, err = Collector(), Collector()
    r = Rlog(lib, "\n".join([
        f"logger = socket:{main.address}",
        f"logger = errors socket:{err.address}",
        "log-route = errors ERROR",
        'log-encoder = "prefix:errors E "',
        "log-encoder = json {\"pid\":\"${msg}\"}",
    ]))
    try:
        r.log(b"parent before fork")
        pid = os.fork()
        if pid == 0:
            ok = False
            try:
                r.log(f"child {os.getpid()}".encode())
                r.log(b"child ERROR")
                r.flush()
                s = r.stats()
                ok = (s.logged, s.sent, s.lost, s.buffered) == (2, 2, 0, 0) and len(r.sinks()) == 2
            finally:
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        r.flush()
        got_main = sorted(main.recv(2))
        assert got_main == sorted([b'{"pid":"parent before fork"}', f'{{"pid":"child {pid}"}}'.encode()])
        assert err.recv(1) == [b'{"pid":"E child ERROR"}']  # config order: prefix, then json
        assert main.drain(0.2) == [] and err.drain(0.05) == []
        s = r.stats()
        assert (s.logged, s.sent, s.lost, s.buffered) == (1, 1, 0, 0)
        assert_identity(s)
    finally:
        r.close()
        main.close()
        err.close()
