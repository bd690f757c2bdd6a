"""The host faults: the logging process itself is killed, forks, exits, or re-inits, with rlogd
(the project's acknowledging collector) as the peer. The logging process is host_child.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

from . import cells
from .cells import Row
from .peers import Rlogd
from .procs import wait_until

FAULTS = ["kill9_spool", "fork", "exit", "reinit"]

FAULT_TEXT = {
    "kill9_spool": "a process with `spool = DIR` (spool_mode = always) logs N while rlogd is down (max_retry_times = 1), "
                   "is killed with kill -9 once all are spooled; rlogd starts; a new process with "
                   "the same config adopts the spool and delivers. logged = the first process's, "
                   "sent/lost/adopted = the second's",
    "fork": "the default logger (rlog.init) logs N/2, the process forks, the parent logs N/2 more "
            "and the child N/2 under its own tag; each shuts down. logged/sent: both processes "
            "(parent's stats read before its shutdown); stored: both tags",
    "exit": "rlog_init with flush_limit 1 MiB (all N held), N rlog_log, then exit(0) without "
            "rlog_shutdown: the library's exit flush. sent is not readable after exit: missing = "
            "logged - stored; the exit message (stderr) in the note",
    "reinit": "rlog_init, N/2 records, rlog_init with another config (flush_limit), N/2 more, "
              "rlog_shutdown. logged/sent: the stats before shutdown",
}

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "host_child.py")


def _child(mode: str, cfg: str, tag: str, n: int, d: str, wait: bool = True):
    path = os.path.join(d, f"{mode}.conf")
    with open(path, "w") as f:
        f.write(cfg)
    p = subprocess.Popen([sys.executable, CHILD, mode, path, tag, str(n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return p
    out, err = p.communicate(timeout=120)
    msgs = {}
    for line in out.splitlines():
        if line.startswith("{"):
            msgs.update(json.loads(line))
    return msgs, err.strip(), p.returncode


def _balanced(st: dict) -> bool:
    return st["logged"] + st["adopted"] == st["sent"] + st["lost"] + st["spooled"] + st["buffered"]


def run(fault: str, n: int, workdir: str) -> Row:
    row = Row("host", fault)
    tag = "h" + uuid.uuid4().hex[:10]
    d = os.path.join(workdir, f"host-{fault}")
    peer = Rlogd(d)
    try:
        cfg = f"logger = rlogd://127.0.0.1:{peer.port}\n" + cells.COMMON
        if fault == "kill9_spool":
            # One retry: the batch goes to the spool at once (during the retries it counts as
            # held, not spooled).
            cfg = cfg.replace("max_retry_times = 8", "max_retry_times = 1")
            cfg += f"spool = {d}/spool\nspool_mode = always\n"
            p = _child("spool_writer", cfg, tag, n, d, wait=False)
            line = p.stdout.readline()
            first = json.loads(line)["ready"]
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            p.stdout.close()
            p.stderr.close()
            peer.start()
            msgs, err, rc = _child("adopter", cfg, tag, 0, d)
            if "stats" not in msgs:
                raise RuntimeError(f"the adopting process failed ({rc}): {err[-500:]}")
            st = msgs["stats"]
            row.logged, row.adopted = first["logged"], st["adopted"]
            row.sent, row.lost, row.spooled, row.buffered = st["sent"], st["lost"], st["spooled"], st["buffered"]
            row.identity = _balanced(first) and _balanced(st)
            row.note = f"spooled before the kill: {first['spooled']}"
            if first["spooled"] < first["logged"]:
                row.note += " (not all)"
        elif fault == "fork":
            peer.start()
            msgs, err, _ = _child("fork", cfg, tag, n, d)
            par, ch = msgs["parent_before_shutdown"], msgs["child"]
            row.logged = par["logged"] + ch["logged"]
            row.identity = _balanced(par) and _balanced(ch)
            row.note = (f"parent before shutdown: logged {par['logged']} sent {par['sent']} held "
                        f"{par['buffered']}; child: logged {ch['logged']} sent {ch['sent']} lost "
                        f"{ch['lost']}, shutdown {'delivered all' if msgs.get('child_ok') else 'NOT all'}")
            # every record of both processes should reach rlogd
            row.sent = row.logged
            row.must_complete = True
        elif fault == "exit":
            peer.start()
            cfg = cfg.replace("flush_limit = 2048", "flush_limit = 1048576").replace(
                "periodic_flush = 0.05\n", "")
            msgs, err, rc = _child("exit", cfg, tag, n, d)
            row.logged = n
            row.sent = n
            row.note = f"exit status {rc}; stderr: {err[-300:] or '(none)'}"
        elif fault == "reinit":
            peer.start()
            msgs, err, _ = _child("reinit", cfg, tag, n, d)
            st = msgs["second_before_shutdown"]
            row.logged, row.sent, row.lost = st["logged"], st["sent"], st["lost"]
            row.buffered, row.spooled = st["buffered"], st["spooled"]
            row.identity = _balanced(st) and _balanced(msgs["first"])
            row.note = (f"first logger's logged {msgs['first']['logged']}; the second's stats "
                        f"count logged {st['logged']}; shutdown "
                        f"{'delivered all' if msgs.get('shutdown_ok') else 'NOT all'}")
            row.sent = n  # both loggers' records should reach rlogd
        data = b""

        def enough():
            nonlocal data
            data = peer.stored(tag)
            probe = Row("host", fault)
            cells.count(probe, data, tag)
            want = n if fault != "fork" else n
            return probe.stored >= want

        wait_until(enough, 15, 0.3)
        cells.count(row, data, tag)
        if fault == "fork":
            child = Row("host", fault)
            cells.count(child, data, tag + "c")
            row.stored += child.stored
            row.duplicated += child.duplicated
            row.torn += child.torn
            row.sent = n + n // 2
    except Exception as e:
        row.error = f"{type(e).__name__}: {e}"
    finally:
        peer.close()
    return row
