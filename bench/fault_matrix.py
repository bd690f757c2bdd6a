#!/usr/bin/env python3
"""The fault matrix (issue 18): every output against its real peer under each fault, and the host
faults, counted from what the peer stored; prints the tables and writes docs/FAULTS.md.

    python3 bench/fault_matrix.py            # the full run (N = 2000 records a cell)
    python3 bench/fault_matrix.py --quick    # a few cells per output, N = 200 (make test-faults)
    python3 bench/fault_matrix.py --only http,nats --faults killed,storm

Exit status 1 when a cell shows a record counted sent but not at the peer where that must not
happen (missing > 0), a broken stats identity, or a cell that could not run.
Needs `cargo build --release` (librlog.so, rlogd) and the peers of .ci/deps.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
os.environ.setdefault("RLOG_LIB", os.path.join(ROOT, "target", "release", "librlog.so"))

from faultmatrix import cells, host, report  # noqa: E402
from faultmatrix.peers import PEERS  # noqa: E402

QUICK = {
    "tcp": ["down_at_start", "killed", "slow"],
    "udp": ["down_at_start"],
    "unix": ["reset"],
    "tls": ["stalled"],
    "rlogd": ["killed", "reset"],
    "http": ["storm", "killed"],
    "nats": ["storm", "killed"],
    "relp": ["killed"],
    "clickhouse": ["killed"],
}
QUICK_HOST = ["kill9_spool", "fork", "exit", "reinit"]


def tls_files(d: str):
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-days", "2", "-subj", "/CN=fm CA", "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-new", *ec, "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "req.csr")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "ext.cnf", "-out", "cert.pem")
    return tuple(os.path.join(d, x) for x in ("cert.pem", "key.pem", "ca.pem"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-n", type=int, help="records a cell (default 2000, quick 200)")
    ap.add_argument("--only", help="outputs, comma-separated (and 'host')")
    ap.add_argument("--faults", help="faults, comma-separated")
    ap.add_argument("--out", help="the Markdown file to write (default docs/FAULTS.md on a full "
                                  "run, none on --quick)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    n = a.n or (200 if a.quick else 2000)
    only = a.only.split(",") if a.only else list(PEERS) + ["host"]
    faults = a.faults.split(",") if a.faults else None
    work = tempfile.mkdtemp(prefix="rlog-fm-")
    tls = tls_files(work)
    rows, skipped = [], []
    t0 = time.monotonic()
    for name, cls in PEERS.items():
        if name not in only:
            continue
        for fault in cells.FAULTS:
            if faults and fault not in faults:
                continue
            if a.quick and not faults and fault not in QUICK.get(name, []):
                continue
            why = cells.applies(cls, fault)
            if why:
                skipped.append((name, fault, why))
                continue
            t = time.monotonic()
            row = cells.run_cell(cls, fault, n, work, tls)
            rows.append(row)
            print(report.line(row, time.monotonic() - t), flush=True)
    if "host" in only:
        for fault in host.FAULTS:
            if faults and fault not in faults:
                continue
            t = time.monotonic()
            row = host.run(fault, n, work)
            rows.append(row)
            print(report.line(row, time.monotonic() - t), flush=True)
    took = time.monotonic() - t0
    cmd = "python3 bench/fault_matrix.py " + " ".join(sys.argv[1:])
    text = report.markdown(rows, skipped, n, cmd.strip(), took)
    out = a.out or (None if a.quick else os.path.join(ROOT, "docs", "FAULTS.md"))
    if out:
        with open(out, "w") as f:
            f.write(text)
        print(f"wrote {out}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work directory kept: {work}")
    bad = [r for r in rows if r.failed]
    for r in bad:
        print(f"FAILED {r.output}/{r.fault}: missing={r.missing} identity={'ok' if r.identity else 'BROKEN'}"
              f" {r.error}", file=sys.stderr)
    print(f"{len(rows)} cells in {took:.0f} s, {len(bad)} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
