"""One cell of the output matrix: an output, its real peer, one fault; the logger is an
independent rlog.Logger in this process (the Python binding over librlog), and every count
comes from the logger's stats and from what the peer stored."""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
import uuid
from typing import Optional

import rlog

from .peers import ClickHouse, Peer
from .procs import wait_until
from .proxy import Proxy

FAULTS = ["down_at_start", "killed", "stalled", "slow", "reset", "storm", "restarted"]

FAULT_TEXT = {
    "down_at_start": "peer down at start, started 1 s later (0.4 of the way in the full run) on "
                     "the same port",
    "killed": "peer kill -9 mid-stream (0.4 of the way), restarted 0.5 s later on the same port "
              "and store",
    "stalled": "peer SIGSTOPped mid-stream (the kernel accepts, nobody reads) until the logger "
               "holds nothing more (it gave up: lost) or 20 s, then SIGCONT",
    "slow": "slow reader: ~4 s for the volume (512-byte reads, 4 KiB receive buffer)",
    "reset": "reset mid-batch: a proxy resets (RST) each of the first 3 connections after 1500 bytes",
    "storm": "error storm",
    "restarted": "peer stopped with SIGTERM mid-stream, restarted 0.5 s later",
}

COMMON = ("flush_limit = 2048\ndrop_limit = 67108864\ntimeout = 1000\nretry_interval = 50\n"
          "max_retry_times = 8\nperiodic_flush = 0.05\n")
PAD = 60


@dataclasses.dataclass
class Row:
    output: str
    fault: str
    logged: int = 0
    dropped: int = 0
    sent: int = 0
    lost: int = 0
    spooled: int = 0
    buffered: int = 0
    adopted: int = 0
    stored: int = 0  # distinct records of this cell the peer holds
    duplicated: int = 0  # records the peer holds more than once
    torn: int = 0  # fragments: the tag without a whole record
    identity: bool = True
    must_complete: bool = True  # missing > 0 is a failure in this cell
    note: str = ""
    error: str = ""

    @property
    def missing(self) -> int:
        return max(0, self.sent - self.stored)

    @property
    def extra(self) -> int:
        """Records the peer stored that rlog counted lost (an over-report, not a loss)."""
        return max(0, self.stored - self.sent)

    @property
    def failed(self) -> bool:
        return bool(self.error) or not self.identity or (self.must_complete and self.missing > 0)


def record(peer: Peer, tag: str, i: int) -> bytes:
    body = f"{tag}:{i}:{'x' * PAD}:end"
    if isinstance(peer, ClickHouse):
        return f'{{"id":{i},"msg":"{body}"}}'.encode()
    return (body + "\n").encode() if peer.newline else body.encode()


def count(row: Row, data: bytes, tag: str) -> None:
    whole = re.findall(rf"{tag}:(\d+):x{{{PAD}}}:end".encode(), data)
    seen = {}
    for i in whole:
        seen[i] = seen.get(i, 0) + 1
    row.stored = len(seen)
    row.duplicated = sum(1 for v in seen.values() if v > 1)
    row.torn = data.count(tag.encode() + b":") - len(whole)


def fill(row: Row, st) -> None:
    row.logged, row.dropped, row.sent, row.lost = st.logged, st.dropped, st.sent, st.lost
    row.spooled, row.buffered, row.adopted = st.spooled, st.buffered, st.adopted
    row.identity = row.identity and st.balanced()


def applies(peer_cls, fault: str) -> Optional[str]:
    """None when the cell runs, else why it does not."""
    if fault == "storm" and peer_cls.storm is None:
        return "no error reply in this protocol" if not peer_cls.acked else \
            "no scripted error storm for this peer yet"
    if fault == "reset" and peer_cls.name == "udp":
        return "no connection to reset"
    if fault == "stalled" and peer_cls.name == "udp":
        return "datagrams: the kernel drops what a stopped reader does not take"
    return None


