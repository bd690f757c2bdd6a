"""Processes the matrix starts: each in a session of its own (so a peer that forks, as nginx and
clickhouse-server do, is signalled as a whole with killpg on the id of the process we started),
and small waits.

Also the process helpers of the scripts beside the matrix (bench/*.py, fuzz/capture_corpus.py),
which import this module by putting bench/ on sys.path: their peers are plain children (same
session), waited for by a connect and stopped by the id of the process they started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Callable, List, Optional, Tuple

RSYSLOGD = "/usr/sbin/rsyslogd"


def wait_until(pred: Callable[[], bool], timeout: float = 20.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def connect_port(port: int, timeout: float = 20.0, proc: Optional[subprocess.Popen] = None,
                 step: float = 0.05) -> socket.socket:
    """A connection to 127.0.0.1:`port` (connect timeout 1 s, which the socket keeps), tried
    every `step` s for up to `timeout` s; RuntimeError("port N never listened") when nothing
    accepted by then, or as soon as `proc`, when given, has exited. The caller closes it."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            break
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=1)
        except OSError:
            time.sleep(step)
    raise RuntimeError("port %d never listened" % port)


def wait_port(port: int, timeout: float = 20.0, proc: Optional[subprocess.Popen] = None,
              what: Optional[str] = None) -> None:
    """Returns once 127.0.0.1:`port` accepts a connection (closed at once); else exits the
    script (SystemExit) saying so: "port N never listened", or, with `what` (the peer's name),
    "WHAT exited with RC" when `proc` died first and "WHAT did not listen on N"."""
    try:
        connect_port(port, timeout, proc).close()
    except RuntimeError as e:
        if what is None:
            raise SystemExit(str(e)) from None
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}") from None
        raise SystemExit(f"{what} did not listen on {port}") from None


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: Optional[float] = None) -> float:
    """Sends `sig` to the child `proc` (by the id of the process we started) and reaps it; one
    still running after `timeout` s (None: no limit) is SIGKILLed. Returns the seconds from the
    signal until it was reaped."""
    proc.send_signal(sig)
    t0 = time.monotonic()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.monotonic() - t0


def rsyslogd_cmd(d: str, exe: str = RSYSLOGD) -> List[str]:
    """rsyslogd in the foreground on the config d/rsyslog.conf, its pid file d/rsyslogd.pid."""
    return [exe, "-n", "-f", os.path.join(d, "rsyslog.conf"), "-i", os.path.join(d, "rsyslogd.pid")]


def start_rsyslogd(d: str, log, conf: Optional[str] = None, exe: str = RSYSLOGD) -> subprocess.Popen:
    """Starts rsyslogd_cmd(d) as a child (stdin /dev/null), its stdout and stderr into `log`: an
    open file, subprocess.DEVNULL, or a path (appended to). With `conf`, first creates d and
    writes it to d/rsyslog.conf. Stop it with stop()."""
    if conf is not None:
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "rsyslog.conf"), "w") as f:
            f.write(conf)
    out = open(log, "ab") if isinstance(log, str) else log
    try:
        return subprocess.Popen(rsyslogd_cmd(d, exe), stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    finally:
        if out is not log:
            out.close()


def nats_server_cmd(d: str, port: int) -> List[str]:
    """nats-server with JetStream on 127.0.0.1:`port`, its store d/store and pid file d/nats.pid."""
    return ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port),
            "-sd", os.path.join(d, "store"), "-P", os.path.join(d, "nats.pid")]


def start_child(args: List[str], log, env=None) -> subprocess.Popen:
    """A child whose stdin and stdout are pipes of ours, its stderr into `log` (an open file)."""
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env)


def lines_until(p: subprocess.Popen, mark: str) -> List[str]:
    """The lines start_child's `p` prints (stripped), up to the first that starts with `mark`
    (included), or up to the end of its output (then the last one is "")."""
    lines = []
    while True:
        line = p.stdout.readline().decode()
        lines.append(line.strip())
        if line.startswith(mark) or not line:
            return lines


def end_child(p: subprocess.Popen, kill: bool = False) -> Tuple[List[str], float]:
    """Ends start_child's `p`: SIGKILL, or (not `kill`) closes its stdin, at which a child waiting
    on it goes on to exit by itself; reads the rest of its output and reaps it. Returns the
    rest's non-empty lines and the seconds from the SIGKILL or close until it was reaped."""
    if kill:
        p.send_signal(signal.SIGKILL)
    else:
        p.stdin.close()
    t0 = time.monotonic()
    rest = p.stdout.read().decode()
    p.wait()
    return [x for x in rest.splitlines() if x], time.monotonic() - t0


class Proc:
    """One started process (its own session); stopped by its id only."""

    def __init__(self, cmd: List[str], log: str, cwd: Optional[str] = None, env=None):
        self.cmd = cmd
        out = open(log, "ab")
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                  cwd=cwd, env=env, start_new_session=True)
        out.close()

    @property
    def pid(self) -> int:
        return self.p.pid

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.p.pid, sig)
        except ProcessLookupError:
            pass

    def kill9(self) -> None:
        self.signal_group(signal.SIGKILL)
        self.p.wait()

    def term(self, timeout: float = 30.0) -> None:
        self.signal_group(signal.SIGTERM)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def alive(self) -> bool:
        return self.p.poll() is None


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
