#!/bin/sh
# Counts the instructions one rlog_log call executes (callgrind), and one 200-byte memcpy's worth
# for comparison. Needs valgrind.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q
# Programs linked with -lrlog ask the loader for the SONAME (see the Makefile's build target).
ln -sf librlog.so target/release/librlog.so.0
mkdir -p build
cc -O2 -Iinclude -o build/log_instructions bench/log_instructions.c -Ltarget/release -lrlog -Wl,-rpath,"$PWD/target/release"
out=build/callgrind.out
valgrind --tool=callgrind --callgrind-out-file=$out --toggle-collect=rlog_log build/log_instructions >/dev/null 2>&1
total=$(callgrind_annotate $out 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
echo "rlog_log: $total instructions for 1000000 calls = $((total / 1000000)) per call (200-byte message)"
