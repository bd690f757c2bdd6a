#!/usr/bin/env python3
"""Issue 17: the same collector outage and sender restart over RELP, rlog (`relp://` + `spool`)
vs rsyslog (omrelp through a disk-assisted action queue), counting what each loses and
duplicates. The RELP twin of bench/outage_vs_rsyslog.py (which does this over plain TCP).

    cargo build --release && python3 bench/outage_relp_vs_rsyslog.py [N] [--settle S] [--quiet Q]
        [--reps R] [--only rlog|rsyslog] [--variants term,kill]

Scenario, identical for both senders and for both variants (`term`, `kill`):
 1. the collector, a Debian rsyslogd with imrelp (ruleset queue `Direct`: a message is in its
    file before imrelp answers `200 OK`), is DOWN: nothing listens on its 127.0.0.1 port;
 2. the sender takes N lines with unique ids `id=NNNNNN`:
    - rsyslog: this script writes them as syslog lines (newline framing) to a sender rsyslogd's
      imtcp port; it forwards with omrelp through a disk-assisted action queue
      (queue.type=LinkedList + queue.filename + queue.saveOnShutdown=on,
      action.resumeRetryCount=-1, as rsyslog's docs configure it), its own workDirectory;
    - rlog: a child process logs N lines through the Python binding with
      `logger = relp://COLLECTOR`, `log-encoder = syslog` and `spool = DIR`;
 3. SETTLE seconds (default 5) after the last line was handed over, the sender is stopped:
    `term`: SIGTERM to rsyslogd (waited for) / a normal exit of the rlog process
    (`Logger.close`, then the interpreter exits); `kill`: SIGKILL to either;
 4. the collector comes up; the sender starts again with the same config and work directory
    (rsyslog) or spool directory (rlog: a new process, same config, logs nothing);
 5. once all N ids are in the collector's file (plus 1 s, for duplicates), or at least 20 s
    passed and nothing new arrived for QUIET seconds (default 5), at most 120 s, the restarted
    sender is stopped the graceful way, then the collector; we report received unique, lost
    (N - unique), duplicates (lines whose id was already seen), the ids lost, the queue files
    in rsyslog's work directory before and after the stop, and what rsyslogd said about its
    queue on stderr.
"""
import json, os, re, shutil, signal, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIB = os.environ.get("RLOG_LIB", os.path.join(ROOT, "target/release/librlog.so"))
MIN_WAIT = 20.0
ID_RE = re.compile(rb"id=(\d+)")
# The process helpers shared by the bench scripts live in bench/faultmatrix/procs.py.
sys.path.insert(0, HERE)
from faultmatrix.procs import connect_port, end_child, free_port, lines_until, start_child  # noqa: E402
from faultmatrix.procs import start_rsyslogd, stop  # noqa: E402


COLLECTOR_CONF = """
global(workDirectory="{d}")
module(load="imrelp")
template(name="raw" type="string" string="%msg%\\n")
input(type="imrelp" address="127.0.0.1" port="{port}" ruleset="out")
ruleset(name="out" queue.type="Direct") {{
  action(type="omfile" file="{d}/out.log" template="raw")
}}
"""


class Collector:
    """The collector rsyslogd (imrelp -> omfile), started when the outage ends."""

    def __init__(self, base, port):
        self.d = os.path.join(base, "collector")
        os.makedirs(self.d, exist_ok=True)
        self.port = port
        self.out = os.path.join(self.d, "out.log")
        with open(os.path.join(self.d, "rsyslog.conf"), "w") as f:
            f.write(COLLECTOR_CONF.format(d=self.d, port=port))
        self.log = open(os.path.join(self.d, "rsyslogd.out"), "ab")
        self.p = None

    def start(self):
        self.p = start_rsyslogd(self.d, self.log)
        # No probing connect: a bare connect makes imrelp log a session without an open. Wait
        # for the listening socket instead.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20:
            if (":%04X " % self.port) in open("/proc/net/tcp").read():
                return
            time.sleep(0.05)
        raise RuntimeError("collector never listened")

    def stop(self):
        if self.p:
            stop(self.p)
        self.log.close()

    def count(self):
        seen, lines = {}, 0
        try:
            data = open(self.out, "rb").read()
        except FileNotFoundError:
            data = b""
        for line in data.splitlines():
            m = ID_RE.search(line)
            if m:
                i = int(m.group(1))
                lines += 1
                seen[i] = seen.get(i, 0) + 1
        return seen, lines

    def wait_quiet(self, n, quiet, min_wait, bound):
        t0 = time.monotonic()
        last_n, last_t = -1, t0
        while time.monotonic() - t0 < bound:
            time.sleep(0.2)
            now = time.monotonic()
            seen, lines = self.count()
            if lines != last_n:
                last_n, last_t = lines, now
            if len(seen) >= n and now - last_t >= 1:
                return now - t0
            if now - t0 >= min_wait and now - last_t >= quiet:
                return now - t0
        return None


def summary(seen, lines, n):
    m = [i for i in range(n) if i not in seen]
    runs = []
    if m:
        start = m[0]
        for a, b in zip(m, m[1:] + [None]):
            if b != a + 1:
                runs.append("%d-%d" % (start, a) if start != a else str(start))
                start = b
    dup_ids = sorted(i for i, c in seen.items() if c > 1)
    return dict(unique=len(seen), lines=lines, dups=lines - len(seen), missing=runs[:20],
                dup_ids=dup_ids[:20])


