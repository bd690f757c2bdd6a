#!/usr/bin/env python3
"""Issue 17: messages/s over RELP into the same imrelp, rlog's relp:// against rsyslog's omrelp.

    cargo build --release && python3 bench/relp_vs_rsyslog.py [N] [ROUNDS]

A collector rsyslogd (imrelp -> omfile, its default in-memory queue) runs on a free 127.0.0.1
port. Each round, in turn:
 - rlog: a Python process (ctypes binding) logs N lines through `logger = relp://...` with
   `log-encoder = syslog` and closes the logger;
 - rsyslog: a sender rsyslogd (imtcp -> omrelp to the same collector, window 128 as rlog's) is
   fed N octet-counted syslog lines on its imtcp port by this script.
Time is from the first line handed to the sender until the collector's file holds all N lines
(counted by lines). Both senders are acknowledged per message by the same imrelp. Prints
messages/s for each and the ratio. Not measured here: the outage side by side (omrelp with a
disk-assisted queue); see BENCHMARKS.md.
"""
import os, shutil, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIB = os.environ.get("RLOG_LIB", os.path.join(ROOT, "target/release/librlog.so"))
# The process helpers shared by the bench scripts live in bench/faultmatrix/procs.py.
sys.path.insert(0, HERE)
from faultmatrix.procs import free_port, start_rsyslogd, stop, wait_port  # noqa: E402


def rsyslogd(d, conf):
    return start_rsyslogd(d, os.path.join(d, "out"), conf)


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def wait_lines(path, n, deadline=300):
    t = time.monotonic()
    while count_lines(path) < n:
        if time.monotonic() - t > deadline:
            raise SystemExit("only %d of %d lines in %s" % (count_lines(path), n, path))
        time.sleep(0.02)
    return time.monotonic()


RLOG_CHILD = r"""
import sys, os
sys.path.insert(0, os.path.join(sys.argv[1], "bindings/python"))
import rlog
lg = rlog.Logger({"logger": "relp://127.0.0.1:" + sys.argv[2], "log_encoder": "syslog app=bench",
                  "drop_limit": 1 << 30, "flush_limit": 65536})
n = int(sys.argv[3])
print("GO", flush=True)
for i in range(n):
    lg.log(b"id=%08d benchmark message payload of some length" % i)
while lg.stats().buffered:       # close() alone waits only `timeout` (1 s) for the rest
    lg.flush()
st = lg.stats()
assert st.lost == 0 and st.dropped == 0, st
lg.close()
"""


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    base = tempfile.mkdtemp(prefix="relp-bench-")
    cport = free_port()
    col = rsyslogd(os.path.join(base, "col"), """
global(workDirectory="%s/col")
module(load="imrelp")
input(type="imrelp" port="%d" address="127.0.0.1" ruleset="out")
ruleset(name="out") { action(type="omfile" file="%s/col/out.log" template="RSYSLOG_FileFormat") }
""" % (base, cport, base))
    try:
        run(base, cport, n, rounds)
    finally:
        stop(col)
    shutil.rmtree(base, ignore_errors=True)


def run(base, cport, n, rounds):
    wait_port(cport)
    out = os.path.join(base, "col", "out.log")
    res = {"rlog": [], "rsyslog": []}
    total = 0
    for r in range(rounds):
        # rlog
        env = dict(os.environ, RLOG_LIB=LIB)
        p = subprocess.Popen([sys.executable, "-c", RLOG_CHILD, ROOT, str(cport), str(n)],
                             stdout=subprocess.PIPE, env=env)
        assert p.stdout.readline().startswith(b"GO")
        t0 = time.monotonic()
        total += n
        t1 = wait_lines(out, total)
        p.wait()
        res["rlog"].append(n / (t1 - t0))
        # rsyslog omrelp
        sdir = os.path.join(base, "snd%d" % r)
        sport = free_port()
        snd = rsyslogd(sdir, """
global(workDirectory="%s")
module(load="imtcp")
module(load="omrelp")
input(type="imtcp" port="%d" address="127.0.0.1" ruleset="fwd")
ruleset(name="fwd") { action(type="omrelp" target="127.0.0.1" port="%d" windowSize="128") }
""" % (sdir, sport, cport))
        wait_port(sport)
        lines = []
        for i in range(n):
            m = b"<14>1 - - bench - - - id=%08d benchmark message payload of some length" % i
            lines.append(b"%d %s" % (len(m), m))
        data = b"".join(lines)
        t0 = time.monotonic()
        s = socket.create_connection(("127.0.0.1", sport)); s.sendall(data); s.close()
        total += n
        t1 = wait_lines(out, total)
        res["rsyslog"].append(n / (t1 - t0))
        stop(snd)
        print("round %d: rlog %.0f msg/s, rsyslog omrelp %.0f msg/s" % (r + 1, res["rlog"][-1], res["rsyslog"][-1]), flush=True)
    med = {k: sorted(v)[len(v) // 2] for k, v in res.items()}
    print("median: rlog %.0f msg/s, rsyslog omrelp %.0f msg/s, ratio rlog/rsyslog %.2f"
          % (med["rlog"], med["rsyslog"], med["rlog"] / med["rsyslog"]))


if __name__ == "__main__":
    main()
