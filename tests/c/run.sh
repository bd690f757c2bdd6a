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
exec build/test_abi
