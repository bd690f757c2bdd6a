"""Run Debian's nginx + libnginx-mod-http-lua with the rlog Lua binding, for the nginx tests and
the nginx benchmark: its own prefix dir, pid file and error log, 127.0.0.1 on a free high port.

    ng = Nginx(tmpdir, librlog, http_block=..., workers=2).start()
    ng.get("/t?id=1")          -> (status, body)
    ng.reload(new_http_block)  # nginx -s reload, waits for the old workers to be gone
    ng.quit()                  # nginx -s quit, waits for the master to exit
    ng.stop()                  # always safe: quit, then kill what is left
    ng.error_log()             -> str

``http_block`` is the text inside ``http { }``; ``Nginx.server(locations)`` makes the server block
listening on 127.0.0.1:{port}; ``main_extra`` goes before ``events``; ``lua_path`` replaces the
default ``lua_package_path`` (bindings/lua first).
"""

from __future__ import annotations

import http.client
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
LUA_DIR = REPO_ROOT / "bindings" / "lua"
MODULES = pathlib.Path("/usr/lib/nginx/modules")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_missing() -> str | None:
    """Why nginx with the Lua module cannot run here, or None when it can."""
    if not os.path.exists(NGINX):
        return "nginx is not installed (apt-get install nginx libnginx-mod-http-lua)"
    for m in ("ndk_http_module.so", "ngx_http_lua_module.so"):
        if not (MODULES / m).exists():
            return f"{MODULES / m} missing (apt-get install libnginx-mod-http-lua)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_of_master(master: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == master:
                out.append(int(d))
    return out


class Nginx:
    def __init__(self, prefix: pathlib.Path | str, librlog: str, http_block: str,
                 workers: int = 1, main_extra: str = "", error_level: str = "info",
                 port: int | None = None, lua_path: str | None = None,
                 extra_env: dict | None = None):
        self.prefix = pathlib.Path(prefix)
        self.librlog = librlog
        self.workers = workers
        self.main_extra = main_extra
        self.error_level = error_level
        self.port = port or _free_port()
        self.lua_path = lua_path or f"{LUA_DIR}/?.lua;;"
        self.env = dict(os.environ, RLOG_LIB=librlog, **(extra_env or {}))
        self.proc: subprocess.Popen | None = None
        for d in ("logs", "tmp", "conf"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        self.conf = self.prefix / "conf" / "nginx.conf"
        self.write_conf(http_block)

    # -- configuration ---------------------------------------------------------------------------
    def render(self, http_block: str) -> str:
        p = self.prefix
        user = "user root;" if os.geteuid() == 0 else ""
        return f"""
load_module {MODULES}/ndk_http_module.so;
load_module {MODULES}/ngx_http_lua_module.so;
{user}
worker_processes {self.workers};
daemon off;
master_process on;
pid {p}/logs/nginx.pid;
error_log {p}/logs/error.log {self.error_level};
env RLOG_LIB;
{self.main_extra}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    lua_package_path "{self.lua_path}";
    {http_block}
}}
"""

    def write_conf(self, http_block: str) -> None:
        self.conf.write_text(self.render(http_block.replace("{port}", str(self.port))))

    @staticmethod
    def server(locations: str) -> str:
        """A server block on 127.0.0.1:{port} around ``locations``."""
        return "server { listen 127.0.0.1:{port}; " + locations + " }"

    # -- lifecycle -------------------------------------------------------------------------------
    def _cmd(self, *extra: str) -> list[str]:
        return [NGINX, "-p", str(self.prefix), "-c", str(self.conf),
                "-e", str(self.prefix / "logs" / "error.log"), *extra]

    def start(self, timeout: float = 10.0) -> "Nginx":
        env = self.env
        t = subprocess.run(self._cmd("-t", "-q"), env=env, capture_output=True, text=True)
        if t.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {t.stderr}")
        self.proc = subprocess.Popen(self._cmd(), env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode()}\n{self.error_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                if len(self.worker_pids()) >= self.workers:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not start listening in time:\n" + self.error_log())

    def worker_pids(self) -> list[int]:
        return _pids_of_master(self.proc.pid) if self.proc else []

    def signal(self, name: str) -> None:
        subprocess.run(self._cmd("-s", name), check=True, env=self.env, capture_output=True)

    def reload(self, http_block: str | None = None, timeout: float = 15.0) -> None:
        """`nginx -s reload`; returns once all the old workers have exited and new ones run."""
        if http_block is not None:
            self.write_conf(http_block)
        old = set(self.worker_pids())
        self.signal("reload")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = set(self.worker_pids())
            if not (now & old) and len(now) >= self.workers:
                return
            time.sleep(0.05)
        raise RuntimeError("nginx reload did not complete in time:\n" + self.error_log())

    def quit(self, timeout: float = 15.0) -> int:
        """`nginx -s quit` (graceful); waits for the master to exit; returns its exit status."""
        self.signal("quit")
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Stops nginx whatever its state (graceful first, then SIGKILL)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        workers = self.worker_pids()
        try:
            self.proc.send_signal(signal.SIGQUIT)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            for pid in [self.proc.pid, *workers]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- requests and logs -----------------------------------------------------------------------
    def get(self, path: str, timeout: float = 10.0) -> tuple[int, str]:
        """One GET on a fresh connection; returns (status, body)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", path, headers={"Connection": "close"})
            r = c.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            c.close()

    def error_log(self) -> str:
        try:
            return (self.prefix / "logs" / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def problems(self) -> list[str]:
        """Error-log lines at warn level or above (none expected when nothing is wrong)."""
        return [ln for ln in self.error_log().splitlines()
                if re.search(r"\[(warn|error|crit|alert|emerg)\]", ln)]
