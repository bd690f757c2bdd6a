#!/usr/bin/env python3
"""Issue 15: lines/s of 200-byte JSON lines over HTTP into one nginx, rlog's http:// output
(NDJSON, 1 MiB batches, with and without gzip) against rsyslog's omelasticsearch (bulk mode,
1 MiB requests) — the same lines, the same nginx, the same run.

    make build && python3 bench/http_vs_rsyslog.py [N] [ROUNDS]

(`make build`, not only `cargo build --release`: it adds the `librlog.so.0` link that programs
linked with `-lrlog`, such as build/http_bench, ask the loader for.)

nginx (Debian's, with libnginx-mod-http-lua; one worker, 127.0.0.1, its own temp dir):
 - `/ok` answers 204 (nginx reads and drops the body); its log phase adds the record count of
   `X-Rlog-Batch` (`PRODUCER-SEQ-COUNT`) to a counter: what rlog's requests carried;
 - `/_bulk` (and `/INDEX/_bulk`) is a STAND-IN FOR ELASTICSEARCH, not Elasticsearch (which
   cannot run here): a Lua handler reads the body, counts its lines (action + document: two
   per record) and answers as `_bulk` does, 200 `{"took":1,"errors":false,"items":[...]}`
   with one `{"index":{"_id":...,"status":201}}` item per record;
 - `/` answers 200 (a health check).
Each round, in turn:
 - rlog plain, rlog gzip: `build/http_bench rlog N URL [gzip]` (bench/http_bench.c through the
   C ABI), timed by itself from the first `rlog_logger_log` until `rlog_logger_stats` says
   `sent` = N;
 - rsyslog: a fresh rsyslogd (imptcp -> omelasticsearch, bulkmode, maxbytes 1m, action queue
   dequeueBatchSize 8192, template `%rawmsg%`: the line as received) is started and listening;
   the N lines are written to its imptcp port by this script, timed from the first byte sent
   until nginx has counted N documents.
Prints lines/s of each, per round and median, the ratios rlog/rsyslog (medians and per round),
and checks nginx's counts (every line once).
"""
import os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "build", "http_bench")
MODULES = "/usr/share/nginx/modules"
# The process helpers shared by the bench scripts live in bench/faultmatrix/procs.py.
sys.path.insert(0, HERE)
from faultmatrix.procs import free_port, start_rsyslogd, stop, wait_port  # noqa: E402


NGINX_CONF = r"""
load_module MODULES/ndk_http_module.so;
load_module MODULES/ngx_http_lua_module.so;
USER
worker_processes 1;
daemon off;
master_process on;
pid D/nginx.pid;
error_log D/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path D/tmp;
    lua_shared_dict st 1m;
    client_max_body_size 64m;
    client_body_buffer_size 8m;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    init_by_lua_block {
        local ffi = require "ffi"
        ffi.cdef "void *memchr(const void *s, int c, size_t n);"
        local C = ffi.C
        function count_lines(s)
            local p, n, left = ffi.cast("const char *", s), 0, #s
            while left > 0 do
                local q = C.memchr(p, 10, left)
                if q == nil then break end
                q = ffi.cast("const char *", q)
                n = n + 1
                left = left - (q - p) - 1
                p = q + 1
            end
            return n
        end
    }
    server {
        listen 127.0.0.1:PORT;
        location = /ok {
            return 204;
            log_by_lua_block {
                local id = ngx.var.http_x_rlog_batch
                local n = id and tonumber(id:match("-(%d+)$"))
                if n and ngx.status == 204 then
                    local st = ngx.shared.st
                    st:incr("rlog", n, 0)
                    st:incr("rlog_req", 1, 0)
                    st:incr("rlog_bytes", tonumber(ngx.var.http_content_length) or 0, 0)
                end
            }
        }
        location ~ _bulk$ {
            content_by_lua_block {
                ngx.req.read_body()
                local body = ngx.req.get_body_data()
                if not body then
                    local f = ngx.req.get_body_file()
                    if f then local h = io.open(f, "rb"); body = h:read("*a"); h:close() end
                end
                local docs = math.floor(count_lines(body or "") / 2)
                local base = ngx.shared.st:incr("es", docs, 0) - docs
                ngx.shared.st:incr("es_req", 1, 0)
                ngx.shared.st:incr("es_bytes", #(body or ""), 0)
                local items = {}
                for i = 1, docs do
                    items[i] = '{"index":{"_index":"logs","_id":"' .. (base + i)
                        .. '","_version":1,"result":"created","status":201}}'
                end
                ngx.header["Content-Type"] = "application/json; charset=UTF-8"
                ngx.print('{"took":1,"errors":false,"items":[', table.concat(items, ","), ']}')
            }
        }
        location = /count {
            content_by_lua_block {
                local st = ngx.shared.st
                ngx.say(st:get("rlog") or 0, " ", st:get("es") or 0, " ", st:get("rlog_req") or 0,
                        " ", st:get("rlog_bytes") or 0, " ", st:get("es_req") or 0, " ",
                        st:get("es_bytes") or 0)
            }
        }
        location / { return 200 '{"status":"green"}'; }
    }
}
"""