SENDER_CONF = """
global(workDirectory="{wd}")
module(load="imtcp")
module(load="omrelp")
input(type="imtcp" address="127.0.0.1" port="{inport}" ruleset="fwd")
ruleset(name="fwd") {{
  action(type="omrelp" target="127.0.0.1" port="{colport}"
         queue.type="LinkedList" queue.filename="relpq" queue.saveOnShutdown="on"
         action.resumeRetryCount="-1")
}}
"""

QUEUE_SAYS = re.compile(r"queue|cancell|lost|relpq", re.I)


def run_rsyslog(n, variant, settle, quiet):
    d = tempfile.mkdtemp(prefix="relp-outage-rsys-%s-" % variant)
    wd = os.path.join(d, "work")
    os.mkdir(wd)
    inport, colport = free_port(), free_port()
    with open(os.path.join(d, "rsyslog.conf"), "w") as f:
        f.write(SENDER_CONF.format(wd=wd, inport=inport, colport=colport))
    logpath = os.path.join(d, "rsyslogd.out")
    log = open(logpath, "ab")
    p = start_rsyslogd(d, log)
    s = connect_port(inport, 20)
    for i in range(n):
        s.sendall(b"<13>Dec  7 08:00:00 bench test: id=%06d\n" % i)
    s.close()
    time.sleep(settle)
    before = sorted(os.listdir(wd))
    stop_s = stop(p, signal.SIGTERM if variant == "term" else signal.SIGKILL)
    after = sorted(os.listdir(wd))
    col = Collector(d, colport)
    col.start()
    p = start_rsyslogd(d, log)
    waited = col.wait_quiet(n, quiet, MIN_WAIT, 120)
    stop(p)
    col.stop()
    log.close()
    said = [l.strip() for l in open(logpath, errors="replace") if QUEUE_SAYS.search(l)]
    r = dict(sender="rsyslog", variant=variant, n=n, dir=d, stop_s=stop_s, waited=waited,
             files_before_stop=before, files_after_stop=after, rsyslog_said=said[:8])
    r.update(summary(*col.count(), n))
    return r


RLOG_CHILD = r"""
import os, sys, time
sys.path.insert(0, os.path.join(sys.argv[1], "bindings/python"))
import rlog
cfg = {"logger": "relp://127.0.0.1:" + sys.argv[2], "log_encoder": "syslog app=bench",
       "spool": sys.argv[3]}
n = int(sys.argv[4]); mode = sys.argv[5]
lg = rlog.Logger(cfg)
if mode == "log":
    dropped = 0
    for i in range(n):
        if lg.log(b"id=%06d" % i) == 0:
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
    d = tempfile.mkdtemp(prefix="relp-outage-rlog-%s-" % variant)
    spool = os.path.join(d, "spool")
    colport = free_port()
    env = dict(os.environ, RLOG_LIB=LIB)
    out = open(os.path.join(d, "child.out"), "ab")
    args = [sys.executable, "-c", RLOG_CHILD, ROOT, str(colport), spool, str(n)]
    p = start_child(args + ["log", str(settle)], out, env)
    lines = lines_until(p, "READY")
    rest, stop_s = end_child(p, kill=variant != "term")
    lines += rest
    col = Collector(d, colport)
    col.start()
    q = start_child(args + ["replay"], out, env)
    q.stdout.readline()
    waited = col.wait_quiet(n, quiet, MIN_WAIT, 120)
    lines += end_child(q)[0]
    col.stop()
    out.close()
    r = dict(sender="rlog", variant=variant, n=n, dir=d, stop_s=stop_s, waited=waited,
             child=[l for l in lines if l])
    r.update(summary(*col.count(), n))
    return r


def main():
    a = sys.argv[1:]
    n, settle, quiet, only, reps, variants = 10000, 5.0, 5.0, None, 1, ["term", "kill"]
    while a:
        x = a.pop(0)
        if x == "--settle": settle = float(a.pop(0))
        elif x == "--quiet": quiet = float(a.pop(0))
        elif x == "--only": only = a.pop(0)
        elif x == "--reps": reps = int(a.pop(0))
        elif x == "--variants": variants = a.pop(0).split(",")
        else: n = int(x)
    print("rsyslog:", subprocess.run(["rsyslogd", "-v"], capture_output=True, text=True).stdout.splitlines()[0])
    print("N = %d, settle %.1f s, quiet %.1f s" % (n, settle, quiet))
    rows = []
    for sender, fn in (("rsyslog", run_rsyslog), ("rlog", run_rlog)):
        if only and only != sender:
            continue
        for variant in [v for _ in range(reps) for v in variants]:
            r = fn(n, variant, settle, quiet)
            rows.append(r)
            print(json.dumps(r), flush=True)
            if not os.environ.get("KEEP"):
                shutil.rmtree(r["dir"], ignore_errors=True)
    print()
    print("| sender | N | stop | received unique | lost (N - unique) | duplicates | ids lost | ids duplicated | stop took (s) | waited after restart (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %d | %s | %d | %d | %d | %s | %s | %.2f | %s |" % (
            r["sender"], r["n"], "SIGTERM / normal exit" if r["variant"] == "term" else "SIGKILL",
            r["unique"], r["n"] - r["unique"], r["dups"], ", ".join(r["missing"]) or "-",
            ", ".join(map(str, r["dup_ids"])) or "-",
            r["stop_s"], "%.1f" % r["waited"] if r["waited"] is not None else ">120"))


if __name__ == "__main__":
    main()
