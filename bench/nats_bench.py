#!/usr/bin/env python3
"""Issue 16: acknowledged messages per second into NATS JetStream, rlog against nats-py.

    cargo build --release && python3 bench/nats_bench.py [N] [--rounds R]

One nats-server (Debian's, `-js`, file storage, a temp store dir, 127.0.0.1, a free port) and one
stream per sender (subjects `bench.<sender>`, file storage, the default 2-minute duplicate window).
Each round runs every sender once, in turn, on N records of 200 bytes (unique), after purging its
stream; a run ends when every record is acknowledged, and the stream's message count is checked
to be N. Senders:

- rlog: `logger = nats://127.0.0.1:PORT/bench.rlog` through the Python binding (ctypes); `log`
  returns at once, so the time is from the first `log` call until `sent == N` in the stats
  (every PubAck received). Each message carries a Nats-Msg-Id (deduplication on).
- nats-py naive: `await js.publish(subject, data)` one after the other (each waits for its
  PubAck) - the straightforward way to publish with acks from Python.
- nats-py window: the same publishes with a Nats-Msg-Id header, 1024 in flight at once
  (`asyncio.gather` over slices of 1024), as rlog's default `nats_window` - what a careful Python
  producer does.

The naive sender runs on N/10 records (it is slow); rates are per second either way. Prints
each round's rates and the medians, and the ratios rlog / nats-py.
"""
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
# The process helpers shared by the bench scripts live in bench/faultmatrix/procs.py.
sys.path.insert(0, HERE)
os.environ.setdefault("RLOG_LIB", os.path.join(ROOT, "target", "release", "librlog.so"))

import nats  # noqa: E402
import rlog  # noqa: E402
from faultmatrix.procs import free_port, nats_server_cmd  # noqa: E402


def records(n, tag):
    out = []
    for i in range(n):
        m = f"{tag} record {i:09} ".encode()
        out.append(m + b"x" * (200 - len(m)))
    return out


async def with_js(port, fn):
    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


def reset_stream(port, name):
    async def go(js):
        try:
            await js.delete_stream(name)
        except Exception:
            pass
        await js.add_stream(name=name, subjects=[f"bench.{name.lower()}"], storage="file")
    asyncio.run(with_js(port, go))


def stream_count(port, name):
    async def go(js):
        return (await js.stream_info(name)).state.messages
    return asyncio.run(with_js(port, go))


def run_rlog(port, recs):
    lg = rlog.Logger({
        "logger": f"nats://127.0.0.1:{port}/bench.rlog",
        "flush_limit": 1 << 20,
        "drop_limit": 1 << 30,
        "timeout": 5000,
    })
    n = len(recs)
    t0 = time.perf_counter()
    for r in recs:
        lg.log(r)
    lg.flush()
    while lg.stats().sent < n:
        time.sleep(0.0005)
    dt = time.perf_counter() - t0
    st = lg.stats()
    assert (st.sent, st.lost) == (n, 0), st
    lg.close()
    return n / dt


def run_py_naive(port, recs):
    async def go(js):
        t0 = time.perf_counter()
        for r in recs:
            await js.publish("bench.naive", r)
        return time.perf_counter() - t0
    return len(recs) / asyncio.run(with_js(port, go))


def run_py_window(port, recs, window=1024):
    async def go(js):
        t0 = time.perf_counter()
        for at in range(0, len(recs), window):
            chunk = recs[at:at + window]
            await asyncio.gather(*(
                js.publish("bench.window", r, headers={"Nats-Msg-Id": f"py-{at + i}"})
                for i, r in enumerate(chunk)
            ))
        return time.perf_counter() - t0
    return len(recs) / asyncio.run(with_js(port, go))


def main():
    args = sys.argv[1:]
    rounds = 3
    if "--rounds" in args:
        i = args.index("--rounds")
        rounds = int(args[i + 1])
        del args[i:i + 2]
    n = int(args[0]) if args else 100_000
    tmp = tempfile.mkdtemp(prefix="rlog-nats-bench-")
    port = free_port()
    log = open(os.path.join(tmp, "nats.log"), "wb")
    srv = subprocess.Popen(nats_server_cmd(tmp, port),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                    if c.recv(4) == b"INFO":
                        break
            except OSError:
                time.sleep(0.05)
        senders = [
            ("rlog", "RLOG", run_rlog, n),
            ("nats-py naive", "NAIVE", run_py_naive, max(n // 10, 1000)),
            ("nats-py window", "WINDOW", run_py_window, n),
        ]
        rates = {name: [] for name, *_ in senders}
        for r in range(rounds):
            for name, stream, fn, count in senders:
                reset_stream(port, stream)
                recs = records(count, stream)
                rate = fn(port, recs)
                got = stream_count(port, stream)
                assert got == count, f"{name}: the stream holds {got} of {count}"
                rates[name].append(rate)
                print(f"round {r + 1}: {name:15} {count:8} records  {rate:10.0f} acked msgs/s", flush=True)
        med = {k: statistics.median(v) for k, v in rates.items()}
        print()
        for k, v in med.items():
            print(f"median {k:15} {v:10.0f} acked msgs/s")
        print(f"rlog / nats-py naive  = {med['rlog'] / med['nats-py naive']:.1f}x")
        print(f"rlog / nats-py window = {med['rlog'] / med['nats-py window']:.1f}x")
    finally:
        srv.kill()
        srv.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
