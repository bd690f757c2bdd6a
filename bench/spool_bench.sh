#!/bin/sh
# Spool throughput with the collector down, and replay when it comes back (SPEC §6), next to dd
# writing the same bytes in the same block size with the same sync on the same disk.
#
#   sh bench/spool_bench.sh [M] [DIR]     M messages of 200 B (default 1000000), DIR on the disk
#                                         to measure (default /tmp/rlog-spool-bench; emptied)
#   COLD=1 sh bench/spool_bench.sh        replay with the spool dropped from the page cache first
#   SYNCS=batch sh bench/spool_bench.sh   one spool_sync only
#
# For each spool_sync (batch, interval, none): `spool_bench write` logs M messages with a refused
# collector until rlog_stats says spooled == M, then `spool_bench replay` starts a collector and a
# new process that adopts the spool and delivers it. dd then writes the bytes the spool wrote
# (records framed), in blocks of the spool's average write: oflag=dsync (an fdatasync per block)
# against batch, conv=fdatasync (one at the end) against interval and none.
set -eu
cd "$(dirname "$0")/.."
M=${1:-1000000}
DIR=${2:-/tmp/rlog-spool-bench}
cargo build --release -q
ln -sf librlog.so target/release/librlog.so.0
mkdir -p build
cc -O2 -Wall -Wextra -Iinclude -o build/spool_bench bench/spool_bench.c -Ltarget/release -lrlog \
    -Wl,-rpath,"$PWD/target/release" -lpthread
for sync in ${SYNCS:-batch interval none}; do
    rm -rf "$DIR" && mkdir -p "$DIR"
    out=$(build/spool_bench write "$DIR/spool" "$M" "$sync")
    echo "$out"
    bytes=$(echo "$out" | sed -n 's/^disk: [0-9]* pwrite of records, \([0-9]*\) bytes (\([0-9]*\) bytes each).*/\1/p')
    port=$(echo "$out" | sed -n 's/^port //p')
    bs=$(echo "$out" | sed -n 's/^disk: [0-9]* pwrite of records, \([0-9]*\) bytes (\([0-9]*\) bytes each).*/\2/p')
    build/spool_bench replay "$DIR/spool" "$M" "$port" batch ${COLD:+cold}
    count=$(( (bytes + bs - 1) / bs ))
    if [ "$sync" = batch ]; then flag=oflag=dsync; else flag=conv=fdatasync; fi
    printf 'dd bs=%s count=%s %s: ' "$bs" "$count" "$flag"
    dd if=/dev/zero of="$DIR/dd" bs="$bs" count="$count" $flag 2>&1 | tail -1
    rm -f "$DIR/dd"
done
rm -rf "$DIR"
