"""Processes the matrix starts: each in a session of its own (so a peer that forks, as nginx and
clickhouse-server do, is signalled as a whole with killpg on the id of the process we started),
and small waits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Callable, List, Optional


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
