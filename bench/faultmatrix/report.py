"""The matrix as text: one line per cell while it runs, and docs/FAULTS.md at the end."""

from __future__ import annotations

import datetime

from . import cells, host
from .peers import PEERS

COLS = ["logged", "sent", "lost", "spooled", "held", "stored", "duplicated", "missing", "extra", "torn",
        "identity"]


def line(r, secs: float) -> str:
    status = "FAIL" if r.failed else "ok"
    if r.error:
        return f"{r.output:10} {r.fault:13} ERROR {r.error}"
    return (f"{r.output:10} {r.fault:13} logged={r.logged} sent={r.sent} lost={r.lost} "
            f"spooled={r.spooled} adopted={r.adopted} stored={r.stored} dup={r.duplicated} "
            f"missing={r.missing} extra={r.extra} torn={r.torn} "
            f"identity={'ok' if r.identity else 'BROKEN'} {r.note} [{secs:.1f}s] {status}")


def _cells(r) -> list:
    if r.error:
        return [f"error: {r.error}"] + [""] * (len(COLS) - 1)
    miss = str(r.missing) if r.must_complete or r.missing == 0 else f"{r.missing}†"
    return [str(r.logged), str(r.sent), str(r.lost), str(r.spooled), str(r.buffered), str(r.stored),
            str(r.duplicated), f"**{miss}**" if r.failed and r.missing else miss, str(r.extra),
            str(r.torn), "ok" if r.identity else "**BROKEN**"]


def markdown(rows, skipped, n, cmd, took) -> str:
    out = [
        "# Fault matrix",
        "",
        "Every output against its real peer (started here on 127.0.0.1, stopped by its process id),",
        "under each fault; and the host faults. Every number comes from the logger's stats and from",
        "what the peer stored, read back from the peer itself (files the collector wrote, `rlogd cat`,",
        "the bodies nginx stored, the JetStream stream's messages, rsyslog's output file, ClickHouse's",
        "rows).",
        "",
        f"Produced by `{cmd}` ({n} records a cell, {len(rows)} cells, {took:.0f} s, on a",
        f"machine shared with other builds; {datetime.date.today().isoformat()}). `make test-faults`",
        "runs `--quick` (a few cells per output, 200 records each) and fails on a failed cell.",
        "",
        "Columns: **logged** records accepted by `log`; **sent**, **lost**, **spooled** the logger's",
        "counters once it holds nothing (or at the drain deadline), **held** what it still held then",
        "(then closed with 3 s); **stored** distinct records of the cell the peer holds;",
        "**duplicated** records the peer holds more than once; **missing** = sent − stored, records",
        "counted sent that the peer does not have (must be 0); **extra** = stored − sent, records",
        "counted lost that the peer has all the same (an over-report of loss); **torn** fragments:",
        "a record's start without the whole record; **identity** `logged + adopted == sent + lost +",
        "spooled + buffered` after the close.",
        "",
        "† an unacknowledged output (tcp, udp, unix, tls) counts a record sent once the kernel took",
        "its bytes (README): what the peer's kernel held when the peer died, or the connection was",
        "reset, is gone by design. Those cells are reported, not failed.",
        "",
        "Faults:",
        "",
    ]
    for f in cells.FAULTS:
        out.append(f"- **{f}**: {cells.FAULT_TEXT[f]}")
    out.append("- **storm** per peer: " + "; ".join(
        f"{name}: {cls.storm}" for name, cls in PEERS.items() if cls.storm))
    out.append("")
    out.append("Logger config in every cell: `" + cells.COMMON.strip().replace("\n", "`, `") + "`,")
    out.append("stats read once nothing is held (60 s at most, 20 s in `stalled`), then a close of 3 s.")
    out.append("")
    by_output = {}
    for r in rows:
        by_output.setdefault(r.output, []).append(r)
    for name, rs in by_output.items():
        out += [f"## {name}", "", "| fault | " + " | ".join(COLS) + " | note |",
                "|---|" + "---:|" * len(COLS) + "---|"]
        for r in rs:
            out.append(f"| {r.fault} | " + " | ".join(_cells(r)) + f" | {r.note} |")
        out.append("")
        if name == "host":
            for f, text in host.FAULT_TEXT.items():
                out.append(f"- **{f}**: {text}")
            out.append("")
    if skipped:
        out += ["## Cells that do not apply", ""]
        for name, fault, why in skipped:
            out.append(f"- {name} × {fault}: {why}")
        out.append("")
    return "\n".join(out)