def run_cell(peer_cls, fault: str, n: int, workdir: str, tls=None) -> Row:
    row = Row(peer_cls.name, fault)
    tag = "t" + uuid.uuid4().hex[:10]
    d = os.path.join(workdir, f"{peer_cls.name}-{fault}")
    peer = peer_cls(d, *tls) if peer_cls.name == "tls" else peer_cls(d)
    # Unacknowledged outputs count "sent" once the kernel took the bytes: a peer that dies or a
    # connection reset loses what its kernel held, by design (README: sent = written).
    if not peer.acked and fault in ("killed", "reset", "restarted"):
        row.must_complete = False
    if peer_cls.name == "udp" and fault == "down_at_start":
        row.must_complete = False
    proxy = None
    lg = None
    try:
        total = n * (PAD + 20)
        if fault == "slow" and not peer.proxied:
            peer.rate = max(2000, total // 4)
        if fault != "down_at_start":
            peer.start()
            if fault == "storm":
                if isinstance(peer, ClickHouse):
                    peer.prepare(tag, table=False)
            else:
                peer.prepare(tag)
        addr = peer.addr
        if fault == "slow" and peer.proxied:
            proxy = Proxy(_listen_like(addr, d), addr, "slow", rate=max(2000, total // 4))
        elif fault == "reset":
            proxy = Proxy(_listen_like(addr, d), addr, "cut", after=1500, cuts=3)
        if proxy is not None:
            addr = proxy.listen
        cfg = peer.target(tag, addr, storm=fault == "storm") + COMMON
        lg = rlog.Logger(cfg)
        # A writer thread logs the N records evenly over `span` seconds; the fault strikes
        # while it runs (at 0.4 span), so the stream is really in flight.
        span = 2.0 if n <= 500 else 4.0

        def writer() -> None:
            t0 = time.monotonic()
            for i in range(n):
                lg.log(record(peer, tag, i))  # a drop (0) is counted by the library
                if i % 10 == 9:
                    ahead = t0 + span * (i + 1) / n - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)

        w = threading.Thread(target=writer)
        w.start()
        time.sleep(0.4 * span)
        if fault == "down_at_start":
            time.sleep(1.0 - 0.4 * span if span < 2.5 else 0)
            peer.start()
            peer.prepare(tag)
        elif fault == "killed":
            peer.kill9()
            time.sleep(0.5)
            peer.start()
        elif fault == "restarted":
            peer.stop()
            time.sleep(0.5)
            peer.start()
        elif fault == "stalled":
            peer.freeze()
        elif fault == "storm":
            threading.Timer(max(0.0, 1.5 - 0.4 * span), peer.end_storm, args=(tag,)).start()
        w.join()
        # The binding reads no stats after close: wait until nothing is held (every record
        # settled as sent, lost or spooled), read them, then close.
        # (No flush(): it would wait on a stalled peer; periodic_flush sends what is left.)
        drain = 20 if fault == "stalled" else 60
        wait_until(lambda: lg.stats().buffered == 0, drain, 0.05)
        fill(row, lg.stats())
        if row.buffered:
            row.note = f"{row.buffered} still held after {drain} s; "
        lg.close(3000)
        lg = None
        if fault == "stalled":
            peer.thaw()
        # What the peer stored: poll until it holds what was counted sent (ClickHouse and
        # rsyslog write asynchronously to their readers), then once more after a pause.
        _wait_stored(peer, tag, row)
        time.sleep(0.5)
        count(row, peer.stored(tag), tag)
        if proxy is not None and proxy.mode == "cut":
            row.note += f"{proxy.cut_done} connection(s) reset"
    except Exception as e:  # a cell that cannot run is reported, not hidden
        row.error = f"{type(e).__name__}: {e}"
    finally:
        if lg is not None:
            lg.close(1000)
        if proxy is not None:
            proxy.close()
        peer.close()
    return row


def _wait_stored(peer, tag, row, limit: float = 15.0, still: float = 2.0) -> None:
    """Polls the peer until it holds what was counted sent, or its count stayed the same for
    `still` seconds, or `limit` passed."""
    last, since = -1, time.monotonic()
    end = time.monotonic() + limit
    while time.monotonic() < end:
        probe = Row(row.output, row.fault)
        try:
            count(probe, peer.stored(tag), tag)
        except Exception:
            probe.stored = -1
        if probe.stored >= row.sent:
            return
        if probe.stored != last:
            last, since = probe.stored, time.monotonic()
        elif time.monotonic() - since >= still:
            return
        time.sleep(0.2)


def _listen_like(addr, d):
    return os.path.join(d, "proxy.sock") if isinstance(addr, str) else ("127.0.0.1", 0)
