#!/usr/bin/env python3
"""Issue 14: the same collector outage and sender restart, rlog (spool) vs rsyslog (disk-assisted
action queue + omfwd), counting what each loses and duplicates.

    make build && python3 bench/outage_vs_rsyslog.py [N] [--settle S] [--quiet Q] [--only rlog|rsyslog]

Scenario, identical for both senders and for both variants (`term`, `kill`):
 1. the collector (a TCP server in this script, counting `id=NNNNNN` per line) is DOWN: nothing
    listens on its 127.0.0.1 port, every connect is refused;
 2. the sender takes N lines with unique ids:
    - rsyslog: this script writes them as syslog lines (RFC 6587 newline framing) to rsyslog's
      imtcp port; rsyslog forwards with omfwd (TCP) through a disk-assisted action queue
      (queue.type=LinkedList + queue.filename + queue.saveOnShutdown=on,
      action.resumeRetryCount=-1, as rsyslog's docs configure it), its own workDirectory;
    - rlog: a child process logs N lines through the Python binding with `spool = DIR`;
 3. after SETTLE seconds (default 5) from the last line handed over, the sender is stopped:
    `term`: SIGTERM to rsyslogd (waited for), normal exit for the rlog process (`Logger.close`,
    then the interpreter exits); `kill`: SIGKILL to either;
 4. the collector comes up; the sender starts again with the same config / work directory
    (rsyslog) or spool directory (rlog: a new process with the same config that logs nothing);
 5. once all N ids arrived, or at least 20 s passed and nothing new arrived for QUIET seconds
    (default 5), at most 120 s, the restarted
    sender is stopped the same graceful way, and we report received unique, lost (N - unique),
    duplicates (lines whose id was already seen).
SPOOL_MODE=always in the environment sets rlog's `spool_mode` (default: rlog's, `overflow`).
"""
import os, re, signal, socket, subprocess, sys, tempfile, threading, time, json

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIB = os.environ.get("RLOG_LIB", os.path.join(ROOT, "target/release/librlog.so"))
MIN_WAIT = 20.0
ID_RE = re.compile(rb"id=(\d+)")
# The process helpers shared by the bench scripts live in bench/faultmatrix/procs.py.
sys.path.insert(0, HERE)
from faultmatrix.procs import connect_port, end_child, free_port, lines_until, start_child  # noqa: E402
from faultmatrix.procs import start_rsyslogd, stop  # noqa: E402


class Collector:
    def __init__(self, port):
        self.port = port
        self.seen = {}
        self.lines = 0
        self.dups = 0
        self.last = time.monotonic()
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(64)
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        buf = b""
        while True:
            try:
                d = c.recv(65536)
            except OSError:
                d = b""
            if not d:
                break
            buf += d
            *full, buf = buf.split(b"\n")
            with self.lock:
                for line in full:
                    m = ID_RE.search(line)
                    if not m:
                        continue
                    i = int(m.group(1))
                    self.lines += 1
                    if i in self.seen:
                        self.dups += 1
                    self.seen[i] = self.seen.get(i, 0) + 1
                    self.last = time.monotonic()
        c.close()

    def wait_quiet(self, n, quiet, min_wait, bound):
        """Returns once all n ids arrived (plus 1 s, for duplicates), or once min_wait seconds
        have passed and nothing arrived for quiet seconds, or after bound seconds."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < bound:
            time.sleep(0.2)
            now = time.monotonic()
            with self.lock:
                if len(self.seen) >= n and now - self.last >= 1:
                    return now - t0
                if now - t0 >= min_wait and now - max(self.last, t0) >= quiet:
                    return now - t0
        return None

    def close(self):
        self.stop = True
        self.srv.close()


RSYSLOG_CONF = """
global(workDirectory="{wd}")
module(load="imtcp")
template(name="raw" type="string" string="%msg%\\n")
input(type="imtcp" address="127.0.0.1" port="{inport}" ruleset="fwd")
ruleset(name="fwd") {{
  action(type="omfwd" target="127.0.0.1" port="{colport}" protocol="tcp" template="raw"
         queue.type="LinkedList" queue.filename="fwdq" queue.saveOnShutdown="on"
         action.resumeRetryCount="-1")
}}
"""


def start_rsyslog(d, log):
    return start_rsyslogd(d, log, exe="rsyslogd")  # the one on PATH, as main() prints


def missing(col, n):
    m = [i for i in range(n) if i not in col.seen]
    if len(m) <= 10:
        return m
    runs, start = [], m[0]
    for a, b in zip(m, m[1:] + [None]):
        if b != a + 1:
            runs.append("%d-%d" % (start, a) if start != a else str(start))
            start = b
    return runs[:20]


def run_rsyslog(n, variant, settle, quiet):
    d = tempfile.mkdtemp(prefix="rsys-%s-" % variant)
    wd = os.path.join(d, "work")
    os.mkdir(wd)
    inport, colport = free_port(), free_port()
    with open(os.path.join(d, "rsyslog.conf"), "w") as f:
        f.write(RSYSLOG_CONF.format(wd=wd, inport=inport, colport=colport))
    log = open(os.path.join(d, "rsyslogd.out"), "ab")
    p = start_rsyslog(d, log)
    s = connect_port(inport, 10)
    for i in range(n):
        s.sendall(b"<13>Dec  7 08:00:00 bench test: id=%06d\n" % i)
    s.close()
    time.sleep(settle)
    qfiles = sorted(os.listdir(wd))
    stop_s = stop(p, signal.SIGTERM if variant == "term" else signal.SIGKILL)
    after_stop = sorted(os.listdir(wd))
    col = Collector(colport)
    p = start_rsyslog(d, log)
    waited = col.wait_quiet(n, quiet, MIN_WAIT, 120)
    stop(p)
    time.sleep(0.5)
    col.close()
    log.close()
    return dict(sender="rsyslog", variant=variant, dir=d, stop_s=stop_s, waited=waited,
                files_before_stop=qfiles, files_after_stop=after_stop,
                unique=len(col.seen), dups=col.dups, lines=col.lines, missing=missing(col, n))


RLOG_CHILD = r"""
import os, sys, time, signal
sys.path.insert(0, os.path.join(sys.argv[1], "bindings/python"))
import rlog
cfg = {"host": "127.0.0.1", "port": int(sys.argv[2]), "spool": sys.argv[3]}
if os.environ.get("SPOOL_MODE"):
    cfg["spool_mode"] = os.environ["SPOOL_MODE"]
