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
# The shared library's SONAME (build.rs passes it to the linker): what programs linked with
# -lrlog ask the loader for. Bumped when the ABI breaks.
SONAME  := librlog.so.0
STRIP   ?= strip
OBJCOPY ?= objcopy
# make install SPLIT_DEBUG=1: keep librlog.so's debug info in $(LIBDIR)/.debug/ (where gdb looks,
# through the .gnu_debuglink the stripped library carries) instead of dropping it.
SPLIT_DEBUG ?=

TARGET  := target/release
LIB     := $(TARGET)/librlog.so
BUILD   := build

.PHONY: all build deps header demo uwsgi-plugin test test-rust test-c test-py test-faults fault-matrix lint install clean bench fuzz miri loom

all: build

build:
	$(CARGO) build --release
	@# Programs linked in this tree (-Ltarget/release -lrlog) ask the loader for the SONAME.
	@ln -sf librlog.so $(TARGET)/$(SONAME)

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

test: deps build test-rust test-c test-py test-faults loom
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

# The fault matrix's quick subset (bench/fault_matrix.py --quick, docs/FAULTS.md): a few cells
# per output against the real peers; fails when a record counted sent is not at the peer or the
# stats identity breaks.
test-faults: build
	$(PYTHON) bench/fault_matrix.py --quick

# The full fault matrix; rewrites docs/FAULTS.md (commit it with the command it names).
fault-matrix: build
	$(PYTHON) bench/fault_matrix.py

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

bench:
	$(CARGO) bench

# Every fuzz target (fuzz/, cargo-fuzz on the nightly toolchain) for FUZZ_SECONDS each, one after
# the other; skipped with a message when nightly is missing. See docs/FUZZING.md.
FUZZ_SECONDS ?= 60
fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)

# The ring's unit tests under Miri (nightly with the miri component: `rustup +nightly component
# add miri rust-src`). See docs/FUZZING.md, "Model checks".
miri:
	cargo +nightly miri test --lib ring::tests

# The loom model checks (docs/MODELS.md): the ring, the credit hand-off and the futex lock and
# condition variable, their real code built against loom's atomics (--cfg loom). The dev
# profile: from a clean tree it builds and runs in about half the time --release takes, and its
# overflow checks keep the credit accounting from wrapping silently; line tables only (enough
# for a failing model's backtrace) make the first build shorter. Own target directory, so the
# normal build's cache stays valid.
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom CARGO_PROFILE_DEV_DEBUG=line-tables-only \
	    $(CARGO) test --lib loom_tests

# Installs the library stripped of its debug info (the release build keeps it: 28 MB .so,
# 85 MB .a), as librlog.so.VERSION with the SONAME link librlog.so.0 and the development link
# librlog.so, plus the header and rlog.pc.
install: build
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PCDIR)
	install -m 0755 $(LIB) $(DESTDIR)$(LIBDIR)/librlog.so.$(VERSION)
ifneq ($(SPLIT_DEBUG),)
	install -d $(DESTDIR)$(LIBDIR)/.debug
	$(OBJCOPY) --only-keep-debug $(DESTDIR)$(LIBDIR)/librlog.so.$(VERSION) \
	    $(DESTDIR)$(LIBDIR)/.debug/librlog.so.$(VERSION).debug
	chmod 0644 $(DESTDIR)$(LIBDIR)/.debug/librlog.so.$(VERSION).debug
endif
	$(STRIP) --strip-unneeded --remove-section=.comment $(DESTDIR)$(LIBDIR)/librlog.so.$(VERSION)
ifneq ($(SPLIT_DEBUG),)
	cd $(DESTDIR)$(LIBDIR) && $(OBJCOPY) --add-gnu-debuglink=.debug/librlog.so.$(VERSION).debug librlog.so.$(VERSION)
endif
	ln -sf librlog.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/librlog.so
	install -m 0644 $(TARGET)/librlog.a $(DESTDIR)$(LIBDIR)/librlog.a
	$(STRIP) --strip-debug --enable-deterministic-archives $(DESTDIR)$(LIBDIR)/librlog.a
	install -m 0644 include/rlog.h $(DESTDIR)$(INCDIR)/rlog.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' bindings/c/rlog.pc.in > $(DESTDIR)$(PCDIR)/rlog.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSTEMDUNITDIR)
	install -m 0755 $(TARGET)/rlogd $(DESTDIR)$(BINDIR)/rlogd
	$(STRIP) --strip-unneeded --remove-section=.comment $(DESTDIR)$(BINDIR)/rlogd
	sed -e 's|@BINDIR@|$(BINDIR)|' dist/rlogd.service.in > $(DESTDIR)$(SYSTEMDUNITDIR)/rlogd.service
	@if [ -z "$(DESTDIR)" ]; then \
	    echo "installed $(LIBDIR)/librlog.so.$(VERSION) ($(SONAME)). If a program then fails with"; \
	    echo "'error while loading shared libraries: $(SONAME)', run 'ldconfig' as root ($(LIBDIR)"; \
	    echo "must be listed in /etc/ld.so.conf.d/), or link it with -Wl,-rpath,$(LIBDIR)."; \
	fi

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
