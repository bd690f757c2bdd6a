#!/bin/sh
# rlog into ClickHouse against clickhouse-client inserting the same rows (issue 16): rows/s of
# each, measured side by side (in turn, /usr/bin/time), then what the server stored checked against what was
# sent (every run's rows, once).
#
#   sh bench/clickhouse_bench.sh [N] [RUNS]     N rows per run (default 1000000), RUNS pairs (5)
#
# A: build/clickhouse_bench rlog N PORT r  - N rlog_logger_log calls of ~90-byte messages through
#    `logger = clickhouse://...` with a json encoder ({"ts_us":${micros},"msg":"${msg}"}), then
#    rlog_logger_free waits until ClickHouse has answered every insert; exits 1 if a call did not
#    buffer (a drop) or a message was not delivered. The default bodies are ClickHouse's LZ4
#    blocks; then again with gzip and with none (RLOG_BENCH_COMPRESSION=gzip|none).
# B: clickhouse-client --query "INSERT INTO logs.c FORMAT JSONEachRow" < the same N rows, as
#    the json encoder writes them (native protocol on the TCP port; rlog uses the HTTP one).
# The server: Debian's clickhouse-server, on 127.0.0.1 with its own temp dir and ports, stopped
# by its pid file at the end. Both tables are plain MergeTree ORDER BY ts_us.
set -eu
cd "$(dirname "$0")/.."
N=${1:-1000000}
RUNS=${2:-5}
cargo build --release -q
ln -sf librlog.so target/release/librlog.so.0
mkdir -p build
cc -O2 -Wall -Wextra -Iinclude -o build/clickhouse_bench bench/clickhouse_bench.c -Ltarget/release \
    -lrlog -Wl,-rpath,"$PWD/target/release" -lpthread

D=$(mktemp -d /tmp/rlog-clickhouse-bench.XXXXXX)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(port)
TCP=$(port)
cat > "$D/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$D/server.log</log><errorlog>$D/server.err.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$HTTP</http_port>
  <tcp_port>$TCP</tcp_port>
  <path>$D/data/</path>
  <tmp_path>$D/tmp/</tmp_path>
  <user_files_path>$D/user_files/</user_files_path>
  <format_schema_path>$D/format_schemas/</format_schema_path>
  <users_config>$D/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709120</mark_cache_size>
</yandex>
XML
cat > "$D/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
XML
/usr/sbin/clickhouse-server --daemon --config-file="$D/config.xml" --pid-file="$D/clickhouse.pid"
stop() {
    if [ -f "$D/clickhouse.pid" ]; then kill "$(cat "$D/clickhouse.pid")" 2>/dev/null || true; fi
    sleep 1
    rm -rf "$D"
}
trap stop EXIT
q() { curl -sS --fail-with-body "http://127.0.0.1:$HTTP/" --data-binary "$1"; }
i=0
until [ "$(curl -s "http://127.0.0.1:$HTTP/ping" || true)" = "Ok." ]; do
    i=$((i + 1)); [ $i -lt 600 ] || { echo "clickhouse-server did not start" >&2; exit 1; }
    sleep 0.1
done
q "CREATE DATABASE logs"
q "CREATE TABLE logs.r (ts_us UInt64, msg String) ENGINE = MergeTree ORDER BY ts_us"
q "CREATE TABLE logs.c (ts_us UInt64, msg String) ENGINE = MergeTree ORDER BY ts_us"
build/clickhouse_bench rows "$N" "$D/rows.json"
echo "clickhouse-server $(q 'SELECT version()'), $N rows per run ($(wc -c < "$D/rows.json") bytes of JSONEachRow), $(nproc) cores (shared)"

# Times command A against command B: one warm-up run each, then RUNS pairs in turn, each run's
# wall and CPU seconds from /usr/bin/time; prints the medians and the median of the per-pair
# ratios (a ratio holds when the machine's speed drifts between pairs). Fails if a run failed.
# A (rlog) also times itself from its first rlog_logger_log until every row is delivered
# (`delivered_s`, its messages made before): the rows/s figure, set against the client's whole
# wall (its rows were made before too, into the file it reads).
pair() {
    label=$1 a=$2 b=$3
    sh -c "$a" >/dev/null && sh -c "$b" >/dev/null
    : > "$D/times"
    k=0
    while [ "$k" -lt "$RUNS" ]; do
        /usr/bin/time -f "A %e %U %S" -a -o "$D/times" sh -c "$a" >>"$D/times"
        /usr/bin/time -f "B %e %U %S" -a -o "$D/times" sh -c "$b" >/dev/null
        k=$((k + 1))
    done
    python3 - "$D/times" "$label" "$N" <<'PY'
import statistics, sys
lines = open(sys.argv[1]).read().split("\n")
rows = [l.split() for l in lines if l[:2] in ("A ", "B ")]
a = [(float(r[1]), float(r[2]) + float(r[3])) for r in rows if r[0] == "A"]
b = [(float(r[1]), float(r[2]) + float(r[3])) for r in rows if r[0] == "B"]
d = [float(l.split()[1]) for l in lines if l.startswith("delivered_s ")]
m = statistics.median
n = int(sys.argv[3])
print(f"{sys.argv[2]}: rlog wall {m(x[0] for x in a):.3f} s (cpu {m(x[1] for x in a):.3f} s), "
      f"clickhouse-client wall {m(x[0] for x in b):.3f} s (cpu {m(x[1] for x in b):.3f} s); "
      f"rlog/client wall, median of {len(a)} pairs: {m(x[0] / y[0] for x, y in zip(a, b)):.3f}")
print(f"{sys.argv[2]}: rows/s: rlog {n / m(d):,.0f} (first call to all delivered, median "
      f"{m(d):.3f} s), clickhouse-client {n / m(x[0] for x in b):,.0f} (wall); rlog's rows/s "
      f"as a share of the client's, median of {len(d)} pairs: "
      f"{m(y[0] / x for x, y in zip(d, b)):.0%}")
PY
}
client="clickhouse-client --host 127.0.0.1 --port $TCP --query 'INSERT INTO logs.c FORMAT JSONEachRow' < $D/rows.json"
pair "lz4 (default)" "build/clickhouse_bench rlog $N $HTTP r" "$client"

# The same with gzip, and with none: what each costs on loopback.
pair "gzip" "RLOG_BENCH_COMPRESSION=gzip build/clickhouse_bench rlog $N $HTTP r" "$client"
pair "none" "RLOG_BENCH_COMPRESSION=none build/clickhouse_bench rlog $N $HTTP r" "$client"

# One more rlog run, its own report shown: the rlog_logger_log calls and what they returned.
build/clickhouse_bench rlog "$N" "$HTTP" r
want=$((N * (3 * RUNS + 4)))
r=$(q "SELECT count(), uniqExact(msg) FROM logs.r FORMAT TSV")
c=$(q "SELECT count() FROM logs.c")
echo "stored: rlog $r (count, distinct messages), clickhouse-client $c; expected rlog $want ($N distinct), clickhouse-client $((N * (3 * RUNS + 3)))"
[ "$r" = "$(printf '%s\t%s' "$want" "$N")" ] && [ "$c" = "$((N * (3 * RUNS + 3)))" ] || { echo "MISMATCH" >&2; exit 1; }