RSYSLOG_CONF = """
global(workDirectory="{d}" maxMessageSize="8k")
module(load="imptcp")
module(load="omelasticsearch")
template(name="raw" type="string" string="%rawmsg%")
input(type="imptcp" port="{port}" address="127.0.0.1" ruleset="es")
ruleset(name="es" queue.type="LinkedList" queue.size="2000000" queue.dequeueBatchSize="8192") {{
  action(type="omelasticsearch" server="127.0.0.1" serverport="{nport}" searchIndex="logs"
         template="raw" bulkmode="on" maxbytes="1m"
         queue.type="LinkedList" queue.size="2000000" queue.dequeueBatchSize="8192"
         action.resumeRetryCount="-1")
}}
"""


class Nginx:
    def __init__(self, d):
        self.d, self.port = d, free_port()
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        conf = (NGINX_CONF.replace("MODULES", MODULES).replace("PORT", str(self.port))
                .replace("USER", "user root;" if os.geteuid() == 0 else "").replace("D/", d + "/"))
        path = os.path.join(d, "nginx.conf")
        open(path, "w").write(conf)
        self.p = subprocess.Popen(["nginx", "-p", d, "-c", path, "-e", os.path.join(d, "error.log")])
        wait_port(self.port)

    def counts(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/count" % self.port, timeout=10) as r:
            return [int(x) for x in r.read().split()]

    def stop(self):
        stop(self.p, signal.SIGQUIT, 10)


def rlog_round(ng, n, gzip):
    c0 = ng.counts()
    before = c0[0]
    args = [BIN, "rlog", str(n), "http://127.0.0.1:%d/ok" % ng.port] + (["gzip"] if gzip else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit("http_bench failed: %s %s" % (out.stdout, out.stderr))
    line = out.stdout.strip()
    rate = float(line.split("(")[1].split()[0])
    c1 = ng.counts()
    got = c1[0] - before
    if got != n:
        raise SystemExit("nginx counted %d of rlog's %d lines" % (got, n))
    reqs = c1[2] - c0[2]
    return rate, "%s; %d requests, %.0f body bytes each" % (line, reqs, (c1[3] - c0[3]) / max(reqs, 1))


def rsyslog_round(base, ng, data, n, r):
    d = os.path.join(base, "rsyslog%d" % r)
    os.makedirs(d)
    port = free_port()
    p = start_rsyslogd(d, os.path.join(d, "out"), RSYSLOG_CONF.format(d=d, port=port, nport=ng.port))
    try:
        wait_port(port)
        c0 = ng.counts()
        before = c0[1]
        t0 = time.monotonic()
        s = socket.create_connection(("127.0.0.1", port)); s.sendall(data); s.close()
        deadline = t0 + 600
        while ng.counts()[1] - before < n:
            if time.monotonic() > deadline:
                raise SystemExit("rsyslog: nginx counted %d of %d (see %s/out)"
                                 % (ng.counts()[1] - before, n, d))
            time.sleep(0.01)
        t1 = time.monotonic()
        time.sleep(0.3)
        c1 = ng.counts()
        got = c1[1] - before
        if got != n:
            raise SystemExit("nginx counted %d of rsyslog's %d lines" % (got, n))
        reqs = c1[4] - c0[4]
        return n / (t1 - t0), "%d requests, %.0f body bytes each" % (reqs, (c1[5] - c0[5]) / max(reqs, 1))
    finally:
        stop(p)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if not os.access(BIN, os.X_OK):
        raise SystemExit("%s missing: cc -O2 -Iinclude -o build/http_bench bench/http_bench.c "
                         "-Ltarget/release -lrlog -Wl,-rpath,$PWD/target/release" % BIN)
    base = tempfile.mkdtemp(prefix="http-bench-")
    lines = os.path.join(base, "lines")
    subprocess.run([BIN, "lines", str(n), lines], check=True)
    data = open(lines, "rb").read()
    ng = Nginx(os.path.join(base, "nginx"))
    res = {"rlog": [], "rlog gzip": [], "rsyslog": []}
    try:
        print("%d lines of %d bytes per run, %d rounds, %d cores (shared)"
              % (n, len(data) // n, rounds, os.cpu_count()), flush=True)
        for r in range(rounds):
            order = ["rlog", "rlog gzip", "rsyslog"]
            if r % 2:
                order.reverse()
            for v in order:
                if v == "rsyslog":
                    rate, what = rsyslog_round(base, ng, data, n, r)
                    res[v].append(rate)
                    print("round %d: rsyslog omelasticsearch %.0f lines/s; %s" % (r + 1, rate, what), flush=True)
                else:
                    rate, line = rlog_round(ng, n, v.endswith("gzip"))
                    res[v].append(rate)
                    print("round %d: %s" % (r + 1, line), flush=True)
        med = {k: statistics.median(v) for k, v in res.items()}
        for k in ("rlog", "rlog gzip"):
            per = ["%.2f" % (a / b) for a, b in zip(res[k], res["rsyslog"])]
            print("median %-9s %9.0f lines/s = %.2f x rsyslog's median (per round: %s)"
                  % (k, med[k], med[k] / med["rsyslog"], ", ".join(per)))
        print("median rsyslog   %9.0f lines/s (omelasticsearch into the _bulk stand-in)" % med["rsyslog"])
        c = ng.counts()
        print("nginx counted: rlog %d (expected %d), rsyslog %d (expected %d)"
              % (c[0], 2 * n * rounds, c[1], n * rounds))
    finally:
        ng.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