n = int(sys.argv[4]); mode = sys.argv[5]
lg = rlog.Logger(cfg)
if mode == "log":
    dropped = 0
    for i in range(n):
        if lg.log(b"<13>Dec  7 08:00:00 bench test: id=%06d\n" % i) == 0:
            dropped += 1
    print("LOGGED", dropped, flush=True)
    settle = float(sys.argv[6]); t0 = time.monotonic()
    while time.monotonic() - t0 < settle:
        time.sleep(0.25)
    print("STATS", lg.stats(), flush=True)
    print("READY", flush=True)
    sys.stdin.read()            # the parent closes stdin (term) or SIGKILLs us (kill)
    lg.close()
    print("CLOSED", flush=True)
else:
    print("STARTED", flush=True)
    sys.stdin.read()
    print("STATS", lg.stats(), flush=True)
    lg.close()
"""


def run_rlog(n, variant, settle, quiet):
    d = tempfile.mkdtemp(prefix="rlog-%s-" % variant)
    spool = os.path.join(d, "spool")
    colport = free_port()
    env = dict(os.environ, RLOG_LIB=LIB)
    out = open(os.path.join(d, "child.out"), "ab")
    args = [sys.executable, "-c", RLOG_CHILD, ROOT, str(colport), spool, str(n)]
    p = start_child(args + ["log", str(settle)], out, env)
    lines = lines_until(p, "READY")
    rest, stop_s = end_child(p, kill=variant != "term")
    lines += rest
    col = Collector(colport)
    q = start_child(args + ["replay"], out, env)
    q.stdout.readline()
    waited = col.wait_quiet(n, quiet, MIN_WAIT, 120)
    lines += end_child(q)[0]
    time.sleep(0.5)
    col.close()
    out.close()
    return dict(sender="rlog", variant=variant, dir=d, stop_s=stop_s, waited=waited,
                child=lines, unique=len(col.seen), dups=col.dups, lines=col.lines, missing=missing(col, n))


def main():
    a = sys.argv[1:]
    n, settle, quiet, only, reps = 10000, 5.0, 5.0, None, 1
    while a:
        x = a.pop(0)
        if x == "--settle": settle = float(a.pop(0))
        elif x == "--quiet": quiet = float(a.pop(0))
        elif x == "--only": only = a.pop(0)
        elif x == "--reps": reps = int(a.pop(0))
        else: n = int(x)
    print("rsyslog:", subprocess.run(["rsyslogd", "-v"], capture_output=True, text=True).stdout.splitlines()[0])
    print("N = %d, settle %.1f s, quiet %.1f s" % (n, settle, quiet))
    rows = []
    for sender, fn in (("rsyslog", run_rsyslog), ("rlog", run_rlog)):
        if only and only != sender:
            continue
        for variant in [v for _ in range(reps) for v in ("term", "kill")]:
            r = fn(n, variant, settle, quiet)
            rows.append(r)
            print(json.dumps(r), flush=True)
    print()
    print("| sender | stop | received unique | lost (N - unique) | duplicates | ids lost | stop took (s) | waited after restart (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %d | %d | %d | %s | %.2f | %s |" % (
            r["sender"], "SIGTERM / normal exit" if r["variant"] == "term" else "SIGKILL",
            r["unique"], n - r["unique"], r["dups"], ", ".join(map(str, r["missing"])) or "-",
            r["stop_s"], "%.1f" % r["waited"] if r["waited"] is not None else ">120"))


if __name__ == "__main__":
    main()
