#!/bin/sh
# Builds the C ABI test against include/rlog.h with -Wall -Werror and runs it.
set -eu
cd "$(dirname "$0")/../.."
mkdir -p build
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
echo "make install + pkg-config: ok"

${CC:-cc} -std=c99 -Wall -Werror -o build/test_dlclose tests/c/test_dlclose.c -ldl
build/test_dlclose "$PWD/target/release/librlog.so"

exec build/test_abi
