#!/bin/sh
# Builds rlog_plugin.so with the uWSGI plugin toolchain of the installed uwsgi binary
# (Debian: uwsgi-core; `uwsgi --build-plugin` extracts uwsgi.h and uwsgiconfig.py from it).
#
#   bindings/uwsgi/build.sh [OUTDIR]        (default OUTDIR: build/uwsgi)
#
# RLOG_INCLUDE_DIR and RLOG_LIB_DIR default to this tree's include/ and target/release/ (run
# `cargo build --release` first); the plugin gets an rpath to RLOG_LIB_DIR. UWSGI selects the
# uwsgi binary (default: uwsgi on PATH).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/build/uwsgi}
UWSGI=${UWSGI:-uwsgi}
: "${RLOG_INCLUDE_DIR:=$root/include}"
: "${RLOG_LIB_DIR:=$root/target/release}"
# uwsgi --build-plugin runs $PYTHON (default "python", absent on a stock Debian) on the
# uwsgiconfig.py it carries.
: "${PYTHON:=python3}"
export RLOG_INCLUDE_DIR RLOG_LIB_DIR PYTHON

command -v "$UWSGI" >/dev/null 2>&1 || {
	echo "build.sh: '$UWSGI' not found; install uWSGI (Debian: apt-get install uwsgi-core uwsgi-src)" >&2
	exit 1
}
[ -f "$RLOG_INCLUDE_DIR/rlog.h" ] || { echo "build.sh: no rlog.h in $RLOG_INCLUDE_DIR" >&2; exit 1; }
[ -f "$RLOG_LIB_DIR/librlog.so" ] || {
	echo "build.sh: no librlog.so in $RLOG_LIB_DIR (run: cargo build --release)" >&2
	exit 1
}
# librlog's SONAME is librlog.so.0: the plugin asks the loader for that name (make install
# makes the link; a cargo build does not).
[ -e "$RLOG_LIB_DIR/librlog.so.0" ] || ln -sf librlog.so "$RLOG_LIB_DIR/librlog.so.0"

mkdir -p "$out"
cd "$out"
# --build-plugin writes NAME_plugin.so and a .uwsgi_plugins_builder/ scratch dir into the cwd.
"$UWSGI" --build-plugin "$here" >build.log 2>&1 || { cat build.log >&2; exit 1; }
rm -rf .uwsgi_plugins_builder
[ -f rlog_plugin.so ] || { cat build.log >&2; echo "build.sh: rlog_plugin.so was not produced" >&2; exit 1; }
echo "$out/rlog_plugin.so"
