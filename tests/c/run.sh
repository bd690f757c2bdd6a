#!/bin/sh
# Builds the C ABI test against include/rlog.h with -Wall -Werror and runs it.
set -eu
cd "$(dirname "$0")/../.."
mkdir -p build
# librlog.so carries the SONAME librlog.so.0 (build.rs): programs linked against it ask the loader
# for that name (`make build` makes the same link).
ln -sf librlog.so target/release/librlog.so.0
readelf -d target/release/librlog.so | grep -q 'Library soname: \[librlog.so.0\]' || {
    echo "target/release/librlog.so has no SONAME librlog.so.0"; exit 1; }
${CC:-cc} -std=c11 -Wall -Wextra -Werror -O1 -g -Iinclude -o build/test_abi tests/c/test_abi.c \
    -Ltarget/release -lrlog -lpthread -Wl,-rpath,"$PWD/target/release"
# The header also compiles as pedantic C99 and as C++.
for lang in "c -std=c99" "c++ -std=c++11"; do
    ${CC:-cc} -x $lang -pedantic -Wall -Werror -fsyntax-only -Iinclude - <<'C'
#include "rlog.h"
int main(void) { return rlog_initted(); }
C
done
# `make install` lays out lib, header and rlog.pc so that pkg-config builds a program against it.
prefix="$PWD/build/prefix"
rm -rf "$prefix"
make -s install PREFIX="$prefix" >/dev/null
flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs rlog)
${CC:-cc} -std=c99 -Wall -Werror -o build/example-installed bindings/c/example.c $flags -Wl,-rpath,"$prefix/lib"
for f in lib/librlog.so lib/librlog.a include/rlog.h lib/pkgconfig/rlog.pc; do
    test -e "$prefix/$f" || { echo "make install did not install $f"; exit 1; }
done
# It loads the installed library: without arguments it prints its usage and exits 2.
rc=0; build/example-installed >/dev/null 2>&1 || rc=$?
test "$rc" -eq 2 || { echo "installed example did not run (exit $rc)"; exit 1; }
# The versioned file, the SONAME link the loader follows and the link the linker follows; what
# was linked asks for the SONAME.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
test -f "$prefix/lib/librlog.so.$version" && test ! -L "$prefix/lib/librlog.so.$version" || {
    echo "make install: no file lib/librlog.so.$version"; exit 1; }
test "$(readlink "$prefix/lib/librlog.so.0")" = "librlog.so.$version" || {
    echo "make install: lib/librlog.so.0 does not point to librlog.so.$version"; exit 1; }
test "$(readlink "$prefix/lib/librlog.so")" = "librlog.so.0" || {
    echo "make install: lib/librlog.so does not point to librlog.so.0"; exit 1; }
readelf -d "$prefix/lib/librlog.so.$version" | grep -q 'Library soname: \[librlog.so.0\]' || {
    echo "installed librlog has no SONAME librlog.so.0"; exit 1; }
readelf -d build/example-installed | grep -q 'Shared library: \[librlog.so.0\]' || {
    echo "a program linked with -lrlog does not ask for librlog.so.0"; exit 1; }
# Installed without debug info (the release build keeps it: 28 MB .so, 85 MB .a).
for f in "lib/librlog.so.$version" lib/librlog.a; do
    if readelf -S --wide "$prefix/$f" | grep -q '\.debug_'; then
        echo "make install: $f still carries debug info"; exit 1
    fi
done
size=$(stat -c %s "$prefix/lib/librlog.so.$version")
test "$size" -lt 10000000 || { echo "make install: librlog.so is $size bytes"; exit 1; }
# SPLIT_DEBUG=1 keeps the debug info beside it, where gdb finds it through .gnu_debuglink.
split="$PWD/build/prefix-split"
rm -rf "$split"
make -s install PREFIX="$split" SPLIT_DEBUG=1 >/dev/null
readelf -S --wide "$split/lib/.debug/librlog.so.$version.debug" | grep -q '\.debug_info' || {
    echo "make install SPLIT_DEBUG=1: no debug info in lib/.debug/"; exit 1; }
readelf -p .gnu_debuglink "$split/lib/librlog.so.$version" | grep -q "librlog.so.$version.debug" || {
    echo "make install SPLIT_DEBUG=1: the library has no .gnu_debuglink"; exit 1; }
if readelf -S --wide "$split/lib/librlog.so.$version" | grep -q '\.debug_'; then
    echo "make install SPLIT_DEBUG=1: the library still carries debug info"; exit 1
fi
rm -rf "$split"
echo "make install + pkg-config: ok"

# The build commands in bindings/c/example.c's header work as written, from the repository root
# (the output goes to build/ instead of ./example).
cmds=$(sed -n 's/^ \*   \(cc .*\) -o example$/\1/p' bindings/c/example.c)
test "$(printf '%s\n' "$cmds" | grep -c .)" -eq 2 || {
    echo "bindings/c/example.c: expected two 'cc ... -o example' lines in its header"; exit 1; }
i=0
printf '%s\n' "$cmds" | while IFS= read -r cmd; do
    i=$((i + 1))
    out="build/example-header-$i"
    rm -f "$out"
    PKG_CONFIG_PATH="$prefix/lib/pkgconfig" sh -c "$cmd -o $out" || {
        echo "the build command in example.c's header failed: $cmd"; exit 1; }
    rc=0; LD_LIBRARY_PATH="$prefix/lib" "$out" >/dev/null 2>&1 || rc=$?
    test "$rc" -eq 2 || { echo "$out (built by: $cmd) did not run (exit $rc)"; exit 1; }
done
echo "example.c build commands: ok"

${CC:-cc} -std=c99 -Wall -Werror -o build/test_dlclose tests/c/test_dlclose.c -ldl
build/test_dlclose "$PWD/target/release/librlog.so"

exec build/test_abi
