# rlog: `make demo` builds everything and shows logs going C -> librlog -> collector;
# `make test` runs the whole suite. See README.md.

CARGO   ?= cargo
CC      ?= cc
PYTHON  ?= python3
PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
PCDIR   ?= $(LIBDIR)/pkgconfig
BINDIR  ?= $(PREFIX)/bin
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

TARGET  := target/release
LIB     := $(TARGET)/librlog.so
BUILD   := build

.PHONY: all build deps header demo uwsgi-plugin test test-rust test-c test-py lint install clean bench

all: build

build:
	$(CARGO) build --release

# Regenerates include/rlog.h from the Rust source (commit the result).
header:
	RLOG_UPDATE_HEADER=1 $(CARGO) build --release

$(BUILD)/example: bindings/c/example.c include/rlog.h build
	@mkdir -p $(BUILD)
	$(CC) -std=c99 -Wall -Wextra -Werror -O2 -Iinclude -o $@ bindings/c/example.c -L$(TARGET) -lrlog -Wl,-rpath,$(CURDIR)/$(TARGET)

# rlogd on 127.0.0.1; logs from C, Python and LuaJIT in nginx through librlog; read back with `rlogd cat`.
demo: deps build $(BUILD)/example
	$(PYTHON) demo/demo.py

# The uWSGI logger plugin (bindings/uwsgi), built with Debian's `uwsgi --build-plugin`.
uwsgi-plugin: build
	sh bindings/uwsgi/build.sh $(BUILD)/uwsgi

test: deps build test-rust test-c test-py
	@echo "make test: all suites passed"

# Installs the real peers the tests run against (nginx + Lua, uWSGI, rsyslog, pytest) when missing.
deps:
	bash .ci/deps

test-rust:
	$(CARGO) test --release

test-c: build
	sh tests/c/run.sh

test-py: build
	@if ls tests/py/test_*.py >/dev/null 2>&1; then $(PYTHON) -m pytest -q tests/py; else echo "tests/py: no tests yet"; fi

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

bench:
	$(CARGO) bench

install: build
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PCDIR)
	install -m 0755 $(LIB) $(DESTDIR)$(LIBDIR)/librlog.so.$(VERSION)
	ln -sf librlog.so.$(VERSION) $(DESTDIR)$(LIBDIR)/librlog.so
	install -m 0644 $(TARGET)/librlog.a $(DESTDIR)$(LIBDIR)/librlog.a
	install -m 0644 include/rlog.h $(DESTDIR)$(INCDIR)/rlog.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' bindings/c/rlog.pc.in > $(DESTDIR)$(PCDIR)/rlog.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSTEMDUNITDIR)
	install -m 0755 $(TARGET)/rlogd $(DESTDIR)$(BINDIR)/rlogd
	sed -e 's|@BINDIR@|$(BINDIR)|' dist/rlogd.service.in > $(DESTDIR)$(SYSTEMDUNITDIR)/rlogd.service

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
