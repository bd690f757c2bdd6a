"""The disk spool in real nginx (SPEC §6): two workers log every request from log_by_lua with
`spool = DIR` while the collector is down; `nginx -s quit` (through the pid file); the collector
comes up and nginx starts again with the same config; every request's line arrives exactly
once, delivered from the spool the first run's workers left (the `adopted` counter), and nothing
was lost at the first run's exit.

The logger is initialised in each worker (lazily at its first log_by_lua, or in
init_worker_by_lua), as the binding's README says, or in the master (init_by_lua) before it
forks the workers; each worker has its own spool instance. An
exit_worker_by_lua handler writes each worker's counters to the error log, so the test reads
every worker's, not only the one a request happens to reach."""

from __future__ import annotations

import re
import socket

import pytest

from nginx_helpers import Nginx, nginx_missing
from conftest import Collector
from test_nginx_delivery import INIT, LOG_BY_LUA, assert_exactly_once, drive, lua_table


@pytest.fixture(autouse=True)
def _nginx_installed():
    why = nginx_missing()
    if why:
        pytest.fail(why)


EXIT_WORKER = """
exit_worker_by_lua_block {
    local s = require("resty.rlog").stats()
    if s then
        ngx.log(ngx.NOTICE, "rlog-exit pid=", ngx.worker.pid(), " logged=", s.logged,
                " adopted=", s.adopted, " sent=", s.sent, " lost=", s.lost,
                " spooled=", s.spooled, " buffered=", s.buffered, " dropped=", s.dropped)
    end
}
"""

FIELDS = ("logged", "adopted", "sent", "lost", "spooled", "buffered", "dropped")


def exit_counters(log: str) -> list[dict]:
    """Each exited worker's counters, from its rlog-exit line."""
    return [{k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}
            for m in re.finditer(r"rlog-exit (pid=\d+(?: \w+=\d+)+)", log)]


def block(cfg: dict, init_in: str) -> str:
    init = INIT.replace("CFG", lua_table(cfg))
    lazy = init_in == "log"
    log = LOG_BY_LUA.replace("INIT", init if lazy else 'local logger = require "resty.logger.socket"')
    early = {"log": "", "worker": "init_worker_by_lua_block { " + init + " }",
             "master": "init_by_lua_block { " + init + " }"}[init_in]
    return (early + EXIT_WORKER
            + Nginx.server("location /t { content_by_lua_block { ngx.say(\"ok\") } " + log + " }"))


@pytest.mark.parametrize("init_in,flush_limit", [("log", 1048575), ("worker", 1), ("master", 1048575)],
                         ids=["lazy-init-held-until-quit", "init-worker-spooled-while-running",
                              "init-in-master-forked-held-until-quit"])
def test_quit_with_the_collector_down_then_restart_delivers_every_request_once(
        tmp_path, librlog, init_in, flush_limit):
    n, more = 300, 20
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = held.getsockname()[1]
    spool = tmp_path / "spool"
    cfg = {"host": "127.0.0.1", "port": port, "spool": str(spool), "flush_limit": flush_limit,
           "drop_limit": 1048576, "max_retry_times": 0, "retry_interval": 10, "timeout": 300}
    ng = Nginx(tmp_path / "ng", librlog, block(cfg, init_in), workers=2)
    collector = None
    try:
        ng.start()
        drive(ng, range(n))
        assert ng.quit() == 0
        first = ng.error_log()
        # Nothing was lost at exit: what the workers held went to disk, not to the
        # "could not be delivered before exit" line.
        assert not [ln for ln in first.splitlines() if ln.startswith("rlog: ")], first[-3000:]
        c1 = exit_counters(first)
        assert c1, first[-3000:]
        assert sum(c["logged"] for c in c1) == n, c1
        assert all(c["sent"] == 0 and c["lost"] == 0 and c["dropped"] == 0 for c in c1), c1
        for c in c1:
            assert c["logged"] + c["adopted"] == c["sent"] + c["lost"] + c["spooled"] + c["buffered"], c
        assert any(spool.rglob("*.seg")), "the spool holds segments"

        # The collector comes up on the same port; nginx starts again with the same config.
        held.close()
        collector = Collector("tcp", port=port).start()
        ng.start()
        # Lazily initialised workers start their logger (and adopt) at their first request.
        drive(ng, range(n, n + more))
        assert collector.wait_for(n_lines=n + more, timeout=30), (
            f"{len(collector.lines())}/{n + more} lines\n" + ng.error_log()[-3000:])
        assert ng.quit() == 0
        assert_exactly_once(collector.lines(), n + more)
        assert len(collector.lines()) == n + more
        c2 = exit_counters(ng.error_log()[len(first):])
        assert c2, ng.error_log()[-3000:]
        # With init_by_lua the master adopts everything at its init, before it forks, and
        # delivers it (it has no exit_worker line); the workers adopt nothing.
        by_workers = 0 if init_in == "master" else n
        assert sum(c["adopted"] for c in c2) == by_workers, c2
        assert sum(c["sent"] for c in c2) == by_workers + more, c2
        assert sum(c["logged"] for c in c2) == more, c2
        assert all(c["lost"] == 0 and c["spooled"] == 0 and c["buffered"] == 0 for c in c2), c2
        assert not list(spool.rglob("*.seg")), "every segment delivered and removed"
    finally:
        ng.stop()
        held.close()
        if collector:
            collector.close()
