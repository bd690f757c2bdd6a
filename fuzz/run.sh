#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20), one after the other, and prints one
# summary line per target. Used by `make fuzz` and by .ci/run.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain (cargo-fuzz builds with -Zsanitizer=address); without it, says so
# and exits 0 (skipped). Installs cargo-fuzz with `cargo install` when it is missing. New inputs
# the fuzzer finds go to fuzz/work/corpus/TARGET (not committed); the seeds in fuzz/corpus/TARGET
# are only read. A crash leaves its input in fuzz/artifacts/TARGET/ and makes the run fail
# (exit 1) after the other targets ran.
set -uo pipefail
cd "$(dirname "$0")"

secs="${1:-20}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(config encode msgpack frame format store spool http_response http_reply nats relp syslog)
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: no nightly toolchain (cargo-fuzz needs it: rustup toolchain install nightly)"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    if ! cargo install --locked cargo-fuzz >/dev/null 2>&1 && ! cargo install cargo-fuzz; then
        echo "fuzz: FAILED: cargo install cargo-fuzz failed" >&2
        exit 1
    fi
fi

mkdir -p work
echo "fuzz: building the targets (nightly, AddressSanitizer, debug assertions)"
if ! cargo +nightly fuzz build >work/build.log 2>&1; then
    tail -40 work/build.log >&2
    echo "fuzz: FAILED: build" >&2
    exit 1
fi

# The store and spool targets write their files here (tmpfs when there is one).
tmp_base=/dev/shm
[ -d "$tmp_base" ] && [ -w "$tmp_base" ] || tmp_base="${TMPDIR:-/tmp}"
RLOG_FUZZ_TMP=$(mktemp -d "$tmp_base/rlog-fuzz.XXXXXX")
export RLOG_FUZZ_TMP
trap 'rm -rf "$RLOG_FUZZ_TMP"' EXIT

failed=()
for t in "${targets[@]}"; do
    mkdir -p "work/corpus/$t" "artifacts/$t"
    log="work/$t.log"
    dict=()
    if [ -f "$t.dict" ]; then dict=("-dict=$t.dict"); fi
    # One allocation past the limit is a finding. The parsers of what a peer sends
    # take a few KB of input here: 64 MB in one piece would be memory a peer made rlog take on
    # its word (a length it announced). The others allocate as libFuzzer's default (the RSS
    # limit) allows: strftime widths, spool segments.
    case "$t" in
        http_response | http_reply | nats | relp | syslog) malloc_mb=64 ;;
        *) malloc_mb=2048 ;;
    esac
    cargo +nightly fuzz run "$t" "work/corpus/$t" "corpus/$t" -- "${dict[@]}" \
        -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -malloc_limit_mb="$malloc_mb" \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        echo "fuzz: $t: ok, ${runs:-?} executions in ${secs}s; ${done_line:-no DONE line}"
    else
        echo "fuzz: $t: FAILED (exit $rc); last lines of $log:" >&2
        grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|RELOAD)' "$log" | tail -40 >&2
        failed+=("$t")
    fi
done

echo "fuzz: ${#targets[@]} targets ran ${secs}s each"
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
