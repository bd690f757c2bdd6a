"""The logging process of the host faults (run by host.py, one mode per run); prints its stats
as JSON lines (`{"stats": {...}}`) on stdout.

    python3 host_child.py MODE CONFIG_FILE TAG N
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
os.environ.setdefault("RLOG_LIB", os.path.join(ROOT, "target", "release", "librlog.so"))

import rlog  # noqa: E402


def rec(tag: str, i: int) -> bytes:
    return f"{tag}:{i}:{'x' * 60}:end".encode()


def say(what: str, st) -> None:
    print(json.dumps({what: dataclasses.asdict(st)}), flush=True)


def main() -> None:
    mode, cfg_file, tag, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    cfg = open(cfg_file).read()
    if mode == "spool_writer":
        # Logs N with the collector down, waits until all are spooled, says so, and waits for
        # its kill -9.
        lg = rlog.Logger(cfg)
        for i in range(n):
            lg.log(rec(tag, i))
        try:
            lg.flush()
        except rlog.RlogError:
            pass  # the collector is down: the records go to the spool
        deadline = time.monotonic() + 30
        while lg.stats().spooled < n and time.monotonic() < deadline:
            time.sleep(0.05)
        say("ready", lg.stats())
        time.sleep(600)
    elif mode == "adopter":
        # Adopts the dead process's spool at init; delivers it; stats once nothing is held
        # (the binding reads none after close).
        lg = rlog.Logger(cfg)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = lg.stats()
            if st.adopted and st.buffered == 0 and st.spooled == 0:
                break
            time.sleep(0.05)
        say("stats", lg.stats())
        lg.close(3000)
    elif mode == "fork":
        # The default logger (as nginx's master inits and its workers fork): N/2 before the fork,
        # then N/2 more in the parent and N/2 in the child, each under its own tag.
        rlog.init(cfg)
        half = n // 2
        for i in range(half):
            rlog.log(rec(tag, i))
        pid = os.fork()
        if pid == 0:
            for i in range(half):
                rlog.log(rec(tag + "c", i))
            st = rlog.stats()
            ok = rlog.shutdown(30000)
            say("child", st)
            print(json.dumps({"child_ok": ok}), flush=True)
            os._exit(0)
        for i in range(half, n):
            rlog.log(rec(tag, i))
        st_before = rlog.stats()
        rlog.shutdown(30000)
        os.waitpid(pid, 0)
        say("parent_before_shutdown", st_before)
    elif mode == "exit":
        # Records held below flush_limit, then a plain exit(): the library's exit flush.
        lib = ctypes.CDLL(os.environ["RLOG_LIB"])
        err = ctypes.create_string_buffer(256)
        assert lib.rlog_init(cfg.encode(), err, 256) == 0, err.value
        for i in range(n):
            r = rec(tag, i)
            lib.rlog_log(r, len(r))
        sys.exit(0)
    elif mode == "reinit":
        # rlog_init with one config, N/2 records, rlog_init with another (flush_limit differs),
        # N/2 more, shutdown.
        rlog.init(cfg)
        half = n // 2
        for i in range(half):
            rlog.log(rec(tag, i))
        say("first", rlog.stats())
        rlog.init(cfg.replace("flush_limit = 2048", "flush_limit = 4096"))
        for i in range(half, n):
            rlog.log(rec(tag, i))
        st_mid = rlog.stats()
        ok = rlog.shutdown(30000)
        say("second_before_shutdown", st_mid)
        print(json.dumps({"shutdown_ok": ok}), flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
